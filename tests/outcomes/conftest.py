"""Module-scoped databases for the outcome tests: init-db (bundled vocabulary) once per backend, then the
test data, so the R reference checks do not pay PostgreSQL's init-db for every assertion."""

from __future__ import annotations

import pytest

from tests.outcomes.lung_omop import load_lung_cohort
from tests.pg import init_db_engine


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def module_cdm_engine(request, tmp_path_factory):
    """An init-db'ed CDM shared by one test module, on DuckDB and on PostgreSQL."""
    with init_db_engine(request.param, tmp_path_factory.mktemp("outcomes")) as engine:
        yield engine


@pytest.fixture(scope="module")
def lung_engine(module_cdm_engine):
    """R's lung data as OMOP rows and one cohort row per person (cohort 1059)."""
    load_lung_cohort(module_cdm_engine)
    return module_cdm_engine
