"""load_records end to end on DuckDB and PostgreSQL: counts, quarantine, idempotency, encodings, Excel."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from l059_omop.errors import BadInput
from l059_omop.records import SpecError, load_records
from l059_omop.resources import mappings_path
from tests.records import extracts

TEMPLATE = mappings_path("records", "synth_site.yaml")
TABLES = ("person", "condition_occurrence", "drug_exposure", "measurement", "observation", "death",
          "visit_occurrence", "observation_period")


def spec_copy(tmp_path: Path, edit=None) -> Path:
    text = TEMPLATE.read_text(encoding="utf-8")
    if edit:
        text = edit(text)
    shutil.copytree(TEMPLATE.parent / "synth_site", tmp_path / "synth_site", dirs_exist_ok=True)
    out = tmp_path / "site.yaml"
    out.write_text(text, encoding="utf-8")
    return out


def counts(engine) -> dict[str, int]:
    with engine.connect() as con:
        return {t: con.execute(sa.text(f"select count(*) from cdm.{t}")).scalar_one() for t in TABLES}


def dump(engine) -> dict[str, list[tuple]]:
    out = {}
    with engine.connect() as con:
        for t in TABLES:
            rows = con.execute(sa.text(f"select * from cdm.{t}")).fetchall()
            out[t] = sorted(tuple(str(v) for v in r) for r in rows)
    return out


def test_load_with_broken_rows_gb18030_and_bom(rec_engine, tmp_path):
    spec = spec_copy(tmp_path, lambda t: t.replace('    file: "diagnoses*.csv"\n',
                                                   '    file: "diagnoses*.csv"\n    encoding: gb18030\n'))
    folder = extracts.write(tmp_path / "x", broken=True, encodings={"diagnoses.csv": "gb18030"})
    (folder / "truth.csv").write_text("not an extract\n")  # ignored: matches no source
    assert (folder / "patients.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    result = load_records(rec_engine, spec, [folder])
    rep = result.report
    assert rep.check() == [] and rep.read == rep.mapped + rep.quarantined + rep.skipped
    assert result.ignored == [str(folder / "truth.csv")]
    n = counts(rec_engine)
    exp = dict(extracts.EXPECTED)
    assert {t: n[t] for t in exp} == exp
    assert n["observation_period"] == 2  # the third patient has no dated record
    with rec_engine.connect() as con:
        q = con.execute(sa.text("select source_locator, reason, payload from etl.quarantine")).fetchall()
        names = con.execute(sa.text("select condition_source_value from cdm.condition_occurrence")).scalars().all()
        psv = con.execute(sa.text("select person_source_value from cdm.person")).scalars().all()
        drugs = dict(con.execute(sa.text("select drug_source_value, drug_concept_id from cdm.drug_exposure")).all())
        runs = con.execute(sa.text("select status, counts_json from etl.load_run")).all()
        etl_text = " ".join(str(v) for t in ("source_id_map", "source_resource", "quarantine")
                            for r in con.execute(sa.text(f"select * from etl.{t}")) for v in r)
    got = {Path(loc.split(":row")[0]).name: reason.split(":")[0] for loc, reason, _ in q}
    assert got == extracts.BROKEN_REASONS
    assert "M80410/3 C34.1" in names  # read from the GB18030 file
    for hid, name in zip(extracts.HOSPITAL_IDS, extracts.NAMES, strict=True):
        assert hid not in psv and name not in psv
        assert hid not in etl_text and name not in etl_text  # not even in the bookkeeping
        assert all(hid not in (p or "") for _, _, p in q)
    assert drugs == {"安罗替尼胶囊 12mg": 2000000004, "XL01XA02-KB": 1344905, "XL01CB01-YTBG": 1350504,
                     "XL01FF05-ATLZ": 42629079, "盐酸安罗替尼胶囊": drugs["盐酸安罗替尼胶囊"]}
    with rec_engine.connect() as con:
        anl = sorted(con.execute(sa.text("select drug_concept_id, days_supply, drug_exposure_end_date from "
                                         "cdm.drug_exposure where drug_source_value = '盐酸安罗替尼胶囊'")).all())
        labs = sorted(con.execute(sa.text("select value_as_number, unit_concept_id, range_low, range_high from "
                                          "cdm.measurement where measurement_concept_id in (3022217, 3018677)")).all(),
                      key=str)
    # ingredient refined by '10mg' in the dose text; no strength -> the ingredient; end = start + 14 - 1
    assert [(c, d, str(e)) for c, d, e in anl] == [(2000000001, 14, "2022-06-14"), (2000000003, 14, "2022-05-05")]
    assert [tuple(float(x) if x is not None else None for x in r) for r in labs] == sorted([
        (1.05, 8523.0, 0.8, 1.2), (32.5, 8555.0, 25.0, 37.0), (41.0, 8555.0, 25.0, 40.0), (39.0, 8555.0, None, None)],
        key=str)
    assert runs[0][0] == "loaded with quarantine"


def test_reload_is_idempotent(rec_engine, tmp_path):
    spec = spec_copy(tmp_path)
    folder = extracts.write(tmp_path / "x")
    first = load_records(rec_engine, spec, [folder], chunk_rows=2)
    before = dump(rec_engine)
    second = load_records(rec_engine, spec, [folder])
    assert dump(rec_engine) == before
    assert second.report.mapped == first.report.mapped
    assert sum(c.unchanged for c in second.report.types.values()) == second.report.mapped
    assert not second.report.rows_inserted


def test_xlsx_gives_the_same_rows_as_csv(rec_duckdb, tmp_path):
    from l059_omop.db.api import init_db

    rec_engine = sa.create_engine(f"duckdb:///{tmp_path / 'xlsx.duckdb'}")
    init_db(rec_engine)
    xspec = spec_copy(tmp_path / "xs", lambda t: re.sub(r'file: "([^"]+)\*\.csv"', r"sheet: \1", t))
    book = extracts.write_xlsx(tmp_path / "export.xlsx")
    rep = load_records(rec_engine, xspec, [book]).report
    assert rep.quarantined == 0 and rep.check() == []
    load_records(rec_duckdb, spec_copy(tmp_path / "cs"), [extracts.write(tmp_path / "x")])
    assert dump(rec_duckdb) == dump(rec_engine)
    rec_engine.dispose()


def test_unknown_column_fails_before_loading(rec_duckdb, tmp_path):
    rec_engine = rec_duckdb
    spec = spec_copy(tmp_path)
    folder = extracts.write(tmp_path / "x")
    df = pd.read_csv(folder / "lab_results.csv", dtype=str, encoding="utf-8-sig").rename(columns={"ref_range": "reference"})
    df.to_csv(folder / "lab_results.csv", index=False, encoding="utf-8-sig")
    line = next(i for i, t in enumerate(spec.read_text(encoding="utf-8").splitlines(), 1) if "range_low" in t)
    with pytest.raises(SpecError) as err:
        load_records(rec_engine, spec, [folder])
    assert str(err.value).startswith(f"{spec}:{line}:") and "'ref_range' is not in" in str(err.value)
    assert sum(counts(rec_engine).values()) == 0
    with rec_engine.connect() as con:
        assert con.execute(sa.text("select count(*) from etl.load_run")).scalar_one() == 0


def test_wrong_encoding_quarantines_rows_and_a_bad_header_fails(tmp_path, rec_duckdb):
    folder = extracts.write(tmp_path / "x", encodings={"diagnoses.csv": "gb18030"})  # the spec says UTF-8
    rep = load_records(rec_duckdb, spec_copy(tmp_path), [folder]).report
    assert rep.types["diagnoses"].quarantined == {"bytes not valid in encoding utf-8-sig": 3}
    assert rep.check() == []
    (folder / "diagnoses.csv").write_bytes("诊断,diag_id\n".encode("gb18030"))
    with pytest.raises(SpecError, match=r"sources.diagnoses.encoding: the header of .* is not valid utf-8-sig"):
        load_records(rec_duckdb, spec_copy(tmp_path), [folder])


def test_undecodable_row_is_quarantined(tmp_path, rec_duckdb):
    folder = extracts.write(tmp_path / "x")
    with (folder / "diagnoses.csv").open("ab") as fh:
        fh.write(b"ZY000123-010,ZY000123,2022-03-01,C34.901," + b"\xc3\x28\xff,x\r\n")
    rep = load_records(rec_duckdb, spec_copy(tmp_path), [folder]).report
    t = rep.types["diagnoses"]
    assert t.quarantined["bytes not valid in encoding utf-8-sig"] == 1 and t.mapped == 3
    assert rep.check() == []


def test_explicit_file_matching_no_source(tmp_path, rec_duckdb):
    engine = rec_duckdb
    stray = tmp_path / "other.csv"
    stray.write_text("a,b\n1,2\n")
    with pytest.raises(BadInput, match="matches no source"):
        load_records(engine, spec_copy(tmp_path), [stray])


def test_changed_row_is_replaced_with_the_same_id(rec_engine, tmp_path):
    spec = spec_copy(tmp_path)
    folder = extracts.write(tmp_path / "x")
    load_records(rec_engine, spec, [folder])
    q = sa.text("select measurement_id, value_as_number from cdm.measurement where measurement_concept_id = 3022217")
    with rec_engine.connect() as con:
        (mid, value), = con.execute(q).all()
    assert float(value) == 1.05
    path = folder / "lab_results.csv"
    path.write_text(path.read_text(encoding="utf-8-sig").replace(",1.05,", ",1.6,"), encoding="utf-8-sig")
    rep = load_records(rec_engine, spec, [folder]).report
    t = rep.types["lab_results"]
    assert (t.mapped, t.unchanged) == (4, 3) and rep.rows_deleted["measurement"] == 1
    with rec_engine.connect() as con:
        assert [(i, float(v)) for i, v in con.execute(q).all()] == [(mid, 1.6)]
    assert counts(rec_engine)["measurement"] == extracts.EXPECTED["measurement"]


def test_strict_writes_nothing(rec_duckdb, tmp_path):
    from l059_omop.etl.sink import StrictQuarantine

    folder = extracts.write(tmp_path / "x", broken=True)
    with pytest.raises(StrictQuarantine, match="nothing was written"):
        load_records(rec_duckdb, spec_copy(tmp_path), [folder], strict=True)
    assert sum(counts(rec_duckdb).values()) == 0
    with rec_duckdb.connect() as con:
        assert con.execute(sa.text("select status from etl.load_run")).scalar_one() == "failed-strict"


def test_same_key_in_two_chunks_of_a_first_load(rec_duckdb, tmp_path):
    folder = extracts.write(tmp_path / "x")
    path = folder / "lab_results.csv"
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    path.write_text("\n".join([*lines, lines[1].replace(",1.05,", ",1.07,")]) + "\n", encoding="utf-8-sig")
    rep = load_records(rec_duckdb, spec_copy(tmp_path), [folder], chunk_rows=2).report
    t = rep.types["lab_results"]
    assert t.read == 5 and t.mapped == 5 and rep.check() == []
    with rec_duckdb.connect() as con:
        assert con.execute(sa.text("select value_as_number from cdm.measurement "
                                   "where measurement_concept_id = 3022217")).scalars().all() == [1.07]


MINI = """l059_records_mapping: 1
site: mini
patient_id: pid
sources:
  people:
    file: "people.csv"
    key: [pid]
    outputs:
      person:
        table: person
        fields:
          year_of_birth: {column: born, format: "%Y", part: year}
  labs:
    file: "loinc.csv"
    encoding: gb18030
    key: [id]
    outputs:
      lab:
        table: measurement
        fields:
          measurement_concept_id: {column: code, vocabulary: LOINC}
          measurement_date: {column: day, format: "%d.%m.%Y"}
          value_as_number: {column: value}
