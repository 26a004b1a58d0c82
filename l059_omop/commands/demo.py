"""``l059-omop demo``."""

from __future__ import annotations

from pathlib import Path

import click

from l059_omop.cli import Settings, pass_settings


@click.command("demo")
@click.option("--patients", type=click.IntRange(1, 1_000_000), default=2000, show_default=True,
              help="Synthetic patients to generate.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("l059-demo"),
              show_default=True, help="Folder for the FHIR files, the DuckDB file and the report.")
@click.option("--seed", type=int, default=1059, show_default=True, help="Random seed of the synthetic patients.")
@pass_settings
def command(settings: Settings, patients: int, out: Path, seed: int) -> None:
    """synth -> init-db -> load-fhir -> build-cohort -> dq -> outcomes on a fresh DuckDB file; prints a summary.

    The demo always uses its own DuckDB file in --out (the --db option is not used).
    """
    from l059_omop.demo import run_demo

    steps = ["synth", "init-db", "load-fhir", "build-cohort", "dq", "outcomes"]

    def progress(name: str) -> None:
        if not settings.quiet:
            i = steps.index(name) + 1 if name in steps else 0
            click.echo(f"[{i}/{len(steps)}] {name} ...", err=True)

    summary = run_demo(patients, out, seed=seed, progress=progress)
    for line in summary.lines():
        click.echo(line)
