"""Independent clients of our artefacts: duckcdm (Python ports of Java Circe and SqlRender, pinned 0.4.7)."""

from __future__ import annotations

import datetime as dt

import duckdb

from l059_omop.cohort import definition as d
from l059_omop.sqlrender import _literal

# OHDSI's drug era (ingredient level, 30-day persistence window) for Circe's DrugEra criteria: the CDM
# builders of this project do not fill drug_era, and Circe reads it. Same merge rule as r09.
DRUG_ERA_SQL = """
delete from {cdm}.drug_era;
insert into {cdm}.drug_era (drug_era_id, person_id, drug_concept_id, drug_era_start_date, drug_era_end_date,
                            drug_exposure_count, gap_days)
with ex as (
  select de.person_id, ca.ancestor_concept_id as ingredient_id, de.drug_exposure_start_date as s,
         coalesce(de.drug_exposure_end_date, de.drug_exposure_start_date) as e
  from {cdm}.drug_exposure de
  join {cdm}.concept_ancestor ca on ca.descendant_concept_id = de.drug_concept_id
  join {cdm}.concept c on c.concept_id = ca.ancestor_concept_id and c.concept_class_id = 'Ingredient'
  union
  select de.person_id, de.drug_concept_id, de.drug_exposure_start_date,
         coalesce(de.drug_exposure_end_date, de.drug_exposure_start_date)
  from {cdm}.drug_exposure de
  join {cdm}.concept c on c.concept_id = de.drug_concept_id and c.concept_class_id = 'Ingredient'
), marked as (
  select *, max(e) over (partition by person_id, ingredient_id order by s, e
                         rows between unbounded preceding and 1 preceding) as prev_end
  from ex
), numbered as (
  select *, sum(case when prev_end is null or s > prev_end + 30 then 1 else 0 end)
              over (partition by person_id, ingredient_id order by s, e rows unbounded preceding) as era
  from marked
)
select row_number() over (order by person_id, ingredient_id, era), person_id, ingredient_id, min(s), max(e),
       count(*), 0
from numbered group by person_id, ingredient_id, era
"""


def build_drug_era(con: duckdb.DuckDBPyConnection, cdm: str = "cdm") -> None:
    for stmt in DRUG_ERA_SQL.format(cdm=cdm).split(";"):
        if stmt.strip():
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
