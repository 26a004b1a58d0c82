"""The dispense rule (DESIGN §5, mappings/fhir/medication_rules): a MedicationRequest that a completed
MedicationDispense of the input carries out (``authorizingPrescription``) makes no row; the dispense is the
exposure. Whichever comes first in the input, and however far apart (batches written in between)."""

from __future__ import annotations

import contextlib

import pytest
import sqlalchemy as sa
from fhir_builders import RXNORM, cc, patient_resources, write_ndjson
from test_fhir_load import fresh_engine, snapshot_without_runs

from l059_omop.db.api import init_db
from l059_omop.etl.fhir.load import DISPENSED_RULE, load_fhir


def _dispense(pid: str) -> dict:
    return {"resourceType": "MedicationDispense", "id": f"{pid}-disp", "status": "completed",
            "subject": {"reference": f"Patient/{pid}"}, "whenHandedOver": "2020-04-02",
            "medicationCodeableConcept": cc(RXNORM, "40048"),
            "authorizingPrescription": [{"reference": f"MedicationRequest/{pid}-anlo"}],
            "daysSupply": {"value": 14, "unit": "d"}}


def _load(tmp_path, name: str, dispense_first: bool, batch_size: int, columnar: bool, dialect: str, stack):
    rs = patient_resources("q1")
    next(r for r in rs if r["id"] == "q1-anlo")["authoredOn"] = "2020-04"  # an imputed day, kept either way
    first, second = ([_dispense("q1")], rs) if dispense_first else (rs, [_dispense("q1")])
    d = tmp_path / name
    write_ndjson(d / "1.ndjson", first)
    write_ndjson(d / "2.ndjson", second)
    engine = fresh_engine(tmp_path, name + ".duckdb", dialect, stack)
    rep = load_fhir(engine, [d], workers=1, batch_size=batch_size, columnar=columnar)
    return engine, rep, d


def _exposures(engine) -> list[tuple]:
    with engine.connect() as c:
        return c.execute(sa.text(
            "select m.resource_type, m.source_id from etl.source_id_map m where m.omop_table = 'drug_exposure' "
            "and m.resource_type like 'Medication%' and m.source_id like 'q1-%' order by 1, 2")).all()


@pytest.mark.parametrize("dialect", ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("columnar", [True, False])
def test_order_written_before_its_dispense_is_replaced_by_it(tmp_path, columnar, dialect):
    """Batches of one resource: the order is written before the dispense is read, then taken back."""
    with contextlib.ExitStack() as stack:
        _check_orders(tmp_path, columnar, dialect, stack)


def _check_orders(tmp_path, columnar, dialect, stack):
    want_engine, want_rep, _ = _load(tmp_path, "want", True, 1, columnar, dialect, stack)
    got_engine, got_rep, d = _load(tmp_path, "got", False, 1, columnar, dialect, stack)
    expected = [("MedicationAdministration", "q1-carbo"), ("MedicationDispense", "q1-disp")]
    assert _exposures(want_engine) == expected
    assert _exposures(got_engine) == expected
    assert snapshot_without_runs(got_engine, False) == snapshot_without_runs(want_engine, False)
    assert +got_rep.imputed == +want_rep.imputed and want_rep.imputed["MedicationRequest.authoredOn: day imputed"] == 1
    for rep in (want_rep, got_rep):
        req = rep.types["MedicationRequest"]
        assert req.skipped[DISPENSED_RULE] == 1 and req.reconciles
    assert got_rep.rows_inserted["drug_exposure"] - got_rep.rows_deleted["drug_exposure"] == \
        want_rep.rows_inserted["drug_exposure"]
    # loading the same input again changes nothing
    again = load_fhir(got_engine, [d], workers=1, batch_size=1, columnar=columnar)
    assert snapshot_without_runs(got_engine, False) == snapshot_without_runs(want_engine, False)
    assert again.types["MedicationRequest"].skipped[DISPENSED_RULE] == 1 and again.types["MedicationRequest"].reconciles
    assert sum(again.rows_inserted.values()) == 0 and sum(again.rows_deleted.values()) == 0


@pytest.mark.parametrize("columnar", [True, False])
def test_new_version_with_no_row_shrinks_the_observation_period(tmp_path, columnar):
    """The earliest record of a person (a 2015 Condition) comes again as entered-in-error: its row goes, and
    the person's observation period starts at the next record (2020-01-10), not at the row deleted."""
    rs = patient_resources("p1")
    write_ndjson(tmp_path / "a" / "x.ndjson", rs)
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'x.duckdb'}")
    init_db(engine)
    load_fhir(engine, [tmp_path / "a"], workers=1, columnar=columnar)
    q = sa.text("select cast(observation_period_start_date as varchar), cast(observation_period_end_date as "
                "varchar) from cdm.observation_period")
    with engine.connect() as c:
        assert c.execute(q).all() == [("2015-06-01", "2021-03-15")]
    ra = next(r for r in rs if r["id"] == "p1-ra")
    ra["verificationStatus"] = cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "entered-in-error")
    ra["meta"] = {"versionId": "2"}
    write_ndjson(tmp_path / "b" / "x.ndjson", rs)
    rep = load_fhir(engine, [tmp_path / "b"], workers=1, columnar=columnar)
    assert rep.rows_deleted == {"condition_occurrence": 1}
    with engine.connect() as c:
        assert c.execute(q).all() == [("2020-01-10", "2021-03-15")]


