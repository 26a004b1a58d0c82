"""``l059-omop package --out study.zip``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from l059_omop.cli import Settings, pass_settings


@click.command("package")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The study package to write (a zip).")
@click.option("--min-cell-count", type=click.IntRange(min=1), default=5, show_default=True,
              help="Counts from 1 to N-1 are suppressed at every site (1 = no suppression).")
@click.option("--data-cutoff", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Common data cut-off for all sites [default: each site's latest observation_period_end_date].")
@click.option("--ci-method", type=click.Choice(["log", "log-log"]), default="log", show_default=True)
@click.option("--db-vocabulary", is_flag=True,
              help="Resolve the Circe JSON's concept sets in --db's vocabulary [default: the bundled vocabulary].")
@pass_settings
def command(settings: Settings, out: Path, min_cell_count: int, data_cutoff: dt.datetime | None,
            ci_method: str, db_vocabulary: bool) -> None:
    """Export the study for network sites: cohort SQL (OHDSI source and rendered per dialect), Circe JSON,
    concept sets, outcome SQL and settings, with a manifest of versions, parameters and checksums."""
    from l059_omop.network.package import make_package, package_summary

    analysis = {"min_cell_count": min_cell_count, "ci_method": ci_method,
                "data_cutoff": data_cutoff.date().isoformat() if data_cutoff else None}
    pkg = make_package(out, analysis, vocab_engine=settings.engine() if db_vocabulary else None)
    settings.echo(f"wrote {out}")
    for line in package_summary(pkg):
        settings.echo(f"  {line}")