"""


def test_vocabulary_lookup_and_unmapped_codes(rec_duckdb, tmp_path):
    spec = tmp_path / "mini.yaml"
    spec.write_text(MINI, encoding="utf-8")
    (tmp_path / "people.csv").write_text("pid,born\nA1,1950\n", encoding="utf-8")
    (tmp_path / "loinc.csv").write_bytes("id,pid,code,day,value,名称\n1,A1,6301-6,05.01.2023,1.1,国际标准化比值\n"
                                         "2,A1,99999-9,06.01.2023,7,未知\n".encode("gb18030"))
    rep = load_records(rec_duckdb, spec, [tmp_path / "people.csv", tmp_path / "loinc.csv"]).report
    assert rep.quarantined == 0 and rep.check() == []
    assert dict(rep.unmapped) == {"LOINC|99999-9": 1}
    with rec_duckdb.connect() as con:
        rows = sorted(con.execute(sa.text(
            "select measurement_concept_id, measurement_source_concept_id, measurement_source_value, "
            "measurement_date, value_as_number, measurement_type_concept_id from cdm.measurement")).all())
        year = con.execute(sa.text("select year_of_birth from cdm.person")).scalar_one()
    assert [(a, b, c, str(d), float(v), t) for a, b, c, d, v, t in rows] == [
        (0, 0, "99999-9", "2023-01-06", 7.0, 32817), (3022217, 3022217, "6301-6", "2023-01-05", 1.1, 32817)]
    assert year == 1950


def test_changed_row_now_pointing_at_an_unknown_patient(rec_engine, tmp_path):
    """Found by the records fuzzer: a batch whose only changed record is quarantined wrote nothing and crashed.
    The new version is quarantined with the reason; the old version's rows go (the source withdrew them)."""
    spec = spec_copy(tmp_path)
    folder = extracts.write(tmp_path / "x")
    load_records(rec_engine, spec, [folder])
    path = folder / "diagnoses.csv"
    text = path.read_text(encoding="utf-8-sig")
    assert "ZY000456-002,ZY000456," in text
    path.write_text(text.replace("ZY000456-002,ZY000456,", "ZY000456-002,ZY_UNKNOWN,"), encoding="utf-8-sig")
    before = counts(rec_engine)
    rep = load_records(rec_engine, spec, [folder]).report
    assert rep.check() == [] and rep.read == rep.mapped + rep.quarantined + rep.skipped
    assert rep.quarantined == 1
    with rec_engine.connect() as con:
        (locator, reason), = con.execute(sa.text("select source_locator, reason from etl.quarantine")).all()
    assert locator.endswith("diagnoses.csv:row 4") and reason.startswith("unresolved reference: Patient/")
    assert sum(counts(rec_engine).values()) < sum(before.values())


