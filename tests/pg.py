"""Throw-away PostgreSQL databases for the tests, written once for every conftest.

The server comes from L059_TEST_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres, the
admin database used to create the throw-away ones). Without a reachable server a PostgreSQL test skips with
the reason, unless L059_REQUIRE_PG=1 (set by .ci/run), which turns that skip into a failure.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get("L059_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def pg_admin() -> sa.Engine:
    """An autocommit engine on the admin database, or the test skipped (failed under L059_REQUIRE_PG=1)."""
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as con:
            con.execute(sa.text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "no server here"
        engine.dispose()
        reason = f"PostgreSQL not reachable at {PG_ADMIN_URL.split('@')[-1]}: {type(exc).__name__}"
        if os.environ.get("L059_REQUIRE_PG") == "1":
            pytest.fail(reason + " (L059_REQUIRE_PG=1)")
        pytest.skip(reason)
    return engine


def pg_url(name: str) -> str:
    """URL of database ``name`` on the test server (password kept: the tests connect with it)."""
    return sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def new_name(prefix: str = "l059_test") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def create_database(admin: sa.Engine, name: str, template: str | None = None) -> str:
    with admin.connect() as con:
        sql = f'create database "{name}"' + (f' template "{template}"' if template else "")
        con.execute(sa.text(sql))
    return pg_url(name)


def drop_database(admin: sa.Engine, name: str) -> None:
    """Drop ``name``, first ending any session a test left open on it."""
    with admin.connect() as con:
        con.execute(sa.text("select pg_terminate_backend(pid) from pg_stat_activity "
                            "where datname = :n and pid <> pg_backend_pid()"), {"n": name})
        con.execute(sa.text(f'drop database if exists "{name}"'))


@contextmanager
def throwaway_database(prefix: str = "l059_test", template: str | None = None) -> Iterator[str]:
    """URL of a new database, dropped on exit whatever the test did."""
    admin = pg_admin()
    name = new_name(prefix)
    try:
        yield create_database(admin, name, template)
    finally:
        drop_database(admin, name)
        admin.dispose()


@contextmanager
def init_db_engine(backend: str, folder: Path) -> Iterator[sa.Engine]:
    """An engine on a new init-db'ed CDM: a DuckDB file in ``folder`` or a throw-away PostgreSQL database."""
    from l059_omop.db.api import init_db

    with contextlib.ExitStack() as stack:
        url = (f"duckdb:///{folder / 'l059.duckdb'}" if backend == "duckdb"
               else stack.enter_context(throwaway_database()))
        engine = sa.create_engine(url)
        stack.callback(engine.dispose)
        init_db(engine)
        yield engine
