"""Hand-made FHIR R4 test input written by this project (CONVENTIONS.md): an ES-SCLC patient with the study's
facts, as a Bundle. Not third-party data."""

from __future__ import annotations

import copy
import json
from pathlib import Path

L059 = "urn:l059:concept"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def cc(system: str, code: str, display: str | None = None) -> dict:
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return {"coding": [c]}


def patient_resources(pid: str = "p1", *, deceased: str | None = "2021-03-15", gender: str = "male",
                      birth: str = "1958-04-02", dose_mg: int = 12) -> list[dict]:
    """One patient's resources with relative references (Patient/pid)."""
    subj = {"reference": f"Patient/{pid}"}
    enc = {"reference": f"Encounter/{pid}-e1"}
    pat = {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": birth}
    if deceased:
        pat["deceasedDateTime"] = deceased
    out = [
        pat,
        {"resourceType": "Encounter", "id": f"{pid}-e1", "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "subject": subj, "period": {"start": "2020-01-10T09:00:00+08:00", "end": "2020-01-10T11:00:00+08:00"}},
        {"resourceType": "Condition", "id": f"{pid}-sclc", "subject": subj, "encounter": enc,
         "verificationStatus": cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"),
         "code": cc(SNOMED, "254632001", "Small cell carcinoma of lung"), "onsetDateTime": "2020-01-10"},
        {"resourceType": "Observation", "id": f"{pid}-stage", "status": "final", "subject": subj,
         "code": cc(L059, "VALG-ES"), "effectiveDateTime": "2020-01-12",
         "focus": [{"reference": f"Condition/{pid}-sclc"}]},
        {"resourceType": "Observation", "id": f"{pid}-inr", "status": "final", "subject": subj, "encounter": enc,
         "code": cc(LOINC, "6301-6"), "effectiveDateTime": "2020-01-10T08:00:00+08:00",
         "valueQuantity": {"value": 1.05, "unit": "{ratio}", "system": UCUM, "code": "{ratio}"},
         "referenceRange": [{"low": {"value": 0.8}, "high": {"value": 1.2}}]},
        {"resourceType": "Observation", "id": f"{pid}-ecog", "status": "final", "subject": subj,
         "code": cc(LOINC, "89247-1"), "effectiveDateTime": "2020-01-10", "valueInteger": 1},
        {"resourceType": "Observation", "id": f"{pid}-resp1", "status": "final", "subject": subj,
         "code": cc(LOINC, "88040-1"), "effectiveDateTime": "2020-05-01",
         "valueCodeableConcept": cc(L059, "RECIST-PR")},
        {"resourceType": "Observation", "id": f"{pid}-resp2", "status": "final", "subject": subj,
         "code": cc(LOINC, "97509-4"), "effectiveDateTime": "2020-09-01",
         "valueCodeableConcept": cc(SNOMED, "271299001", "Patient's condition worsened")},
        {"resourceType": "Observation", "id": f"{pid}-prelim", "status": "preliminary", "subject": subj,
         "code": cc(LOINC, "6301-6"), "effectiveDateTime": "2020-01-11",
         "valueQuantity": {"value": 1.5, "system": UCUM, "code": "{ratio}"}},
        {"resourceType": "MedicationAdministration", "id": f"{pid}-carbo", "status": "completed",
         "subject": subj, "medicationCodeableConcept": cc(RXNORM, "40048", "carboplatin"),
         "effectiveDateTime": "2020-01-15T10:00:00+08:00"},
        {"resourceType": "MedicationRequest", "id": f"{pid}-anlo", "status": "completed", "intent": "order",
         "subject": subj, "medicationReference": {"reference": "#m1"},
         "contained": [{"resourceType": "Medication", "id": "m1", "code": cc(L059, f"ANLOTINIB-{dose_mg}MG")}],
         "authoredOn": "2020-04-01",
         "dispenseRequest": {"expectedSupplyDuration": {"value": 14, "unit": "days", "system": UCUM, "code": "d"},
                             "quantity": {"value": 14}}},
        {"resourceType": "MedicationRequest", "id": f"{pid}-plan", "status": "active", "intent": "plan",
         "subject": subj, "medicationCodeableConcept": cc(L059, "ANLOTINIB-8MG"), "authoredOn": "2020-04-01"},
        {"resourceType": "Procedure", "id": f"{pid}-rt", "status": "completed", "subject": subj,
         "code": cc(L059, "RT-THORAX"), "performedPeriod": {"start": "2020-03-01", "end": "2020-03-20"}},
        {"resourceType": "AdverseEvent", "id": f"{pid}-ae1", "actuality": "actual", "subject": subj,
         "event": cc(SNOMED, "66857006", "Hemoptysis"), "date": "2020-06-01",
         "extension": [{"url": "http://hl7.org/fhir/us/ctcae/StructureDefinition/ctcae-grade",
                        "valueCodeableConcept": cc("http://hl7.org/fhir/us/ctcae/CodeSystem/ctcae-grade-code-system",
                                                   "3")}]},
        {"resourceType": "Condition", "id": f"{pid}-eie", "subject": subj,
         "verificationStatus": cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "entered-in-error"),
         "code": cc(SNOMED, "69896004"), "onsetDateTime": "2019-05"},
        {"resourceType": "Condition", "id": f"{pid}-ra", "subject": subj,
         "code": cc(SNOMED, "69896004", "Rheumatoid arthritis"), "onsetDateTime": "2015-06"},
    ]
    return out


def bundle(resources: list[dict], kind: str = "collection") -> dict:
    entries = []
    for r in resources:
        e = {"fullUrl": f"urn:uuid:{r['resourceType'].lower()}-{r['id']}", "resource": copy.deepcopy(r)}
        if kind == "transaction":
            e["request"] = {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}
        entries.append(e)
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def write_ndjson(path: Path, resources: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in resources), encoding="utf-8")
    return path