def test_duckdb_etl_keys_stay_unique_without_primary_keys(rec_duckdb, tmp_path):
    """DuckDB's source_id_map / source_resource have no primary key (db.layout): the sink keeps them unique.
    The same key in two files of one source on a first load is one record (the second time unchanged); a
    second load changes nothing."""
    with rec_duckdb.connect() as con:
        kinds = con.execute(sa.text("select table_name, constraint_type from information_schema.table_constraints "
                                    "where table_schema = 'etl' and constraint_type = 'PRIMARY KEY'")).all()
    assert sorted(t for t, _ in kinds) == ["load_run"]
    folder = extracts.write(tmp_path / "x")
    lines = (folder / "lab_results.csv").read_text(encoding="utf-8-sig").splitlines()
    (folder / "lab_results_2.csv").write_text("\n".join([lines[0], lines[1]]) + "\n", encoding="utf-8-sig")
    spec = spec_copy(tmp_path)
    rep = load_records(rec_duckdb, spec, [folder]).report
    assert rep.check() == [] and rep.types["lab_results"].read == 5 and rep.types["lab_results"].unchanged == 1
    before = dump(rec_duckdb)
    again = load_records(rec_duckdb, spec, [folder]).report
    assert not again.rows_inserted and dump(rec_duckdb) == before
    with rec_duckdb.connect() as con:
        for table, key in (("source_resource", "resource_type, source_id"),
                           ("source_id_map", "resource_type, source_id, omop_table, row_key")):
            assert con.execute(sa.text(f"select count(*) - count(distinct ({key})) from etl.{table}")).scalar_one() == 0


