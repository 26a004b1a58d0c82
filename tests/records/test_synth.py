"""synth --format records -> load-records: OMOP rows agree with truth.csv and with the FHIR path.

Both mapper paths must produce the same OMOP facts for the same patients (compared table by table on
clinical columns, keyed by the synth patient_id). Differences accepted, with reasons:
- ids, *_type_concept_id, *_source_value, *_source_concept_id: not compared (each path names its source);
- measurement_event_id of stage rows: the records path has no link from staging.csv to a diagnosis row;
  grade rows of adverse events do carry it (compared below by presence);
- condition_end_date: FHIR R4 AdverseEvent has no end date, the extracts do (not compared);
- against the synth omop format only: APTT range_low 25 where the lab reported no range (the omop format
  writes the lab's usual lower limit, which neither the extract nor FHIR states).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import sqlalchemy as sa

from l059_omop.db.api import init_db
from l059_omop.records import load_records
from l059_omop.resources import mappings_path
from l059_omop.synth import generate
from tests.records import compare

N, SEED = 60, 11
ANLOTINIB = {2000000001: "", 2000000002: "8", 2000000003: "10", 2000000004: "12"}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("synth")
    for fmt in ("records", "fhir"):
        generate(N, fmt, base / fmt, seed=SEED)
    return base


def _truth(folder: Path) -> list[dict]:
    with (folder / "truth.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_records_agree_with_truth(rec_engine, synth):
    folder = synth / "records"
    result = load_records(rec_engine, mappings_path("records", "synth_site.yaml"), [folder])
    rep = result.report
    assert rep.quarantined == 0 and rep.skipped == 0 and rep.check() == []
    assert result.ignored == [str(folder / "truth.csv")]
    key = compare.records_keys(folder, b"l059-omop:synth_site")
    with rec_engine.connect() as con:
        pid = {int(p): key[s] for p, s in con.execute(sa.text("select person_id, person_source_value from cdm.person"))}
        people = {pid[int(r[0])]: r[1:] for r in con.execute(sa.text(
            "select person_id, gender_concept_id, year_of_birth, month_of_birth, day_of_birth from cdm.person"))}
        first = {}
        for p, c, d in con.execute(sa.text(
                "select person_id, drug_concept_id, drug_exposure_start_date from cdm.drug_exposure "
                "where drug_concept_id between 2000000001 and 2000000004 order by drug_exposure_start_date, "
                "drug_concept_id")):
            first.setdefault(pid[int(p)], (str(d), int(c)))
        deaths = {pid[int(p)]: str(d) for p, d in con.execute(sa.text("select person_id, death_date from cdm.death"))}
        periods = {pid[int(p)]: (str(a), str(b)) for p, a, b in con.execute(sa.text(
            "select person_id, observation_period_start_date, observation_period_end_date from cdm.observation_period"))}
    truth = _truth(folder)
    assert len(people) == len(truth) == N
    for t in truth:
        p = t["patient_id"]
        y, m, d = (int(x) for x in t["birth_date"].split("-"))
        assert people[p] == ({"M": 8507, "F": 8532}[t["sex"]], y, m, d), p
        if t["index_date"]:
            assert first[p][0] == t["index_date"], p
            assert ANLOTINIB[first[p][1]] == t["starting_dose_mg"], p
        else:
            assert p not in first
        assert deaths.get(p, "") == t["death_date"], p
        assert periods[p] == (t["observation_start"], t["observation_end"]), p
    # the hospital number never lands in OMOP
    with rec_engine.connect() as con:
        psv = set(con.execute(sa.text("select person_source_value from cdm.person")).scalars())
    assert not psv & {t["hospital_id"] for t in truth}


def test_records_and_fhir_give_the_same_facts(rec_duckdb, synth, tmp_path):
    from l059_omop.etl import load_fhir

    load_records(rec_duckdb, mappings_path("records", "synth_site.yaml"), [synth / "records"])
    via_records = compare.facts(rec_duckdb, compare.records_keys(synth / "records", b"l059-omop:synth_site"))
    fhir_engine = sa.create_engine(f"duckdb:///{tmp_path / 'fhir.duckdb'}")
    init_db(fhir_engine)
    load_fhir(fhir_engine, [synth / "fhir"], workers=1)
    ids = {p: p for p in compare.truth_ids(synth / "fhir").values()}
    via_fhir = compare.facts(fhir_engine, ids)
    fhir_engine.dispose()
    assert compare.truth_ids(synth / "fhir") == compare.truth_ids(synth / "records")
    for table, counter in via_records.items():
        assert sum(counter.values()) > 0 or table == "procedure_occurrence", table
    assert compare.diff(via_records, via_fhir) == {}
    # AE grades point at their condition in both paths
    with rec_duckdb.connect() as con:
        n = con.execute(sa.text("select count(*) from cdm.measurement m join cdm.condition_occurrence c "
                                "on c.condition_occurrence_id = m.measurement_event_id "
                                "where m.measurement_concept_id = 2000000045")).scalar_one()
        total = con.execute(sa.text("select count(*) from cdm.measurement "
                                    "where measurement_concept_id = 2000000045")).scalar_one()
    assert n == total > 0


def test_records_and_synth_omop_differ_only_as_documented(rec_duckdb, synth, tmp_path):
    load_records(rec_duckdb, mappings_path("records", "synth_site.yaml"), [synth / "records"])
    via_records = compare.facts(rec_duckdb, compare.records_keys(synth / "records", b"l059-omop:synth_site"))
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'omop2.duckdb'}")
    init_db(engine)
    generate(N, "omop", tmp_path / "omop", seed=SEED, engine=engine)
    via_omop = compare.facts(engine, {p: p for p in compare.truth_ids(synth / "records").values()})
    engine.dispose()
    d = compare.diff(via_records, via_omop)
    assert set(d) <= {"measurement"}
    if d:
        only_rec, only_omop = d["measurement"]
        # (patient, concept, date, value, value concept, unit, range_low, range_high)
        assert all(r[1] == 3018677 and r[6] is None for r in only_rec)
        assert sorted((*r[:6], r[7]) for r in only_rec.elements()) == \
            sorted((*r[:6], r[7]) for r in only_omop.elements())
        assert all(r[6] == 25.0 for r in only_omop)
