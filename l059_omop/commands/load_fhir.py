"""``l059-omop load-fhir PATH... | --server URL``.

Exit codes: 0 everything read was loaded (or skipped by a documented rule); 3 the load finished but some
records were quarantined (see etl.quarantine); 2 bad usage or bad input, including ``--strict`` with any
quarantine (then nothing is written to the CDM); 1 runtime failure (database, server unreachable ...).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from l059_omop.cli import Settings, pass_settings

EXIT_QUARANTINED = 3


@click.command("load-fhir")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--server", metavar="URL", help="FHIR R4 base URL: Patient search with paging, then each "
              "patient's $everything (or per-type searches).")
@click.option("--token-env", default="L059_FHIR_TOKEN", show_default=True, metavar="VAR",
              help="Environment variable holding the bearer token for --server (never logged).")
@click.option("--strict", is_flag=True, help="Any quarantined record is fatal: nothing is written (exit 2).")
@click.option("--source-system", metavar="URI", help="Names the source in etl.source_id_map (ids derive from "
              "it) [default: urn:l059:fhir for files, the server's base URL for --server].")
@click.option("--timezone", metavar="ZONE", help="Convert date-times with an offset to this zone (the "
              "instance's one time zone, e.g. Asia/Shanghai) [default: keep the wall-clock time as written].")
@click.option("--workers", type=click.IntRange(1, 64), help="Processes for parsing, validation and mapping "
              "[default: the number of cores, at most 8].")
@click.option("--batch-size", type=click.IntRange(1, 1_000_000), default=20_000, show_default=True,  # = load.BATCH_SIZE
              help="Records per transaction.")
@click.option("--etl-schema", default="etl", show_default=True, help="Schema of the ETL bookkeeping tables.")
@pass_settings
def command(settings: Settings, paths: tuple[Path, ...], server: str | None, token_env: str, strict: bool,
            source_system: str | None, timezone: str | None, workers: int | None, batch_size: int,
            etl_schema: str) -> None:
    """Load FHIR R4 Bundles (JSON), bulk-export NDJSON, folders of them, or a FHIR server into OMOP.

    Exit code 0: all loaded; 3: loaded, but some records were quarantined (etl.quarantine); 2: bad input
    (with --strict: any quarantine, nothing written); 1: runtime failure.
    """
    from l059_omop.db.engine import validate_identifier
    from l059_omop.etl.fhir.load import load_fhir

    validate_identifier(etl_schema)
    started = time.monotonic()
    last = [0.0]

    def progress(report) -> None:
        now = time.monotonic()
        if not settings.quiet and sys.stderr.isatty() and now - last[0] > 1:
            last[0] = now
            click.echo(f"\r{report.read:,} records read ...", err=True, nl=False)

    report = load_fhir(settings.engine(), list(paths), server=server, cdm_schema=settings.cdm_schema,
                       etl_schema=etl_schema, source_system=source_system, strict=strict, timezone=timezone,
                       workers=workers, batch_size=batch_size, token_env=token_env, progress=progress)
    if not settings.quiet and sys.stderr.isatty():
        click.echo("\r", err=True, nl=False)
    for line in report.lines():
        settings.echo(line)
    elapsed = time.monotonic() - started
    settings.echo(f"{report.read:,} records in {elapsed:.1f} s ({report.read / max(elapsed, 1e-9):,.0f}/s); "
                  f"report stored in {etl_schema}.load_run (run_id {report.run_id})")
    if report.quarantined:
        settings.echo(f"{report.quarantined:,} record(s) quarantined: see {etl_schema}.quarantine "
                      f"where run_id = '{report.run_id}' (exit {EXIT_QUARANTINED})", err=True)
        sys.exit(EXIT_QUARANTINED)
