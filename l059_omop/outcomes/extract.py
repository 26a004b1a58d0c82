"""Run the outcome extracts (sql/outcomes/*.sql) against a CDM: cohort + CDM -> one analysis row per person,
graded adverse events per person and term, and the cohort's attrition.

The SQL is OHDSI SQL (SQL Server flavour) rendered with validated parameters and translated for the
connected database; concept ids come from the concept sets of ``mappings/concept_sets/outcomes/`` resolved
against the loaded vocabulary, so a site with a full Athena vocabulary needs no SQL edits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from l059_omop.db.engine import dialect_of, validate_identifier
from l059_omop.errors import BadInput, RuntimeFailure
from l059_omop.resources import mappings_path, read_sql
from l059_omop.sqlrender import render, translate
from l059_omop.vocab import concept_sets as cs

# window parameters of COHORT.md (Outcomes, R7, R8); stored with each run's output
DEFAULT_PARAMETERS: dict[str, int] = {
    "sd_min_days": 42,
    "ecog_window_days": 42,
    "agent_days_before": 7,
    "agent_days_after": 28,
    "safety_days_after": 30,
}

RESPONSE_LABELS = {1: "CR", 2: "PR", 3: "SD", 4: "PD", 5: "NE"}


@dataclass
class Extract:
    """What the SQL returns: person-level rows (they stay at the site) and the attrition."""

    persons: pd.DataFrame
    adverse_events: pd.DataFrame
    attrition: pd.DataFrame | None
    data_cutoff: dt.date
    concept_sets: dict[str, list[int]] = field(default_factory=dict)
    parameters: dict[str, int] = field(default_factory=dict)


# outcome set name -> the cohort's concept-set file (mappings/concept_sets/), reused so that the cohort and its
# outcomes read the same facts; sets only the outcomes need live in mappings/concept_sets/outcomes/
SHARED_SETS: dict[str, str] = {
    "anlotinib": "01_anlotinib.yaml",
    "pd1_agents": "07_pd1_pdl1.yaml",
    "ecog": "15_ecog.yaml",
    "tumour_assessment": "17_tumour_assessment.yaml",
    "response_pd": "19_response_pd.yaml",
}


def outcome_concept_sets(engine: Engine, cdm_schema: str, folder: Path | None = None) -> dict[str, list[int]]:
    """Resolve every outcome concept set (name -> sorted concept ids) against the loaded vocabulary."""
    folder = folder or mappings_path("concept_sets", "outcomes")
    files = {p.stem: p for p in sorted(folder.glob("*.yaml"))}
    for name, file in SHARED_SETS.items():
        if name not in files:
            path = folder.parent / file
            if not path.is_file():
                raise BadInput(f"concept set {name!r} not found (expected the cohort's {path})")
            files[name] = path
    out: dict[str, list[int]] = {}
    with engine.connect() as con:
        for i, (name, path) in enumerate(sorted(files.items()), start=1):
            out[name] = sorted(cs.resolve(con, cdm_schema, cs.parse_concept_set(path, i)))
    return out


def _run(engine: Engine, name: str, params: dict) -> pd.DataFrame:
    sql = render(read_sql("outcomes", name), params)
    statements = translate(sql, dialect_of(engine))
    with engine.connect() as con:
        result = None
        for stmt in statements:
            result = con.exec_driver_sql(stmt)
        if result is None or not result.returns_rows:
            return pd.DataFrame()
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def _has_table(engine: Engine, schema: str, table: str) -> bool:
    return sa.inspect(engine).has_table(table, schema=schema)


def default_data_cutoff(engine: Engine, cdm_schema: str = "cdm") -> dt.date | None:
    """The latest observation_period_end_date in the CDM (COHORT.md's default data cut-off)."""
    df = _run(engine, "data_cutoff.sql", {"cdm_database_schema": cdm_schema})
    value = df.iloc[0, 0] if len(df) else None
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).date()


