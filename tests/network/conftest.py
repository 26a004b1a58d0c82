"""Shared network-study fixtures.

Three synthetic sites (different seeds) whose ids are shifted apart (site i: + i x 1,000,000), so that the
same CSV files also make a "union" database holding all three sites' patients; sites A (DuckDB), B
(PostgreSQL) and C (DuckDB here, Spark in test_spark_site.py). The expensive part, building the cohort and
extracting the analysis rows, runs once per site and session; tests aggregate it with different settings.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.pg import throwaway_database

N_PATIENTS = 250
SEEDS = {"site_a": 101, "site_b": 202, "site_c": 303}
OFFSETS = {"site_a": 1_000_000, "site_b": 2_000_000, "site_c": 3_000_000}


@pytest.fixture(scope="session")
def study_zip(tmp_path_factory):
    """The study package with its defaults (min cell count 5) and a common data cut-off."""
    from l059_omop.network.package import make_package
    from l059_omop.synth.params import SynthParams

    path = tmp_path_factory.mktemp("package") / "study.zip"
    make_package(path, {"data_cutoff": SynthParams().data_cutoff.isoformat()})
    return path


@pytest.fixture(scope="session")
def package(study_zip):
    from l059_omop.network.package import verify_package

    return verify_package(study_zip)


def _shift_ids(src: Path, dst: Path, offset: int) -> None:
    """Copy a CDM CSV folder adding ``offset`` to every id column (not concept ids)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("*.csv")):
        if f.name.startswith("truth"):
            continue
        df = pd.read_csv(f, dtype=str, keep_default_na=False)
        for c in df.columns:
            if c.endswith("_id") and not c.endswith("concept_id"):
                df[c] = [str(int(v) + offset) if v != "" else "" for v in df[c]]
        df.to_csv(dst / f.name, index=False)


@pytest.fixture(scope="session")
def site_csv(tmp_path_factory):
    """site name -> folder of the site's CDM CSV files (ids shifted); 'union' -> all three."""
    from l059_omop.synth import generate

    root = tmp_path_factory.mktemp("sites")
    out = {}
    for site, seed in SEEDS.items():
        raw = root / f"{site}_raw"
        generate(N_PATIENTS, "omop", raw, seed)
        _shift_ids(raw, root / site, OFFSETS[site])
        out[site] = root / site
    union = root / "union"
    union.mkdir()
    for f in sorted(out["site_a"].glob("*.csv")):
        pd.concat([pd.read_csv(out[s] / f.name, dtype=str, keep_default_na=False) for s in SEEDS]).to_csv(
            union / f.name, index=False)
    out["union"] = union
    return out


def _load(url: str, folder: Path) -> sa.Engine:
    from l059_omop.db.api import import_cdm, init_db
    from l059_omop.db.engine import connect

    engine = connect(url)
    init_db(engine)
    # PostgreSQL has the foreign keys already: parents first (person, then visits, then the rest)
    stages = [["PERSON.csv"], ["OBSERVATION_PERIOD.csv", "VISIT_OCCURRENCE.csv"], None]
    done: set[str] = set()
    for i, names in enumerate(stages):
        stage = folder / f"_stage{i}"
        stage.mkdir(exist_ok=True)
        for f in sorted(folder.glob("*.csv")):
            if (names is None and f.name not in done) or (names and f.name in names):
                target = stage / f.name
                if not target.exists():
                    target.symlink_to(f.resolve())
                done.add(f.name)
        import_cdm(engine, stage)
    return engine


@pytest.fixture(scope="session")
def pg_site_url():
    """A PostgreSQL database for site B for the session (skips without a server, unless L059_REQUIRE_PG=1)."""
    with throwaway_database("l059_net") as url:
        yield url


@pytest.fixture(scope="session")
def site_urls(site_csv, pg_site_url, tmp_path_factory):
    """Loaded databases: site_a DuckDB, site_b PostgreSQL, site_c DuckDB, union DuckDB."""
    root = tmp_path_factory.mktemp("db")
    urls = {"site_a": f"duckdb:///{root / 'site_a.duckdb'}", "site_b": pg_site_url,
            "site_c": f"duckdb:///{root / 'site_c.duckdb'}", "union": f"duckdb:///{root / 'union.duckdb'}"}
    for site, url in urls.items():
        _load(url, site_csv[site]).dispose()
    return urls


@pytest.fixture(scope="session")
def site_data(site_urls, package):
    """site -> SiteData (cohort built, analysis rows extracted), once per session."""
    from l059_omop.db.engine import connect
    from l059_omop.network import cohort_bridge
    from l059_omop.network.site import extract_sql_engine

    cohort_bridge.check_definition(package)
    out = {}
    for site, url in site_urls.items():
        engine = connect(url)
        out[site] = extract_sql_engine(engine, package.analysis, "cdm", "results")
        engine.dispose()
    return out
