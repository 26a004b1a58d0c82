"""Rows of CONCEPT_ADDED.csv (adverse events the synthetic generator writes, liver metastasis): lookups,
self maps and FHIR."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from l059_omop.etl.fhir.load import load_fhir
from l059_omop.resources import data_path
from l059_omop.synth.codes import codes
from l059_omop.vocab import Vocabulary
from l059_omop.vocab.bundled import bundled_vocabulary, read_athena

ADDED = {("SNOMED", "38341003"): 316866, ("SNOMED", "40930008"): 140673,
         ("SNOMED", "94381002"): 198700}  # 198700: fourth pass, liver metastasis (SOURCES.md)
SNOMED = "http://snomed.info/sct"


def test_added_rows_are_standard_conditions():
    added = read_athena(data_path("vocabulary", "CONCEPT_ADDED.csv"), "concept")
    assert set(zip(added["vocabulary_id"], added["concept_code"], strict=True)) == set(ADDED)
    assert set(added["standard_concept"]) == {"S"} and set(added["domain_id"]) == {"Condition"}
    frames = bundled_vocabulary("test")
    concept = frames["concept"]
    assert concept["concept_id"].is_unique
    rel = frames["concept_relationship"]
    for cid in ADDED.values():
        assert ((rel["concept_id_1"] == cid) & (rel["concept_id_2"] == cid)
                & (rel["relationship_id"] == "Maps to")).sum() == 1
        anc = frames["concept_ancestor"]
        assert ((anc["ancestor_concept_id"] == cid) & (anc["descendant_concept_id"] == cid)).sum() == 1


def test_lookup_maps_snomed_codes(shared_engine):
    v = Vocabulary(shared_engine)
    for (vocab, code), cid in ADDED.items():
        m = v.lookup(vocab, code)
        assert (m.source_concept_id, m.standard_concept_id, m.domain_id) == (cid, cid, "Condition")
    assert not v.misses


def test_generator_writes_the_added_ids():
    ae = codes()["adverse_events"]
    assert ae["hypertension"]["concept_id"] == 316866
    assert ae["hypothyroidism"]["concept_id"] == 140673


@pytest.mark.parametrize("code,cid", [("38341003", 316866), ("40930008", 140673)])
def test_fhir_adverse_event_gets_the_concept(cdm_engine, tmp_path, code, cid):
    subj = {"reference": "Patient/p1"}
    resources = [
        {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1960-01-01"},
        {"resourceType": "AdverseEvent", "id": "ae1", "actuality": "actual", "subject": subj,
         "event": {"coding": [{"system": SNOMED, "code": code}]}, "date": "2021-06-01",
         "extension": [{"url": "http://hl7.org/fhir/us/ctcae/StructureDefinition/ctcae-grade",
                        "valueCodeableConcept": {"coding": [{
                            "system": "http://hl7.org/fhir/us/ctcae/CodeSystem/ctcae-grade-code-system",
                            "code": "2"}]}}]},
    ]
    f = tmp_path / "b.json"
    f.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                             "entry": [{"resource": r} for r in resources]}), encoding="utf-8")
    load_fhir(cdm_engine, [f], workers=1)
    with cdm_engine.connect() as con:
        rows = con.execute(sa.text("select condition_concept_id, condition_source_value from cdm.condition_occurrence"
                                   )).all()
    assert [(r[0], r[1]) for r in rows] == [(cid, code)]
