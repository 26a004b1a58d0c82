"""``l059-omop build-eras [--gap-days N] [--only drug_era|condition_era]``."""

from __future__ import annotations

import click

from l059_omop.cli import Settings, pass_settings
from l059_omop.eras import DEFAULT_ERA_PAD, ERA_TABLES, build_eras


@click.command("build-eras")
@click.option("--gap-days", type=click.IntRange(0, 3650), default=DEFAULT_ERA_PAD, show_default=True,
              help="Persistence window: records whose gap (next start - previous end) is at most this many days "
                   "join one era.")
@click.option("--only", "only", type=click.Choice(ERA_TABLES), multiple=True,
              help="Rebuild only this table (repeatable); default both.")
@pass_settings
def command(settings: Settings, gap_days: int, only: tuple[str, ...]) -> None:
    """Derive drug_era (per ingredient, through concept_ancestor) and condition_era from drug_exposure and
    condition_occurrence, as OHDSI's era builder does. Replaces the tables' rows, so it can be re-run after
    every load."""
    report = build_eras(settings.engine(), settings.cdm_schema, era_pad=gap_days, tables=only or ERA_TABLES)
    for table, n in report.rows.items():
        settings.echo(f"{table}: {n} rows (gap {report.era_pad} days)")
