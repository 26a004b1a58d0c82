"""Module-scoped databases for the outcome tests: init-db (bundled vocabulary) once per backend, then the
test data, so the R reference checks do not pay PostgreSQL's init-db for every assertion."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from l059_omop.db.api import init_db
from tests.outcomes.lung_omop import load_lung_cohort
from tests.pg import throwaway_database


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def module_cdm_engine(request, tmp_path_factory):
    """An init-db'ed CDM shared by one test module, on DuckDB and on PostgreSQL."""
    if request.param == "duckdb":
        engine = sa.create_engine(f"duckdb:///{tmp_path_factory.mktemp('outcomes') / 'l059.duckdb'}")
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


@pytest.fixture(scope="module")
def lung_engine(module_cdm_engine):
    """R's lung data as OMOP rows and one cohort row per person (cohort 1059)."""
    load_lung_cohort(module_cdm_engine)
    return module_cdm_engine
