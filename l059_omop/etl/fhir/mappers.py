"""Pure FHIR R4 resource -> OMOP mappers (DESIGN §5, CONVENTIONS.md). No I/O, no database.

Each mapper takes a validated resource (a dict) and a :class:`Context` (references of the surrounding
input, the time zone) and returns a :class:`SourceUnit` of rows and facts, a :class:`Skipped` (status
rules), a :class:`Quarantined` (the resource cannot be mapped) or a :class:`Definition` (a Medication).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from l059_omop.etl.fhir.rules import Rules, rules
from l059_omop.etl.model import Definition, Fact, Quarantined, Ref, Skipped, SourceUnit, person_ref, visit_ref

# time units of FHIR durations -> days
_DAYS = {"d": 1, "day": 1, "days": 1, "wk": 7, "week": 7, "weeks": 7, "mo": 30, "month": 30, "months": 30,
         "a": 365, "h": 1 / 24}


class Unmappable(Exception):
    """The resource cannot be mapped; the message is the quarantine reason ('category: detail')."""


@dataclass
class Context:
    """What a mapper may know beyond the resource: the input's references and the instance time zone."""

    locator: str = ""
    full_urls: dict = field(default_factory=dict)     # fullUrl -> (resource_type, id)
    conditional: dict = field(default_factory=dict)   # "Type?identifier=system|value" -> (type, id)
    medications: dict = field(default_factory=dict)   # Medication id or fullUrl -> resource dict
    timezone: str | None = None                       # None: keep the wall-clock time as written
    imputed: list = field(default_factory=list)

    def resolve(self, reference: str) -> tuple[str, str] | None:
        """A reference string -> (resource type, id); None when it cannot be resolved."""
        if reference in self.full_urls:
            return self.full_urls[reference]
        if reference.startswith("urn:"):
            return None
        if "?" in reference:
            return self.conditional.get(reference)
        parts = reference.rstrip("/").split("/")
        if "_history" in parts:
            parts = parts[:parts.index("_history")]
        if len(parts) >= 2 and parts[-2][:1].isupper():
            return parts[-2], parts[-1]
        return None


# ----------------------------------------------------------------------------- small helpers
def _tz(name: str | None):
    return ZoneInfo(name) if name else None


def parse_when(value: str | None, ctx: Context, what: str) -> tuple[dt.date | None, dt.datetime | None]:
    """FHIR date / dateTime / instant -> (date, datetime). Partial dates are imputed to the first of the
    month / year and the imputation is recorded in ``ctx.imputed``; impossible dates raise Unmappable."""
    if not value:
        return None, None
    try:
        if len(value) == 4:
            ctx.imputed.append(f"{what}: month and day imputed")
            return dt.date(int(value), 1, 1), None
        if len(value) == 7:
            ctx.imputed.append(f"{what}: day imputed")
            return dt.date(int(value[:4]), int(value[5:7]), 1), None
        if len(value) == 10:
            return dt.date.fromisoformat(value), None
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Unmappable(f"impossible date: {what} = {value!r}") from None
    if when.tzinfo is not None:
        tz = _tz(ctx.timezone)
        if tz is not None:
            when = when.astimezone(tz)
        when = when.replace(tzinfo=None)
    return when.date(), when


def _period(p: dict | None, ctx: Context, what: str):
    if not p:
        return (None, None), (None, None)
    return parse_when(p.get("start"), ctx, f"{what}.start"), parse_when(p.get("end"), ctx, f"{what}.end")


def _coding_pairs(cc: dict | None, r: Rules) -> tuple[tuple[str, str] | None, tuple, str | None]:
    """(first code pair, further pairs, source value) of a CodeableConcept."""
    if not cc:
        return None, (), None
    pairs = []
    for c in cc.get("coding") or []:
        code = c.get("code")
        if not code:
            continue
        vocab = r.vocabulary(c.get("system"))
        pairs.append((vocab or f"?{c.get('system') or ''}", code))
    text = cc.get("text") or next((c.get("display") for c in cc.get("coding") or [] if c.get("display")), None)
    if not pairs:
        return None, (), text
    known = [p for p in pairs if not p[0].startswith("?")] or pairs
    first = known[0]
    return first, tuple(p for p in pairs if p != first), first[1]


