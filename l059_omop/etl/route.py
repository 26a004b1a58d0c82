"""Facts -> OMOP table rows by the standard concept's domain (DESIGN §5). Pure: takes a plain lookup dict.

The lookup maps (vocabulary_id, concept_code) to a :class:`~l059_omop.vocab.ConceptMatch`; the loader fills it
for a whole batch with one ``Vocabulary.resolve_many`` call. Unmapped codes get concept 0 and are returned
so the run report counts them by code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from l059_omop.etl.model import Fact, Ref, person_ref, visit_ref

DOMAIN_TABLE = {
    "Condition": "condition_occurrence",
    "Measurement": "measurement",
    "Observation": "observation",
    "Drug": "drug_exposure",
    "Procedure": "procedure_occurrence",
    "Device": "device_exposure",
}
TABLE_ID = {
    "condition_occurrence": "condition_occurrence_id",
    "measurement": "measurement_id",
    "observation": "observation_id",
    "drug_exposure": "drug_exposure_id",
    "procedure_occurrence": "procedure_occurrence_id",
    "device_exposure": "device_exposure_id",
    "person": "person_id",
    "death": "person_id",
    "visit_occurrence": "visit_occurrence_id",
    "observation_period": "observation_period_id",
}


PLAUSIBLE_YEARS = (1800, 2200)  # dates outside are no clinical fact (and beyond pandas' datetime64[ns], 1677-2262)


def dates_plausible(unit) -> bool:
    """True when no row a :class:`~l059_omop.etl.model.SourceUnit` can become holds an implausible date, whatever
    table its facts route to: its rows' dates, every date a fact carries and a drug's computed end (start +
    days supply) are within ``PLAUSIBLE_YEARS``. Cheap and vocabulary-free, so the workers run it and the
    writing process skips its per-row check; False only means "check each routed row" (as before)."""
    lo, hi = PLAUSIBLE_YEARS
    date = dt.date
    for _, row in unit.rows:
        for v in row.values():
            if isinstance(v, date) and not lo <= v.year <= hi:
                return False
    for f in unit.facts:
        for v in (f.start, f.start_dt, f.end, f.end_dt):  # a Fact's dates (model.Fact)
            if v is not None and isinstance(v, date) and not lo <= v.year <= hi:
                return False
        if f.end is None and f.days_supply and f.start is not None:
            try:
                end = f.start + dt.timedelta(days=int(f.days_supply) - 1)
            except (ValueError, OverflowError, TypeError):
                return False
            if isinstance(end, date) and not lo <= end.year <= hi:
                return False
    return True


def table_for_domain(domain: str | None, fallback: str) -> str:
    """Target table of a concept's domain; domains without an event table (Meas Value, Spec ...) -> observation."""
    if domain in DOMAIN_TABLE:
        return DOMAIN_TABLE[domain]
    if domain:
        return "observation"
    return DOMAIN_TABLE.get(fallback, "observation")


def _cut(value, n: int = 50):
    if value is None:
        return None
    s = str(value)
    return s[:n]


