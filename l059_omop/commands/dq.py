"""``l059-omop dq [--out DIR] [--fail-on error|warning]``."""

from __future__ import annotations

from pathlib import Path

import click

from l059_omop.cli import Settings, pass_settings
from l059_omop.dq import exit_code, run_checks, summary_lines, write_outputs
from l059_omop.dq.report import DQ_FAILED_EXIT_CODE


@click.command("dq")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("dq-out"),
              show_default=True, help="Folder for dq_results.csv and dq.html.")
@click.option("--fail-on", type=click.Choice(["error", "warning"]), default="error", show_default=True,
              help="error: exit non-zero when a fatal or convention check fails; warning: also characterization "
                   "checks.")
@pass_settings
def command(settings: Settings, out_dir: Path, fail_on: str) -> None:
    """Data-quality checks over the CDM after OHDSI's Data Quality Dashboard (conformance, completeness,
    plausibility) with its thresholds.

    Exit code 0 when no check fails at the --fail-on level, 3 when one does (or could not
    run), 1 on a runtime failure, 2 on bad usage.
    """
    df = run_checks(settings.engine(), settings.cdm_schema)
    paths = write_outputs(df, out_dir, fail_on)
    for line in summary_lines(df, fail_on):
        settings.echo(line)
    settings.echo(f"results: {paths['csv']}; report section: {paths['html']}")
    code = exit_code(df, fail_on)
    assert code in (0, DQ_FAILED_EXIT_CODE)
    if code:
        click.get_current_context().exit(code)
