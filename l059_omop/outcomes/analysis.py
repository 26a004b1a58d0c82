"""From analysis rows (one per person, as the outcome SQL returns them) to the study's tables: survival
summaries by subgroup, Kaplan-Meier tables, follow-up, log-rank, Cox, response, safety and Table 1.

Pure pandas/numpy (no database), so a test or the network study can feed rows from anywhere.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from l059_omop.outcomes import km as kmmod
from l059_omop.outcomes.extract import RESPONSE_LABELS

ENDPOINTS = ("os", "pfs")
# subgroup name -> derived column (COHORT.md: starting dose and PD-(L)1 agent; ECOG and sex as well)
DEFAULT_SUBGROUPS: dict[str, str] = {"dose": "dose", "agent": "pd1_agent", "ecog": "ecog_group", "sex": "sex"}
# prespecified Cox covariates (COHORT.md); metastases only where recorded
DEFAULT_COX: tuple[str, ...] = ("age", "sex", "ecog", "dose", "liver_metastasis", "brain_metastasis")
LANDMARKS_DAYS = {"rate_6m": 6 * kmmod.DAYS_PER_MONTH, "rate_12m": 12 * kmmod.DAYS_PER_MONTH}
UNKNOWN = "unknown"
SUMMARY_COLUMNS = ["endpoint", "subgroup", "n", "events", "median_days", "median_lower_days", "median_upper_days",
                   "rate_6m", "rate_12m", "ci_method"]
KM_COLUMNS = ["time", "at_risk", "events", "censored", "survival", "lower", "upper"]


@dataclass
class Analysis:
    """The study's tables with exact counts (suppression happens when writing; see ``suppress``)."""

    persons: pd.DataFrame
    survival_summary: pd.DataFrame
    km_tables: dict[str, pd.DataFrame]
    curves: dict[tuple[str, str], kmmod.KaplanMeier]
    landmarks: pd.DataFrame
    follow_up: pd.DataFrame
    logrank: pd.DataFrame
    cox: pd.DataFrame
    response: pd.DataFrame
    safety: pd.DataFrame
    table1: pd.DataFrame
    ci_method: str
    notes: list[str] = field(default_factory=list)


def derive_columns(persons: pd.DataFrame, female_ids: Sequence[int] = (), male_ids: Sequence[int] = ()
                   ) -> pd.DataFrame:
    """Age at index (full birth date where known, else birth year), sex, ECOG group, dose, agent and best
    response labels from the raw SQL columns."""
    df = persons.copy()
    idx = pd.to_datetime(df["index_date"])
    yob = df["year_of_birth"].astype(float)
    mob = df["month_of_birth"].astype(float)
    dob = df["day_of_birth"].astype(float)
    full = mob.notna() & dob.notna()
    before_birthday = (idx.dt.month < mob) | ((idx.dt.month == mob) & (idx.dt.day < dob))
    df["age"] = idx.dt.year - yob - np.where(full & before_birthday, 1, 0)
    g = df["gender_concept_id"]
    df["sex"] = np.where(g.isin(list(female_ids)), "female", np.where(g.isin(list(male_ids)), "male", UNKNOWN))
    ecog = df["ecog"]
    df["ecog_group"] = np.where(ecog.notna(), ecog.round().astype("Int64").astype(str), UNKNOWN)
    dose = df["dose_value"]
    unit = df["dose_unit"].fillna("").astype(str)
    df["dose"] = [f"{v:g} {u}".strip() if pd.notna(v) else UNKNOWN for v, u in zip(dose, unit, strict=True)]
    df["pd1_agent"] = df["pd1_agent"].fillna("none recorded").astype(str).str.lower()
    df["best_response"] = df["best_response_rank"].map(RESPONSE_LABELS).fillna("not assessed")
    for ep in ENDPOINTS:
        df[f"{ep}_days"] = df[f"{ep}_days"].clip(lower=0)
    return df


def _level_order(values: pd.Series, descending: bool = False) -> list[str]:
    """Subgroup levels in a readable order: numeric-looking first by value, 'unknown' last."""
    levels = [v for v in values.dropna().unique().tolist()]
    sign = -1.0 if descending else 1.0

    def key(v: str):
        head = str(v).split(" ")[0]
        try:
            return (0, sign * float(head), str(v))
        except ValueError:
            return (1 if v not in (UNKNOWN, "none recorded") else 2, 0.0, str(v))

    return sorted(levels, key=key)