def test_same_patient_twice_in_one_chunk_is_skipped(rec_engine, tmp_path):
    """Patients keyed by another column than the hospital id: two rows of one patient make one person."""
    spec = spec_copy(tmp_path, lambda t: t.replace("    file: \"patients*.csv\"\n    key: [hospital_id]\n",
                                                   "    file: \"patients*.csv\"\n    key: [hospital_id, sex]\n"))
    folder = extracts.write(tmp_path / "x")
    path = folder / "patients.csv"
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    sex = "女" if ",男," in lines[1] else "男"
    other = lines[1].replace(",男,", f",{sex},") if ",男," in lines[1] else lines[1].replace(",女,", f",{sex},")
    assert other != lines[1]
    path.write_text("\n".join([*lines, other]) + "\n", encoding="utf-8-sig")
    rep = load_records(rec_engine, spec, [folder]).report
    assert rep.check() == [] and rep.read == rep.mapped + rep.quarantined + rep.skipped
    assert dict(rep.types["Patient"].skipped) == {"duplicate in this input": 1}
    assert counts(rec_engine)["person"] == extracts.EXPECTED["person"]


def test_duplicate_keys_check_names_the_table(rec_duckdb):
    from l059_omop.etl.sink import Sink

    sink = Sink(rec_duckdb, source_system="records:test", kind="records")
    sink.start()
    row = {"source_system": "records:test", "resource_type": "x", "source_id": "1", "content_sha256": "h",
           "run_id": sink.run_id}
    with sink._tx() as con:
        for _ in range(2):
            con.execute(sink._t("source_resource").insert().values(**row))
    with sink._tx() as con:
        problem = sink._duplicate_keys(con)
    assert problem and problem.startswith("etl.source_resource: 1 key(s) written twice")
    sink.abort(None)


