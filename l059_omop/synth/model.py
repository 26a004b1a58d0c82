"""Plain data for one synthetic patient: demographics plus a list of dated events.

The generator builds these; the truth evaluator and the three emitters (omop, fhir, records) only read
them, so every format says the same thing about the same patient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

# event kinds
CONDITION = "condition"      # code: key of codes.yaml conditions
STAGE = "stage"              # code: key of codes.yaml stages (VALG-ES / VALG-LS)
DRUG = "drug"                # code: key of codes.yaml drugs; infusion (start = end) or oral course
LAB = "lab"                  # code: inr | aptt; value, range_high
ECOG = "ecog"                # value 0-4
SOD = "sod"                  # value mm (baseline target lesions)
RESPONSE = "response"        # value_code CR/PR/SD/PD/NE
RADIOTHERAPY = "radiotherapy"  # code: key of codes.yaml procedures; start..end
AE = "ae"                    # code: key of codes.yaml adverse_events; grade; end optional
VISIT = "visit"              # follow-up contact (last date known alive)


@dataclass(slots=True)
class Event:
    kind: str
    start: date
    code: str = ""
    end: date | None = None
    value: float | None = None
    value_code: str | None = None
    range_high: float | None = None
    days_supply: int | None = None
    quantity: float | None = None
    grade: int | None = None
    context: str = ""  # why it is there: induction, maintenance, ls, premed, baseline ... (source text only)


@dataclass(slots=True)
class Patient:
    index: int                 # 1..N, also the OMOP person_id
    patient_id: str            # source id, e.g. P0000001 (= FHIR Patient.id)
    hospital_id: str           # the hospital's patient number (records format)
    name: str
    phone: str
    sex: str                   # M / F
    birth_date: date
    events: list[Event] = field(default_factory=list)
    death_date: date | None = None
    last_contact: date | None = None   # last date known alive (alive: data cut-off or loss to follow-up)
    lost_to_follow_up: bool = False
    true_pfs_days: int | None = None
    true_os_days: int | None = None
    scenario: tuple[str, ...] = ()     # deliberate deviations, e.g. ("R13:inr_151",)
    _sorted: list[Event] | None = None

    def sorted_events(self) -> list[Event]:
        """Events by date (then kind, code; ties keep insertion order), computed once."""
        if self._sorted is None or len(self._sorted) != len(self.events):
            self._sorted = sorted(self.events, key=_event_key)
        return self._sorted


_KIND_ORDER = {k: i for i, k in enumerate(
    [CONDITION, STAGE, SOD, ECOG, LAB, DRUG, RADIOTHERAPY, RESPONSE, AE, VISIT])}


def _event_key(e: Event) -> tuple:
    return (e.start, _KIND_ORDER[e.kind], e.code)
