"""FHIR R4 resources for synthetic patients (mCODE-style profiles; valid under fhir.resources R4B).

One Bundle (type collection) per patient in ``DIR/bundles/<block>/<patient_id>.json`` (block = 1,000
patients), or with ``ndjson`` bulk-export files ``DIR/<ResourceType>.ndjson``. docs/synth.md lists every
resource, code system, code and value, for the FHIR loader.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path

from l059_omop.synth.codes import codes
from l059_omop.synth.model import (
    AE,
    CONDITION,
    DRUG,
    ECOG,
    LAB,
    RADIOTHERAPY,
    RESPONSE,
    SOD,
    STAGE,
    VISIT,
    Patient,
)
from l059_omop.synth.truth import Truth

BASE = "http://example.org/l059/fhir"
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
LOINC, SNOMED, UCUM, LOCAL = "http://loinc.org", "http://snomed.info/sct", "http://unitsofmeasure.org", "urn:l059:concept"
CTCAE_GRADE_EXT = "http://hl7.org/fhir/us/ctcae/StructureDefinition/ctcae-grade"
CTCAE_GRADE_SYSTEM = "http://hl7.org/fhir/us/ctcae/CodeSystem/ctcae-grade-code-system"
HOSPITAL_ID_SYSTEM = "urn:l059:hospital-patient-id"
COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VERIF = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COND_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
AE_OUTCOME = "http://terminology.hl7.org/CodeSystem/adverse-event-outcome"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
RESOURCE_TYPES = ("Patient", "Condition", "Observation", "MedicationAdministration", "MedicationRequest",
                  "MedicationDispense", "Procedure", "AdverseEvent", "Encounter")


def _coding(k: dict) -> dict:
    out = {"system": k["system"], "code": k["code"], "display": k["name"]}
    return out


def _cc(k: dict) -> dict:
    if not k.get("system"):
        return {"text": k["name"]}
    return {"coding": [_coding(k)], "text": k["name"]}


def _d(d: date) -> str:
    return d.isoformat()


def _num(v: float):
    return int(v) if float(v).is_integer() else v


_HOLE = "\ue000"  # a private-use character json.dumps leaves as it is


class _Template:
    """A resource serialised once with placeholders; ``render`` fills them (same bytes as json.dumps)."""

    def __init__(self, resource: dict) -> None:
        self.parts = _dumps(resource).split(_HOLE)

    def render(self, *values: str) -> str:
        parts = self.parts
        out = [parts[0]]
        for i, v in enumerate(values):
            out.append(v)
            out.append(parts[2 * i + 2])
        return "".join(out)


def _dumps(r: dict) -> str:
    return json.dumps(r, ensure_ascii=False, separators=(",", ":"))


def _h(name: str) -> str:
    return f"{_HOLE}{name}{_HOLE}"


_TEMPLATES: dict[tuple, _Template] = {}


def _administration(k: dict) -> _Template:
    key = ("a", k["code"])
    if key not in _TEMPLATES:
        r: dict = {"resourceType": "MedicationAdministration", "id": _h("id")}
        if k["class"] in ("platinum", "etoposide", "pd1", "antiangiogenic"):
            r["meta"] = {"profile": [MCODE + "mcode-cancer-related-medication-administration"]}
        r.update({"status": "completed", "medicationCodeableConcept": _cc(k),
                  "subject": {"reference": f"Patient/{_h('pid')}"}, "effectiveDateTime": _h("date"),
                  "dosage": {"text": k.get("dose", ""), "route": {"text": "intravenous"}}})
        _TEMPLATES[key] = _Template(r)
    return _TEMPLATES[key]


class _Raw(str):
    """An already serialised resource (kept as text in the resource list)."""


def patient_resources(p: Patient) -> list[dict]:
    """The FHIR resources of one patient, in a fixed order (dicts, or ``_Raw`` JSON text)."""
    c = codes()
    pid = p.patient_id
    subject = {"reference": f"Patient/{pid}"}
    res: list[dict] = []
    n = {"c": 0, "o": 0, "m": 0, "r": 0, "p": 0, "a": 0, "e": 0, "v": 0}

    def rid(k: str) -> str:
        n[k] += 1
        return f"{pid}-{k}{n[k]}"

    pat: dict = {
        "resourceType": "Patient", "id": pid,
        "meta": {"profile": [MCODE + "mcode-cancer-patient"]},
        "identifier": [{"system": HOSPITAL_ID_SYSTEM, "value": p.hospital_id}],
        "name": [{"text": p.name}],
        "telecom": [{"system": "phone", "value": p.phone}],
        "gender": "male" if p.sex == "M" else "female",
        "birthDate": _d(p.birth_date),
    }
    if p.death_date is not None:
        pat["deceasedDateTime"] = _d(p.death_date)
    res.append(pat)
    primary_ref: str | None = None
    for e in p.sorted_events():
        if e.kind == CONDITION:
            k = c["conditions"][e.code]
            cancer = e.code.startswith("sclc_") or e.code in ("lung_cancer_nos", "nsclc")
            r = {"resourceType": "Condition", "id": rid("c")}
            if cancer:
                r["meta"] = {"profile": [MCODE + "mcode-primary-cancer-condition"]}
            r.update({
                "clinicalStatus": {"coding": [{"system": COND_CLINICAL, "code": "active"}]},
                "verificationStatus": {"coding": [{"system": COND_VERIF, "code": "confirmed"}]},
                "category": [{"coding": [{"system": COND_CATEGORY, "code": "problem-list-item"}]}],
                "code": _cc(k), "subject": subject, "onsetDateTime": _d(e.start), "recordedDate": _d(e.start),
            })
            if cancer and primary_ref is None:
                primary_ref = f"Condition/{r['id']}"
            res.append(r)
        elif e.kind == STAGE:
            k = c["stages"][e.code]
            sg = c["measurements"]["stage_group"]
            r = {"resourceType": "Observation", "id": rid("o"),
                 "meta": {"profile": [MCODE + "mcode-cancer-stage-group"]}, "status": "final",
                 "category": [{"coding": [{"system": OBS_CATEGORY, "code": "survey"}]}],
                 "code": _cc(sg), "subject": subject, "effectiveDateTime": _d(e.start),
                 "valueCodeableConcept": _cc(k)}
            if primary_ref:
                r["focus"] = [{"reference": primary_ref}]
            res.append(r)
        elif e.kind == ECOG:
            k = c["measurements"]["ecog"]
            res.append({"resourceType": "Observation", "id": rid("o"),
                        "meta": {"profile": [MCODE + "mcode-ecog-performance-status"]}, "status": "final",
                        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "survey"}]}],
                        "code": _cc(k), "subject": subject, "effectiveDateTime": _d(e.start),
                        "valueInteger": int(e.value or 0)})
        elif e.kind in (LAB, SOD):
            k = c["measurements"][e.code]
            u = c["units"][k["unit"]]
            r = {"resourceType": "Observation", "id": rid("o"), "status": "final",
                 "category": [{"coding": [{"system": OBS_CATEGORY, "code": "laboratory" if e.kind == LAB else "imaging"}]}],
                 "code": _cc(k), "subject": subject, "effectiveDateTime": _d(e.start),
                 "valueQuantity": {"value": _num(e.value), "unit": u["ucum"], "system": UCUM, "code": u["ucum"]}}
            if e.kind == LAB:
                rr: dict = {}
                if k.get("range_low") is not None:
                    rr["low"] = {"value": _num(k["range_low"]), "unit": u["ucum"], "system": UCUM, "code": u["ucum"]}
                if e.range_high is not None:
                    rr["high"] = {"value": _num(e.range_high), "unit": u["ucum"], "system": UCUM, "code": u["ucum"]}
                if "high" in rr:
                    r["referenceRange"] = [rr]
            res.append(r)
        elif e.kind == RESPONSE:
            k = c["measurements"]["response"]
            v = c["responses"][e.value_code]
            r = {"resourceType": "Observation", "id": rid("o"),
                 "meta": {"profile": [MCODE + "mcode-cancer-disease-status"]}, "status": "final",
                 "category": [{"coding": [{"system": OBS_CATEGORY, "code": "imaging"}]}],
                 "code": _cc(k), "subject": subject, "effectiveDateTime": _d(e.start),
                 "valueCodeableConcept": {"coding": [
                     {"system": LOCAL, "code": v["code"], "display": v["name"]},
                     {"system": SNOMED, "code": v["mcode"], "display": v["mcode_display"]}], "text": e.value_code}}
            if primary_ref:
                r["focus"] = [{"reference": primary_ref}]
            res.append(r)
        elif e.kind == DRUG:
            k = c["drugs"][e.code]
            med = _cc(k)
            if k["route"] == "oral":
                req_id = rid("r")
                days = e.days_supply or 1
                qty = e.quantity or days
                strength = k.get("strength")
                sig = (f"{strength} mg qd d1-14 q3w" if strength else "qd d1-14 q3w") if k["class"] == "anlotinib" \
                    else f"{k.get('dose', '')} qd"
                dosage: dict = {"text": sig}
                if strength:
                    dosage["doseAndRate"] = [{"doseQuantity": {"value": strength, "unit": "mg", "system": UCUM,
                                                               "code": "mg"}}]
                res.append({"resourceType": "MedicationRequest", "id": req_id,
                            "meta": {"profile": [MCODE + "mcode-cancer-related-medication-request"]}
                            if k["class"] in ("anlotinib", "antiangiogenic") else {},
                            "status": "completed", "intent": "order", "medicationCodeableConcept": med,
                            "subject": subject, "authoredOn": _d(e.start), "dosageInstruction": [dosage],
                            "dispenseRequest": {
                                "quantity": {"value": _num(qty), "unit": "capsule" if k["class"] == "anlotinib" else "tablet"},
                                "expectedSupplyDuration": {"value": days, "unit": "days", "system": UCUM, "code": "d"}}})
                if not res[-1]["meta"]:
                    del res[-1]["meta"]
                res.append({"resourceType": "MedicationDispense", "id": rid("m"), "status": "completed",
                            "medicationCodeableConcept": med, "subject": subject,
                            "authorizingPrescription": [{"reference": f"MedicationRequest/{req_id}"}],
                            "quantity": {"value": _num(qty), "unit": "capsule" if k["class"] == "anlotinib" else "tablet"},
                            "daysSupply": {"value": days, "unit": "days", "system": UCUM, "code": "d"},
                            "whenHandedOver": _d(e.start), "dosageInstruction": [{"text": sig}]})
            else:
                a_id = rid("a")
                res.append(_Raw(_administration(k).render(a_id, pid, _d(e.start))))
                res[-1].meta = ("MedicationAdministration", a_id)  # type: ignore[attr-defined]
        elif e.kind == RADIOTHERAPY:
            k = c["procedures"][e.code]
            res.append({"resourceType": "Procedure", "id": rid("p"), "status": "completed", "code": _cc(k),
                        "subject": subject,
                        "performedPeriod": {"start": _d(e.start), "end": _d(e.end or e.start)},
                        "note": [{"text": f"{_num(e.value or 0)} Gy"}]})
        elif e.kind == AE:
            k = c["adverse_events"][e.code]
            outcome = "resolved" if e.end is not None else "ongoing"
            res.append({"resourceType": "AdverseEvent", "id": rid("e"),
                        "extension": [{"url": CTCAE_GRADE_EXT, "valueCodeableConcept": {"coding": [
                            {"system": CTCAE_GRADE_SYSTEM, "code": str(e.grade), "display": f"Grade {e.grade}"}]}}],
                        "actuality": "actual", "event": _cc(k), "subject": subject, "date": _d(e.start),
                        "outcome": {"coding": [{"system": AE_OUTCOME, "code": outcome}]}})
        elif e.kind == VISIT:
            res.append({"resourceType": "Encounter", "id": rid("v"), "status": "finished",
                        "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
                        "type": [{"text": e.context}], "subject": subject,
                        "period": {"start": _d(e.start), "end": _d(e.start)}})
    return res


def _text(r) -> tuple[str, str, str]:
    """(resourceType, id, JSON text) of a resource dict or ``_Raw``."""
    if isinstance(r, _Raw):
        t, i = r.meta  # type: ignore[attr-defined]
        return t, i, str(r)
    return r["resourceType"], r["id"], _dumps(r)


def bundle_text(p: Patient) -> tuple[str, Counter]:
    """The patient's Bundle as JSON text, and its resources per type."""
    counts: Counter[str] = Counter()
    entries = []
    for r in patient_resources(p):
        t, i, text = _text(r)
        counts[t] += 1
        entries.append(f'{{"fullUrl":"{BASE}/{t}/{i}","resource":{text}}}')
    head = _dumps({"resourceType": "Bundle", "id": p.patient_id, "type": "collection"})[:-1]
    return head + ',"entry":[' + ",".join(entries) + "]}", counts


