"""Derived era tables: ``drug_era`` (ingredient level) and ``condition_era``, as OHDSI's era builder makes them.

Nothing else fills them (the loaders write exposures and occurrences only), yet Circe's DrugEra/ConditionEra
criteria, FeatureExtraction covariates and the data-quality checks read them. The SQL lives in
``sql/eras/*.sql`` (OHDSI SQL, ``@cdm_database_schema`` and ``@era_pad``), rendered and translated per dialect.
Each table's rows are replaced in one transaction, so a re-run after new loads gives the same result as a
first run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from l059_omop.db import bulk
from l059_omop.db.engine import dialect_of, validate_identifier
from l059_omop.errors import BadInput
from l059_omop.resources import read_sql
from l059_omop.sqlrender import Ident, engine_dialect, render, translate_script

ERA_TABLES = ("drug_era", "condition_era")
DEFAULT_ERA_PAD = 30  # days: OHDSI's persistence window for drug and condition eras


@dataclass
class EraReport:
    """Rows written per era table and the persistence window used."""

    era_pad: int
    rows: dict[str, int] = field(default_factory=dict)


def era_statements(table: str, dialect: str, cdm_schema: str = "cdm", era_pad: int = DEFAULT_ERA_PAD) -> list[str]:
    """The translated statements (delete, then insert) that rebuild one era table."""
    if table not in ERA_TABLES:
        raise BadInput(f"unknown era table {table!r}; choose one of {', '.join(ERA_TABLES)}")
    if isinstance(era_pad, bool) or not isinstance(era_pad, int) or not 0 <= era_pad <= 3650:
        raise BadInput(f"era gap must be a whole number of days between 0 and 3650, not {era_pad!r}")
    sql = render(read_sql("eras", f"{table}.sql"),
                 {"cdm_database_schema": Ident(validate_identifier(cdm_schema)), "era_pad": era_pad})
    return translate_script(sql, dialect)


def build_eras(engine: Engine, cdm_schema: str = "cdm", era_pad: int = DEFAULT_ERA_PAD,
               tables: tuple[str, ...] = ERA_TABLES) -> EraReport:
    """Replace the rows of ``drug_era`` and ``condition_era`` with eras derived from the CDM's exposures."""
    dialect = engine_dialect(dialect_of(engine))
    plans = [(t, era_statements(t, dialect, cdm_schema, era_pad)) for t in tables]
    report = EraReport(era_pad=era_pad)
    with engine.begin() as con:
        for table, statements in plans:
            for s in statements:
                con.exec_driver_sql(s)
            report.rows[table] = bulk.count_rows(con, cdm_schema, table)
    return report
