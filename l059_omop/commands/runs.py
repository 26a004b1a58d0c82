"""``l059-omop runs [--limit N] [--close-stale] [--etl-schema S]``."""

from __future__ import annotations

import click

from l059_omop.cli import Settings, pass_settings
from l059_omop.db.schema import validate_identifier
from l059_omop.etl.runs import INTERRUPTED, close_stale, list_runs


@click.command("runs")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True, help="Newest runs to list.")
@click.option("--close-stale", "close", is_flag=True,
              help=f"Mark runs left 'running' by a killed load '{INTERRUPTED}' (only runs that are not live).")
@click.option("--etl-schema", default="etl", show_default=True, help="Schema of the ETL bookkeeping tables.")
@pass_settings
def command(settings: Settings, limit: int, close: bool, etl_schema: str) -> None:
    """List the loads of the database (etl.load_run): status, times, and the totals of each run report."""
    validate_identifier(etl_schema)
    engine = settings.engine()
    if close:
        closed = close_stale(engine, etl_schema, settings.cdm_schema)
        settings.echo(f"marked {len(closed)} run(s) {INTERRUPTED}" + (f": {', '.join(closed)}" if closed else ""))
    df = list_runs(engine, etl_schema, settings.cdm_schema, limit=limit)
    if df.empty:
        settings.echo("no runs")
        return
    show = df.drop(columns=["source"])
    settings.echo(show.astype(object).where(show.notna(), "").to_string(index=False))
