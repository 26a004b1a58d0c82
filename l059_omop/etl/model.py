"""Plain data passed between the pure mappers and the sink (picklable, so mapping runs in worker processes).

A mapper never computes an OMOP id: it names rows and references with :class:`Ref` (source system, resource
type, source id, row key) and the sink turns each into a deterministic integer, detecting collisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple


@cache
def type_concept(use: str = "default") -> int:
    """A type concept the loaders use when a source names none (``mappings/type_concepts.csv``)."""
    import csv

    from l059_omop.resources import mappings_path

    with mappings_path("type_concepts.csv").open(encoding="utf-8", newline="") as fh:
        return next(int(r["concept_id"]) for r in csv.DictReader(fh) if r["use"] == use)


class Ref(NamedTuple):
    """A row of ``table`` produced by (resource_type, source_id); ``row`` tells sibling rows apart."""

    table: str
    resource_type: str
    source_id: str
    row: str = ""


def person_ref(patient_id: str) -> Ref:
    return Ref("person", "Patient", patient_id)


def visit_ref(encounter_id: str) -> Ref:
    return Ref("visit_occurrence", "Encounter", encounter_id)


@dataclass
class Fact:
    """A coded clinical event before its target table is known (that follows the concept's domain).

    ``code`` is a (vocabulary_id, concept_code) pair, or None when the source gave only text; ``domain`` is
    the table used when the code maps to nothing (the resource type's usual domain).
    """

    key: str                       # row key within the resource ("" for the main row)
    person: str                    # source patient id
    code: tuple[str, str] | None
    source_value: str
    domain: str                    # fallback domain: Condition, Measurement, Observation, Drug, Procedure
    start: Any                     # datetime.date
    start_dt: Any = None           # datetime.datetime or None
    end: Any = None
    end_dt: Any = None
    type_concept_id: int = field(default_factory=type_concept)
    visit: str | None = None       # source encounter id
    value_number: float | None = None
    value_code: tuple[str, str] | None = None
    value_source_value: str | None = None
    unit: tuple[str, str] | None = None
    unit_source_value: str | None = None
    range_low: float | None = None
    range_high: float | None = None
    quantity: float | None = None
    days_supply: int | None = None
    route_source_value: str | None = None
    dose_unit_source_value: str | None = None
    stop_reason: str | None = None
    event: Ref | None = None       # measurement_event_id / observation_event_id target
    concept_override: int | None = None  # a fixed standard concept (e.g. AE grade 2000000045)
    medication: str | None = None  # Medication resource id whose code this fact takes
    alt_codes: tuple = ()          # further codings of the same concept: the first that maps wins


@dataclass
class SourceUnit:
    """One source record (a FHIR resource, a spreadsheet row) and everything it becomes in OMOP.

    ``rows`` are finished table rows (ids as :class:`Ref`); ``facts`` are routed to a table by the sink's
    batch concept lookup. Every Ref a row holds besides its own id must exist (in this batch, an earlier one or
    the database) before the unit is written; a unit whose references never appear is quarantined.
    """

    resource_type: str
    source_id: str
    locator: str
    content_sha256: str
    version_id: str | None = None
    last_updated: str | None = None
    rows: list[tuple[str, dict]] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    imputed: list[str] = field(default_factory=list)
    skip_rule: str | None = None   # a record kept for versioning but making no row (entered-in-error ...)
    # set by a worker that found every date the unit can become (whatever table its facts route to) plausible,
    # so the writing process need not check each row again (see route.dates_plausible)
    dates_checked: bool = False


@dataclass
class Quarantined:
    resource_type: str | None
    source_id: str | None
    locator: str
    reason: str
    payload: str | None = None


@dataclass
class Skipped:
    resource_type: str
    rule: str


@dataclass
class Definition:
    """A resource that defines something others reference (a Medication): no OMOP row of its own."""

    resource_type: str
    source_id: str
    code: tuple[str, str] | None
    text: str | None
    locator: str