def _summary_row(endpoint: str, subgroup: str, curve: kmmod.KaplanMeier) -> dict:
    med, lo, hi = curve.median()
    rates = curve.at(list(LANDMARKS_DAYS.values()))["survival"].to_numpy()
    row = {"endpoint": endpoint, "subgroup": subgroup, "n": curve.n, "events": curve.events,
           "median_days": med, "median_lower_days": lo, "median_upper_days": hi}
    for (name, _), r in zip(LANDMARKS_DAYS.items(), rates, strict=True):
        row[name] = r
    row["ci_method"] = curve.ci_method
    return row


def survival_tables(df: pd.DataFrame, ci_method: str = "log", subgroups: Mapping[str, str] = DEFAULT_SUBGROUPS,
                    endpoints: Sequence[str] = ENDPOINTS):
    """Curves, the summary (one row per endpoint and subgroup) and landmark rates with their bands."""
    curves: dict[tuple[str, str], kmmod.KaplanMeier] = {}
    rows, marks = [], []
    for ep in endpoints:
        t, e = df[f"{ep}_days"].to_numpy(float), df[f"{ep}_event"].to_numpy(int)
        groups = [("all", np.ones(len(df), dtype=bool))]
        for name, col in subgroups.items():
            if col not in df or df[col].nunique() < 2:
                continue  # one level only: the same as 'all'
            for level in _level_order(df[col], descending=name == "dose"):  # 12 / 10 / 8 mg as COHORT.md
                groups.append((f"{name}={level}", (df[col] == level).to_numpy()))
        for label, mask in groups:
            if not mask.any():
                continue
            curve = kmmod.kaplan_meier(t[mask], e[mask], ci_method=ci_method)
            curves[(ep, label)] = curve
            rows.append(_summary_row(ep, label, curve))
            at = curve.at(list(LANDMARKS_DAYS.values()))
            for (name, days), (_, r) in zip(LANDMARKS_DAYS.items(), at.iterrows(), strict=True):
                marks.append({"endpoint": ep, "subgroup": label, "landmark": name, "days": days,
                              "at_risk": int(r["at_risk"]), "survival": r["survival"], "lower": r["lower"],
                              "upper": r["upper"], "ci_method": ci_method})
    return curves, pd.DataFrame(rows, columns=SUMMARY_COLUMNS), pd.DataFrame(marks)


def follow_up(df: pd.DataFrame, endpoints: Sequence[str] = ENDPOINTS, ci_method: str = "log") -> pd.DataFrame:
    """Median follow-up by reverse Kaplan-Meier per endpoint."""
    rows = []
    for ep in endpoints:
        med, lo, hi = kmmod.reverse_km_median(df[f"{ep}_days"], df[f"{ep}_event"], ci_method=ci_method)
        rows.append({"endpoint": ep, "n": len(df), "median_follow_up_days": med, "lower_days": lo,
                     "upper_days": hi, "method": "reverse Kaplan-Meier"})
    return pd.DataFrame(rows)


def logrank_tests(df: pd.DataFrame, subgroups: Mapping[str, str] = DEFAULT_SUBGROUPS,
                  endpoints: Sequence[str] = ENDPOINTS) -> pd.DataFrame:
    """Log-rank across the known levels of each subgroup (persons with an unknown level left out)."""
    rows = []
    for ep in endpoints:
        for name, col in subgroups.items():
            if col not in df:
                continue
            sub = df[df[col] != UNKNOWN]
            if sub[col].nunique() < 2:
                continue
            res = kmmod.logrank(sub[f"{ep}_days"], sub[f"{ep}_event"], sub[col])
            rows.append({"endpoint": ep, "subgroup": name, "groups": " | ".join(_level_order(sub[col])),
                         "n": len(sub), "chi2": res.chi2, "df": res.df, "p_value": res.p_value})
    return pd.DataFrame(rows, columns=["endpoint", "subgroup", "groups", "n", "chi2", "df", "p_value"])


def cox_design(df: pd.DataFrame, covariates: Sequence[str]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Numeric design columns for the requested covariates; returns (frame, columns, notes).

    age as years; sex as female (vs male); ECOG and dose as indicators against the most common level;
    metastases as indicators, used only where anyone has one recorded.
    """
    out = pd.DataFrame(index=df.index)
    cols: list[str] = []
    notes: list[str] = []
    for cov in covariates:
        if cov == "age":
            out["age"] = df["age"].astype(float)
            cols.append("age")
        elif cov == "sex":
            out["sex_female"] = np.where(df["sex"] == "female", 1.0, np.where(df["sex"] == "male", 0.0, np.nan))
            cols.append("sex_female")
        elif cov in ("ecog", "dose"):
            col = "ecog_group" if cov == "ecog" else "dose"
            known = df[col].where(df[col] != UNKNOWN) if cov == "ecog" else df[col]
            levels = known.dropna().value_counts()
            if len(levels) < 2:
                notes.append(f"cox: {cov} left out (fewer than two recorded levels)")
                continue
            ref = levels.index[0]
            for level in _level_order(known.dropna()):
                if level == ref:
                    continue
                name = f"{cov}={level} (vs {ref})"
                out[name] = np.where(known.isna(), np.nan, (known == level).astype(float))
                cols.append(name)
        elif cov in ("liver_metastasis", "brain_metastasis"):
            if df[cov].sum() == 0 or df[cov].sum() == len(df):
                notes.append(f"cox: {cov} left out (not recorded for anyone or for everyone)")
                continue
            out[cov] = df[cov].astype(float)
            cols.append(cov)
        elif cov in df:
            out[cov] = pd.to_numeric(df[cov], errors="coerce").astype(float)
            cols.append(cov)
        else:
            notes.append(f"cox: unknown covariate {cov!r} left out")
    keep = [c for c in cols if out[c].nunique(dropna=True) > 1]
    for c in cols:
        if c not in keep:
            notes.append(f"cox: {c} left out (no variation)")
    return out[keep], keep, notes


def cox_models(df: pd.DataFrame, covariates: Sequence[str] = DEFAULT_COX, endpoints: Sequence[str] = ENDPOINTS
               ) -> tuple[pd.DataFrame, list[str]]:
    design, cols, notes = cox_design(df, covariates)
    frames = []
    columns = ["endpoint", "covariate", "coef", "hr", "hr_lower", "hr_upper", "se", "z", "p", "n", "events"]
    if not cols:
        notes.append("cox: no usable covariate")
        return pd.DataFrame(columns=columns), notes
    for ep in endpoints:
        data = design.copy()
        data["_t"] = df[f"{ep}_days"].astype(float)
        data["_e"] = df[f"{ep}_event"].astype(int)
        if data.dropna()["_e"].sum() < 2:
            notes.append(f"cox: {ep} has fewer than two events; not fitted")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = kmmod.cox(data, "_t", "_e", cols)
        except Exception as exc:  # noqa: BLE001 - lifelines raises several kinds on non-convergence
            notes.append(f"cox: {ep} model did not converge ({type(exc).__name__})")
            continue
        res.insert(0, "endpoint", ep)
        frames.append(res)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return out[columns], notes


def response_table(df: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Best overall response counts and ORR / DCR with Clopper-Pearson intervals; denominator all persons."""
    n = len(df)
    rows = []
    for label in ("CR", "PR", "SD", "PD", "NE", "not assessed"):
        k = int((df["best_response"] == label).sum())
        rows.append({"measure": label, "n": k, "denominator": n, "percent": 100 * k / n if n else math.nan,
                     "lower_pct": math.nan, "upper_pct": math.nan})
    for name, labels in (("ORR (CR+PR)", ("CR", "PR")), ("DCR (CR+PR+SD)", ("CR", "PR", "SD"))):
        k = int(df["best_response"].isin(labels).sum())
        lo, hi = kmmod.clopper_pearson(k, n, alpha)
        rows.append({"measure": name, "n": k, "denominator": n, "percent": 100 * k / n if n else math.nan,
                     "lower_pct": 100 * lo, "upper_pct": 100 * hi})
    return pd.DataFrame(rows)


def safety_table(ae: pd.DataFrame, n_persons: int, person_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Persons with each adverse event term: any grade and grade >= 3 (worst grade per person and term)."""
    if person_ids is not None:
        ae = ae[ae["person_id"].isin(list(person_ids))]
    cols = ["term", "condition_concept_id", "any_grade_n", "any_grade_pct", "grade3plus_n", "grade3plus_pct"]
    rows = []

    def row(term, concept, sub):
        anyn = sub["person_id"].nunique()
        g3 = sub.loc[sub["worst_grade"] >= 3, "person_id"].nunique()
        return {"term": term, "condition_concept_id": concept, "any_grade_n": anyn,
                "any_grade_pct": 100 * anyn / n_persons if n_persons else math.nan,
                "grade3plus_n": g3, "grade3plus_pct": 100 * g3 / n_persons if n_persons else math.nan}

    rows.append(row("any adverse event", None, ae))
    per_term = []
    for (concept, term), sub in ae.groupby(["condition_concept_id", "term"], sort=False):
        per_term.append(row(term, int(concept), sub))
    per_term.sort(key=lambda r: (-r["any_grade_n"], -r["grade3plus_n"], r["term"]))
    return pd.DataFrame(rows + per_term, columns=cols)


def table1(df: pd.DataFrame) -> pd.DataFrame:
    """Baseline characteristics: n (%) by level, age as median (IQR) and range."""
    n = len(df)
    rows = [{"characteristic": "persons", "level": "", "n": n, "percent": 100.0 if n else math.nan, "summary": ""}]
    age = df["age"].dropna()
    if len(age):
        q1, med, q3 = np.percentile(age, [25, 50, 75])
        rows.append({"characteristic": "age at index, years", "level": "median (IQR); range", "n": len(age),
                     "percent": math.nan,
                     "summary": f"{med:g} ({q1:g}-{q3:g}); {age.min():g}-{age.max():g}"})
        k = int((age >= 65).sum())
        rows.append({"characteristic": "age at index, years", "level": ">= 65", "n": k,
                     "percent": 100 * k / n, "summary": ""})

    def cat(name: str, col: str):
        for level in _level_order(df[col]):
            k = int((df[col] == level).sum())
            rows.append({"characteristic": name, "level": str(level), "n": k, "percent": 100 * k / n,
                         "summary": ""})

    cat("sex", "sex")
    cat("ECOG performance status", "ecog_group")
    cat("starting anlotinib dose", "dose")
    cat("PD-(L)1 agent", "pd1_agent")
    for col, label in (("liver_metastasis", "liver metastasis at baseline"),
                       ("brain_metastasis", "brain metastasis at baseline")):
        k = int(df[col].sum())
        rows.append({"characteristic": label, "level": "recorded", "n": k, "percent": 100 * k / n,
                     "summary": ""})
    return pd.DataFrame(rows, columns=["characteristic", "level", "n", "percent", "summary"])


def analyse(persons: pd.DataFrame, adverse_events: pd.DataFrame | None = None, ci_method: str = "log",
            subgroups: Mapping[str, str] = DEFAULT_SUBGROUPS, cox_covariates: Sequence[str] = DEFAULT_COX,
            female_ids: Sequence[int] = (), male_ids: Sequence[int] = (), derived: bool = False) -> Analysis:
    """All tables from analysis rows (raw SQL columns, or already derived when ``derived``)."""
    if ci_method not in kmmod.CI_METHODS:
        raise ValueError(f"ci_method must be one of {kmmod.CI_METHODS}")
    df = persons if derived else derive_columns(persons, female_ids, male_ids)
    curves, summary, marks = survival_tables(df, ci_method, subgroups)
    km_tables = {ep: curves[(ep, "all")].table[KM_COLUMNS].copy() for ep in ENDPOINTS if (ep, "all") in curves}
    cox, notes = cox_models(df, cox_covariates)
    ae = adverse_events if adverse_events is not None else pd.DataFrame(
        columns=["person_id", "condition_concept_id", "term", "worst_grade"])
    return Analysis(
        persons=df, survival_summary=summary, km_tables=km_tables, curves=curves, landmarks=marks,
        follow_up=follow_up(df, ci_method=ci_method), logrank=logrank_tests(df, subgroups), cox=cox,
        response=response_table(df), safety=safety_table(ae, len(df), df["person_id"]), table1=table1(df),
        ci_method=ci_method, notes=notes)