def bundle(p: Patient) -> dict:
    return json.loads(bundle_text(p)[0])


def bundle_path(out: Path, p: Patient) -> Path:
    return out / "bundles" / f"{(p.index - 1) // 1000:04d}" / f"{p.patient_id}.json"


class FhirRenderer:
    """Bundles written per patient (by the worker), or NDJSON text per resource type."""

    def __init__(self, out: Path, ndjson: bool = False) -> None:
        self.out, self.ndjson = Path(out), ndjson

    def headers(self) -> dict[str, str]:
        return {f"{t}.ndjson": "" for t in RESOURCE_TYPES} if self.ndjson else {}

    def render(self, patients: list[tuple[Patient, Truth]]) -> tuple[dict[str, str], dict[str, int]]:
        counts: Counter[str] = Counter({t: 0 for t in RESOURCE_TYPES})
        if self.ndjson:
            lines: dict[str, list[str]] = {t: [] for t in RESOURCE_TYPES}
            for p, _ in patients:
                for r in patient_resources(p):
                    t, _i, text = _text(r)
                    lines[t].append(text)
            for t, ls in lines.items():
                counts[t] = len(ls)
            return {f"{t}.ndjson": "".join(x + "\n" for x in ls) for t, ls in lines.items()}, dict(counts)
        made: set[Path] = set()
        for p, _ in patients:
            text, c = bundle_text(p)
            counts.update(c)
            path = bundle_path(self.out, p)
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
            with path.open("w", encoding="utf-8") as fh:
                fh.write(text + "\n")
        counts["Bundle"] = len(patients)
        return {}, dict(counts)
