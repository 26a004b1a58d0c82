"""Module-scoped databases for the read-only foundation tests: one init-db per module and database, not
one per test, to keep the area's tests fast."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from l059_omop.db.api import init_db
from tests.pg import throwaway_database


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_engine(request, tmp_path_factory):
    """An init-db'ed database (bundled vocabulary) shared by a module's tests: DuckDB file and PostgreSQL."""
    if request.param == "duckdb":
        engine = sa.create_engine(f"duckdb:///{tmp_path_factory.mktemp('shared') / 'l059.duckdb'}")
        init_db(engine)
        yield engine
        engine.dispose()
        return
    with throwaway_database() as url:
        engine = sa.create_engine(url)
        try:
            init_db(engine)
            yield engine
        finally:
            engine.dispose()