@pytest.mark.parametrize("columnar", [True, False])
def test_quarantined_dispense_leaves_its_order_the_exposure(tmp_path, columnar):
    """A dispense whose days supply no database can store is quarantined: it carries nothing out, so the
    order it names is the exposure (with the rule applied, the patient would have none)."""
    bad = {**_dispense("q1"), "daysSupply": {"value": 10**7, "unit": "d"}}
    d = tmp_path / "in"
    write_ndjson(d / "1.ndjson", [*patient_resources("q1"), bad])
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'x.duckdb'}")
    init_db(engine)
    rep = load_fhir(engine, [d], workers=1, columnar=columnar)
    with engine.connect() as c:
        reasons = dict(c.execute(sa.text("select resource_id, reason from etl.quarantine")).all())
    assert set(reasons) == {"q1-disp"} and reasons["q1-disp"].startswith("mapping failed: ")
    assert _exposures(engine) == [("MedicationAdministration", "q1-carbo"), ("MedicationRequest", "q1-anlo")]
    assert rep.types["MedicationRequest"].skipped[DISPENSED_RULE] == 0


def _by_reference(pid: str) -> dict:
    d = _dispense(pid)
    del d["medicationCodeableConcept"]
    d["medicationReference"] = {"reference": "Medication/med-x"}
    return d


MED_X = {"resourceType": "Medication", "id": "med-x", "code": cc(RXNORM, "40048")}


@pytest.mark.parametrize("columnar", [True, False])
@pytest.mark.parametrize("medication", ["never", "after the order", "before"])
def test_dispense_waiting_for_its_medication(tmp_path, columnar, medication):
    """A dispense that names a Medication resource carries its order out only once that Medication is read:
    never read, the dispense is quarantined and the order is the exposure; read after the order was
    written, the order is taken back at the end; read first, the order is skipped as it comes."""
    files = {"never": [[*patient_resources("q1"), _by_reference("q1")]],
             "after the order": [[*patient_resources("q1"), _by_reference("q1")], [MED_X]],
             "before": [[MED_X], [*patient_resources("q1"), _by_reference("q1")]]}[medication]
    d = tmp_path / "in"
    for i, rs in enumerate(files, 1):
        write_ndjson(d / f"{i}.ndjson", rs)
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'x.duckdb'}")
    init_db(engine)
    rep = load_fhir(engine, [d], workers=1, batch_size=1, columnar=columnar)
    with engine.connect() as c:
        reasons = dict(c.execute(sa.text("select resource_id, reason from etl.quarantine")).all())
    if medication == "never":
        assert reasons == {"q1-disp": "unresolved reference: Medication/med-x"}
        assert _exposures(engine) == [("MedicationAdministration", "q1-carbo"), ("MedicationRequest", "q1-anlo")]
    else:
        assert reasons == {}
        assert _exposures(engine) == [("MedicationAdministration", "q1-carbo"), ("MedicationDispense", "q1-disp")]
        assert rep.types["MedicationRequest"].skipped[DISPENSED_RULE] == 1
    assert rep.check() == []
