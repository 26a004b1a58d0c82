"""Module-scoped databases for the read-only foundation tests: one init-db per module and database, not
one per test, to keep the area's tests fast."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

from l059_omop.db.api import init_db


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_engine(request, tmp_path_factory):
    """An init-db'ed database (bundled vocabulary) shared by a module's tests: DuckDB file and PostgreSQL."""
    if request.param == "duckdb":
        engine = sa.create_engine(f"duckdb:///{tmp_path_factory.mktemp('shared') / 'l059.duckdb'}")
        init_db(engine)
        yield engine
        engine.dispose()
        return
    admin_url = os.environ.get("L059_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as con:
            con.execute(sa.text("select 1"))
    except Exception as exc:  # noqa: BLE001 - same rule as tests/conftest.py
        admin.dispose()
        reason = f"PostgreSQL not reachable at {admin_url.split('@')[-1]}: {type(exc).__name__}"
        if os.environ.get("L059_REQUIRE_PG") == "1":
            pytest.fail(reason + " (L059_REQUIRE_PG=1)")
        pytest.skip(reason)
    name = f"l059_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as con:
        con.execute(sa.text(f'create database "{name}"'))
    engine = sa.create_engine(sa.engine.make_url(admin_url).set(database=name))
    try:
        init_db(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as con:
            con.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()
