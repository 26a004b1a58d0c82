"""``dq`` on OHDSI's Eunomia Synthea27Nj CDM reports the failures that data really has, on DuckDB and
PostgreSQL. The facts are computed here independently (pandas over the imported tables, and PostgreSQL's own
foreign-key validation), not with the project's check SQL."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from l059_omop.db import cdm_spec
from l059_omop.db.api import import_cdm
from l059_omop.dq import exit_code, run_checks
from l059_omop.dq.report import DQ_FAILED_EXIT_CODE

EUNOMIA = Path(__file__).resolve().parents[2].parent / "shared" / "eunomia" / "Synthea27Nj_5.4_csv"

# Check types whose failures this data has (each verified below row by row).
EXPECTED_FAILING_TYPES = {"isForeignKey", "standardConceptRecordCompleteness", "plausibleValueLow",
                          "plausibleValueHigh", "measurePersonCompleteness", "plausibleUnitConceptIds"}


@pytest.fixture
def eunomia(db_url):
    if not EUNOMIA.is_dir():
        pytest.skip(f"Eunomia Synthea27Nj CSVs not found at {EUNOMIA}")
    engine = sa.create_engine(db_url)
    result = import_cdm(engine, EUNOMIA)
    df = run_checks(engine, "cdm")
    yield engine, df, result
    engine.dispose()


def _frame(engine, table: str) -> pd.DataFrame:
    with engine.connect() as con:
        return pd.read_sql(sa.text(f"select * from cdm.{table}"), con)


def test_eunomia_failures_are_real(eunomia):
    engine, df, result = eunomia
    assert (df["status"] == "error").sum() == 0, df[df["status"] == "error"][["check_id", "error"]]
    failed = df[df["status"] == "fail"]
    assert set(failed["check_name"]) <= EXPECTED_FAILING_TYPES, sorted(set(failed["check_name"]))
    assert exit_code(df) == DQ_FAILED_EXIT_CODE

    concept = _frame(engine, "concept")
    # the vocabulary shard lacks concept 0 and the gender concepts (see ../shared/eunomia/PROVENANCE.md)
    assert not concept["concept_id"].isin([0, 8507, 8532]).any()
    person = _frame(engine, "person")
    missing_gender = int((~person["gender_concept_id"].isin(concept["concept_id"])).sum())
    assert missing_gender == len(person) == 28
    row = df.set_index("check_id").loc["field_isforeignkey_person_gender_concept_id"]
    assert (row["status"], row["num_violated_rows"], row["num_denominator_rows"]) == ("fail", 28, 28)

    frames: dict[str, pd.DataFrame] = {"concept": concept, "person": person}

    def frame(table: str) -> pd.DataFrame:
        if table not in frames:
            frames[table] = _frame(engine, table)
        return frames[table]

    checked = 0
    for r in df[df["status"].isin(["pass", "fail"])].itertuples(index=False):
        if r.check_level != "FIELD":
            continue
        t = frame(r.table)
        col = t[r.field] if r.field in t else None
        if r.check_name == "isForeignKey":
            f = next(f for f in cdm_spec.tables()[r.table] if f.name == r.field)
            expected = int((col.notna() & ~col.isin(frame(f.fk_table)[f.fk_field])).sum())
        elif r.check_name in ("standardConceptRecordCompleteness", "sourceConceptRecordCompleteness"):
            expected = int((col == 0).sum())
        elif r.check_name in ("isRequired", "measureValueCompleteness"):
            expected = int(col.isna().sum())
        elif r.check_name in ("plausibleValueLow", "plausibleValueHigh") and pd.api.types.is_numeric_dtype(col):
            try:
                bound = float(r.description.rsplit(" ", 1)[-1].rstrip("."))
            except ValueError:  # a T-SQL expression of today, e.g. YEAR(GETDATE())+1
                continue
            expected = int((col < bound).sum() if r.check_name == "plausibleValueLow" else (col > bound).sum())
        else:
            continue
        assert r.num_violated_rows == expected, (r.check_id, r.num_violated_rows, expected)
        assert r.status == ("fail" if 100.0 * expected / r.num_denominator_rows > r.threshold else "pass"), r.check_id
        checked += 1
    assert checked > 300

    # measurements of a unit-checked concept with a value, none of whose units is plausible
    m = frame("measurement")
    for r in df[(df["check_name"] == "plausibleUnitConceptIds") & (df["status"] == "fail")].itertuples(index=False):
        units = [int(u) for u in r.description.split("UNIT_CONCEPT_ID NOT IN (")[1].split(")")[0].split(",")]
        sel = m[(m["measurement_concept_id"] == int(r.concept_id)) & m["value_as_number"].notna()]
        assert r.num_violated_rows == int((~sel["unit_concept_id"].fillna(-1).astype(int).isin(units)).sum()) > 0

    # drug_era is empty although DQD expects it for 95 % of persons
    assert len(frame("drug_era")) == 0
    row = df.set_index("check_id").loc["table_measurepersoncompleteness_drug_era"]
    assert (row["status"], row["num_violated_rows"]) == ("fail", 28)

    if engine.dialect.name == "postgresql":
        _foreign_keys_agree_with_postgresql(df, result)


def _foreign_keys_agree_with_postgresql(df: pd.DataFrame, result) -> None:
    """On PostgreSQL, import_cdm adds the official foreign keys and reports each one the data violates: the
    isForeignKey checks that fail are exactly those (for the tables dq covers)."""
    covered = set(df["table"])
    rejected = set()
    for line in result.constraint_failures:
        table, column = line.split("(", 1)[1].split(" ")[0].split(".")
        if table in covered:
            rejected.add((table, column))
    fk = df[(df["check_name"] == "isForeignKey") & (df["status"] == "fail")]
    assert set(zip(fk["table"], fk["field"], strict=True)) == rejected
    assert len(rejected) > 30