def _ref(ctx: Context, obj: dict | None, expected: str | None, what: str, required: bool = True) -> str | None:
    if not obj or not obj.get("reference"):
        if required:
            raise Unmappable(f"missing reference: {what}")
        return None
    hit = ctx.resolve(obj["reference"])
    if hit is None:
        if required:
            raise Unmappable(f"unresolved reference: {what} = {obj['reference']}")
        return None
    rtype, rid = hit
    if expected and rtype != expected:
        if required:
            raise Unmappable(f"unsupported reference: {what} points to {rtype}, expected {expected}")
        return None
    return rid


def _subject(res: dict, ctx: Context, key: str = "subject") -> str:
    return _ref(ctx, res.get(key) or res.get("patient"), "Patient", f"{res['resourceType']}.{key}")


def _visit(res: dict, ctx: Context) -> str | None:
    return _ref(ctx, res.get("encounter") or res.get("context"), "Encounter",
                f"{res['resourceType']}.encounter", required=False)


def _num(x) -> float | None:
    if x is None:
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _unit(q: dict | None, r: Rules) -> tuple[tuple[str, str] | None, str | None]:
    if not q:
        return None, None
    code = q.get("code")
    sv = q.get("unit") or code
    if code and q.get("system") and r.vocabulary(q["system"]) == "UCUM":
        return ("UCUM", code), sv
    return None, sv


def _days(q: dict | None) -> int | None:
    if not q or q.get("value") is None:
        return None
    per = _DAYS.get((q.get("code") or q.get("unit") or "d").lower(), 1)
    return int(round(float(q["value"]) * per))


def _unit_of(res: dict, ctx: Context, rtype: str, sid: str) -> SourceUnit:
    return SourceUnit(rtype, sid, ctx.locator, "", version_id=(res.get("meta") or {}).get("versionId"),
                      last_updated=(res.get("meta") or {}).get("lastUpdated"))


def status_rule(res: dict, r: Rules) -> str | None:
    """The skip rule a resource falls under (None: it makes rows)."""
    rtype = res["resourceType"]
    spec = r.status.get(rtype)
    if spec is None:
        return None
    fld = spec.get("field")
    if fld is None:
        return None
    value = res.get(fld)
    if isinstance(value, dict):  # CodeableConcept (Condition.verificationStatus)
        value = next((c.get("code") for c in value.get("coding") or [] if c.get("code")), None)
    if value == "entered-in-error":
        return "entered-in-error"
    keep = spec.get("keep") or []
    if value not in keep and not (value is None and None in keep):
        return f"{fld} {value or '(none)'} makes no row"
    if spec.get("intent_field"):
        intent = res.get(spec["intent_field"])
        if intent not in spec.get("intent_keep", []):
            return f"{spec['intent_field']} {intent or '(none)'} makes no row"
    return None


