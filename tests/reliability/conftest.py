"""Fixtures of the reliability tests: init-db'ed databases made fast, synthetic inputs made once, table
checksums, and the CLI run as a real subprocess (the way a site runs it, so a kill is a real kill).

A DuckDB database is a copy of one init-db'ed template file; a PostgreSQL database is ``create database ...
template`` of one init-db'ed template database (both ~0.5 s instead of ~5 s of init-db per test).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from l059_omop.db.api import init_db
from tests.pg import create_database, drop_database, new_name, pg_admin


# ----------------------------------------------------------------- databases
@pytest.fixture(scope="session")
def duckdb_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tpl") / "template.duckdb"
    engine = sa.create_engine(f"duckdb:///{path}")
    init_db(engine)
    engine.dispose()
    return path


@pytest.fixture
def duck_cdm_url(duckdb_url, duckdb_template) -> str:
    """The shared ``duckdb_url`` fixture's file, made by init-db (a copy of the template)."""
    shutil.copyfile(duckdb_template, duckdb_url.removeprefix("duckdb:///"))
    return duckdb_url


@pytest.fixture(scope="session")
def pg_template():
    admin = pg_admin()
    name = new_name("l059_reltpl")
    try:
        engine = sa.create_engine(create_database(admin, name))
        init_db(engine)
        engine.dispose()
        yield name
    finally:
        drop_database(admin, name)
        admin.dispose()


@pytest.fixture
def pg_cdm_factory(pg_template):
    """make() -> URL of a new init-db'ed PostgreSQL database (dropped after the test)."""
    admin = pg_admin()
    made: list[str] = []

    def make() -> str:
        name = new_name("l059_rel")
        made.append(name)
        return create_database(admin, name, template=pg_template)

    try:
        yield make
    finally:
        for name in made:
            drop_database(admin, name)
        admin.dispose()


@pytest.fixture
def pg_cdm_url(pg_cdm_factory) -> str:
    return pg_cdm_factory()


# ----------------------------------------------------------------- inputs
@pytest.fixture(scope="session")
def synth_fhir(tmp_path_factory) -> Path:
    """20 synthetic patients as FHIR Bundles (one file per patient)."""
    from l059_omop.synth import generate

    out = tmp_path_factory.mktemp("synth") / "fhir"
    generate(20, "fhir", out, 7)
    return out


@pytest.fixture(scope="session")
def synth_records(tmp_path_factory) -> Path:
    from l059_omop.synth import generate

    out = tmp_path_factory.mktemp("synth") / "records"
    generate(8, "records", out, 7)
    return out




def pytest_terminal_summary(terminalreporter):
    """The figures RELIABILITY.md quotes: inputs tried, kills survived, concurrent loads run."""
    import sys as _sys

    lines = []
    for mod, names in (("tests.reliability.test_fuzz_fhir", ("FIGURES",)),
                       ("tests.reliability.test_fuzz_records", ("FIGURES",)),
                       ("tests.reliability.test_interrupt", ("FIGURES",)),
                       ("tests.reliability.test_concurrency", ("FIGURES",)),
                       ("tests.reliability.test_injection", ("FIGURES",)),
                       ("tests.reliability.test_privacy", ("FIGURES",))):
        m = _sys.modules.get(mod)
        for n in names:
            if m is not None and getattr(m, n, None):
                lines.append(f"{mod.rsplit('.', 1)[-1]}.{n}: {getattr(m, n)}")
    if lines:
        terminalreporter.section("reliability figures")
        for line in lines:
            terminalreporter.write_line(line)
