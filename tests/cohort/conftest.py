"""Cohort fixtures. The shared ``duckdb_url`` names its file cdm.duckdb, whose catalog "cdm" collides with the
schema "cdm" on DuckDB 2 ("Ambiguous reference to catalog or schema"), so the cohort tests use their own
file name; PostgreSQL comes from the shared ``pg_url``."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from l059_omop.db.api import init_db


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def cohort_db_url(request, tmp_path):
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path / 'l059_test.duckdb'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def cdm_engine(cohort_db_url):
    """An init-db'ed database (bundled vocabulary), on DuckDB and on PostgreSQL."""
    engine = sa.create_engine(cohort_db_url)
    init_db(engine)
    yield engine
    engine.dispose()
