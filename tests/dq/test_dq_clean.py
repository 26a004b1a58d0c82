"""``dq`` on a small clean CDM built by hand with the bundled vocabulary: nothing fails; and each kind of
defect planted on top of it is found by the check meant for it, on DuckDB and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from l059_omop.cli import main
from l059_omop.db import bulk
from l059_omop.dq import exit_code, html_fragment, run_checks, summary_lines, write_outputs
from l059_omop.dq.report import DQ_FAILED_EXIT_CODE

D = dt.date
EHR = 32817  # type concept "EHR" (CONVENTIONS.md)
TODAY = D(2026, 1, 1)

# Checks a clean CDM of this shape may legitimately fail: none (kept as a list so an expected one can be
# documented here with its reason).
EXPECTED_CLEAN_FAILURES: set[str] = set()


def clean_frames(n: int = 6) -> dict[str, pd.DataFrame]:
    """n persons written the way CONVENTIONS.md says: observation period, visits, SCLC diagnosis,
    anlotinib, radiotherapy, INR / ECOG / sum of diameters / CTCAE grade, tumour response, eras, one death."""
    t: dict[str, list[dict]] = {k: [] for k in ("person", "observation_period", "visit_occurrence",
                                                "condition_occurrence", "drug_exposure", "procedure_occurrence",
                                                "measurement", "observation", "condition_era", "drug_era",
                                                "death")}
    ids = iter(range(1, 10_000))
    for p in range(1, n + 1):
        birth = D(1950 + p, p % 12 + 1, 10)
        start, end = D(2020, 1, 1), D(2022, 12, 31)
        t["person"].append({"person_id": p, "gender_concept_id": 8507 if p % 2 else 8532,
                            "year_of_birth": birth.year, "month_of_birth": birth.month, "day_of_birth": birth.day,
                            "birth_datetime": dt.datetime(birth.year, birth.month, birth.day),
                            "race_concept_id": 0, "ethnicity_concept_id": 0, "person_source_value": f"P{p}"})
        if p == n:  # the last person dies; the period ends at death
            end = D(2022, 6, 1)
            t["death"].append({"person_id": p, "death_date": end, "death_type_concept_id": EHR})
        t["observation_period"].append({"observation_period_id": p, "person_id": p,
                                        "observation_period_start_date": start, "observation_period_end_date": end,
                                        "period_type_concept_id": EHR})
        visits = []
        for k, day in enumerate((start + dt.timedelta(days=10), start + dt.timedelta(days=60))):
            vid = next(ids)
            visits.append((vid, day))
            t["visit_occurrence"].append({"visit_occurrence_id": vid, "person_id": p, "visit_concept_id": 9202,
                                          "visit_start_date": day, "visit_end_date": day,
                                          "visit_type_concept_id": EHR, "visit_source_value": f"V{p}-{k}",
                                          "visit_source_concept_id": 0})
        (v1, d1), (v2, d2) = visits
        t["condition_occurrence"].append({
            "condition_occurrence_id": next(ids), "person_id": p, "condition_concept_id": 4110591,
            "condition_start_date": d1, "condition_end_date": d1, "condition_type_concept_id": EHR,
            "visit_occurrence_id": v1, "condition_source_value": "254632001", "condition_source_concept_id": 4110591})
        t["condition_era"].append({"condition_era_id": p, "person_id": p, "condition_concept_id": 4110591,
                                   "condition_era_start_date": d1, "condition_era_end_date": d1,
                                   "condition_occurrence_count": 1})
        d_end = d2 + dt.timedelta(days=13)
        t["drug_exposure"].append({
            "drug_exposure_id": next(ids), "person_id": p, "drug_concept_id": 2000000004,
            "drug_exposure_start_date": d2, "drug_exposure_end_date": d_end, "drug_type_concept_id": 32838,
            "days_supply": 14, "quantity": 14.0, "visit_occurrence_id": v2, "drug_source_value": "ANLOTINIB-12MG",
            "drug_source_concept_id": 2000000004})
        t["drug_era"].append({"drug_era_id": p, "person_id": p, "drug_concept_id": 2000000001,
                              "drug_era_start_date": d2, "drug_era_end_date": d_end, "drug_exposure_count": 1,
                              "gap_days": 0})
        t["procedure_occurrence"].append({
            "procedure_occurrence_id": next(ids), "person_id": p, "procedure_concept_id": 2000000030,
            "procedure_date": d1, "procedure_end_date": d1, "procedure_type_concept_id": EHR,
            "visit_occurrence_id": v1, "procedure_source_value": "RT-THORAX", "procedure_source_concept_id": 2000000030})
        for concept, value, unit, src in ((3022217, 1.1, 8523, "INR"), (36305384, 1.0, None, "ECOG"),
                                          (2000000025, 42.0, 8588, "SOD"), (2000000045, 2.0, None, "CTCAE")):
            t["measurement"].append({
                "measurement_id": next(ids), "person_id": p, "measurement_concept_id": concept,
                "measurement_date": d1, "measurement_type_concept_id": EHR, "value_as_number": value,
                "unit_concept_id": unit, "visit_occurrence_id": v1, "measurement_source_value": src,
                "measurement_source_concept_id": concept})
        t["observation"].append({
            "observation_id": next(ids), "person_id": p, "observation_concept_id": 36305408,
            "observation_date": d2, "observation_type_concept_id": EHR, "value_as_concept_id": 2000000021,
            "visit_occurrence_id": v2, "observation_source_value": "RECIST", "observation_source_concept_id": 36305408})
    return {k: pd.DataFrame(v) for k, v in t.items()}


def load(engine, frames: dict[str, pd.DataFrame], schema: str = "cdm") -> None:
    with engine.begin() as con:
        for table in ("person", "observation_period", "visit_occurrence", "condition_occurrence", "drug_exposure",
                      "procedure_occurrence", "measurement", "observation", "condition_era", "drug_era", "death"):
            df = frames[table].copy()
            for col in df.columns:  # ids with gaps stay integers (PostgreSQL's COPY refuses "8523.0")
                if col.endswith("_id") and df[col].dtype != "int64":
                    df[col] = pd.to_numeric(df[col]).astype("Int64")
            if len(df):
                bulk.insert_frame(con, schema, table, df)


def failures(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"].isin(["fail", "error"])]


def test_clean_cdm_passes(cdm_engine, tmp_path):
    load(cdm_engine, clean_frames())
    df = run_checks(cdm_engine, "cdm", today=TODAY)
    bad = failures(df)
    assert set(bad["check_id"]) <= EXPECTED_CLEAN_FAILURES, bad[
        ["check_id", "num_violated_rows", "num_denominator_rows", "threshold", "error"]].to_string()
    assert exit_code(df, "error") == 0 and exit_code(df, "warning") == 0
    # the study's own range checks ran on the data (not merely "not applicable")
    own = df[(df["source"] == "L059") & (df["check_level"] == "CONCEPT")]
    ran = set(own.loc[own["status"] == "pass", "concept_id"])
    assert {"3022217", "36305384", "2000000025", "2000000045"} <= ran
    # every category has checks that ran and passed
    for cat in ("Conformance", "Completeness", "Plausibility"):
        assert (df[(df["category"] == cat)]["status"] == "pass").sum() > 10
    paths = write_outputs(df, tmp_path / "out")
    back = pd.read_csv(paths["csv"])
    assert len(back) == len(df)
    assert {"check_name", "check_level", "category", "subcategory", "table", "field", "concept_id",
            "num_violated_rows", "num_denominator_rows", "pct_violated", "threshold", "status",
            "description"} <= set(back.columns)
    assert paths["html"].read_text().startswith('<section class="l059-dq"')


def _planted(engine) -> pd.DataFrame:
    frames = clean_frames()
    m, p, co = frames["measurement"], frames["person"], frames["condition_occurrence"]
    ecog = m.index[m["measurement_concept_id"] == 36305384]
    m.loc[ecog[0], "value_as_number"] = 7.0  # ECOG outside 0-4
    grade = m.index[m["measurement_concept_id"] == 2000000045]
    m.loc[grade[0], "value_as_number"] = 0.0  # CTCAE grade outside 1-5
    inr = m.index[m["measurement_concept_id"] == 3022217]
    m.loc[inr[0], "value_as_number"] = 55.0  # INR implausibly high
    co.loc[0, "condition_concept_id"] = 3022217  # a Measurement concept in condition_concept_id
    co.loc[1, "condition_concept_id"] = 0  # unmapped
    co.loc[2, "condition_start_date"] = D(2019, 6, 1)  # before the observation period (which starts 2020)
    co.loc[2, "condition_end_date"] = D(2019, 6, 1)
    co.loc[2, "visit_occurrence_id"] = pd.NA  # (else it is also far from its visit: withinVisitDates)
    p.loc[0, "year_of_birth"] = 1820  # implausible birth year (birth_datetime kept: it governs after-birth)
    frames["person"] = p
    # after death (+60 days allowance): the last person died 2022-06-01
    last = int(p["person_id"].max())
    frames["drug_exposure"].loc[frames["drug_exposure"]["person_id"] == last, "drug_exposure_start_date"] = D(2022, 9, 1)
    frames["drug_exposure"].loc[frames["drug_exposure"]["person_id"] == last, "drug_exposure_end_date"] = D(2022, 9, 14)
    frames["drug_exposure"].loc[frames["drug_exposure"]["person_id"] == last, "visit_occurrence_id"] = pd.NA
    load(engine, frames)
    return run_checks(engine, "cdm", today=TODAY)


def test_planted_defects_are_found(cdm_engine):
    df = _planted(cdm_engine).set_index("check_id")
    expect = {
        "concept_plausiblevaluehigh_measurement_measurement_concept_id_36305384": 1,
        "concept_plausiblevaluelow_measurement_measurement_concept_id_2000000045": 1,
        "concept_plausiblevaluehigh_measurement_measurement_concept_id_3022217": 1,
        "field_fkdomain_condition_occurrence_condition_concept_id": 1,
        "field_standardconceptrecordcompleteness_condition_occurrence_condition_concept_id": 1,
        "field_plausibleduringobservation_condition_occurrence_condition_start_date": 1,
        "field_plausiblevaluelow_person_year_of_birth": 1,
        "field_plausiblebeforedeath_drug_exposure_drug_exposure_start_date": 1,
        # what the planted defects also (rightly) set off:
        "field_plausiblebeforedeath_drug_exposure_drug_exposure_end_date": 1,
        "field_plausibleduringobservation_drug_exposure_drug_exposure_start_date": 1,  # after the period's end
        "field_sourcevaluecompleteness_condition_occurrence_condition_source_value": 1,  # 1 of 1 distinct values
    }
    for check_id, n in expect.items():
        row = df.loc[check_id]
        assert (row["status"], row["num_violated_rows"]) == ("fail", n), (check_id, row.to_dict())
    assert df.loc["concept_plausiblevaluehigh_measurement_measurement_concept_id_36305384", "failure_level"] == "error"
    assert df.loc["concept_plausiblevaluehigh_measurement_measurement_concept_id_3022217", "failure_level"] == "warning"
    # nothing else fails
    others = failures(df.reset_index())
    assert set(others["check_id"]) == set(expect), others["check_id"].tolist()
    full = df.reset_index()
    assert exit_code(full, "error") == DQ_FAILED_EXIT_CODE
    text = "\n".join(summary_lines(full))
    assert "fkDomain condition_occurrence.condition_concept_id" in text
    assert "<td>fkDomain</td>" in html_fragment(full)


def test_cli_exit_codes(tmp_path):
    url = f"duckdb:///{tmp_path / 'l059.duckdb'}"
    engine = sa.create_engine(url)
    from l059_omop.db.api import init_db

    init_db(engine)
    frames = clean_frames(3)
    m = frames["measurement"]
    m.loc[m.index[m["measurement_concept_id"] == 3022217][0], "value_as_number"] = 55.0  # a warning only
    load(engine, frames)
    engine.dispose()
    runner = CliRunner()
    out = tmp_path / "dq"
    res = runner.invoke(main, ["--db", url, "dq", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "dq_results.csv").is_file() and (out / "dq.html").is_file()
    assert "Plausibility" in res.output and "no check fails at --fail-on error" in res.output
    res = runner.invoke(main, ["--db", url, "dq", "--out", str(out), "--fail-on", "warning"])
    assert res.exit_code == DQ_FAILED_EXIT_CODE, res.output
    assert "plausibleValueHigh measurement.measurement_concept_id [3022217]" in res.output
    res = runner.invoke(main, ["--db", url, "dq", "--out", str(out), "--fail-on", "fatal"])
    assert res.exit_code == 2


def test_duckdb_only_defects(tmp_path):
    """What PostgreSQL would refuse but DuckDB stores: a missing table, text over its VARCHAR(n), a
    duplicate primary key."""
    url = f"duckdb:///{tmp_path / 'l059.duckdb'}"
    engine = sa.create_engine(url)
    from l059_omop.db.api import init_db

    init_db(engine)
    frames = clean_frames(2)
    frames["person"].loc[0, "person_source_value"] = "x" * 60  # person_source_value is varchar(50)
    load(engine, frames)
    with engine.begin() as con:
        con.execute(sa.text("drop table cdm.specimen"))
        # drug_era rebuilt without its primary key, with one id twice
        con.execute(sa.text("create table cdm.drug_era_x as select * from cdm.drug_era union all "
                            "select * from cdm.drug_era where drug_era_id = 1"))
        con.execute(sa.text("drop table cdm.drug_era"))
        con.execute(sa.text("alter table cdm.drug_era_x rename to drug_era"))
    df = run_checks(engine, "cdm", today=TODAY).set_index("check_id")
    assert df.loc["table_cdmtable_specimen", "status"] == "fail"
    assert df.loc["field_isrequired_specimen_specimen_id", "status"] == "not_applicable"
    row = df.loc["field_cdmfieldlength_person_person_source_value"]
    assert (row["status"], row["num_violated_rows"], row["num_denominator_rows"]) == ("fail", 1, 2)
    row = df.loc["field_isprimarykey_drug_era_drug_era_id"]
    assert (row["status"], row["num_violated_rows"], row["num_denominator_rows"]) == ("fail", 2, 3)
    assert (df["status"] == "error").sum() == 0


def test_schema_name_is_validated(tmp_path):
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'x.duckdb'}")
    from l059_omop.errors import BadInput

    with pytest.raises(BadInput):
        run_checks(engine, "cdm; drop table x")
