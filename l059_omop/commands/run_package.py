"""``l059-omop run-package study.zip --db URL --site NAME --out results.zip``."""

from __future__ import annotations

from pathlib import Path

import click

from l059_omop.cli import Settings, pass_settings


@click.command("run-package")
@click.argument("package", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--site", required=True, help="This site's name as the coordinator knows it (letters, digits, _).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The aggregate results to write (a zip).")
@click.option("--db", "db", metavar="URL", default=None,
              help="Database URL (overrides the group's --db); spark://local?cdm=DIR for a local Spark session "
                   "over CDM tables stored as Parquet or CSV in DIR.")
@click.option("--min-cell-count", type=click.IntRange(min=1), default=None,
              help="Override the package's minimum cell count (only upwards makes sense; 1 = no suppression).")
@click.option("--expect-sha256", default=None, help="Refuse the package unless its sha256 is this value.")
@pass_settings
def command(settings: Settings, package: Path, site: str, out: Path, db: str | None, min_cell_count: int | None,
            expect_sha256: str | None) -> None:
    """Run a study package on this site's CDM; write aggregate results only (no person-level data)."""
    from l059_omop.network.site import run_package, summary_lines

    url = db or settings.db
    engine = spark_site = None
    if url.startswith("spark://"):
        from l059_omop.network.spark_site import SparkSite

        def spark_site():
            return SparkSite.from_url(url)
    else:
        if db:
            settings.db = db
            settings._engine = None
        engine = settings.engine()
    results, digest = run_package(package, site, out, engine=engine, spark_site=spark_site,
                                  cdm_schema=settings.cdm_schema, results_schema=settings.results_schema,
                                  min_cell_count=min_cell_count, expect_sha256=expect_sha256)
    settings.echo(f"wrote {out} (sha256 of its manifest {digest})")
    for line in summary_lines(results):
        settings.echo(line)
