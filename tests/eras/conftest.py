"""One init-db'ed CDM per backend for the era tests (init-db on PostgreSQL is the slow part)."""

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
    except Exception as exc:  # noqa: BLE001 - same rule as tests/conftest.py
        engine.dispose()
        reason = f"PostgreSQL not reachable at {PG_ADMIN_URL.split('@')[-1]}: {type(exc).__name__}"
        if os.environ.get("L059_REQUIRE_PG") == "1":
            pytest.fail(reason + " (L059_REQUIRE_PG=1)")
        pytest.skip(reason)
    return engine


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def era_engine(request, tmp_path_factory):
    if request.param == "duckdb":
        engine = sa.create_engine(f"duckdb:///{tmp_path_factory.mktemp('eras') / 'l059.duckdb'}")
        init_db(engine)
        yield engine
        engine.dispose()
        return
    admin = _pg_admin()
    name = f"l059_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as con:
        con.execute(sa.text(f'create database "{name}"'))
    engine = sa.create_engine(sa.engine.make_url(PG_ADMIN_URL).set(database=name))
    try:
        init_db(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as con:
            con.execute(sa.text("select pg_terminate_backend(pid) from pg_stat_activity "
                                "where datname = :n and pid <> pg_backend_pid()"), {"n": name})
            con.execute(sa.text(f'drop database if exists "{name}"'))
        admin.dispose()
