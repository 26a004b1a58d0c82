"""Hand-built patients, one or more per rule and boundary (fixtures/patients.yaml), on DuckDB and PostgreSQL."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from l059_omop.cohort import build_cohort
from l059_omop.db.bulk import insert_frames

from .patients import COHORT_ID, RULES, expected_attrition, expected_cohort, frames, load_cases

CASES, TABLES = load_cases()


def _load(engine) -> None:
    insert_frames(engine, "cdm", frames(TABLES))


def _cohort(engine, table: str = "cohort", cohort_id: int = COHORT_ID) -> pd.DataFrame:
    with engine.connect() as con:
        df = pd.read_sql_query(sa.text(f"select subject_id, cohort_start_date, cohort_end_date from results.{table} "
                                       "where cohort_definition_id = :c order by subject_id"), con,
                               params={"c": cohort_id})
    for c in ("cohort_start_date", "cohort_end_date"):
        df[c] = pd.to_datetime(df[c]).dt.date
    df["subject_id"] = df["subject_id"].astype("int64")
    return df


def _masks(engine) -> dict[int, int]:
    """person -> mask is not stored per person by Circe; recompute failing rules per person from a
    one-person-at-a-time view is too slow, so the test checks the mask counts instead."""
    with engine.connect() as con:
        rows = con.execute(sa.text("select inclusion_rule_mask, person_count from results.cohort_inclusion_result "
                                   "where cohort_definition_id = :c and mode_id = 0"), {"c": COHORT_ID}).fetchall()
    return {int(m): int(n) for m, n in rows}


def test_cases_are_well_formed():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    for c in CASES:
        assert set(c.failed) <= set(RULES), c.name
    # every rule is exercised by at least one failing patient
    assert {r for c in CASES for r in c.failed} == set(RULES)


def test_hand_built_patients(cdm_engine):
    _load(cdm_engine)
    attrition = build_cohort(cdm_engine)

    got = _cohort(cdm_engine)
    want = expected_cohort(CASES)
    missing = set(want.subject_id) - set(got.subject_id)
    extra = set(got.subject_id) - set(want.subject_id)
    names = {c.id: c.name for c in CASES}
    assert not missing and not extra, (
        f"missing: {[(i, names[i]) for i in sorted(missing)]}; unexpected: {[(i, names[i]) for i in sorted(extra)]}")
    pd.testing.assert_frame_equal(got, want)

    # mask counts: each entered person's expected failed rules give its mask
    want_masks: dict[int, int] = {}
    for c in CASES:
        if c.entered:
            m = sum(1 << i for i, r in enumerate(RULES) if r not in c.failed)
            want_masks[m] = want_masks.get(m, 0) + 1
    got_masks = _masks(cdm_engine)
    if got_masks != want_masks:
        diff = {m: (got_masks.get(m, 0), want_masks.get(m, 0)) for m in set(got_masks) | set(want_masks)
                if got_masks.get(m, 0) != want_masks.get(m, 0)}
        decoded = {tuple(r for i, r in enumerate(RULES) if not m >> i & 1): v for m, v in diff.items()}
        pytest.fail(f"mask counts differ (failed rules: (got, want)): {decoded}")

    computed = attrition[attrition.rule_sequence.notna()]
    got_att = [(r.rule, int(r.persons_remaining), int(r.persons_excluded), int(r.failing_alone))
               for r in computed.itertuples()]
    assert got_att == expected_attrition(CASES)
    # the non-computable criteria are listed with their reasons
    nc = attrition[attrition.rule_sequence.isna()]
    assert list(nc.criterion) == ["incl. 7", "excl. 6"] and all(nc.note.str.contains("not computable"))

    with cdm_engine.connect() as con:
        table = con.execute(sa.text("select rule_sequence, rule_name, persons_remaining, persons_excluded from "
                                    "results.cohort_attrition where cohort_definition_id = :c order by rule_sequence"),
                            {"c": COHORT_ID}).fetchall()
        assert [(int(a), int(b), int(c)) for a, _, b, c in table] == [
            (i, n, x) for i, (_, n, x, _) in enumerate(expected_attrition(CASES))]
        names_ = con.execute(sa.text("select rule_sequence, name from results.cohort_inclusion "
                                     "where cohort_definition_id = :c order by rule_sequence"), {"c": COHORT_ID}).fetchall()
        assert [n.split()[0] for _, n in names_] == RULES
        stats = con.execute(sa.text("select rule_sequence, person_count, gain_count, person_total from "
                                    "results.cohort_inclusion_stats where cohort_definition_id = :c and mode_id = 1 "
                                    "order by rule_sequence"), {"c": COHORT_ID}).fetchall()
        entered = [c for c in CASES if c.entered]
        for seq, met, gain, total in stats:
            r = RULES[seq]
            assert total == len(entered)
            assert met == sum(r not in c.failed for c in entered)
            assert gain == sum(c.failed == [r] for c in entered)
        summary = con.execute(sa.text("select base_count, final_count, mode_id from results.cohort_summary_stats "
                                      "where cohort_definition_id = :c order by mode_id"), {"c": COHORT_ID}).fetchall()
        assert [tuple(s) for s in summary] == [(len(entered), len(want), 0), (len(entered), len(want), 1)]
        run = con.execute(sa.text("select parameters_json, software_version from results.cohort_run "
                                  "where cohort_definition_id = :c"), {"c": COHORT_ID}).fetchall()
        assert len(run) == 1 and '"min_age": 18' in run[0][0]
        # no scratch table is left behind
        left = con.execute(sa.text("select table_name from information_schema.tables where table_name like 'l059_%'"))
        assert left.fetchall() == []


def test_rerun_replaces_and_parameters_change_the_cohort(cdm_engine):
    _load(cdm_engine)
    build_cohort(cdm_engine)
    first = _cohort(cdm_engine)
    build_cohort(cdm_engine)  # same id again: replaced, not appended
    pd.testing.assert_frame_equal(_cohort(cdm_engine), first)
    # a parameter from COHORT.md changes the result: INR 1.51 is allowed with max_inr 1.6
    attrition = build_cohort(cdm_engine, cohort_id=7, cohort_table="cohort_alt", max_inr=1.6)
    alt = _cohort(cdm_engine, "cohort_alt", 7)
    assert set(alt.subject_id) - set(first.subject_id) == {131}
    assert attrition.attrs["parameters"]["max_inr"] == 1.6


def test_failed_run_drops_its_scratch_tables(cdm_engine):
    from l059_omop.errors import RuntimeFailure

    with cdm_engine.begin() as con:
        con.execute(sa.text("drop table cdm.observation"))
    with pytest.raises(RuntimeFailure, match="03_cohort_events"):
        build_cohort(cdm_engine)
    with cdm_engine.connect() as con:
        left = con.execute(sa.text("select table_name from information_schema.tables where table_name like 'l059_%'"))
        assert left.fetchall() == []


def test_duckdb_scratch_tables_are_temporary_unless_a_scratch_schema_is_named(duckdb_url):
    """DuckDB's default build keeps its scratch tables as TEMP tables of its connection (nothing written
    to the file, nothing left by a killed process); a named scratch schema gets ordinary tables there,
    dropped after the run. Both select the same cohort."""
    import re

    from l059_omop.cohort import definition as d
    from l059_omop.db.api import init_db

    values = d.render_values(prefix="l059_t0_")
    rewritten = d.duckdb_temporary_scratch(d.translated_steps("duckdb", values), values)
    text = "\n".join(s for _, stmts in rewritten for s in stmts)
    assert not re.search(r"\bresults\.l059_t0_", text)
    assert len(re.findall(r"CREATE TEMPORARY TABLE l059_t0_", text)) == len(d.SCRATCH_TABLES)
    assert "temp.main.l059_t0_events" in text

    engine = sa.create_engine(duckdb_url)
    init_db(engine)
    _load(engine)
    build_cohort(engine)
    default = _cohort(engine)
    build_cohort(engine, scratch_schema="l059_scratch")
    with engine.connect() as con:
        assert con.execute(sa.text("select count(*) from information_schema.schemata "
                                   "where schema_name = 'l059_scratch'")).scalar() == 1
        left = con.execute(sa.text("select table_schema, table_name from information_schema.tables "
                                   "where table_name like 'l059_%'")).fetchall()
    assert left == []
    pd.testing.assert_frame_equal(_cohort(engine), default)
    assert set(default.subject_id) == set(expected_cohort(CASES).subject_id)
    engine.dispose()
