"""``l059-omop synth``: synthetic ES-SCLC patients with a truth file (issue 3)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from l059_omop.cli import Settings, pass_settings
from l059_omop.synth import FORMATS, SynthParams, generate


@click.command("synth")
@click.option("--patients", "n", type=click.IntRange(min=1), required=True, help="Number of patients.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="Output format.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder (also gets truth.csv and truth_meta.json).")
@click.option("--seed", type=int, default=1059, show_default=True, help="Random seed.")
@click.option("--ndjson", is_flag=True, help="fhir: bulk NDJSON files per resource type instead of Bundles.")
@click.option("--db", "db_url", metavar="URL", default=None,
              help="omop: insert straight into this database (made by init-db) instead of CSV files.")
@click.option("--fail-share", type=click.FloatRange(0, 1), default=SynthParams.fail_share, show_default=True,
              help="Share of patients given deliberate rule / entry failures.")
@click.option("--boundary-share", type=click.FloatRange(0, 1), default=SynthParams.boundary_share,
              show_default=True, help="Share of the other patients given a value exactly on a passing boundary.")
@click.option("--loss-share", type=click.FloatRange(0, 1), default=SynthParams.loss_share, show_default=True,
              help="Share of patients lost to follow-up.")
@click.option("--data-cutoff", type=click.DateTime(["%Y-%m-%d"]), default=str(SynthParams.data_cutoff),
              show_default=True, help="Data cut-off: nothing is recorded after it.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: CPU count for 5,000+ patients).")
@pass_settings
def command(settings: Settings, n: int, fmt: str, out: Path, seed: int, ndjson: bool, db_url: str | None,
            fail_share: float, boundary_share: float, loss_share: float, data_cutoff, workers: int | None) -> None:
    """Generate synthetic ES-SCLC patients (FHIR, hospital records or OMOP) plus truth.csv."""
    engine = None
    if db_url is not None:
        from l059_omop.db.engine import connect, resolve_url

        engine = connect(resolve_url(db_url))
    params = SynthParams(fail_share=fail_share, boundary_share=boundary_share, loss_share=loss_share,
                         data_cutoff=date(data_cutoff.year, data_cutoff.month, data_cutoff.day))
    progress = None
    if not settings.quiet and n >= 50_000:
        def progress(done: int) -> None:
            if done % 50_000 < 500:
                click.echo(f"  {done:,} / {n:,} patients", err=True)
    summary = generate(n, fmt, out, seed, ndjson=ndjson, engine=engine, params=params, workers=workers,
                       cdm_schema=settings.cdm_schema, progress=progress)
    for line in summary.summary_lines():
        settings.echo(line)
