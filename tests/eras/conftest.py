"""One init-db'ed CDM per backend for the era tests (init-db on PostgreSQL is the slow part)."""

from __future__ import annotations

import pytest

from tests.pg import init_db_engine


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def era_engine(request, tmp_path_factory):
    with init_db_engine(request.param, tmp_path_factory.mktemp("eras")) as engine:
        yield engine