# ----------------------------------------------------------------------------- mappers
def map_patient(res: dict, ctx: Context, r: Rules, sid: str) -> SourceUnit:
    u = _unit_of(res, ctx, "Patient", sid)
    birth, birth_dt = parse_when(res.get("birthDate"), ctx, "birthDate")
    if birth is None:
        raise Unmappable("missing required field: Patient.birthDate (OMOP person.year_of_birth)")
    raw_birth = res.get("birthDate") or ""
    gender = res.get("gender")
    person = dict(person_id=person_ref(sid), gender_concept_id=int(r.raw["gender"].get(gender, 0)),
                  year_of_birth=birth.year, month_of_birth=birth.month if len(raw_birth) >= 7 else None,
                  day_of_birth=birth.day if len(raw_birth) >= 10 else None, birth_datetime=birth_dt,
                  race_concept_id=0, ethnicity_concept_id=0, person_source_value=sid[:50],
                  gender_source_value=gender, gender_source_concept_id=0, race_source_concept_id=0,
                  ethnicity_source_concept_id=0)
    ctx.imputed = [x for x in ctx.imputed if not x.startswith("birthDate")]  # birth keeps only what is known
    u.rows.append(("person", person))
    if res.get("deceasedDateTime"):
        d, d_dt = parse_when(res["deceasedDateTime"], ctx, "deceasedDateTime")
        u.rows.append(("death", dict(person_id=person_ref(sid), death_date=d, death_datetime=d_dt,
                                     death_type_concept_id=r.type_concept("Patient"), cause_concept_id=None,
                                     cause_source_concept_id=None)))
    elif res.get("deceasedBoolean") is True:
        u.imputed.append("deceasedBoolean without a date: no death row")
    return u


def map_encounter(res: dict, ctx: Context, r: Rules, sid: str) -> SourceUnit:
    u = _unit_of(res, ctx, "Encounter", sid)
    person = _subject(res, ctx)
    (start, start_dt), (end, end_dt) = _period(res.get("period"), ctx, "period")
    if start is None:
        raise Unmappable("missing required field: Encounter.period.start (visit_start_date)")
    cls = res.get("class") or {}
    code = cls.get("code")
    u.rows.append(("visit_occurrence", dict(
        visit_occurrence_id=visit_ref(sid), person_id=person_ref(person),
        visit_concept_id=int(r.raw["visit_class"].get(code, 0)), visit_start_date=start,
        visit_start_datetime=start_dt, visit_end_date=end or start, visit_end_datetime=end_dt,
        visit_type_concept_id=r.type_concept("Encounter"), visit_source_value=(code or "")[:50] or None,
        visit_source_concept_id=0, admitted_from_concept_id=None, discharged_to_concept_id=None)))
    return u


def map_condition(res: dict, ctx: Context, r: Rules, sid: str) -> SourceUnit:
    u = _unit_of(res, ctx, "Condition", sid)
    person = _subject(res, ctx)
    code, alt, sv = _coding_pairs(res.get("code"), r)
    if code is None and not sv:
        raise Unmappable("missing required field: Condition.code")
    start, start_dt = parse_when(res.get("onsetDateTime") or (res.get("onsetPeriod") or {}).get("start")
                                 or res.get("recordedDate"), ctx, "onset")
    if start is None:
        raise Unmappable("missing required field: Condition.onset[x] or recordedDate (condition_start_date)")
    end, end_dt = parse_when(res.get("abatementDateTime") or (res.get("abatementPeriod") or {}).get("end"),
                             ctx, "abatement")
    u.facts.append(Fact("", person, code, sv or "", r.fallback_domain("Condition"), start, start_dt, end, end_dt,
                        r.type_concept("Condition"), visit=_visit(res, ctx), alt_codes=alt))
    return u


def _observation_value(res: dict, f: Fact, r: Rules) -> None:
    if "valueQuantity" in res:
        q = res["valueQuantity"]
        f.value_number = _num(q.get("value"))
        f.unit, f.unit_source_value = _unit(q, r)
        f.value_source_value = None if q.get("value") is None else str(q.get("value"))
    elif "valueCodeableConcept" in res:
        f.value_code, _, f.value_source_value = _coding_pairs(res["valueCodeableConcept"], r)
    elif "valueInteger" in res:
        f.value_number = float(res["valueInteger"])
        f.value_source_value = str(res["valueInteger"])
    elif "valueString" in res:
        f.value_source_value = res["valueString"]
    elif "valueBoolean" in res:
        f.value_source_value = str(res["valueBoolean"]).lower()
    rr = (res.get("referenceRange") or [None])[0]
    if rr:
        f.range_low = _num((rr.get("low") or {}).get("value"))
        f.range_high = _num((rr.get("high") or {}).get("value"))


