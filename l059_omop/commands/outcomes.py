"""``l059-omop outcomes``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from l059_omop.cli import Settings, pass_settings


@click.command("outcomes")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the CSV tables, PNG figures and report.html (created if missing).")
@click.option("--cohort-id", default=1059, show_default=True, type=int, help="cohort_definition_id to analyse.")
@click.option("--cohort-table", default="cohort", show_default=True, help="Cohort table in the results schema.")
@click.option("--data-cutoff", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Nothing after this date counts [default: latest observation_period_end_date].")
@click.option("--ci-method", type=click.Choice(["log", "log-log"]), default="log", show_default=True,
              help="Kaplan-Meier confidence interval: log (R survfit's default) or log-log (lifelines', SAS's).")
@click.option("--min-cell-count", default=5, show_default=True, type=click.IntRange(min=0),
              help="Counts below this appear as <N in every output (0 or 1: no suppression).")
@click.option("--dq", "with_dq", is_flag=True,
              help="Also run the data-quality checks: dq_results.csv in OUT/dq and a section in report.html.")
@pass_settings
def command(settings: Settings, out_dir: Path, cohort_id: int, cohort_table: str, data_cutoff: dt.datetime | None,
            ci_method: str, min_cell_count: int, with_dq: bool) -> None:
    """PFS, OS, response, safety and subgroups of a cohort (time zero = cohort_start_date): CSV tables,
    Kaplan-Meier plots, attrition diagram, Table 1 and a self-contained report.html in OUT."""
    from l059_omop.outcomes import compute_outcomes, suppressed_tables

    extra = []
    if with_dq:
        from l059_omop.dq import html_fragment, run_checks, write_outputs

        checks = run_checks(settings.engine(), cdm_schema=settings.cdm_schema)
        write_outputs(checks, out_dir / "dq")
        extra.append(("Data quality", html_fragment(checks)))
    res = compute_outcomes(settings.engine(), out_dir, cohort_id=cohort_id, cdm_schema=settings.cdm_schema,
                           results_schema=settings.results_schema, cohort_table=cohort_table,
                           data_cutoff=data_cutoff.date() if data_cutoff else None, ci_method=ci_method,
                           min_cell_count=min_cell_count, extra_sections=extra)
    summary = suppressed_tables(res)["survival_summary"]
    n = summary.loc[summary["subgroup"] == "all", "n"].iloc[0]
    settings.echo(f"cohort {cohort_id}: {n} persons; data cut-off {res.data_cutoff}; {ci_method} 95% CI")
    for _, r in summary[summary["subgroup"] == "all"].iterrows():
        def d(v):
            return "NR" if v != v else f"{v:.0f}"
        settings.echo(f"  {r['endpoint'].upper():<4} n={r['n']} events={r['events']} median {d(r['median_days'])} d "
                      f"(95% CI {d(r['median_lower_days'])}-{d(r['median_upper_days'])})")
    for note in res.notes:
        settings.echo(f"  note: {note}")
    settings.echo(f"{len(res.files)} files written to {out_dir} (report.html)")
