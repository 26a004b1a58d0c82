"""Cell parsers and the pure chunk mapper (no database)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from l059_omop.records import load_spec
from l059_omop.records.mapper import Resolved, map_chunk, pseudonym
from l059_omop.records.transforms import parse_dates, parse_dose_text, parse_numbers, parse_range
from l059_omop.resources import mappings_path


def S(*v):
    return pd.Series(list(v), dtype=object)


def test_dates():
    d, bad = parse_dates(S("2022-01-05", "2022/1/5", "2022年1月5日", "", "2022-02-30", "昨天"),
                         ("%Y-%m-%d", "%Y/%m/%d", "%Y年%m月%d日"))
    assert [x.date().isoformat() if not pd.isna(x) else None for x in d] == \
        ["2022-01-05", "2022-01-05", "2022-01-05", None, None, None]
    assert bad.tolist() == [False, False, False, False, True, True]


def test_numbers():
    n, bad = parse_numbers(S("1.5", " 2 ", "", "见备注", "１２", "1.5 mg"))
    assert n.tolist()[:2] == [1.5, 2.0] and math.isnan(n[2]) and n[4] == 12.0
    assert bad.tolist() == [False, False, False, True, False, True]


@pytest.mark.parametrize("text,low,high", [
    ("3.5-5.0", 3.5, 5.0), ("0.8~1.2", 0.8, 1.2), ("25.0 - 37.0", 25.0, 37.0), ("<1.5", None, 1.5),
    ("≤40", None, 40.0), (">10", 10.0, None), ("２５～４０", 25.0, 40.0)])
def test_ranges(text, low, high):
    lo, hi, bad = parse_range(S(text))
    assert not bad[0]
    assert (math.isnan(lo[0]) if low is None else lo[0] == low)
    assert (math.isnan(hi[0]) if high is None else hi[0] == high)


def test_range_bad():
    _, _, bad = parse_range(S("normal", ""))
    assert bad.tolist() == [True, False]


@pytest.mark.parametrize("text,strength,days,per_day,cycle,qty", [
    ("12 mg qd d1-14 q3w", 12, 14, 1, 21, 14),
    ("10mg 每日一次 d1-14 q21d", 10, 14, 1, 21, 14),
    ("8 mg po qd d1~14, 每3周", 8, 14, 1, 21, 14),
    ("安罗替尼 12mg 口服 每日1次 第1-14天 21天为一周期", 12, 14, 1, 21, 14),
    ("12 mg qd 连服14天", 12, 14, 1, None, 14),
    ("100 mg/m2 ivgtt d1-3", 100, 3, None, None, None),
])
def test_dose_text(text, strength, days, per_day, cycle, qty):
    d = parse_dose_text(text)
    assert (d.strength_mg, d.days_supply, d.doses_per_day, d.cycle_days, d.quantity) == \
        (strength, days, per_day, cycle, qty)


def test_map_chunk_quarantines_implausible_dates():
    """A date that parses but no clinical record holds (1700, 2300) is quarantined with its column, as the
    FHIR loader does; 1800 and 2200 are the bounds, inside."""
    spec = load_spec(mappings_path("records", "synth_site.yaml"))
    src = spec.sources["lab_results"]
    dates = ["1700-06-01", "1800-01-01", "2200-12-31", "2300-01-01"]
    chunk = pd.DataFrame({
        "result_id": [f"H1-{i}" for i in range(4)], "hospital_id": ["H1"] * 4, "report_date": dates,
        "item_code": ["APTT"] * 4, "item_name": [""] * 4, "result_value": ["31"] * 4, "unit": ["s"] * 4,
        "ref_range": [""] * 4, "abnormal_flag": [""] * 4, "specimen": [""] * 4}, dtype=object)
    res = Resolved(unit_concepts={"s": 8555}, pseudonym_key=b"k")
    out = map_chunk(spec, src, chunk, pd.Series([2, 3, 4, 5]), "labs.csv", res)
    assert out.read == 4 and out.mapped == 2
    assert {q.row: (q.column, q.reason) for q in out.quarantine} == {
        2: ("report_date", "implausible date: 1700-06-01 (outside 1800-2200)"),
        5: ("report_date", "implausible date: 2300-01-01 (outside 1800-2200)")}


def test_dose_text_without_strength():
    assert parse_dose_text("AUC 5 d1") is None


def test_map_chunk_quarantines_bad_rows_and_keeps_the_rest():
    spec = load_spec(mappings_path("records", "synth_site.yaml"))
    src = spec.sources["lab_results"]
    chunk = pd.DataFrame({
        "result_id": ["H1-1", "H1-2", "H2-1", "x"], "hospital_id": ["H1", "H1", "H2", ""],
        "report_date": ["2022-01-01", "2022-01-01", "2022/13/01", "2022-01-01"],
        "item_code": ["APTT", "APTT", "INR", "INR"], "item_name": ["", "", "", ""],
        "result_value": ["31", "abc", "1.0", "1.2"], "unit": ["s", "s", "", ""],
        "ref_range": ["25.0-37.0", "25-40", "", ""], "abnormal_flag": ["", "", "", ""], "specimen": ["", "", "", ""],
    }, dtype=object)
    res = Resolved(unit_concepts={"{ratio}": 8523, "s": 8555}, pseudonym_key=b"k")
    out = map_chunk(spec, src, chunk, pd.Series([2, 3, 4, 5]), "labs.csv", res)
    assert out.read == 4 and out.mapped == 1
    reasons = {q.row: (q.column, q.reason.split(":")[0]) for q in out.quarantine}
    assert reasons == {3: ("result_value", "not a number"), 4: ("report_date", "unparseable date"),
                       5: ("hospital_id", "missing value")}
    assert all("H1" not in q.payload and "H2" not in q.payload for q in out.quarantine)
    (rows,) = [o for o in out.outputs if len(o.frame)]
    row = rows.frame.iloc[0]
    assert row["measurement_concept_id"] == 3018677 and row["value_as_number"] == 31
    assert row["unit_concept_id"] == 8555 and (row["range_low"], row["range_high"]) == (25.0, 37.0)
    assert rows.person_keys[0] == pseudonym("H1", b"k") != "H1"
