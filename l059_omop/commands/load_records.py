"""``l059-omop load-records --mapping FILE PATH...``."""

from __future__ import annotations

from pathlib import Path

import click

from l059_omop.cli import Settings, pass_settings
from l059_omop.resources import mappings_path


def _mapping(value: str) -> Path:
    """A spec path, or the name of a shipped mapping (``synth_site`` = mappings/records/synth_site.yaml)."""
    p = Path(value)
    if p.exists() or p.suffix in (".yaml", ".yml") or "/" in value:
        return p
    return mappings_path("records", f"{value}.yaml")


@click.command("load-records")
@click.option("--mapping", "mapping", required=True, metavar="FILE",
              help="Mapping spec (YAML), or the name of a shipped one, e.g. synth_site.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--etl-schema", default="etl", show_default=True, help="Schema of the ETL bookkeeping tables.")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=None,
              help="Rows per transaction (default: the spec's, else 50,000).")
@click.option("--strict", is_flag=True, help="Any quarantined row is fatal and nothing is written.")
@pass_settings
def command(settings: Settings, mapping: str, paths: tuple[Path, ...], etl_schema: str, chunk_rows: int | None,
            strict: bool) -> None:
    """Load hospital extracts (CSV in the spec's encoding, .xlsx) into OMOP through a declarative mapping.

    PATH may be files or folders (files in a folder that match no source of the spec are ignored and
    listed). Exit code 0 when everything loaded, 2 when rows were quarantined (the rest is loaded).
    """
    from l059_omop.records.loader import load_records

    def progress(label: str, n: int) -> None:
        if settings.verbose:
            settings.echo(f"  {label}: {n:,} rows", err=True)

    result = load_records(settings.engine(), _mapping(mapping), list(paths), cdm_schema=settings.cdm_schema,
                          etl_schema=etl_schema, chunk_rows=chunk_rows, strict=strict, progress=progress)
    for line in result.lines():
        settings.echo(line)
    if result.report.quarantined:
        raise SystemExit(2)
