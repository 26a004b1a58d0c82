"""Independent clients of our artefacts: duckcdm (Python ports of Java Circe and SqlRender, pinned 0.4.7)."""

from __future__ import annotations

import datetime as dt

import duckdb

from l059_omop.cohort import definition as d
from l059_omop.cohort.circe import drug_era_statements
from l059_omop.sqlrender import _literal


def build_drug_era(con: duckdb.DuckDBPyConnection, cdm: str = "cdm") -> None:
    for stmt in drug_era_statements(cdm):
        con.execute(stmt)


def run_script(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Split with SqlRender's splitter and run each statement."""
    from duckcdm.sqlrender import split_sql

    for stmt in split_sql(sql):
        if stmt.strip():
            con.execute(stmt)


def run_circe(con: duckdb.DuckDBPyConnection, circe_json: str, cohort_id: int, cdm: str = "cdm",
              results: str = "results") -> None:
    """Java Circe's SQL (via duckcdm) for our JSON, translated to DuckDB by duckcdm's SqlRender, run."""
    from duckcdm.circe import build_cohort_query
    from duckcdm.sqlrender import render, translate

    sql = build_cohort_query(circe_json, cohort_id=cohort_id, cdm_schema=cdm, target_table=f"{results}.cohort",
                             result_schema=results, vocabulary_schema=cdm, generate_stats=False)
    run_script(con, translate(render(sql), "duckdb"))


def run_source_sql_with_sqlrender(con: duckdb.DuckDBPyConnection, cohort_id: int, cdm: str = "cdm",
                                  results: str = "results", prefix: str = "l059_sqlrender_") -> None:
    """Our OHDSI SQL with its @parameters, rendered and translated by duckcdm's SqlRender port (as an OHDSI
    site would with R SqlRender), run on DuckDB. Date parameters are passed as SqlRender expects them,
    quoted YYYYMMDD ('20220101'), which its CAST(... AS DATE) translation parses."""
    from duckcdm.sqlrender import render, translate

    values = d.render_values(cdm, results, cohort_id=cohort_id, prefix=prefix)
    source = d.ohdsi_sql(values, rendered=False)
    rendered = render(source, **{k: (f"'{v:%Y%m%d}'" if isinstance(v, dt.date) else _literal(k, v))
                                 for k, v in values.items()})
    run_script(con, translate(rendered, "duckdb"))


def cohort_persons(con: duckdb.DuckDBPyConnection, cohort_id: int, results: str = "results") -> set[int]:
    rows = con.execute(f"select subject_id from {results}.cohort where cohort_definition_id = ?", [cohort_id])
    return {int(r[0]) for r in rows.fetchall()}


def cohort_rows(con: duckdb.DuckDBPyConnection, cohort_id: int, results: str = "results") -> list[tuple]:
    rows = con.execute(f"select subject_id, cohort_start_date, cohort_end_date from {results}.cohort "
                       "where cohort_definition_id = ? order by 1", [cohort_id])
    return [tuple(r) for r in rows.fetchall()]
