"""Seeded generator of ES-SCLC patient histories (pure: no I/O, no wall clock).

Patient ``i`` of a run depends only on (seed, i) and the parameters: its own ``random.Random`` is seeded
from both, so patients can be produced one at a time, in any order or in parallel, always identically.

Each patient gets a plausible first-line history (SCLC diagnosis, extensive stage, platinum + etoposide +
PD-(L)1 induction, anlotinib maintenance with continued PD-(L)1, scans, labs, ECOG) and then, with the
probability ``fail_share``, one to three deliberate deviations from the COHORT.md rules (or from entry),
often exactly on a boundary. Eligible patients may get a value exactly on the passing side of a boundary.
Which rules a patient really fails is decided afterwards by ``truth.evaluate`` from the events alone.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import date, timedelta

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
    Event,
    Patient,
)
from l059_omop.synth.params import SynthParams

D = timedelta

# deliberate failures and their variants (b: on the boundary)
FAILURES: dict[str, tuple[str, ...]] = {
    "ENTRY_NONE": ("no_anlotinib",),
    "ENTRY_WINDOW": ("before_b", "after_b", "before", "after"),
    "R1": ("age17_b", "age16"),
    "R2": ("no_sclc", "es_after_b", "es_after"),
    "R3": ("gap182_b", "gap_short"),
    "R4": ("sod9_b", "sod_early_b", "no_sod"),
    "R5": ("cycles3_b", "cycles7_b", "cycles2", "no_etoposide", "no_pd1"),
    "R6": ("pd_on_index_b", "pd_before"),
    "R7": ("ecog3_b", "ecog4", "ecog_old_b", "ecog_none", "ecog_latest3"),
    "R8": ("pd1_late_b", "pd1_none"),
    "R9": ("era41_b", "two_courses", "gap31_b"),
    "R10": ("no_scans", "ne_only"),
    "R11": ("pd1_before_es_b", "bev_before", "apatinib_before"),
    "R12": ("window730_b", "ai_is"),
    "R13": ("inr151_b", "inr_high", "aptt_b", "aptt_noref", "bleed180_b", "bleed"),
}
FAIL_WEIGHTS = {"ENTRY_NONE": 0.6, "ENTRY_WINDOW": 0.6}
# passing boundary variants for eligible patients
PASSES: dict[str, tuple[str, ...]] = {
    "ENTRY_WINDOW": ("first_day", "last_day"),
    "R1": ("age18",),
    "R3": ("gap183", "ls_long"),
    "R4": ("sod10", "sod_es42"),
    "R5": ("cycles4", "cycles6", "split_dose", "cycle14", "platinum_on_index"),
    "R7": ("ecog2", "ecog_42", "ecog3_then1"),
    "R8": ("pd1_28", "pd1_minus7"),
    "R9": ("era42", "gap30"),
    "R11": ("pd1_on_es",),
    "R12": ("window731", "ai_only", "is_only"),
    "R13": ("inr150", "aptt150", "aptt_noref60", "inr_old", "bleed181"),
}

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"


def _weighted(rng: random.Random, items: list[tuple[str, float]]) -> str:
    total = sum(w for _, w in items)
    u = rng.random() * total
    for k, w in items:
        u -= w
        if u < 0:
            return k
    return items[-1][0]


def _weibull(rng: random.Random, shape: float, scale: float) -> int:
    u = rng.random()
    return max(1, int(round(scale * (-math.log(1.0 - u)) ** (1.0 / shape))))


def _not_feb29(d: date) -> date:
    return d + D(1) if (d.month, d.day) == (2, 29) else d


def _years_before(d: date, years: int) -> date:
    return date(d.year - years, d.month, d.day)


def patient_rng(seed: int, index: int) -> random.Random:
    return random.Random(seed * 4_294_967_296 + index)


def generate_patient(index: int, params: SynthParams) -> Patient:
    """Patient ``index`` (1-based) of the run with ``params``."""
    rng = patient_rng(params.seed, index)
    c = codes()

    # ---- scenario: deliberate failures or passing boundaries ----
    fails: dict[str, str] = {}
    passes: dict[str, str] = {}
    if rng.random() < params.fail_share:
        k = 1 if (u := rng.random()) < 0.7 else 2 if u < 0.9 else 3
        pool = [(r, FAIL_WEIGHTS.get(r, 1.0)) for r in FAILURES]
        while len(fails) < k:
            r = _weighted(rng, [p for p in pool if p[0] not in fails])
            fails[r] = rng.choice(FAILURES[r])
    elif rng.random() < params.boundary_share:
        r = rng.choice(list(PASSES))
        passes[r] = rng.choice(PASSES[r])
    scenario = tuple(f"{r}:{v}" for r, v in fails.items()) + tuple(f"{r}:{v}" for r, v in passes.items())

    def fv(rule: str) -> str | None:
        return fails.get(rule) or None

    def pv(rule: str) -> str | None:
        return passes.get(rule) or None

    ev: list[Event] = []
    add = ev.append

    # ---- index date ----
    span = (params.window_end - params.window_start).days
    index_date = params.window_start + D(rng.randint(0, span))
    if (v := fv("ENTRY_WINDOW")) is not None:
        before = params.window_start - D(1)
        after = params.window_end + D(1)
        index_date = {"before_b": before, "after_b": after,
                      "before": before - D(rng.randint(1, 300)),
                      "after": after + D(rng.randint(1, 80))}[v]
    elif (v := pv("ENTRY_WINDOW")) is not None:
        index_date = params.window_start if v == "first_day" else params.window_end
    index_date = _not_feb29(index_date)
    if index_date > params.data_cutoff - D(30):
        index_date = params.data_cutoff - D(30)

    # ---- demographics ----
    sex = "M" if rng.random() < 0.75 else "F"
    age = min(85, max(38, int(rng.gauss(62, 8))))
    birth = _years_before(index_date, age) - D(rng.randint(1, 364))
    if (v := fv("R1")) is not None:
        birth = _years_before(index_date, 18) + D(1) if v == "age17_b" else \
            _years_before(index_date, 17) + D(rng.randint(1, 300))
    elif pv("R1"):
        birth = _years_before(index_date, 18)
    name = "测试" + rng.choice(SURNAMES) + rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.6 else "")
    phone = "100" + f"{rng.randint(0, 99_999_999):08d}"

    # ---- induction timing ----
    cycles = _weighted(rng, [("4", 0.45), ("5", 0.2), ("6", 0.35)])
    n_cycles = int(cycles)
    v5 = fv("R5")
    if v5 in ("cycles3_b", "cycles7_b", "cycles2"):
        n_cycles = {"cycles3_b": 3, "cycles7_b": 7, "cycles2": 2}[v5]
    p5 = pv("R5")
    if p5 == "cycles4":
        n_cycles = 4
    elif p5 in ("cycles6", "platinum_on_index"):
        n_cycles = 6
    gap_to_index = rng.randint(21, 35)
    if p5 == "platinum_on_index":
        gap_to_index = 21
    cycle_offsets = [21 * k for k in range(n_cycles)]
    if p5 == "cycle14":
        cycle_offsets = [0] + [14 + 21 * (k - 1) for k in range(1, n_cycles)]
    last_cycle = index_date - D(gap_to_index)
    ind_start = last_cycle - D(cycle_offsets[-1])
    es_date = ind_start - D(rng.randint(3, 14))
    dx_date = es_date - D(rng.randint(0, 7))

    # ---- prior limited-stage disease (R3) ----
    v3, p3 = fv("R3"), pv("R3")
    ls_history = v3 is not None or p3 is not None or rng.random() < 0.10
    v2 = fv("R2")
    no_sclc = v2 == "no_sclc"
    es_late = v2 in ("es_after_b", "es_after")
    if ls_history:
        if v3 == "gap182_b":
            gap = 182
        elif v3 == "gap_short":
            gap = rng.randint(40, 181)
        elif p3 == "gap183":
            gap = 183
        else:
            gap = rng.randint(200, 900)
        last_tx_end = es_date - D(gap)
        rt_start = last_tx_end - D(rng.randint(38, 45))
        chemo0 = rt_start - D(21)
        first_dx = chemo0 - D(rng.randint(10, 25))
        add(Event(CONDITION, first_dx, "lung_cancer_nos" if no_sclc else _sclc_code(rng), context="ls"))
        add(Event(STAGE, first_dx + D(rng.randint(0, 5)), "valg_ls", context="ls"))
        for k in range(4):
            d = chemo0 + D(21 * k)
            if d > last_tx_end:
                break
            add(Event(DRUG, d, "cisplatin", end=d, context="ls"))
            for j in range(3):
                add(Event(DRUG, d + D(j), "etoposide", end=d + D(j), context="ls"))
        add(Event(RADIOTHERAPY, rt_start, "rt_thorax", end=last_tx_end, value=45.0, context="ls"))
        # relapse: the diagnosis of extensive disease
        relapse = "lung_cancer_nos" if no_sclc else "sclc_snomed" if es_late or rng.random() < 0.5 else "sclc_stage4"
        add(Event(CONDITION, dx_date, relapse, context="relapse"))
    else:
        add(Event(CONDITION, dx_date, "lung_cancer_nos" if no_sclc else _sclc_code(rng), context="diagnosis"))

    # ---- extensive stage record ----
    es_record = es_date
    if v2 == "es_after_b":
        es_record = index_date + D(1)
    elif v2 == "es_after":
        es_record = index_date + D(rng.randint(2, 30))
    if not es_late and not no_sclc and not ls_history and rng.random() < 0.2:
        # extensive stage said by the diagnosis itself (SCLC, TNM stage 4), on a new record
        add(Event(CONDITION, es_record, "sclc_stage4", context="staging"))
    else:
        add(Event(STAGE, es_record, "valg_es", context="staging"))

    # ---- earlier anti-angiogenic / PD-(L)1 (R11) ----
    v11, p11 = fv("R11"), pv("R11")
    if v11 == "pd1_before_es_b":
        pass  # added with the agent below
    elif v11 == "bev_before":
        d = es_date - D(rng.randint(60, 400))
        add(Event(DRUG, d, "bevacizumab", end=d, context="earlier"))
    elif v11 == "apatinib_before":
        d = es_date - D(rng.randint(60, 400))
        add(Event(DRUG, d, "apatinib", end=d + D(27), days_supply=28, quantity=28, context="earlier"))

    # ---- baseline target lesions (R4) ----
    v4, p4 = fv("R4"), pv("R4")
    sod_date = es_date - D(rng.randint(0, 14))
    sod = float(rng.randint(25, 140))
    if v4 == "sod9_b":
        sod = 9.0
    elif v4 == "sod_early_b":
        sod_date = es_date - D(43)
    if p4 == "sod10":
        sod = 10.0
    elif p4 == "sod_es42":
        sod_date = es_date - D(42)
    if v4 != "no_sod":
        add(Event(SOD, sod_date, "sod", value=sod, context="baseline"))

    # ---- ECOG (R7) ----
    add(Event(ECOG, dx_date, "ecog", value=float(rng.choice((0, 1, 1))), context="diagnosis"))
    v7, p7 = fv("R7"), pv("R7")
    ecog_date = index_date - D(rng.randint(0, 14))
    ecog = float(_weighted(rng, [("0", 0.35), ("1", 0.5), ("2", 0.15)]))
    if v7 == "ecog3_b":
        ecog = 3.0
    elif v7 == "ecog4":
        ecog = 4.0
    elif v7 == "ecog_latest3":
        add(Event(ECOG, index_date - D(30), "ecog", value=1.0, context="pre-index"))
        ecog = 3.0
        ecog_date = index_date - D(rng.randint(0, 10))
    elif v7 in ("ecog_old_b", "ecog_none"):
        ecog_date = index_date - D(43) if v7 == "ecog_old_b" else None
    if p7 == "ecog2":
        ecog = 2.0
    elif p7 == "ecog_42":
        ecog_date = index_date - D(42)
    elif p7 == "ecog3_then1":
        add(Event(ECOG, index_date - D(30), "ecog", value=3.0, context="pre-index"))
        ecog, ecog_date = 1.0, index_date - D(rng.randint(0, 10))
    if ecog_date is not None and ecog_date > dx_date:
        add(Event(ECOG, ecog_date, "ecog", value=ecog, context="pre-index"))

    # ---- coagulation (R13) ----
    uln_choices = c["aptt_ulns"]
    uln = rng.choice(uln_choices)
    lab_date = index_date - D(rng.randint(1, 10))
    inr = round(rng.uniform(0.85, 1.2), 2)
    aptt = round(rng.uniform(24.0, (uln or 40.0) - 2.0), 1)
    v13, p13 = fv("R13"), pv("R13")
    if v13 == "inr151_b":
        inr = 1.51
    elif v13 == "inr_high":
        inr = round(rng.uniform(1.6, 2.6), 2)
    elif v13 == "aptt_b":
        uln = rng.choice([u for u in uln_choices if u is not None])
        aptt = round(1.5 * uln + 0.1, 1)
    elif v13 == "aptt_noref":
        uln, aptt = None, 60.1
    elif v13 == "bleed180_b":
        add(Event(CONDITION, index_date - D(180), rng.choice(c["bleeding"]), context="bleeding"))
    elif v13 == "bleed":
        add(Event(CONDITION, index_date - D(rng.randint(5, 170)), rng.choice(c["bleeding"]), context="bleeding"))
    if p13 == "inr150":
        inr = 1.5
    elif p13 == "aptt150":
        uln = rng.choice([u for u in uln_choices if u is not None])
        aptt = 1.5 * uln
    elif p13 == "aptt_noref60":
        uln, aptt = None, 60.0
    elif p13 == "inr_old":
        add(Event(LAB, index_date - D(31), "inr", value=1.9, range_high=1.2, context="pre-index"))
    elif p13 == "bleed181":
        add(Event(CONDITION, index_date - D(181), rng.choice(c["bleeding"]), context="bleeding"))
    add(Event(LAB, dx_date, "inr", value=round(rng.uniform(0.85, 1.15), 2), range_high=1.2, context="diagnosis"))
    add(Event(LAB, lab_date, "inr", value=inr, range_high=1.2, context="pre-index"))
    add(Event(LAB, lab_date, "aptt", value=aptt, range_high=uln, context="pre-index"))

    # ---- autoimmune + immunosuppressive (R12) ----
    v12, p12 = fv("R12"), pv("R12")
    ai = rng.choice(c["autoimmune"])
    isd = rng.choice(c["immunosuppressants"])
    if v12 == "window730_b":
        d = index_date - D(730)
        add(Event(CONDITION, d, ai, context="autoimmune"))
        add(Event(DRUG, d, isd, end=d, days_supply=1, quantity=1, context="autoimmune"))
    elif v12 == "ai_is":
        d = index_date - D(rng.randint(60, 700))
        add(Event(CONDITION, d, ai, context="autoimmune"))
        s = d + D(rng.randint(0, 20))
        add(Event(DRUG, s, isd, end=s + D(29), days_supply=30, quantity=30, context="autoimmune"))
    elif p12 == "window731":
        d = index_date - D(731)
        add(Event(CONDITION, d, ai, context="autoimmune"))
        add(Event(DRUG, d, isd, end=d, days_supply=1, quantity=1, context="autoimmune"))
    elif p12 == "ai_only":
        add(Event(CONDITION, index_date - D(rng.randint(60, 700)), ai, context="autoimmune"))
    elif p12 == "is_only":
        s = index_date - D(rng.randint(60, 700))
        add(Event(DRUG, s, "prednisone", end=s + D(13), days_supply=14, quantity=14, context="other"))

    # ---- first-line induction (R5, R6) ----
    agent = _weighted(rng, list(c["pd1_weights"].items()))
    platinum = "carboplatin" if rng.random() < 0.65 else "cisplatin"
    if v11 == "pd1_before_es_b":
        add(Event(DRUG, es_date - D(1), agent, end=es_date - D(1), context="earlier"))
    elif p11 == "pd1_on_es":
        add(Event(DRUG, es_date, agent, end=es_date, context="earlier"))
    for k, off in enumerate(cycle_offsets):
        d = ind_start + D(off)
        add(Event(DRUG, d, platinum, end=d, context=f"induction C{k + 1}"))
        if p5 == "split_dose" and platinum == "cisplatin":
            for j in (1, 2):
                add(Event(DRUG, d + D(j), platinum, end=d + D(j), context=f"induction C{k + 1}"))
        add(Event(DRUG, d, "dexamethasone", end=d, context="premed"))
        if v5 != "no_etoposide":
            for j in range(3):
                add(Event(DRUG, d + D(j), "etoposide", end=d + D(j), context=f"induction C{k + 1}"))
        if v5 != "no_pd1":
            add(Event(DRUG, d, agent, end=d, context=f"induction C{k + 1}"))
    if p5 == "split_dose" and platinum == "carboplatin":
        d = last_cycle + D(13)  # a second platinum date 13 days on: not a new cycle
        add(Event(DRUG, d, platinum, end=d, context="induction extra"))
    if p5 == "platinum_on_index":
        add(Event(DRUG, index_date, platinum, end=index_date, context="induction C7 (on index)"))
    # scans during induction
    best = _weighted(rng, [("PR", 0.6), ("SD", 0.3), ("CR", 0.1)])
    if n_cycles >= 3:
        add(Event(RESPONSE, ind_start + D(cycle_offsets[1] + 18), "response", value_code="PR" if best != "SD" else "SD",
                  context="induction"))
    v6 = fv("R6")
    end_scan = index_date - D(rng.randint(3, 10))
    if v6 == "pd_on_index_b":
        add(Event(RESPONSE, index_date, "response", value_code="PD", context="induction end"))
    elif v6 == "pd_before":
        add(Event(RESPONSE, end_scan, "response", value_code="PD", context="induction end"))
    else:
        add(Event(RESPONSE, end_scan, "response", value_code=best, context="induction end"))

    # ---- outcome times (latent) ----
    dose = _weighted(rng, list(params.dose_weights))
    hr_p = dict(params.hr_progression)[dose]
    hr_d = dict(params.hr_death)[dose]
    t_prog = _weibull(rng, params.progression.shape, params.progression.scale_for(hr_p))
    t_death = _weibull(rng, params.death.shape, params.death.scale_for(hr_d))
    true_pfs = min(t_prog, t_death)
    censor = params.data_cutoff
    lost = rng.random() < params.loss_share
    if lost:
        censor = min(censor, index_date + D(rng.randint(20, 900)))
    death = index_date + D(t_death)
    death_date = death if death <= censor else None
    last_alive = death_date if death_date is not None else censor

    # ---- scans after index (R10) ----
    v10 = fv("R10")
    pd_date: date | None = None
    scan = index_date + D(rng.randint(42, 56))
    scans_done = 0
    while v10 != "no_scans" and (scan < last_alive or (scan == last_alive and death_date is None)):
        if scan > params.data_cutoff:
            break
        if v10 == "ne_only":
            add(Event(RESPONSE, scan, "response", value_code="NE", context="maintenance"))
            break
        if (scan - index_date).days >= t_prog:
            add(Event(RESPONSE, scan, "response", value_code="PD", context="maintenance"))
            pd_date = scan
            break
        resp = best if (scans_done > 0 or rng.random() < 0.95) else "NE"
        if best == "PR" and scans_done >= 2 and rng.random() < 0.15:
            best = "CR"
        add(Event(RESPONSE, scan, "response", value_code=resp, context="maintenance"))
        scans_done += 1
        scan = scan + D(rng.randint(42, 63))
    hard_stop = death_date if death_date is not None else censor + D(1)  # first day without any record
    stop = min(pd_date, hard_stop) if pd_date is not None else hard_stop  # first day off treatment

    # ---- anlotinib courses (R9, entry) ----
    v9, p9 = fv("R9"), pv("R9")
    strength_key = {"12": "anlotinib_12", "10": "anlotinib_10", "8": "anlotinib_8", "unknown": "anlotinib"}[dose]
    starts: list[int] = []
    if fv("ENTRY_NONE") is None:
        if v9 == "era41_b":
            starts = [0, 27]
        elif v9 == "two_courses":
            starts = [0, 21]
        elif p9 == "era42":
            starts = [0, 28]
        else:
            first_gap = {"gap31_b": 13 + 31, "gap30": 13 + 30}.get(v9 or p9 or "", 21)
            starts = [0]
            d = first_gap
            while d < 730:
                starts.append(d)
                d += 21
    reduced = False
    aes_severe_at: int | None = None
    # adverse events (after index, while on treatment or within 30 days)
    ae_events: list[Event] = []
    for term, rate in c["ae_rates"].items():
        if starts and rng.random() < rate:
            onset = index_date + D(rng.randint(5, 150))
            if onset >= stop:
                continue
            grade = int(_weighted(rng, [(str(g + 1), w) for g, w in enumerate(c["ae_grade_weights"])]))
            if grade == 5:
                grade = 4  # deaths come from the survival model only
            end = onset + D(rng.randint(7, 60))
            ae_events.append(Event(AE, onset, term, end=end if end < hard_stop else None, grade=grade,
                                   context="maintenance"))
            if grade >= 3 and (aes_severe_at is None or (onset - index_date).days < aes_severe_at):
                aes_severe_at = (onset - index_date).days
    ev.extend(ae_events)
    for off in starts:
        s = index_date + D(off)
        if s >= stop:
            break
        e = min(s + D(13), hard_stop - D(1))  # a course dispensed before PD is taken
        key = strength_key
        if aes_severe_at is not None and off > aes_severe_at and dose in ("12", "10"):
            key = "anlotinib_10" if dose == "12" else "anlotinib_8"
            reduced = True
        days = (e - s).days + 1
        add(Event(DRUG, s, key, end=e, days_supply=days, quantity=float(days),
                  context="maintenance" + (" reduced" if reduced else "")))
    # ---- PD-(L)1 maintenance (R8) ----
    v8, p8 = fv("R8"), pv("R8")
    if v8 != "pd1_none":
        first = {"pd1_late_b": 29}.get(v8 or "", {"pd1_28": 28, "pd1_minus7": -7}.get(p8 or "", 0))
        off = first
        while off < 730:
            d = index_date + D(off)
            if d >= stop:
                break
            add(Event(DRUG, d, agent, end=d, context="maintenance"))
            off += 21

    # ---- follow-up contact: the last date known alive ----
    if death_date is None:
        add(Event(VISIT, censor, "outpatient", context="lost to follow-up" if lost and censor < params.data_cutoff
                  else "follow-up"))
    patient = Patient(
        index=index,
        patient_id=f"P{index:07d}",
        hospital_id=f"ZY{(index * 7919) % 10_000_000 + 20_000_000:08d}",
        name=name,
        phone=phone,
        sex=sex,
        birth_date=birth,
        events=ev,
        death_date=death_date,
        last_contact=last_alive,
        lost_to_follow_up=lost and death_date is None and censor < params.data_cutoff,
        true_pfs_days=true_pfs,
        true_os_days=t_death,
        scenario=scenario,
    )
    patient.sorted_events()
    return patient


def _sclc_code(rng: random.Random) -> str:
    u = rng.random()
    if u < 0.6:
        return "sclc_snomed"
    return rng.choice(("sclc_c340", "sclc_c341", "sclc_c343"))


def generate_patients(n: int, params: SynthParams, start: int = 1) -> Iterator[Patient]:
    """Patients ``start`` .. ``start + n - 1``, one at a time."""
    for i in range(start, start + n):
        yield generate_patient(i, params)
