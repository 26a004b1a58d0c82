"""Shared fixtures: a fresh DuckDB file and a fresh PostgreSQL database per test that asks for one.

PostgreSQL databases come from tests/pg.py (server, skip rule and L059_REQUIRE_PG are described there).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from l059_omop.db.api import init_db
from tests.pg import throwaway_database


@pytest.fixture
def pg_url():
    """URL of a new, empty PostgreSQL database, dropped after the test."""
    with throwaway_database() as url:
        yield url


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
