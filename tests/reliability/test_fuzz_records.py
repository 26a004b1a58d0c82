"""Fuzzing the records loader (hypothesis): the synthetic site's extracts (mappings/records/synth_site.yaml)
with damaged cells, rows and bytes — impossible dates, text in number columns, negative quantities, huge
strings, hostile strings, NUL, bad GB18030/UTF-8 bytes, duplicate keys, orphan rows, truncated files, ragged
rows.

Whatever the input, either the spec/header check refuses it before anything is written (BadInput, one
line), or the load ends with every row read mapped, quarantined with a reason or skipped by a rule, the
counts reconciling in the report and in etl.load_run, and etl.quarantine holding exactly the quarantined rows.
"""

from __future__ import annotations

import csv
import io
import itertools
import shutil

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l059_omop.errors import BadInput
from l059_omop.records import load_records
from l059_omop.resources import mappings_path
from tests.reliability.helpers import assert_one_line_error, cli
from tests.reliability.test_fuzz_fhir import BAD_DATES, HOSTILE, check_run

EXAMPLES = {"duckdb": 25, "postgresql": 10}
MAPPING = mappings_path("records", "synth_site.yaml")
FILES = ["patients.csv", "diagnoses.csv", "staging.csv", "drug_orders.csv", "drug_administrations.csv",
         "lab_results.csv", "assessments.csv", "imaging.csv", "radiotherapy.csv", "adverse_events.csv",
         "followup.csv"]
_counter = itertools.count()
FIGURES = {"inputs": 0, "records_read": 0, "quarantined": 0, "refused_before_writing": 0}

CELL = st.one_of(
    st.sampled_from(BAD_DATES), st.sampled_from(HOSTILE),
    st.sampled_from(["-14", "-0.5", "1e308", "-1e308", "NaN", "inf", "abc", "１２", "12,5", "0x10", "", " ",
                     "99999999999999999999999", "安罗替尼胶囊 999mg", "12 mg qd d1-14 q3w" * 50]),
    st.text(max_size=30).filter(lambda t: "\x00" not in t),
    st.integers(10_000, 200_000).map(lambda n: "长" * n))


def _read(path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")))


@st.composite
def records_case(draw, src):
    """(files {name: bytes}, what)."""
    tables = {f: _read(src / f) for f in FILES if (src / f).exists()}
    whats = []
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(sorted(tables)))
        rows = tables[name]
        kind = draw(st.sampled_from(["cell", "cell", "cell", "duplicate", "orphan", "ragged", "drop_patient"]))
        if len(rows) < 2:
            continue
        r = draw(st.integers(1, len(rows) - 1))
        if kind == "cell":
            c = draw(st.integers(0, len(rows[0]) - 1))
            rows[r][c] = draw(CELL)
        elif kind == "duplicate":
            dup = list(rows[r])
            if len(dup) > 2 and draw(st.booleans()):
                dup[-1] = draw(CELL)
            rows.insert(draw(st.integers(1, len(rows))), dup)
        elif kind == "orphan":
            hid = rows[0].index("hospital_id") if "hospital_id" in rows[0] else 0
            rows[r][hid] = draw(st.sampled_from(["ZY_UNKNOWN", "", "'; drop table cdm.person; --"]))
        elif kind == "ragged":
            rows[r] = rows[r][:draw(st.integers(0, len(rows[r])))] + (["x"] if draw(st.booleans()) else [])
        elif kind == "drop_patient":
            tables["patients.csv"] = tables["patients.csv"][:1] + tables["patients.csv"][2:]
        whats.append(f"{kind}:{name}")
    out = {}
    for name, rows in tables.items():
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        out[name] = buf.getvalue().encode("utf-8")
    damage = draw(st.sampled_from(["none", "none", "bytes", "truncate", "bom", "nul"]))
    name = draw(st.sampled_from(sorted(out)))
    data = out[name]
    first = data.index(b"\n") + 1  # damage after the header (header damage is tested on its own)
    if damage == "bytes":
        at = draw(st.integers(first, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x81"])) + data[at:]
    elif damage == "truncate":
        data = data[:draw(st.integers(first, len(data)))]
    elif damage == "bom":
        data = b"\xef\xbb\xbf" + data
    elif damage == "nul":
        at = draw(st.integers(first, len(data)))
        data = data[:at] + b"\x00" + data[at:]
    out[name] = data
    whats.append(f"{damage}:{name}")
    return out, "+".join(whats)


def _fuzz(url: str, src, tmp_path, max_examples: int) -> None:
    engine = sa.create_engine(url)

    @settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(records_case(src))
    def run(case):
        files, _what = case
        folder = tmp_path / f"case{next(_counter)}"
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        try:
            result = load_records(engine, MAPPING, [folder])
        except BadInput as exc:  # refused before writing (a header the spec cannot read)
            assert str(exc).strip() and "\n" not in str(exc).strip()
            FIGURES["refused_before_writing"] += 1
            return
        check_run(engine, result.report, FIGURES)

    try:
        run()
    finally:
        engine.dispose()


def test_fuzz_records_duckdb(duck_cdm_url, synth_records, tmp_path):
    _fuzz(duck_cdm_url, synth_records, tmp_path, EXAMPLES["duckdb"])


@pytest.mark.postgres
def test_fuzz_records_postgresql(pg_cdm_url, synth_records, tmp_path):
    _fuzz(pg_cdm_url, synth_records, tmp_path, EXAMPLES["postgresql"])


def test_records_cli_bad_rows_and_bad_header(duck_cdm_url, synth_records, tmp_path):
    folder = tmp_path / "in"
    shutil.copytree(synth_records, folder)
    rows = _read(folder / "drug_orders.csv")
    rows[1][rows[0].index("dispense_date")] = "2023-02-30"
    rows[2][rows[0].index("quantity")] = "fourteen"
    rows[3][rows[0].index("hospital_id")] = "'; drop table cdm.person; --"
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    (folder / "drug_orders.csv").write_bytes(buf.getvalue().encode() + b"ZY1,\xff\xfe,broken\n")
    r = cli("--db", duck_cdm_url, "load-records", "--mapping", "synth_site", str(folder))
    assert r.returncode == 3, r.stderr  # rows were quarantined (the rest is loaded)
    assert_one_line_error(r)
    engine = sa.create_engine(duck_cdm_url)
    with engine.connect() as con:
        assert con.execute(sa.text("select count(*) from cdm.person")).scalar_one() == 8
        n = con.execute(sa.text("select count(*) from etl.quarantine")).scalar_one()
    engine.dispose()
    assert n >= 4
    # a header the spec cannot read: refused before anything is written, one line, exit 2
    (folder / "patients.csv").write_text("who,what\n1,2\n", encoding="utf-8")
    r = cli("--db", duck_cdm_url, "load-records", "--mapping", "synth_site", str(folder))
    assert r.returncode == 2
    assert_one_line_error(r)
