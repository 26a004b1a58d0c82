"""``l059-omop load-records --mapping FILE PATH...``.

Exit codes (as ``load-fhir``): 0 everything read was loaded (or skipped by a rule of the spec); 3 the load
finished but some rows were quarantined; 2 bad input (a wrong spec names its line; with --strict: any
quarantine, nothing written); 1 runtime failure.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from l059_omop.cli import Settings, pass_settings
from l059_omop.resources import mappings_path

EXIT_QUARANTINED = 3


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
@click.option("--strict", is_flag=True, help="Any quarantined row is fatal: nothing is written (exit 2).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes that map chunks; 1: the loading process maps them on a thread beside its writer "
              "(on 2 cores the fastest: see docs/records.md). The output is the same whatever the number.")
@pass_settings
def command(settings: Settings, mapping: str, paths: tuple[Path, ...], etl_schema: str, chunk_rows: int | None,
            strict: bool, workers: int) -> None:
    """Load hospital extracts (CSV in the spec's encoding, .xlsx) into OMOP through a declarative mapping.

    PATH may be files or folders (files in a folder that match no source of the spec are ignored and
    listed). Exit code 0: all loaded; 3: loaded, but some rows were quarantined (etl.quarantine); 2: bad
    input or spec (with --strict: any quarantine, nothing written); 1: runtime failure.
    """
    from l059_omop.records.loader import load_records

    started = time.monotonic()
    last = [0.0]

    def progress(label: str, n: int) -> None:
        now = time.monotonic()
        if settings.verbose:
            settings.echo(f"  {label}: {n:,} rows", err=True)
        elif not settings.quiet and sys.stderr.isatty() and now - last[0] > 1:
            last[0] = now
            click.echo(f"\r{label}: {n:,} rows ...", err=True, nl=False)

    result = load_records(settings.engine(), _mapping(mapping), list(paths), cdm_schema=settings.cdm_schema,
                          etl_schema=etl_schema, chunk_rows=chunk_rows, strict=strict, progress=progress,
                          workers=workers)
    if not settings.quiet and not settings.verbose and sys.stderr.isatty():
        click.echo("\r", err=True, nl=False)
    for line in result.lines():
        settings.echo(line)
    report = result.report
    elapsed = time.monotonic() - started
    settings.echo(f"{report.read:,} rows in {elapsed:.1f} s ({report.read / max(elapsed, 1e-9):,.0f}/s); "
                  f"report stored in {etl_schema}.load_run (run_id {report.run_id})")
    if report.quarantined:
        settings.echo(f"{report.quarantined:,} row(s) quarantined: see {etl_schema}.quarantine "
                      f"where run_id = '{report.run_id}' (exit {EXIT_QUARANTINED})", err=True)
        sys.exit(EXIT_QUARANTINED)
