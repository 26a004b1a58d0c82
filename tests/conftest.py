"""Shared fixtures: a fresh DuckDB file and a fresh PostgreSQL database per test that asks for one.

PostgreSQL comes from L059_TEST_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres, the
admin database used to create throw-away databases). Without a reachable server the PostgreSQL tests skip
with the reason, unless L059_REQUIRE_PG=1 (set by .ci/run), which turns that skip into a failure.
"""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

from l059_omop.db.api import init_db

PG_ADMIN_URL = os.environ.get("L059_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _pg_admin():
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as con:
            con.execute(sa.text("select 1"))
    except Exception as exc:  # noqa: BLE001
        engine.dispose()
        reason = f"PostgreSQL not reachable at {PG_ADMIN_URL.split('@')[-1]}: {type(exc).__name__}"
        if os.environ.get("L059_REQUIRE_PG") == "1":
            pytest.fail(reason + " (L059_REQUIRE_PG=1)")
        pytest.skip(reason)
    return engine


@pytest.fixture
def pg_url():
    """URL of a new, empty PostgreSQL database, dropped after the test."""
    admin = _pg_admin()
    name = f"l059_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as con:
        con.execute(sa.text(f'create database "{name}"'))
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as con:
            con.execute(sa.text(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = :n and pid <> pg_backend_pid()"
            ), {"n": name})
            con.execute(sa.text(f'drop database if exists "{name}"'))
        admin.dispose()


@pytest.fixture
def duckdb_url(tmp_path):
    """URL of a new DuckDB file in the test's temporary folder.

    Not ``cdm.duckdb``: DuckDB names the catalog after the file, and a catalog ``cdm`` makes ``cdm.person``
    ambiguous with the schema ``cdm``.
    """
    return f"duckdb:///{tmp_path / 'l059.duckdb'}"


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """Each test using it runs once on a DuckDB file and once on PostgreSQL."""
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path / 'l059.duckdb'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def cdm_engine(db_url):
    """An engine on a database made by init-db (bundled vocabulary), on DuckDB and on PostgreSQL."""
    engine = sa.create_engine(db_url)
    init_db(engine)
    yield engine
    engine.dispose()