def route(fact: Fact, resource_type: str, source_id: str, lookup: Mapping,
          unmapped: list | None = None) -> tuple[str, dict]:
    """One fact -> (table, row). ``unmapped`` (a list) collects the (vocabulary_id, code) pairs that mapped to 0."""
    match = lookup.get(fact.code) if fact.code else None
    if fact.alt_codes and not (match and match.mapped):
        for alt in fact.alt_codes:
            m = lookup.get(alt)
            if m and m.mapped:
                match = m
                break
    if fact.concept_override is not None:
        concept, source_concept, domain = fact.concept_override, (match.source_concept_id if match else 0), None
        table = DOMAIN_TABLE[fact.domain]
    else:
        concept = match.standard_concept_id if match else 0
        source_concept = match.source_concept_id if match else 0
        domain = match.domain_id if match and match.mapped else None
        table = table_for_domain(domain, fact.domain)
        if unmapped is not None and concept == 0:
            unmapped.append(fact.code or ("(text)", _cut(fact.source_value, 50) or ""))
    value_concept = None
    if fact.value_code:
        vm = lookup.get(fact.value_code)
        value_concept = vm.standard_concept_id if vm else 0
        if unmapped is not None and not value_concept:
            unmapped.append(fact.value_code)
    unit_concept = None
    if fact.unit:
        um = lookup.get(fact.unit)
        unit_concept = um.standard_concept_id if um else 0
    own = Ref(table, resource_type, source_id, fact.key)
    person = person_ref(fact.person)
    visit = visit_ref(fact.visit) if fact.visit else None
    sv = _cut(fact.source_value)
    if table == "condition_occurrence":
        row = dict(condition_occurrence_id=own, person_id=person, condition_concept_id=concept,
                   condition_start_date=fact.start, condition_start_datetime=fact.start_dt,
                   condition_end_date=fact.end, condition_end_datetime=fact.end_dt,
                   condition_type_concept_id=fact.type_concept_id, stop_reason=_cut(fact.stop_reason, 20),
                   visit_occurrence_id=visit, condition_source_value=sv,
                   condition_source_concept_id=source_concept)
    elif table == "measurement":
        row = dict(measurement_id=own, person_id=person, measurement_concept_id=concept,
                   measurement_date=fact.start, measurement_datetime=fact.start_dt,
                   measurement_type_concept_id=fact.type_concept_id, value_as_number=fact.value_number,
                   value_as_concept_id=value_concept, unit_concept_id=unit_concept,
                   range_low=fact.range_low, range_high=fact.range_high, visit_occurrence_id=visit,
                   measurement_source_value=sv, measurement_source_concept_id=source_concept,
                   unit_source_value=_cut(fact.unit_source_value), value_source_value=_cut(fact.value_source_value),
                   measurement_event_id=fact.event)
    elif table == "observation":
        row = dict(observation_id=own, person_id=person, observation_concept_id=concept,
                   observation_date=fact.start, observation_datetime=fact.start_dt,
                   observation_type_concept_id=fact.type_concept_id, value_as_number=fact.value_number,
                   value_as_string=_cut(fact.value_source_value, 60) if value_concept is None and
                   fact.value_number is None else None,
                   value_as_concept_id=value_concept, unit_concept_id=unit_concept, visit_occurrence_id=visit,
                   observation_source_value=sv, observation_source_concept_id=source_concept,
                   unit_source_value=_cut(fact.unit_source_value), value_source_value=_cut(fact.value_source_value),
                   observation_event_id=fact.event)
    elif table == "drug_exposure":
        end = fact.end
        if end is None and fact.days_supply and fact.start is not None:
            end = fact.start + dt.timedelta(days=int(fact.days_supply) - 1)
        row = dict(drug_exposure_id=own, person_id=person, drug_concept_id=concept,
                   drug_exposure_start_date=fact.start, drug_exposure_start_datetime=fact.start_dt,
                   drug_exposure_end_date=end if end is not None else fact.start,
                   drug_exposure_end_datetime=fact.end_dt, verbatim_end_date=fact.end,
                   drug_type_concept_id=fact.type_concept_id, stop_reason=_cut(fact.stop_reason, 20),
                   quantity=fact.quantity, days_supply=fact.days_supply, visit_occurrence_id=visit,
                   drug_source_value=sv, drug_source_concept_id=source_concept,
                   route_source_value=_cut(fact.route_source_value),
                   dose_unit_source_value=_cut(fact.dose_unit_source_value))
    elif table == "device_exposure":
        row = dict(device_exposure_id=own, person_id=person, device_concept_id=concept,
                   device_exposure_start_date=fact.start, device_exposure_start_datetime=fact.start_dt,
                   device_exposure_end_date=fact.end, device_exposure_end_datetime=fact.end_dt,
                   device_type_concept_id=fact.type_concept_id, quantity=fact.quantity,
                   visit_occurrence_id=visit, device_source_value=sv, device_source_concept_id=source_concept)
    else:
        row = dict(procedure_occurrence_id=own, person_id=person, procedure_concept_id=concept,
                   procedure_date=fact.start, procedure_datetime=fact.start_dt, procedure_end_date=fact.end,
                   procedure_end_datetime=fact.end_dt, procedure_type_concept_id=fact.type_concept_id,
                   quantity=fact.quantity, visit_occurrence_id=visit, procedure_source_value=sv,
                   procedure_source_concept_id=source_concept)
    return table, row
