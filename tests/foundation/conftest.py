"""Module-scoped databases for the read-only foundation tests: one init-db per module and database, not
one per test, to keep the area's tests fast."""

from __future__ import annotations

import pytest

from tests.pg import init_db_engine


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_engine(request, tmp_path_factory):
    """An init-db'ed database (bundled vocabulary) shared by a module's tests: DuckDB file and PostgreSQL."""
    with init_db_engine(request.param, tmp_path_factory.mktemp("shared")) as engine:
        yield engine
