"""drug_era / condition_era from hand-built exposures: the 30-day persistence window (a gap of 30 days
merges, 31 splits), ingredients kept apart, clinical drugs rolled up to their ingredient, gap_days, counts,
and a re-run that replaces the rows."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from l059_omop.cli import main
from l059_omop.db.bulk import insert_frame
from l059_omop.eras import build_eras, era_statements
from l059_omop.errors import BadInput

D0 = dt.date(2022, 1, 1)
EHR = 32817
CARBOPLATIN, CARBOPLATIN_10MG_ML = 1344905, 1344909     # ingredient, clinical drug (derived ancestry)
ETOPOSIDE, ETOPOSIDE_100MG = 1350504, 35606289
ANLOTINIB, ANLOTINIB_12MG = 2000000001, 2000000004      # local L059 ingredient and capsule
HYPERTENSION, HEMOPTYSIS = 316866, 261687


def day(n: int) -> dt.date:
    return D0 + dt.timedelta(days=n)


# (person, drug concept, start day, end day or None, days_supply)
DRUGS = [
    # 1: carboplatin by its clinical drug: 0-0 and 30-30 (gap 30: one era), then 61 (gap 31: a new era)
    (1, CARBOPLATIN_10MG_ML, 0, 0, None), (1, CARBOPLATIN_10MG_ML, 30, 30, None), (1, CARBOPLATIN, 61, 61, None),
    # 1: etoposide on the same days: a separate ingredient, eras of its own
    (1, ETOPOSIDE_100MG, 0, 2, None), (1, ETOPOSIDE, 30, 32, None),
    # 2: anlotinib 12 mg capsules, days 1-14 of 21-day cycles (gaps of 7 days), overlapping dispensing
    (2, ANLOTINIB_12MG, 0, 13, 14), (2, ANLOTINIB_12MG, 21, 34, 14), (2, ANLOTINIB_12MG, 30, 40, 11),
    # 2: anlotinib recorded at ingredient level (strength unknown): its own era after a long pause
    (2, ANLOTINIB, 100, 109, 10),
    # 3: unmapped drug: no era
    (3, 0, 0, 5, None),
]
# (person, condition concept, start day, end day or None)
CONDITIONS = [
    (1, HYPERTENSION, 0, 10), (1, HYPERTENSION, 40, None),   # 40 - 10 = 30: one era
    (1, HYPERTENSION, 72, 72),                               # 72 - 41 = 31: a new era
    (1, HEMOPTYSIS, 5, None),
    (3, 0, 0, None),                                         # unmapped: no era
]


@pytest.fixture(scope="module")
def engine(era_engine):
    persons = pd.DataFrame({"person_id": [1, 2, 3], "gender_concept_id": 8507, "year_of_birth": 1960,
                            "race_concept_id": 0, "ethnicity_concept_id": 0})
    drugs = pd.DataFrame([{"drug_exposure_id": i + 1, "person_id": p, "drug_concept_id": c,
                           "drug_exposure_start_date": day(s), "drug_exposure_end_date": day(e) if e is not None else None,
                           "days_supply": ds, "drug_type_concept_id": EHR}
                          for i, (p, c, s, e, ds) in enumerate(DRUGS)])
    drugs["days_supply"] = drugs["days_supply"].astype("Int64")
    conds = pd.DataFrame([{"condition_occurrence_id": i + 1, "person_id": p, "condition_concept_id": c,
                           "condition_start_date": day(s), "condition_end_date": day(e) if e is not None else None,
                           "condition_type_concept_id": EHR}
                          for i, (p, c, s, e) in enumerate(CONDITIONS)])
    with era_engine.begin() as con:
        insert_frame(con, "cdm", "person", persons)
        insert_frame(con, "cdm", "drug_exposure", drugs)
        insert_frame(con, "cdm", "condition_occurrence", conds)
    build_eras(era_engine)
    return era_engine


def _rows(engine, sql: str) -> list[tuple]:
    with engine.connect() as con:
        return [tuple(r) for r in con.execute(sa.text(sql))]


def _drug_eras(engine) -> list[tuple]:
    return _rows(engine, "select person_id, drug_concept_id, drug_era_start_date, drug_era_end_date, "
                         "drug_exposure_count, gap_days from cdm.drug_era order by person_id, drug_concept_id, "
                         "drug_era_start_date")


def _condition_eras(engine) -> list[tuple]:
    return _rows(engine, "select person_id, condition_concept_id, condition_era_start_date, condition_era_end_date, "
                         "condition_occurrence_count from cdm.condition_era order by person_id, "
                         "condition_concept_id, condition_era_start_date")


def _d(v) -> dt.date:
    return v if type(v) is dt.date else pd.Timestamp(v).date()


def test_drug_eras(engine):
    got = [(p, c, _d(s), _d(e), n, g) for p, c, s, e, n, g in _drug_eras(engine)]
    assert got == [
        # gap 30 merges (days 0 and 30), gap 31 splits (day 61); the clinical drug rolls up to carboplatin
        (1, CARBOPLATIN, day(0), day(30), 2, 30),
        (1, CARBOPLATIN, day(61), day(61), 1, 0),
        # etoposide kept apart from carboplatin although given on the same days
        (1, ETOPOSIDE, day(0), day(32), 2, 28),
        # anlotinib cycles with 7-day pauses form one era; the overlap (days 30-34) is not counted twice.
        # gap_days is OHDSI's: era length minus the sub-exposures' (end - start) days, 40 - (13 + 19) = 8
        (2, ANLOTINIB, day(0), day(40), 3, 8),
        (2, ANLOTINIB, day(100), day(109), 1, 0),
    ]


def test_condition_eras(engine):
    got = [(p, c, _d(s), _d(e), n) for p, c, s, e, n in _condition_eras(engine)]
    assert got == [
        (1, HEMOPTYSIS, day(5), day(6), 1),          # no end date: one day
        (1, HYPERTENSION, day(0), day(41), 2),       # 40 - 10 = 30 merges
        (1, HYPERTENSION, day(72), day(72), 1),      # 72 - 41 = 31 splits
    ]


def test_rerun_replaces_rows(engine):
    before = (_drug_eras(engine), _condition_eras(engine))
    report = build_eras(engine)
    assert report.rows == {"drug_era": 5, "condition_era": 3}
    assert (_drug_eras(engine), _condition_eras(engine)) == before
    ids = _rows(engine, "select drug_era_id from cdm.drug_era order by drug_era_id")
    assert [i for (i,) in ids] == [1, 2, 3, 4, 5]


def test_shorter_window(engine):
    """--gap-days 0: the 7-day pauses of the anlotinib schedule now split the course."""
    try:
        build_eras(engine, era_pad=0, tables=("drug_era",))
        anl = [r for r in _drug_eras(engine) if r[1] == ANLOTINIB]
        assert [(_d(s), _d(e)) for _, _, s, e, _, _ in anl] == [(day(0), day(13)), (day(21), day(40)),
                                                                (day(100), day(109))]
    finally:
        build_eras(engine)


def test_bad_arguments():
    with pytest.raises(BadInput):
        era_statements("drug_exposure", "duckdb")
    with pytest.raises(BadInput):
        era_statements("drug_era", "duckdb", era_pad=-1)
    with pytest.raises(BadInput):
        era_statements("drug_era", "duckdb", cdm_schema="cdm; drop table x")


@pytest.mark.parametrize("dialect", ["postgresql", "duckdb", "sql server", "spark", "snowflake", "bigquery"])
def test_sql_translates(dialect):
    for table in ("drug_era", "condition_era"):
        stmts = era_statements(table, dialect)
        assert len(stmts) == 2 and stmts[0].upper().startswith("DELETE")


def test_cli(engine):
    url = engine.url.render_as_string(hide_password=False)
    r = CliRunner().invoke(main, ["--db", url, "build-eras"])
    assert r.exit_code == 0, r.output
    assert "drug_era: 5" in r.output and "condition_era: 3" in r.output
