"""One init-db'ed CDM per backend for the era tests (init-db on PostgreSQL is the slow part)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from l059_omop.db.api import init_db
from tests.pg import throwaway_database


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def era_engine(request, tmp_path_factory):
    if request.param == "duckdb":
        engine = sa.create_engine(f"duckdb:///{tmp_path_factory.mktemp('eras') / 'l059.duckdb'}")
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
