"""The array path (etl.block: units of facts as columns, Sink.write(blocks=...)) writes exactly what the object
path writes: same CDM rows, same ids, same etl rows, same run report, on a first load, with input that sends
units back to the object path (duplicates, late and missing references, Medication references, newer
versions), and on a reload with changes."""

from __future__ import annotations

import contextlib
import copy
import json

import pytest
import sqlalchemy as sa
from fhir_builders import RXNORM, SNOMED, cc, patient_resources, write_ndjson
from test_fhir_load import fresh_engine, snapshot_without_runs

from l059_omop.db.api import init_db
from l059_omop.etl.block import split_units
from l059_omop.etl.fhir.load import load_fhir
from l059_omop.etl.fhir.parse import Task, run_task


def _synthetic(tmp_path):
    from l059_omop.synth import generate

    out = tmp_path / "in"
    generate(25, "fhir", out, seed=11, ndjson=True, workers=1)
    for extra in ("truth.csv", "truth_meta.json"):
        (out / extra).unlink()
    lines = (out / "MedicationAdministration.ndjson").read_text(encoding="utf-8").splitlines()
    cond = json.loads((out / "Condition.ndjson").read_text(encoding="utf-8").splitlines()[0])
    newer = dict(cond, meta={"versionId": "7"}, code=cc(SNOMED, "67841000119103"))
    late = patient_resources("late")
    orphan = {"resourceType": "Condition", "id": "orph", "subject": {"reference": "Patient/ghost"},
              "code": cc(SNOMED, "254632001"), "onsetDateTime": "2020-01-01"}
    med = {"resourceType": "MedicationAdministration", "id": "by-ref", "status": "completed",
           "subject": {"reference": f"Patient/{cond['subject']['reference'].split('/')[1]}"},
           "medicationReference": {"reference": "Medication/m9"}, "effectiveDateTime": "2023-01-05"}
    m9 = {"resourceType": "Medication", "id": "m9",
          "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "2555"}]}}
    # a later file: a repeated line, a newer version, facts before their patient, an orphan, a Medication ref
    write_ndjson(out / "zz_more.ndjson", [json.loads(lines[3]), newer, *late[1:], late[0], orphan, med, m9])
    return out


def _report(rep) -> dict:
    d = json.loads(rep.to_json())
    d.pop("run_id", None)
    return d


@pytest.mark.parametrize("dialect", ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_array_path_writes_what_the_object_path_writes(tmp_path, dialect):
    inputs = _synthetic(tmp_path)
    # the reload: one Observation a newer version, the file rewritten (every Observation's text changes, so
    # each is mapped again and its rows replaced); the other files unchanged
    changed = tmp_path / "changed"
    changed.mkdir()
    for f in inputs.glob("*.ndjson"):
        text = f.read_text(encoding="utf-8")
        if f.name == "Observation.ndjson":
            rows = [json.loads(x) for x in text.splitlines()]
            rows[5] = copy.deepcopy(rows[5]) | {"meta": {"versionId": "2"}, "effectiveDateTime": "2024-02-02"}
            text = "\n".join(json.dumps(x) for x in rows) + "\n"
        (changed / f.name).write_text(text, encoding="utf-8")
    with contextlib.ExitStack() as stack:
        snaps, reports = [], []
        for columnar in (True, False):
            engine = fresh_engine(tmp_path, f"c{columnar}.duckdb", dialect, stack)
            r1 = load_fhir(engine, [inputs], workers=1, batch_size=300, columnar=columnar)
            first = snapshot_without_runs(engine)
            r2 = load_fhir(engine, [changed], workers=1, batch_size=300, columnar=columnar)
            snaps.append((first, snapshot_without_runs(engine)))
            reports.append((_report(r1), _report(r2)))
            engine.dispose()
    (a1, a2), (b1, b2) = snaps
    assert a1 == b1 and a2 == b2
    assert reports[0] == reports[1]
    rep1 = reports[0][0]
    assert rep1["types"]["Condition"]["quarantined"] == {"unresolved reference": 1}  # the orphan
    # the repeated line (re-serialised: other text, so a changed record) and the newer Condition version
    # replaced the rows of their first appearance
    assert rep1["rows_deleted"] == {"condition_occurrence": 1, "drug_exposure": 1}
    obs = reports[0][1]["types"]["Observation"]
    assert obs["unchanged"] < obs["mapped"] and sum(reports[0][1]["rows_deleted"].values()) > 0
    assert a1 != a2


def test_blocks_round_trip_to_units(tmp_path):
    """split_units keeps every unit: the block's back as objects equal the originals, the others untouched."""
    p = write_ndjson(tmp_path / "x.ndjson", patient_resources("rt"))
    res = run_task(Task("ndjson", str(p), offset=0, length=p.stat().st_size, first_line=1))
    units = copy.deepcopy(res.units)
    block, rest = split_units(res.units, "urn:x")
    assert block is not None and rest and len(block) + len(rest) == len(units)
    back = {u.source_id: u for u in [*block.units(), *rest]}
    assert [back[u.source_id] for u in units] == units
    assert all(u.rows for u in rest)  # the Patient and Encounter keep their finished rows


@pytest.mark.parametrize("columnar", [True, False])
def test_implausible_dates_quarantined_on_either_path(tmp_path, columnar):
    """A date FHIR accepts but no clinical record holds (year 1700), and a days supply whose end date no
    database can store, quarantine their record with the reason; the patient's other records load."""
    rs = patient_resources("d1")
    old = {"resourceType": "Condition", "id": "c-1700", "subject": {"reference": "Patient/d1"},
           "code": cc(SNOMED, "254632001"), "onsetDateTime": "1700-01-01"}
    far = {"resourceType": "MedicationDispense", "id": "md-far", "status": "completed",
           "subject": {"reference": "Patient/d1"}, "whenHandedOver": "2022-01-01",
           "medicationCodeableConcept": cc(RXNORM, "40048"), "daysSupply": {"value": 10**7, "unit": "d"}}
    f = write_ndjson(tmp_path / "in" / "all.ndjson", [*rs, old, far])
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'x.duckdb'}")
    init_db(engine)
    rep = load_fhir(engine, [f], workers=1, columnar=columnar)
    with engine.connect() as c:
        reasons = dict(c.execute(sa.text("select resource_id, reason from etl.quarantine")).all())
        n_person = c.execute(sa.text("select count(*) from cdm.person")).scalar_one()
    assert reasons["c-1700"] == ("mapping failed: ValueError: implausible date: condition_occurrence."
                                 "condition_start_date = 1700-01-01 (outside 1800-2200)")
    assert reasons["md-far"].startswith("mapping failed: ")
    assert set(reasons) == {"c-1700", "md-far"} and n_person == 1
    assert rep.read == len(rs) + 2 and rep.quarantined == 2
    assert all(c.reconciles for c in rep.types.values())


@pytest.mark.parametrize("columnar", [True, False])
def test_same_record_twice_in_a_batch(tmp_path, columnar):
    """The same record twice in one batch: the copy is skipped ("duplicate in this input"); two versions: the
    newer is written, whichever comes first in the file, the older skipped the same way."""
    rs = patient_resources("t1")
    cond = {"resourceType": "Condition", "id": "c-twice", "subject": {"reference": "Patient/t1"},
            "code": cc(SNOMED, "254632001"), "onsetDateTime": "2021-01-01"}
    v2 = dict(cond, id="c-versions", meta={"versionId": "2"}, onsetDateTime="2021-02-02")
    v1 = dict(cond, id="c-versions", meta={"versionId": "1"}, onsetDateTime="2021-01-01")
    f = write_ndjson(tmp_path / "in" / "all.ndjson", [*rs, cond, v2, cond, v1])
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'x.duckdb'}")
    init_db(engine)
    rep = load_fhir(engine, [f], workers=1, columnar=columnar)
    with engine.connect() as c:
        starts = dict(c.execute(sa.text(
            "select m.source_id, o.condition_start_date from etl.source_id_map m join cdm.condition_occurrence o "
            "on o.condition_occurrence_id = m.omop_id and m.omop_table = 'condition_occurrence' "
            "where m.source_id in ('c-twice', 'c-versions')")).all())
    assert {k: str(v) for k, v in starts.items()} == {"c-twice": "2021-01-01", "c-versions": "2021-02-02"}
    skipped = rep.t("Condition").skipped
    # the copy, and the older version after the newer one (the builders' patient adds one entered-in-error)
    assert dict(skipped) == {"duplicate in this input": 2, "entered-in-error": 1}
    assert rep.t("Condition").reconciles