def extract(engine: Engine, cohort_id: int = 1059, cdm_schema: str = "cdm", results_schema: str = "results",
            cohort_table: str = "cohort", data_cutoff: dt.date | None = None,
            parameters: dict[str, int] | None = None) -> Extract:
    """Run the outcome SQL for one cohort; raises BadInput when the cohort table or cohort is missing."""
    validate_identifier(cdm_schema)
    validate_identifier(results_schema)
    validate_identifier(cohort_table, "cohort table name")
    if not _has_table(engine, results_schema, cohort_table):
        raise BadInput(f"no cohort table {results_schema}.{cohort_table}: run init-db and build-cohort first")
    for table in ("person", "observation_period", "death"):
        if not _has_table(engine, cdm_schema, table):
            raise BadInput(f"no CDM table {cdm_schema}.{table}: run init-db first")
    base = {"cdm_database_schema": cdm_schema, "results_database_schema": results_schema,
            "cohort_table": cohort_table, "target_cohort_id": int(cohort_id)}
    counts = _run(engine, "cohort_count.sql", base)
    if counts.empty or int(counts.iloc[0]["persons"] or 0) == 0:
        raise BadInput(f"cohort {cohort_id} has no persons in {results_schema}.{cohort_table} "
                       "(run build-cohort, or choose another --cohort-id)")
    if data_cutoff is None:
        data_cutoff = default_data_cutoff(engine, cdm_schema)
        if data_cutoff is None:
            raise BadInput(f"{cdm_schema}.observation_period is empty: no default data cut-off; give --data-cutoff")
    params = dict(DEFAULT_PARAMETERS)
    params.update(parameters or {})
    sets = outcome_concept_sets(engine, cdm_schema)
    set_params = {f"{name}_ids": ids for name, ids in sets.items()}
    full = {**base, **set_params, **params, "data_cutoff": data_cutoff}
    try:
        persons = _run(engine, "analysis_rows.sql", full)
        ae = _run(engine, "adverse_events.sql", full)
    except BadInput:
        raise
    except Exception as exc:  # noqa: BLE001 - one readable line for the CLI
        raise RuntimeFailure(f"outcome extract failed: {str(exc).splitlines()[0]}") from exc
    attrition = None
    if _has_table(engine, results_schema, "cohort_attrition"):
        attrition = _run(engine, "attrition.sql", base)
        if attrition.empty:
            attrition = None
    return Extract(_typed_persons(persons), _typed_ae(ae), attrition, data_cutoff, sets, params)


def _typed_persons(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df
    for col in ("index_date", "cohort_end_date", "last_anlotinib_end"):
        df[col] = pd.to_datetime(df[col])
    for col in ("os_days", "pfs_days", "os_event", "pfs_event", "n_assessments", "liver_metastasis",
                "brain_metastasis", "person_id", "gender_concept_id"):
        df[col] = pd.to_numeric(df[col]).astype("int64")
    for col in ("year_of_birth", "month_of_birth", "day_of_birth", "best_response_rank", "ecog", "dose_value"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def _typed_ae(df: pd.DataFrame) -> pd.DataFrame:
    """One row per person and term; the term is the concept's name, or the source value when unmapped."""
    if df.empty:
        return pd.DataFrame({"person_id": pd.Series(dtype="int64"), "condition_concept_id": pd.Series(dtype="int64"),
                             "term": pd.Series(dtype=object), "worst_grade": pd.Series(dtype=float)})
    df["worst_grade"] = pd.to_numeric(df["worst_grade"]).astype(float)
    df["condition_concept_id"] = pd.to_numeric(df["condition_concept_id"]).astype("int64")
    unmapped = "unmapped: " + df["source_value"].fillna("(no source value)").astype(str)
    named = df["concept_name"].where(df["concept_name"].notna(), "concept " + df["condition_concept_id"].astype(str))
    df["term"] = named.where(df["condition_concept_id"] != 0, unmapped)
    return df[["person_id", "condition_concept_id", "term", "worst_grade"]]
