"""Fixtures of the records tests: an init-db'ed engine on DuckDB and PostgreSQL.

The DuckDB file is not called ``cdm.duckdb``: DuckDB names the catalog after the file, and a catalog ``cdm``
makes the schema ``cdm`` ambiguous.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from l059_omop.db.api import init_db


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def rec_url(request, tmp_path):
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path / 'omop.duckdb'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def rec_engine(rec_url):
    engine = sa.create_engine(rec_url)
    init_db(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def rec_duckdb(tmp_path):
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'omop1.duckdb'}")
    init_db(engine)
    yield engine
    engine.dispose()
