"""Survival statistics on plain arrays: no database, no files, so the network study can reuse them on pooled
life tables.

Kaplan-Meier estimates follow R's ``survival`` package, the reference most trial statisticians check
against: the ``log`` confidence interval (``survfit``'s default, on log S with the Greenwood variance; lifelines
offers only log-log, so it is computed here) and ``log-log`` (lifelines', SAS's default); quantiles by R's
``quantile.survfit`` rule, including the midpoint of a flat stretch exactly at the probability, applied to the
confidence bands as well. Cox models use lifelines (Efron ties, as R's ``coxph`` default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

CI_METHODS = ("log", "log-log")
DAYS_PER_MONTH = 30.4375
_TOL = math.sqrt(np.finfo(float).eps)  # R's sqrt(.Machine$double.eps)


@dataclass(frozen=True)
class KaplanMeier:
    """A Kaplan-Meier curve: one row per distinct time (events and censorings), as R's survfit keeps it.

    ``table`` columns: time, at_risk, events, censored, survival, std_err (of log S, Greenwood), lower, upper.
    """

    table: pd.DataFrame
    ci_method: str
    alpha: float
    n: int
    events: int
    start_time: float = 0.0

    def median(self) -> tuple[float, float, float]:
        """(median, lower, upper); NaN where the curve or band never reaches 0.5 (R's NA)."""
        return self.quantile(0.5)

    def quantile(self, p: float) -> tuple[float, float, float]:
        """The time at which the curve (and each band) first drops to 1 - p, by R's rule."""
        t = self.table
        x = np.concatenate([[self.start_time], t["time"].to_numpy(float)])
        out = []
        for col in ("survival", "lower", "upper"):
            y = np.concatenate([[0.0], 1.0 - t[col].to_numpy(float)])
            out.append(_findq(x, y, p))
        return out[0], out[1], out[2]

    def at(self, times: Sequence[float] | float) -> pd.DataFrame:
        """Survival and band at given times (the step function's value, R's ``summary(fit, times=)``), with
        the number at risk just before each time."""
        times = np.atleast_1d(np.asarray(times, dtype=float))
        t = self.table
        tt = t["time"].to_numpy(float)
        idx = np.searchsorted(tt, times, side="right") - 1
        surv = np.where(idx >= 0, t["survival"].to_numpy(float)[np.maximum(idx, 0)], 1.0)
        lower = np.where(idx >= 0, t["lower"].to_numpy(float)[np.maximum(idx, 0)], 1.0)
        upper = np.where(idx >= 0, t["upper"].to_numpy(float)[np.maximum(idx, 0)], 1.0)
        beyond = times > (tt[-1] if len(tt) else -np.inf)
        surv = np.where(beyond, np.nan, surv)
        lower = np.where(beyond, np.nan, lower)
        upper = np.where(beyond, np.nan, upper)
        return pd.DataFrame({"time": times, "at_risk": self.at_risk(times), "survival": surv,
                             "lower": lower, "upper": upper})

    def at_risk(self, times: Sequence[float] | float) -> np.ndarray:
        """Number at risk at each time (still followed at that time: time >= t)."""
        times = np.atleast_1d(np.asarray(times, dtype=float))
        t = self.table
        tt = t["time"].to_numpy(float)
        ar = t["at_risk"].to_numpy(float)
        idx = np.searchsorted(tt, times, side="left")
        return np.where(idx < len(tt), ar[np.minimum(idx, len(tt) - 1)], 0).astype(int)


def _findq(x: np.ndarray, y: np.ndarray, p: float, tol: float = _TOL) -> float:
    """R survival's ``findq``: where a horizontal line at ``p`` meets the CDF ``y`` (= 1 - S) over times ``x``.

    On a flat stretch exactly at ``p`` the result is the midpoint between its start and the next jump; a flat
    stretch at ``p`` at the end of the curve ends at the last time (censored or not).
    """
    if np.isnan(y).all() or np.nanmax(y) < p:
        return math.nan
    xmax = x[-1]
    # R's duplicated(): drop repeated y values (censorings), keeping the first; all NaN count as one value
    key = np.where(np.isnan(y), np.inf, y)
    _, first = np.unique(key, return_index=True)
    sel = np.zeros(len(y), dtype=bool)
    sel[first] = True
    x, y = x[sel], y[sel]
    n = len(y)
    if p == 0:
        return float(x[0])
    i1 = _approx_index(y + tol, p)
    i2 = _approx_index(y - tol, p)
    q = math.nan if i1 is None or i2 is None else (x[i1] + x[i2]) / 2
    if not np.isnan(y[n - 1]) and abs(p - y[n - 1]) < tol:
        q = math.nan if i1 is None else (x[i1] + xmax) / 2
    return float(q)


def _approx_index(v: np.ndarray, p: float) -> int | None:
    """R's ``approx(v, 1:n, p, method="constant", f=1)$y`` as a 0-based index (None = NA): the index of the
    smallest v >= p (ties averaged and truncated as R does); NA outside the range of v."""
    ok = ~np.isnan(v)
    if not ok.any():
        return None
    vv = v[ok]
    if p < vv.min() or p > vv.max():
        return None
    idx = np.flatnonzero(ok)
    m = vv[vv >= p].min()
    return int(math.floor(idx[vv == m].mean()))


def life_table(time: Sequence[float], event: Sequence[int]) -> pd.DataFrame:
    """Aggregate individual (time, event) data: one row per distinct time with at_risk, events, censored."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=int)
    if len(time) != len(event):
        raise ValueError("time and event differ in length")
    if np.isnan(time).any():
        raise ValueError("missing survival times")
    if len(time) == 0:
        return pd.DataFrame({"time": [], "at_risk": [], "events": [], "censored": []})
    uniq, inv = np.unique(time, return_inverse=True)
    events = np.bincount(inv, weights=(event != 0).astype(float), minlength=len(uniq)).astype(int)
    total = np.bincount(inv, minlength=len(uniq)).astype(int)
    censored = total - events
    at_risk = len(time) - np.concatenate([[0], np.cumsum(total)[:-1]])
    return pd.DataFrame({"time": uniq, "at_risk": at_risk, "events": events, "censored": censored})


def kaplan_meier_from_table(table: pd.DataFrame, ci_method: str = "log", alpha: float = 0.05,
                            start_time: float = 0.0) -> KaplanMeier:
    """Kaplan-Meier from a life table (time, at_risk, events[, censored]), e.g. summed over sites."""
    if ci_method not in CI_METHODS:
        raise ValueError(f"ci_method must be one of {CI_METHODS}, not {ci_method!r}")
    t = table.sort_values("time").reset_index(drop=True)
    n = t["at_risk"].to_numpy(float)
    d = t["events"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(np.where(n > 0, 1.0 - d / n, 1.0))
        term = np.where(d > 0, d / (n * (n - d)), 0.0)  # n == d: infinite, as in R
        var_log = np.cumsum(term)
        se = np.sqrt(var_log)
        z = stats.norm.ppf(1 - alpha / 2)
        if ci_method == "log":
            s = np.where(surv > 0, surv, np.nan)
            lower = np.exp(np.log(s) - z * se)
            upper = np.minimum(np.exp(np.log(s) + z * se), 1.0)
        else:
            s = np.where((surv > 0) & (surv < 1), surv, np.nan)
            half = z * se / np.log(s)
            lower = np.exp(-np.exp(np.log(-np.log(s)) - half))
            upper = np.exp(-np.exp(np.log(-np.log(s)) + half))
            lower = np.where(surv == 1, 1.0, lower)
            upper = np.where(surv == 1, 1.0, upper)
    out = pd.DataFrame({
        "time": t["time"].to_numpy(float),
        "at_risk": t["at_risk"].astype(int).to_numpy(),
        "events": t["events"].astype(int).to_numpy(),
        "censored": (t["censored"].astype(int).to_numpy() if "censored" in t
                     else np.append(n[:-1] - n[1:] - d[:-1], n[-1] - d[-1]).astype(int) if len(t) else []),
        "survival": surv,
        "std_err": se,
        "lower": lower,
        "upper": upper,
    })
    total = int(n[0]) if len(n) else 0
    return KaplanMeier(out, ci_method, alpha, total, int(d.sum()), start_time)


def kaplan_meier(time: Sequence[float], event: Sequence[int], ci_method: str = "log",
                 alpha: float = 0.05) -> KaplanMeier:
    """Kaplan-Meier with a 95% band by ``log`` (R's survfit default) or ``log-log`` (lifelines', SAS's).

    Computed from the life table with the Greenwood variance; the tests check the estimate and the log-log
    band against lifelines' ``KaplanMeierFitter`` (equal to 1e-12) and the log band against R.
    """
    return kaplan_meier_from_table(life_table(time, event), ci_method=ci_method, alpha=alpha)


def reverse_km_median(time: Sequence[float], event: Sequence[int], ci_method: str = "log"
                      ) -> tuple[float, float, float]:
    """Median follow-up by reverse Kaplan-Meier (censorings are the 'events'): (median, lower, upper)."""
    event = np.asarray(event, dtype=int)
    return kaplan_meier(time, 1 - (event != 0).astype(int), ci_method=ci_method).median()


@dataclass(frozen=True)
class LogRank:
    chi2: float
    df: int
    p_value: float
    groups: tuple[str, ...]


def logrank(time: Sequence[float], event: Sequence[int], group: Sequence) -> LogRank:
    """Log-rank test across the groups (R's ``survdiff``, rho = 0): (O - E)' V^-1 (O - E) over k - 1 groups.

    Vectorised over the distinct event times; the tests check it against R and lifelines'
    ``multivariate_logrank_test``.
    """
    time = np.asarray(time, dtype=float)
    event = (np.asarray(event) != 0).astype(float)
    labels = pd.Series(np.asarray(group, dtype=object)).astype(str).to_numpy()
    levels, g = np.unique(labels, return_inverse=True)
    k = len(levels)
    if k < 2:
        return LogRank(math.nan, 0, math.nan, tuple(levels))
    uniq, inv = np.unique(time, return_inverse=True)
    m = len(uniq)
    # per time and group: events and persons leaving the risk set
    d_tg = np.zeros((m, k))
    c_tg = np.zeros((m, k))
    np.add.at(d_tg, (inv, g), event)
    np.add.at(c_tg, (inv, g), 1.0)
    n_tg = c_tg[::-1].cumsum(axis=0)[::-1]  # at risk: time >= t
    d_t = d_tg.sum(axis=1)
    n_t = n_tg.sum(axis=1)
    keep = d_t > 0
    d_tg, n_tg, d_t, n_t = d_tg[keep], n_tg[keep], d_t[keep], n_t[keep]
    observed = d_tg.sum(axis=0)
    expected = (n_tg * (d_t / n_t)[:, None]).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(n_t > 1, d_t * (n_t - d_t) / (n_t - 1), 0.0) / n_t
    share = n_tg  # V_gh = sum w * n_g * (delta_gh * n - n_h) / n
    v = np.diag((w[:, None] * share).sum(axis=0)) - (share.T * (w / n_t)) @ share
    diff = (observed - expected)[:-1]
    vv = v[:-1, :-1]
    chi2 = float(diff @ np.linalg.pinv(vv) @ diff)
    df = int(np.linalg.matrix_rank(vv))
    return LogRank(chi2, df, float(stats.chi2.sf(chi2, df)) if df else math.nan, tuple(levels))


def cox(df: pd.DataFrame, duration_col: str, event_col: str, covariates: Sequence[str],
        alpha: float = 0.05) -> pd.DataFrame:
    """Cox proportional hazards (Efron ties, lifelines) on numeric covariate columns; complete cases only.

    Returns one row per covariate: covariate, coef, hr, hr_lower, hr_upper, se, z, p, n, events.
    """
    from lifelines import CoxPHFitter

    cols = [duration_col, event_col, *covariates]
    data = df[cols].dropna().astype(float)
    cph = CoxPHFitter(alpha=alpha)
    cph.fit(data, duration_col=duration_col, event_col=event_col, fit_options={"precision": 1e-12})
    s = cph.summary
    lo = f"exp(coef) lower {100 * (1 - alpha):g}%"
    hi = f"exp(coef) upper {100 * (1 - alpha):g}%"
    return pd.DataFrame({
        "covariate": list(s.index),
        "coef": s["coef"].to_numpy(),
        "hr": s["exp(coef)"].to_numpy(),
        "hr_lower": s[lo].to_numpy(),
        "hr_upper": s[hi].to_numpy(),
        "se": s["se(coef)"].to_numpy(),
        "z": s["z"].to_numpy(),
        "p": s["p"].to_numpy(),
        "n": len(data),
        "events": int(data[event_col].sum()),
    })


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact binomial (Clopper-Pearson) interval for k successes out of n."""
    if n <= 0:
        return math.nan, math.nan
    lo = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi
