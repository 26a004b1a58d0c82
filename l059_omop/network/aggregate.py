"""Person-level analysis rows (which never leave the site) -> the aggregate tables of ``results.FILES``.

Input: one row per person as ``l059_omop.outcomes.extract`` returns it (os_days, os_event, pfs_days,
pfs_event, best_response_rank, dose_value, pd1_agent, gender_concept_id, year_of_birth, index_date, ecog),
graded adverse events per person and term, and the cohort attrition. Output: counts, attrition, life
tables, response, safety and Cox estimates with their covariance, with small cells suppressed when
min_cell_count > 1 and every suppression logged.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from l059_omop.network import lifetable
from l059_omop.network.suppress import (
    COARSENED,
    SMALL,
    WITHHELD,
    SuppressionLog,
    is_small,
    partition,
)
from l059_omop.network.suppress import (
    attrition as attrition_mask,
)

RESPONSE = {1: "CR", 2: "PR", 3: "SD", 4: "PD", 5: "NE"}
RESPONSE_CELLS = ["CR", "PR", "SD", "PD", "NE", "not_assessed"]
RESPONSE_SUMS = {"ORR": ["CR", "PR"], "DCR": ["CR", "PR", "SD"], "N": RESPONSE_CELLS}
DOSE_LEVELS = {12.0: "12 mg", 10.0: "10 mg", 8.0: "8 mg"}


@dataclass
class Aggregates:
    tables: dict[str, pd.DataFrame]
    log: SuppressionLog
    notes: list[str] = field(default_factory=list)
    km_exact: bool = True


def analysis_frame(persons: pd.DataFrame, male_ids: Sequence[int] = (), female_ids: Sequence[int] = ()
                   ) -> pd.DataFrame:
    """Derive the analysis variables (subgroups, covariates) from the extract's columns.

    ``male_ids`` / ``female_ids`` are the site's gender concept sets (resolved from its vocabulary); a person
    in neither has ``male`` missing, so a Cox model on sex leaves them out instead of counting them female.
    """
    p = persons.copy()
    dose = pd.to_numeric(p.get("dose_value"), errors="coerce") if "dose_value" in p else pd.Series(np.nan, p.index)
    p["dose"] = [DOSE_LEVELS.get(float(v), "unknown") if v == v else "unknown" for v in dose]
    agent = p["pd1_agent"] if "pd1_agent" in p else pd.Series(None, index=p.index, dtype=object)
    p["agent"] = [str(a).strip().lower() if isinstance(a, str) and a.strip() else "unknown" for a in agent]
    rank = pd.to_numeric(p.get("best_response_rank"), errors="coerce") if "best_response_rank" in p else None
    p["bor"] = ["not_assessed" if r is None or r != r else RESPONSE.get(int(r), "NE")
                for r in (rank if rank is not None else [None] * len(p))]
    idx_year = pd.to_datetime(p["index_date"]).dt.year if "index_date" in p else np.nan
    p["age_per_10y"] = (idx_year - pd.to_numeric(p.get("year_of_birth"), errors="coerce")) / 10.0
    gender = pd.to_numeric(p.get("gender_concept_id"), errors="coerce")
    p["male"] = np.where(gender.isin(list(male_ids)), 1.0, np.where(gender.isin(list(female_ids)), 0.0, np.nan))
    ecog = pd.to_numeric(p.get("ecog"), errors="coerce") if "ecog" in p else pd.Series(np.nan, p.index)
    p["ecog_2"] = np.where(ecog.isna(), np.nan, (ecog >= 2).astype(float))
    p["dose_below_12mg"] = np.where(dose.isna(), np.nan, (dose < 12).astype(float))
    return p


def _attrition(attrition: pd.DataFrame | None, k: int, log: SuppressionLog) -> pd.DataFrame:
    cols = ["rule_sequence", "rule_name", "persons_remaining", "persons_excluded", "fail_alone"]
    if attrition is None or attrition.empty:
        return pd.DataFrame(columns=cols)
    a = attrition.sort_values("rule_sequence").reset_index(drop=True)
    remaining = [int(v) for v in a["persons_remaining"]]
    show = attrition_mask(remaining, k)
    rows = []
    prev_shown: int | None = None
    for i, r in a.iterrows():
        rem = remaining[i] if show[i] else None
        excluded = None
        if show[i] and (i == 0 or show[i - 1]):
            excluded = int(r["persons_excluded"]) if "persons_excluded" in a and r["persons_excluded"] == r[
                "persons_excluded"] else (remaining[i - 1] - remaining[i] if i else 0)
        if not show[i]:
            log.add("attrition.csv", str(r["rule_name"]), "persons_remaining",
                    SMALL if is_small(remaining[i], k) else "complementary: would reveal a small exclusion")
        if excluded is None:
            log.add("attrition.csv", str(r["rule_name"]), "persons_excluded",
                    "derived from a suppressed count")
        fail_alone = None
        if "fail_alone" in a and r["fail_alone"] == r["fail_alone"] and r["fail_alone"] is not None:
            fail_alone = int(r["fail_alone"])
            if is_small(fail_alone, k):
                log.add("attrition.csv", str(r["rule_name"]), "fail_alone", SMALL)
                fail_alone = None
        rows.append({"rule_sequence": int(r["rule_sequence"]), "rule_name": str(r["rule_name"]),
                     "persons_remaining": rem, "persons_excluded": excluded, "fail_alone": fail_alone})
        prev_shown = rem if rem is not None else prev_shown
    return pd.DataFrame(rows, columns=cols).astype({c: "Int64" for c in cols[2:]})


MIN_DETAIL_KEPT = 0.5  # a subgroup partition is published only if "all" keeps half its bins on shared bins
KM_GROUP_FACTOR = 4  # under suppression, subgroups smaller than 4 x min_cell_count share one "other" curve


def _subgroup_sizes(p: pd.DataFrame, subgroups: list[str], k: int, log: SuppressionLog, notes: list[str]
                    ) -> tuple[list[dict], dict[str, dict[str, np.ndarray]]]:
    """Subgroup size rows for counts.csv, and per partition the groups whose life tables may be published.

    Under suppression a level gets its own curve only when its size is published and >= 4 x k; every
    other level (including all suppressed ones) shares one "other" curve, so its size reveals no more than
    the sum of the suppressed sizes, which is >= k.
    """
    rows: list[dict] = []
    publishable: dict[str, dict[str, np.ndarray]] = {}
    for sg in subgroups:
        levels = sorted(p[sg].unique())
        cells = {lv: int((p[sg] == lv).sum()) for lv in levels}
        shown, reasons = partition(cells, {}, k)
        for lv in levels:
            rows.append({"item": f"persons {sg}={lv}", "value": shown[lv]})
            if shown[lv] is None:
                log.add("counts.csv", f"persons {sg}={lv}", "value", reasons.get(lv, SMALL))
        groups: dict[str, np.ndarray] = {}
        if k <= 1:
            for lv in levels:
                groups[f"{sg}={lv}"] = (p[sg] == lv).to_numpy()
        else:
            own = [lv for lv in levels if shown[lv] is not None and cells[lv] >= KM_GROUP_FACTOR * k]
            rest = [lv for lv in levels if lv not in own]
            for lv in own:
                groups[f"{sg}={lv}"] = (p[sg] == lv).to_numpy()
            if rest:
                mask = p[sg].isin(rest).to_numpy()
                if mask.sum() < k:
                    notes.append(f"subgroup {sg}: too few persons outside the large levels; no curves by {sg}")
                    groups = {}
                else:
                    groups[f"{sg}=other ({', '.join(rest)})"] = mask
            if len(groups) < 2:
                groups = {}
        publishable[sg] = groups
    return rows, publishable


def _life_tables(p: pd.DataFrame, endpoints: list[str], groups: dict[str, dict[str, np.ndarray]], k: int,
                 log: SuppressionLog, notes: list[str]) -> tuple[pd.DataFrame, bool]:
    """Life tables per endpoint: exact without suppression; with it, "all" and the curves of one subgroup
    partition on shared bins (a second partition's bins would allow differencing against the first)."""
    frames = []
    for ep in endpoints:
        time = pd.to_numeric(p[f"{ep}_days"], errors="coerce")
        event = pd.to_numeric(p[f"{ep}_event"], errors="coerce")
        ok = (time.notna() & event.notna()).to_numpy()
        t, e = time[ok].to_numpy(float), event[ok].to_numpy(int)
        if is_small(int(len(ok) - ok.sum()), k):
            log.add("km_life_table.csv", f"{ep} *", "*", "withheld: a small number of persons lack this endpoint")
            notes.append(f"{ep}: life tables withheld (a small number of persons lack this endpoint)")
            continue
        if k <= 1:
            tables = lifetable.coarsen_joint(t, e, {}, k)
            for gs in groups.values():
                sub = lifetable.coarsen_joint(t, e, {n: m[ok] for n, m in gs.items()}, k)
                tables.update({n: v for n, v in sub.items() if n != "all"})
        else:
            alone = lifetable.coarsen_joint(t, e, {}, k)
            tables = None
            published = None
            for sg, gs in groups.items():
                if not gs:
                    continue
                if published is None and alone is not None:
                    joint = lifetable.coarsen_joint(t, e, {n: m[ok] for n, m in gs.items()}, k)
                    if joint is not None and len(joint["all"]) >= MIN_DETAIL_KEPT * len(alone["all"]):
                        tables, published = joint, sg
                        continue
                    reason = (WITHHELD if joint is None else
                              "withheld: shared bins with these subgroups would coarsen the whole-cohort table")
                else:
                    reason = "withheld: one subgroup partition per endpoint under suppression"
                log.add("km_life_table.csv", f"{ep} {sg}=*", "*", reason)
                notes.append(f"{ep}: life tables by {sg} {reason}")
            if tables is None:
                tables = alone
            if tables is None:
                log.add("km_life_table.csv", f"{ep} all", "*", WITHHELD)
                notes.append(f"{ep}: life table withheld (too few persons or events)")
                continue
            log.add("km_life_table.csv", f"{ep} *", "time", COARSENED)
        for name in sorted(tables, key=lambda x: (x != "all", x)):
            lt = tables[name].copy()
            lt.insert(0, "subgroup", name)
            lt.insert(0, "endpoint", ep)
            frames.append(lt)
    cols = ["endpoint", "subgroup", "time", "at_risk", "events", "censored"]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    return out[cols], k <= 1


def _response(p: pd.DataFrame, k: int, log: SuppressionLog) -> pd.DataFrame:
    cells = {c: int((p["bor"] == c).sum()) for c in RESPONSE_CELLS}
    shown, reasons = partition(cells, RESPONSE_SUMS, k)
    rows = []
    for name in [*RESPONSE_CELLS, *RESPONSE_SUMS]:
        rows.append({"subgroup": "all", "category": name, "n": shown[name]})
        if shown[name] is None:
            log.add("response.csv", f"all {name}", "n", reasons.get(name, SMALL))
    return pd.DataFrame(rows).astype({"n": "Int64"})


def _safety(p: pd.DataFrame, ae: pd.DataFrame | None, k: int, log: SuppressionLog) -> pd.DataFrame:
    cols = ["term", "n_any", "n_grade3plus"]
    if ae is None or ae.empty:
        return pd.DataFrame(columns=cols)
    n = len(p)
    cohort_ids = set(p["person_id"]) if "person_id" in p else None
    ae = ae if cohort_ids is None else ae[ae["person_id"].isin(cohort_ids)]
    worst = ae.groupby(["term", "person_id"])["worst_grade"].max().reset_index()
    rows = []
    for term, g in worst.groupby("term"):
        g3 = int((g["worst_grade"] >= 3).sum())
        g12 = int(len(g)) - g3
        cells = {"grade1_2": g12, "grade3plus": g3, "none": n - g12 - g3}
        shown, reasons = partition(cells, {"any": ["grade1_2", "grade3plus"], "n": list(cells)}, k)
        for col, key in (("n_any", "any"), ("n_grade3plus", "grade3plus")):
            if shown[key] is None:
                log.add("safety.csv", str(term), col, reasons.get(key, SMALL))
        rows.append({"term": str(term), "n_any": shown["any"], "n_grade3plus": shown["grade3plus"]})
    return pd.DataFrame(rows, columns=cols).astype({"n_any": "Int64", "n_grade3plus": "Int64"})


def _cox(p: pd.DataFrame, settings: dict, k: int, log: SuppressionLog, notes: list[str]
         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    from lifelines import CoxPHFitter

    est_rows, cov_rows = [], []
    cox = settings.get("cox") or {}
    for ep in cox.get("endpoints", []):
        covs = [c for c in cox.get("covariates", []) if c in p]
        data = p[[f"{ep}_days", f"{ep}_event", *covs]].apply(pd.to_numeric, errors="coerce").dropna()
        model = "cox_" + "_".join(covs)
        usable = []
        for c in covs:
            v = data[c]
            if set(v.unique()) <= {0.0, 1.0}:
                n1, n0 = int((v == 1).sum()), int((v == 0).sum())
                if n1 == 0 or n0 == 0:
                    notes.append(f"{ep}: covariate {c} has no variation here; left out of the model")
                    continue
                e1 = int(data.loc[v == 1, f"{ep}_event"].sum())
                e0 = int(data.loc[v == 0, f"{ep}_event"].sum())
                if any(is_small(x, k) for x in (n1, n0, e1, e0)):
                    log.add("cox.csv", f"{model} {ep} {c}", "*", "covariate level with too few persons or events")
                    notes.append(f"{ep}: covariate {c} left out (a level has too few persons or events)")
                    continue
            usable.append(c)
        n, events = len(data), int(data[f"{ep}_event"].sum())
        if not usable or is_small(n, k) or is_small(events, k) or events == 0:
            log.add("cox.csv", f"{model} {ep}", "*", WITHHELD)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cph = CoxPHFitter().fit(data[[f"{ep}_days", f"{ep}_event", *usable]], duration_col=f"{ep}_days",
                                        event_col=f"{ep}_event")
        except Exception as exc:  # noqa: BLE001 - convergence failures: report, do not stop the site
            notes.append(f"{ep}: Cox model did not converge ({type(exc).__name__})")
            continue
        cov = cph.variance_matrix_
        # complete cases: n and events differ from the cohort's by the persons with a missing covariate;
        # a small difference would show through the published cohort numbers
        ev_all = pd.to_numeric(p[f"{ep}_event"], errors="coerce")
        n_pub, ev_pub = n, events
        if k > 1 and (is_small(int(ev_all.notna().sum()) - n, k) or is_small(int(ev_all.sum()) - events, k)):
            n_pub = ev_pub = None
            log.add("cox.csv", f"{model} {ep}", "n, events",
                    "derived: complete cases differ from the cohort by a small count")
        for term in usable:
            est_rows.append({"model": model, "endpoint": ep, "term": term, "coef": float(cph.params_[term]),
                             "se": float(math.sqrt(cov.loc[term, term])), "n": n_pub, "events": ev_pub})
            for other in usable:
                cov_rows.append({"model": model, "endpoint": ep, "term_row": term, "term_col": other,
                                 "value": float(cov.loc[term, other])})
    est = pd.DataFrame(est_rows, columns=["model", "endpoint", "term", "coef", "se", "n", "events"]).astype(
        {"n": "Int64", "events": "Int64"})
    covm = pd.DataFrame(cov_rows, columns=["model", "endpoint", "term_row", "term_col", "value"])
    return est, covm


def aggregate(persons: pd.DataFrame, adverse_events: pd.DataFrame | None, attrition: pd.DataFrame | None,
              settings: dict, min_cell_count: int, male_ids: Sequence[int] = (),
              female_ids: Sequence[int] = ()) -> Aggregates:
    """All aggregate tables of one site, suppressed at ``min_cell_count`` (1 = off)."""
    k = int(min_cell_count)
    log = SuppressionLog(k)
    notes: list[str] = []
    att = _attrition(attrition, k, log)
    if persons is None or persons.empty:
        notes.append("the cohort is empty at this site")
        counts = pd.DataFrame({"item": ["persons"], "value": [0]}).astype({"value": "Int64"})
        return Aggregates({"attrition.csv": att, "counts.csv": counts}, log, notes, k <= 1)
    p = analysis_frame(persons, male_ids, female_ids)
    n = len(p)
    # the cohort size appears in many tables; it is published only where the attrition publishes it
    n_shown = None if is_small(n, k) else n
    reason = SMALL
    if len(att) and att["persons_remaining"].iloc[-1] is pd.NA and k > 1:
        n_shown, reason = None, "withheld with the attrition"
    if attrition is not None and len(attrition) and k > 1:
        # analysed persons and the cohort differ (e.g. entries after the data cut-off): a small
        # difference would show through the two published numbers
        final = int(attrition.sort_values("rule_sequence")["persons_remaining"].iloc[-1])
        if is_small(abs(final - n), k):
            n_shown, reason = None, "withheld: differs from the cohort size by a small count"
    counts = [{"item": "persons", "value": n_shown}]
    if n_shown is None:
        log.add("counts.csv", "persons", "value", reason)
        notes.append(f"outcome tables not returned ({reason})")
        tables = {"attrition.csv": att, "counts.csv": pd.DataFrame(counts)}
        return Aggregates(tables, log, notes, k <= 1)
    subgroups = [s for s in settings.get("subgroups", []) if s in p]
    sg_rows, groups = _subgroup_sizes(p, subgroups, k, log, notes)
    endpoints = [ep for ep in settings.get("endpoints", ["os", "pfs"]) if f"{ep}_days" in p]
    for ep in endpoints:
        ev = int(pd.to_numeric(p[f"{ep}_event"], errors="coerce").fillna(0).sum())
        shown = None if is_small(ev, k) else ev
        if shown is None:
            log.add("counts.csv", f"{ep} events", "value", SMALL)
        counts.append({"item": f"{ep} events", "value": shown})
    counts += sg_rows
    km, exact = _life_tables(p, endpoints, groups, k, log, notes)
    cox, cov = _cox(p, settings, k, log, notes)
    tables = {
        "attrition.csv": att,
        "counts.csv": pd.DataFrame(counts).astype({"value": "Int64"}),
        "km_life_table.csv": km,
        "response.csv": _response(p, k, log),
        "safety.csv": _safety(p, adverse_events, k, log),
        "cox.csv": cox,
        "cox_covariance.csv": cov,
    }
    return Aggregates(tables, log, notes, exact)
