"""``l059-omop import-cdm DIR``."""

from __future__ import annotations

from pathlib import Path

import click

from l059_omop.cli import Settings, pass_settings
from l059_omop.db.api import import_cdm


@click.command("import-cdm")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Replace rows already in the tables being imported.")
@pass_settings
def command(settings: Settings, directory: Path, replace: bool) -> None:
    """Import an OMOP CDM exported as CSV, one file per table (e.g. OHDSI's Eunomia)."""
    res = import_cdm(settings.engine(), directory, settings.cdm_schema, settings.results_schema, replace=replace)
    total = sum(res.rows.values())
    settings.echo(f"imported {total:,} rows into {len(res.rows)} tables")
    for t, n in sorted(res.rows.items()):
        if n:
            settings.echo(f"  {t}: {n:,}")
    for f in res.skipped_files:
        settings.echo(f"skipped {f}: not an OMOP CDM v5.4 table")
    if res.constraint_failures:
        settings.echo(f"{len(res.constraint_failures)} constraint(s) the data violates:")
        for f in res.constraint_failures:
            settings.echo(f"  {f}")