def _focus_condition(res: dict, ctx: Context) -> str | None:
    for foc in res.get("focus") or []:
        hit = ctx.resolve(foc.get("reference") or "")
        if hit and hit[0] == "Condition":
            return hit[1]
    return None


def map_observation(res: dict, ctx: Context, r: Rules, sid: str) -> SourceUnit:
    u = _unit_of(res, ctx, "Observation", sid)
    person = _subject(res, ctx)
    code, alt, sv = _coding_pairs(res.get("code"), r)
    when = (res.get("effectiveDateTime") or (res.get("effectivePeriod") or {}).get("start")
            or res.get("effectiveInstant") or res.get("issued"))
    start, start_dt = parse_when(when, ctx, "effective")
    if start is None:
        raise Unmappable("missing required field: Observation.effective[x] (measurement_date)")
    visit = _visit(res, ctx)
    focus = _focus_condition(res, ctx)
    event = Ref("condition_occurrence", "Condition", focus) if focus else None
    codes = {code, *alt}
    f = Fact("", person, code, sv or "", r.fallback_domain("Observation"), start, start_dt,
             type_concept_id=r.type_concept("Observation"), visit=visit, alt_codes=alt, event=event)
    _observation_value(res, f, r)
    if codes & r.response_codes:
        vc = res.get("valueCodeableConcept") or {}
        coding = next((c for c in vc.get("coding") or [] if c.get("code")), {})
        local = r.response_value(coding.get("system"), coding.get("code"), vc.get("text") or res.get("valueString"))
        f.concept_override = int(r.raw["response"]["concept_id"])
        f.domain = "Observation"
        if local:
            f.value_code = ("L059", local)
        f.value_source_value = vc.get("text") or coding.get("code") or res.get("valueString")
    elif codes & r.ae_grade_codes:
        f.concept_override = int(r.raw["ae_grade"]["concept_id"])
        f.domain = "Measurement"
        if f.value_number is None and f.value_code:
            f.value_number = _num(f.value_code[1])
            f.value_code = None
    elif codes & r.value_is_fact and f.value_code:
        f.code, f.alt_codes = f.value_code, ()
        f.source_value = f.value_code[1]
        f.value_code = f.value_source_value = None
        f.domain = "Measurement"
    elif f.value_code is not None or (f.value_number is None and f.value_source_value):
        f.domain = "Observation"
    facts = [f]
    for i, comp in enumerate(res.get("component") or []):
        ccode, calt, csv_ = _coding_pairs(comp.get("code"), r)
        cf = Fact(f"c{i}", person, ccode, csv_ or "", "Measurement", start, start_dt,
                  type_concept_id=f.type_concept_id, visit=visit, alt_codes=calt)
        _observation_value(comp, cf, r)
        if cf.value_code is not None or (cf.value_number is None and cf.value_source_value):
            cf.domain = "Observation"
        facts.append(cf)
    if len(facts) > 1 and f.value_number is None and f.value_code is None and f.value_source_value is None:
        facts = facts[1:]  # a panel (e.g. blood pressure): the components are the facts
    u.facts.extend(facts)
    return u


def map_procedure(res: dict, ctx: Context, r: Rules, sid: str) -> SourceUnit:
    u = _unit_of(res, ctx, "Procedure", sid)
    person = _subject(res, ctx)
    code, alt, sv = _coding_pairs(res.get("code"), r)
    p = res.get("performedPeriod")
    if p:
        (start, start_dt), (end, end_dt) = _period(p, ctx, "performedPeriod")
    else:
        (start, start_dt), (end, end_dt) = parse_when(res.get("performedDateTime"), ctx, "performed"), (None, None)
    if start is None:
        raise Unmappable("missing required field: Procedure.performed[x] (procedure_date)")
    u.facts.append(Fact("", person, code, sv or "", r.fallback_domain("Procedure"), start, start_dt, end, end_dt,
                        r.type_concept("Procedure"), visit=_visit(res, ctx), alt_codes=alt))
    return u


