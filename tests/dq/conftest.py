"""dq fixtures. ``db_url`` is overridden because the shared one names the DuckDB file ``cdm.duckdb``: its
catalog is then called ``cdm`` like the CDM schema, and DuckDB rejects ``cdm.person`` as ambiguous."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """Each test using it runs once on a DuckDB file and once on PostgreSQL."""
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path / 'dq.duckdb'}"
    else:
        yield request.getfixturevalue("pg_url")
