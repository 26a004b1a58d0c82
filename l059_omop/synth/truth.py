"""The answer key: COHORT.md's entry, rules R1-R13 and outcomes, evaluated on one generated history.

The rules are evaluated on the events (what every format writes), not on the scenario the generator
intended, so side effects (an early death that also cuts anlotinib short) are counted as ATLAS would.

Missing reference dates: a rule that asks for something to exist relative to a date the patient does not
have (ES date, induction start) fails; a rule that asks for something NOT to exist holds (R3, R6, R11), as
``NOT EXISTS`` SQL over a NULL date does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from l059_omop.synth.codes import codes
from l059_omop.synth.model import AE, CONDITION, DRUG, ECOG, LAB, RADIOTHERAPY, RESPONSE, SOD, STAGE, Patient
from l059_omop.synth.params import SynthParams

RULES = tuple(f"R{i}" for i in range(1, 14))
D = timedelta

TRUTH_COLUMNS = [
    "patient_id", "hospital_id", "person_id", "birth_date", "sex", "index_date", "entered", "cohort_member",
    "failed_rules", "first_failed_rule", "starting_dose_mg", "pd1_agent", "es_date", "induction_start",
    "platinum_cycles", "age_at_index", "observation_start", "observation_end", "death_date", "cohort_end",
    "pfs_days", "pfs_event", "os_days", "os_event", "true_pfs_days", "true_os_days", "lost_to_follow_up",
    "scenario",
]


@dataclass
class Truth:
    row: dict[str, object]
    member: bool


def _classes() -> dict[str, str]:
    """drug key -> class (platinum, etoposide, pd1, anlotinib, antiangiogenic, immunosuppressive ...)."""
    return {k: v["class"] for k, v in codes()["drugs"].items()}


def _age(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def count_cycles(dates: list[date]) -> int:
    """Platinum dates -> cycles: a date is a new cycle when >= 14 days after the previous counted one."""
    n, last = 0, None
    for d in sorted(set(dates)):
        if last is None or (d - last).days >= 14:
            n, last = n + 1, d
    return n


def era_end(starts_ends: list[tuple[date, date]], persistence: int = 30) -> date | None:
    """End of the drug era starting with the first exposure (merged while next start <= end + 30 days)."""
    if not starts_ends:
        return None
    items = sorted(starts_ends)
    end = items[0][1]
    for s, e in items[1:]:
        if s <= end + D(persistence):
            end = max(end, e)
        else:
            break
    return end


def evaluate(p: Patient, params: SynthParams) -> Truth:
    c = codes()
    cls = _classes()
    cut = params.data_cutoff
    ev = [e for e in p.sorted_events() if e.start <= cut]
    auto, bleed = set(c["autoimmune"]), set(c["bleeding"])

    by_class: dict[str, list] = {}
    for e in ev:
        if e.kind == DRUG:
            by_class.setdefault(cls[e.code], []).append(e)

    def drugs(klass: str):
        return by_class.get(klass, [])

    anl = drugs("anlotinib")
    index = anl[0].start if anl else None
    entered = index is not None and params.window_start <= index <= params.window_end

    sclc = [e.start for e in ev if e.kind == CONDITION and e.code.startswith("sclc_")]
    first_dx = min(sclc) if sclc else None
    es_records = [e.start for e in ev if (e.kind == STAGE and e.code == "valg_es")
                  or (e.kind == CONDITION and e.code == "sclc_stage4")]
    es = min((d for d in es_records if first_dx is not None and d >= first_dx), default=None)
    plat = [e.start for e in drugs("platinum")]
    ind = min((d for d in plat if es is not None and d >= es - D(14)), default=None)

    starts = [e.start for e in ev] + [e.end for e in ev if e.end is not None]
    if p.death_date is not None and p.death_date <= cut:
        starts.append(p.death_date)
    obs_start, obs_end = min(starts), min(max(starts), cut)
    death = p.death_date if p.death_date is not None and p.death_date <= cut else None

    row: dict[str, object] = {k: "" for k in TRUTH_COLUMNS}
    row.update(patient_id=p.patient_id, hospital_id=p.hospital_id, person_id=p.index,
               birth_date=p.birth_date.isoformat(), sex=p.sex, entered=int(entered),
               es_date=es.isoformat() if es else "", induction_start=ind.isoformat() if ind else "",
               observation_start=obs_start.isoformat(), observation_end=obs_end.isoformat(),
               death_date=death.isoformat() if death else "", true_pfs_days=p.true_pfs_days,
               true_os_days=p.true_os_days, lost_to_follow_up=int(p.lost_to_follow_up),
               scenario=";".join(p.scenario), cohort_member=0)
    if index is None:
        row.update(first_failed_rule="ENTRY")
        return Truth(row, False)

    row["index_date"] = index.isoformat()
    strength = c["drugs"][anl[0].code]["strength"]
    row["starting_dose_mg"] = "" if strength is None else int(strength)
    row["age_at_index"] = _age(p.birth_date, index)

    holds: dict[str, bool] = {}
    holds["R1"] = _age(p.birth_date, index) >= 18
    holds["R2"] = first_dx is not None and es is not None and first_dx <= index and es <= index
    # R3
    ls_before = es is not None and any(e.kind == STAGE and e.code == "valg_ls" and e.start < es for e in ev)
    if not ls_before:
        holds["R3"] = True
    else:
        tx_ends = [e.end or e.start for e in ev if (e.kind == DRUG and cls[e.code] in ("platinum", "etoposide", "pd1"))
                   or e.kind == RADIOTHERAPY]
        before = [d for d in tx_ends if d < es]
        holds["R3"] = not before or (es - max(before)).days >= 183
    holds["R4"] = es is not None and any(
        e.kind == SOD and e.value is not None and e.value >= 10 and es - D(42) <= e.start <= index for e in ev)
    cycles = 0
    if ind is not None:
        day_before = index - D(1)
        cycles = count_cycles([d for d in plat if ind <= d <= day_before])
        eto = any(ind <= e.start <= day_before for e in drugs("etoposide"))
        pd1 = any(ind <= e.start <= day_before for e in drugs("pd1"))
        holds["R5"] = 4 <= cycles <= 6 and eto and pd1
        holds["R6"] = not any(e.kind == RESPONSE and e.value_code == "PD" and ind <= e.start <= index for e in ev)
    else:
        holds["R5"] = False
        holds["R6"] = True
    row["platinum_cycles"] = cycles
    ecogs = [e for e in ev if e.kind == ECOG and index - D(42) <= e.start <= index]
    holds["R7"] = bool(ecogs) and max(ecogs, key=lambda e: e.start).value <= 2
    r8 = [e for e in drugs("pd1") if index - D(7) <= e.start <= index + D(28)]
    holds["R8"] = bool(r8)
    row["pd1_agent"] = c["drugs"][r8[0].code]["name"] if r8 else ""
    end = era_end([(e.start, e.end or e.start) for e in anl])
    holds["R9"] = (end - index).days + 1 >= 42
    holds["R10"] = any(e.kind == RESPONSE and e.value_code in ("CR", "PR", "SD", "PD") and e.start > index for e in ev)
    holds["R11"] = es is None or not any(
        e.kind == DRUG and cls[e.code] in ("pd1", "anlotinib", "antiangiogenic") and e.start < es for e in ev)
    lo = index - D(730)
    has_ai = any(e.kind == CONDITION and e.code in auto and lo <= e.start <= index for e in ev)
    has_is = any(lo <= e.start <= index for e in drugs("immunosuppressive"))
    holds["R12"] = not (has_ai and has_is)
    coag = False
    for e in ev:
        if e.kind == LAB and index - D(30) <= e.start <= index and e.value is not None:
            if e.code == "inr" and e.value > 1.5:
                coag = True
            if e.code == "aptt" and e.value > 1.5 * (e.range_high if e.range_high is not None else 40.0):
                coag = True
        if e.kind == CONDITION and e.code in bleed and index - D(180) <= e.start <= index:
            coag = True
    holds["R13"] = not coag

    failed = [r for r in RULES if not holds[r]]
    member = entered and not failed
    row["failed_rules"] = ";".join(failed) if entered else ""
    row["first_failed_rule"] = (failed[0] if failed else "") if entered else "ENTRY"
    row["cohort_member"] = int(member)
    if member:
        row["cohort_end"] = min(obs_end, death).isoformat() if death else obs_end.isoformat()

    # outcomes (COHORT.md), from index, nothing after the cut-off
    after = [e for e in ev if e.kind == RESPONSE and e.start > index]
    first_pd = next((e.start for e in after if e.value_code == "PD"), None)
    events = [d for d in (first_pd, death) if d is not None]
    if events:
        row["pfs_days"], row["pfs_event"] = (min(events) - index).days, 1
    else:
        last = max((e.start for e in after), default=index)
        row["pfs_days"], row["pfs_event"] = (last - index).days, 0
    if death is not None:
        row["os_days"], row["os_event"] = (death - index).days, 1
    else:
        row["os_days"], row["os_event"] = (obs_end - index).days, 0
    _ = AE  # adverse events do not enter the rules
    return Truth(row, member)