def _medication(res: dict, ctx: Context, r: Rules) -> tuple[tuple | None, tuple, str | None, str | None]:
    """(code, alternatives, source value, Medication id left for the loader to resolve)."""
    if res.get("medicationCodeableConcept"):
        code, alt, sv = _coding_pairs(res["medicationCodeableConcept"], r)
        return code, alt, sv, None
    ref = (res.get("medicationReference") or {}).get("reference")
    if not ref:
        raise Unmappable(f"missing required field: {res['resourceType']}.medication[x]")
    med = None
    if ref.startswith("#"):
        med = next((c for c in res.get("contained") or [] if c.get("id") == ref[1:]), None)
        if med is None:
            raise Unmappable(f"unresolved reference: contained {ref}")
    else:
        med = ctx.medications.get(ref)
        if med is None:
            hit = ctx.resolve(ref)
            if hit is None or hit[0] != "Medication":
                raise Unmappable(f"unresolved reference: {res['resourceType']}.medicationReference = {ref}")
            med = ctx.medications.get(hit[1])
            if med is None:
                return None, (), None, hit[1]
    code, alt, sv = _coding_pairs(med.get("code"), r)
    return code, alt, sv, None


def _dose(res: dict, f: Fact) -> None:
    dosage = res.get("dosage")
    if isinstance(dosage, list):
        dosage = dosage[0] if dosage else None
    if not dosage:
        return
    dose = dosage.get("dose") or next((d.get("doseQuantity") for d in dosage.get("doseAndRate") or []
                                       if d.get("doseQuantity")), None)
    if dose:
        f.dose_unit_source_value = dose.get("unit") or dose.get("code")
    route = dosage.get("route")
    if route:
        f.route_source_value = route.get("text") or next((c.get("code") for c in route.get("coding") or []), None)


def map_medication_event(res: dict, ctx: Context, r: Rules, sid: str) -> SourceUnit:
    rtype = res["resourceType"]
    u = _unit_of(res, ctx, rtype, sid)
    person = _subject(res, ctx)
    code, alt, sv, med_id = _medication(res, ctx, r)
    days = quantity = None
    start = start_dt = end = end_dt = None
    if rtype == "MedicationAdministration":
        if res.get("effectivePeriod"):
            (start, start_dt), (end, end_dt) = _period(res["effectivePeriod"], ctx, "effectivePeriod")
        else:
            start, start_dt = parse_when(res.get("effectiveDateTime"), ctx, "effective")
            end, end_dt = start, start_dt
        quantity = _num(((res.get("dosage") or {}).get("dose") or {}).get("value"))
    elif rtype == "MedicationStatement":
        if res.get("effectivePeriod"):
            (start, start_dt), (end, end_dt) = _period(res["effectivePeriod"], ctx, "effectivePeriod")
        else:
            start, start_dt = parse_when(res.get("effectiveDateTime") or res.get("dateAsserted"), ctx, "effective")
    elif rtype == "MedicationRequest":
        disp = res.get("dispenseRequest") or {}
        start, start_dt = parse_when((disp.get("validityPeriod") or {}).get("start") or res.get("authoredOn"),
                                     ctx, "authoredOn")
        days = _days(disp.get("expectedSupplyDuration"))
        quantity = _num((disp.get("quantity") or {}).get("value"))
    else:  # MedicationDispense
        start, start_dt = parse_when(res.get("whenHandedOver") or res.get("whenPrepared"), ctx, "whenHandedOver")
        days = _days(res.get("daysSupply"))
        quantity = _num((res.get("quantity") or {}).get("value"))
    if start is None:
        raise Unmappable(f"missing required field: {rtype} date (drug_exposure_start_date)")
    f = Fact("", person, code, sv or "", r.fallback_domain(rtype), start, start_dt, end, end_dt,
             r.type_concept(rtype), visit=_visit(res, ctx), quantity=quantity, days_supply=days, alt_codes=alt,
             medication=med_id)
    _dose(res, f)
    u.facts.append(f)
    return u