def test_hash_set():
    import numpy as np

    from l059_omop.etl.hashset import HashSet, key_hashes

    s = HashSet()
    for i in range(12):
        s.add(key_hashes([f"k{i}-{j}" for j in range(100)]))
    assert s.has_any(key_hashes(["zz", "k7-42"])) and not s.has_any(key_hashes(["zz", "k12-1"]))
    assert not HashSet().has_any(np.array([1], dtype=np.uint64))


def test_duckdb_ids_equal_the_python_hash(rec_duckdb):
    """The frame path hashes ids in DuckDB (vectorised sha256): the same values as etl.ids.hashed_id, and
    an id taken in etl.source_id_map is reported so."""
    import numpy as np

    from l059_omop.etl.ids import hashed_id
    from l059_omop.etl.sink import Sink

    sink = Sink(rec_duckdb, source_system="records:t", kind="records")
    sink.start()
    sids = np.array(["a", "患者-1", "", "x" * 300, "ü|#1"], dtype=object)
    want = [hashed_id(f"records:t|lab|{s}|lab#2") for s in sids]
    with sink._tx() as con:
        con.execute(sink._t("source_id_map").insert().values(
            source_system="records:t", resource_type="lab", source_id="z", row_key="lab", omop_table="measurement",
            omop_id=want[1]))
        ids, taken = sink._duckdb_candidates("measurement", "records:t|lab|", sids, "|lab#2")
    assert ids.tolist() == want and taken.tolist() == [False, True, False, False, False]
    sink.abort(None)


def test_duckdb_settings_restored_after_a_load(rec_duckdb, tmp_path):
    """A DuckDB load raises the checkpoint threshold, uses a thread less than cores and caps DuckDB's default
    memory limit (a limit someone set is left alone); all come back exactly."""
    from l059_omop.db import bulk

    def settings():
        with rec_duckdb.connect() as con:
            return con.execute(sa.text("select current_setting('checkpoint_threshold'), "
                                       "current_setting('threads'), current_setting('memory_limit')")).one()

    before = settings()
    with bulk.duckdb_load_settings(rec_duckdb, threads=1):
        during = settings()
    assert bulk._size_bytes(during[2]) == pytest.approx(bulk._size_bytes(bulk.DUCKDB_LOAD_MEMORY), rel=0.05)
    assert bulk._size_bytes(during[0]) == pytest.approx(bulk._size_bytes(bulk.DUCKDB_LOAD_CHECKPOINT), rel=0.05)
    assert during[1] == 1 and settings() == before
    load_records(rec_duckdb, spec_copy(tmp_path), [extracts.write(tmp_path / "x")])
    assert settings() == before
    with rec_duckdb.connect() as con:  # a limit someone set is kept as it is
        con.execute(sa.text("set global memory_limit = '100MB'"))
        con.commit()
    low = settings()
    with bulk.duckdb_load_settings(rec_duckdb):
        assert settings()[2] == low[2]
    assert settings() == low
    assert bulk._size_bytes("18.6 GiB") == pytest.approx(18.6 * 2**30) and bulk._size_bytes("x") is None


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_first_probe_ids_and_typed_frames():
    """The loader hashes first-probe ids and types frames on the mapping thread: the same ids as
    etl.ids.hashed_id, the same column types as the sink's own typing (which then passes them through)."""
    import numpy as np

    from l059_omop.etl.ids import hashed_id, key_text
    from l059_omop.etl.sink import hashed_ids, typed_frame

    sids = ["a", "患者", ""]
    assert hashed_ids("records:s", "labs", sids, "lab").tolist() == [
        hashed_id(key_text("records:s", "labs", s, "lab")) for s in sids]
    df = pd.DataFrame({"value_as_number": [1.5, None, 2.0], "measurement_concept_id": [3022217.0, np.nan, 0.0],
                       "measurement_date": pd.to_datetime(["2020-01-01", None, "2021-02-03"]),
                       "unit_source_value": ["mm", None, "s"], "quantity_big": [1.0, 2.0, 3.0]})
    once = typed_frame("measurement", df)
    assert list(once.columns) == ["measurement_concept_id", "measurement_date", "value_as_number",
                                  "unit_source_value"]
    assert str(once["measurement_concept_id"].dtype) == "Int64"
    assert once["measurement_concept_id"].tolist()[0] == 3022217 and once["measurement_concept_id"].isna().tolist() == [
        False, True, False]
    twice = typed_frame("measurement", once)
    pd.testing.assert_frame_equal(once, twice)
    with pytest.raises(TypeError):  # beyond exact float integers: pandas' checked conversion, as before
        typed_frame("measurement", pd.DataFrame({"measurement_concept_id": [1e300]}))