def map_adverse_event(res: dict, ctx: Context, r: Rules, sid: str) -> SourceUnit:
    u = _unit_of(res, ctx, "AdverseEvent", sid)
    person = _subject(res, ctx)
    code, alt, sv = _coding_pairs(res.get("event"), r)
    if code is None and not sv:
        raise Unmappable("missing required field: AdverseEvent.event")
    start, start_dt = parse_when(res.get("date") or res.get("detected") or res.get("recordedDate"), ctx, "date")
    if start is None:
        raise Unmappable("missing required field: AdverseEvent.date (condition_start_date)")
    g = r.raw["ae_grade"]
    end = end_dt = grade = None
    for ext in res.get("extension") or []:
        if ext.get("url") == g["resolved_extension"]:
            end, end_dt = parse_when(ext.get("valueDateTime"), ctx, "resolvedDate")
        elif ext.get("url") == g["extension"]:
            cc = ext.get("valueCodeableConcept") or {}
            grade = next((c.get("code") for c in cc.get("coding") or [] if c.get("code")), None)
    visit = _visit(res, ctx)
    u.facts.append(Fact("", person, code, sv or "", r.fallback_domain("AdverseEvent"), start, start_dt, end, end_dt,
                        r.type_concept("AdverseEvent"), visit=visit, alt_codes=alt))
    if grade is not None:
        if _num(grade) is None:
            raise Unmappable(f"invalid value: CTCAE grade {grade!r} is not 1-5")
        u.facts.append(Fact("grade", person, ("L059", "CTCAE-GRADE"), "CTCAE-GRADE", "Measurement", start, start_dt,
                            type_concept_id=r.type_concept("AdverseEvent"), visit=visit, value_number=_num(grade),
                            value_source_value=str(grade), concept_override=int(g["concept_id"]),
                            event=Ref("*", "AdverseEvent", sid, "")))
    return u


MAPPERS = {
    "Patient": map_patient,
    "Encounter": map_encounter,
    "Condition": map_condition,
    "Observation": map_observation,
    "Procedure": map_procedure,
    "MedicationAdministration": map_medication_event,
    "MedicationRequest": map_medication_event,
    "MedicationStatement": map_medication_event,
    "MedicationDispense": map_medication_event,
    "AdverseEvent": map_adverse_event,
}


def unknown_modifier_extension(res, known: frozenset) -> str | None:
    """The URL of the first modifierExtension (anywhere in the resource) the project does not understand."""
    stack = [res]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "modifierExtension":
                    for ext in v or []:
                        if ext.get("url") not in known:
                            return ext.get("url") or "(no url)"
                elif isinstance(v, (dict, list)):
                    stack.append(v)
        elif isinstance(x, list):
            stack.extend(y for y in x if isinstance(y, (dict, list)))
    return None


def map_resource(res: dict, ctx: Context, sid: str, r: Rules | None = None):
    """One validated resource -> SourceUnit | Skipped | Quarantined | Definition (never raises)."""
    r = r or rules()
    rtype = res["resourceType"]
    if rtype in (r.raw.get("definitions") or []):
        code, _, sv = _coding_pairs(res.get("code"), r)
        return Definition(rtype, sid, code, sv, ctx.locator)
    mapper = MAPPERS.get(rtype)
    if mapper is None:
        return Skipped(rtype, f"resource type {rtype} is not used by the project")
    ctx.imputed = []
    try:
        rule = status_rule(res, r)
        if rule is not None:
            u = _unit_of(res, ctx, rtype, sid)
            u.skip_rule = rule
            return u
        u = mapper(res, ctx, r, sid)
    except Unmappable as exc:
        return Quarantined(rtype, sid, ctx.locator, str(exc))
    u.imputed.extend(ctx.imputed)
    return u
