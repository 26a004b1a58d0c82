"""Life tables, Kaplan-Meier from life tables, and pooling by summing life tables.

A site's life table has one row per distinct follow-up time at which an event or a censoring happened:
``time, at_risk, events, censored`` (at_risk = persons with follow-up >= time; events before censoring at a
tie, as in R survival and lifelines). Rows at censoring-only times are what make pooling exact: a site's
number at risk at any time t is then the at_risk of its first row at or after t. Summing those over sites
at every pooled time gives the life table of the union, so the pooled Kaplan-Meier equals the Kaplan-Meier
of all sites' patients put in one database.

With small-cell suppression a site sends a coarsened table instead (``coarsen``): consecutive rows merged
so that every row's events and censored are 0 or >= min_cell_count. Pooling those is then an actuarial
approximation, and the pooled output says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

COLUMNS = ["time", "at_risk", "events", "censored"]


def life_table(time: Sequence[float], event: Sequence[int | bool]) -> pd.DataFrame:
    """The life table of right-censored data at every distinct observed time."""
    t = np.asarray(time, dtype=float)
    e = np.asarray(event).astype(bool)
    if t.shape != e.shape:
        raise ValueError("time and event must have the same length")
    if np.isnan(t).any():
        raise ValueError("time has missing values")
    if not len(t):
        return pd.DataFrame({c: pd.Series(dtype="float64" if c == "time" else "int64") for c in COLUMNS})
    times, inverse = np.unique(t, return_inverse=True)
    events = np.bincount(inverse, weights=e, minlength=len(times)).astype(np.int64)
    total = np.bincount(inverse, minlength=len(times)).astype(np.int64)
    at_risk = total[::-1].cumsum()[::-1]
    return pd.DataFrame({"time": times, "at_risk": at_risk, "events": events, "censored": total - events})


def _normalize(lt: pd.DataFrame) -> pd.DataFrame:
    lt = lt.loc[:, COLUMNS].copy()
    lt["time"] = lt["time"].astype(float)
    for c in COLUMNS[1:]:
        lt[c] = lt[c].astype(np.int64)
    return lt.sort_values("time", kind="mergesort").reset_index(drop=True)


def at_risk_at(lt: pd.DataFrame, times: np.ndarray) -> np.ndarray:
    """Numbers at risk of one life table at arbitrary times: the at_risk of the first row at or after t."""
    lt = _normalize(lt)
    tt = lt["time"].to_numpy()
    n = lt["at_risk"].to_numpy()
    idx = np.searchsorted(tt, times, side="left")
    out = np.zeros(len(times), dtype=np.int64)
    inside = idx < len(tt)
    out[inside] = n[idx[inside]]
    return out


def pool(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The life table of the union of the sites' patients, from their life tables."""
    tables = [_normalize(t) for t in tables if t is not None and len(t)]
    if not tables:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c == "time" else "int64") for c in COLUMNS})
    times = np.unique(np.concatenate([t["time"].to_numpy() for t in tables]))
    at_risk = np.zeros(len(times), dtype=np.int64)
    events = np.zeros(len(times), dtype=np.int64)
    censored = np.zeros(len(times), dtype=np.int64)
    for t in tables:
        at_risk += at_risk_at(t, times)
        pos = np.searchsorted(times, t["time"].to_numpy())
        np.add.at(events, pos, t["events"].to_numpy())
        np.add.at(censored, pos, t["censored"].to_numpy())
    return pd.DataFrame({"time": times, "at_risk": at_risk, "events": events, "censored": censored})


def kaplan_meier(lt: pd.DataFrame, ci_method: str = "log", alpha: float = 0.05) -> pd.DataFrame:
    """Kaplan-Meier survival with Greenwood standard errors and a 95% CI ('log' as R, or 'log-log')."""
    if ci_method not in ("log", "log-log"):
        raise ValueError(f"ci_method must be 'log' or 'log-log', not {ci_method!r}")
    lt = _normalize(lt)
    n = lt["at_risk"].to_numpy(dtype=float)
    d = lt["events"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(n > 0, 1.0 - d / n, 1.0)
        surv = np.cumprod(factor)
        term = np.where((n > 0) & (n > d), d / (n * (n - d)), np.where(d > 0, np.inf, 0.0))
        var = np.cumsum(term)  # Greenwood: Var(log S) summand
        z = stats.norm.ppf(1 - alpha / 2)
        se = np.sqrt(var)
        if ci_method == "log":
            lower = surv * np.exp(-z * se)
            upper = np.minimum(surv * np.exp(z * se), 1.0)
        else:
            log_s = np.log(surv)
            lower = np.exp(-np.exp(np.log(-log_s) - z * se / log_s))
            upper = np.exp(-np.exp(np.log(-log_s) + z * se / log_s))
        lower = np.where(surv > 0, lower, np.nan)
        upper = np.where(surv > 0, upper, np.nan)
        lower = np.where(var == 0, surv, lower)
        upper = np.where(var == 0, surv, upper)
    out = lt.copy()
    out["survival"] = surv
    out["std_err"] = surv * se
    out["lower"] = lower
    out["upper"] = upper
    return out


def _first_time_at_or_below(times: np.ndarray, curve: np.ndarray, level: float = 0.5) -> float:
    hit = np.nonzero(curve <= level + 1e-12)[0]
    return float(times[hit[0]]) if len(hit) else float("nan")


def median(km: pd.DataFrame) -> tuple[float, float, float]:
    """Median survival with its CI, by R survival's rules (midpoint on a flat 0.5 stretch)."""
    times = km["time"].to_numpy()
    surv = km["survival"].to_numpy()
    hit = np.nonzero(surv <= 0.5 + 1e-12)[0]
    if not len(hit):
        med = float("nan")
    else:
        i = hit[0]
        med = float(times[i])
        if abs(surv[i] - 0.5) < 1e-12:
            later = np.nonzero((surv < 0.5 - 1e-12) & (np.arange(len(surv)) > i))[0]
            if len(later):
                med = (times[i] + times[later[0]]) / 2.0
    lower = _first_time_at_or_below(times, np.nan_to_num(km["upper"].to_numpy(), nan=0.0))
    upper = _first_time_at_or_below(times, np.nan_to_num(km["lower"].to_numpy(), nan=0.0))
    return med, lower, upper


def survival_at(km: pd.DataFrame, t: float) -> tuple[float, float, float]:
    """S(t) with its CI (the last step at or before t); NaN after the last follow-up time."""
    times = km["time"].to_numpy()
    if len(times) == 0 or t > times[-1]:
        return float("nan"), float("nan"), float("nan")
    idx = np.searchsorted(times, t, side="right") - 1
    if idx < 0:
        return 1.0, 1.0, 1.0
    row = km.iloc[idx]
    return float(row["survival"]), float(row["lower"]), float(row["upper"])


def coarsen(lt: pd.DataFrame, min_cell_count: int) -> pd.DataFrame | None:
    """Merge consecutive rows so that each row's events and censored are 0 or >= min_cell_count.

    A merged row carries the time of its last event (or last time when it has none), the number at risk
    at its start, and the summed events and censored. Differences of numbers at risk are then sums of
    allowed counts, so nothing below the threshold can be derived. The last row holds everyone left, so
    no small remainder shows either. Returns None when the table cannot be made safe (e.g. too few
    persons): it is then withheld.
    """
    k = int(min_cell_count)
    lt = _normalize(lt)
    if k <= 1 or not len(lt):
        return lt

    def ok(v: int) -> bool:
        return v == 0 or v >= k

    bins: list[list[int]] = []  # row indices per bin
    current: list[int] = []
    d_sum = c_sum = 0
    ev = lt["events"].to_numpy()
    ce = lt["censored"].to_numpy()
    for i in range(len(lt)):
        current.append(i)
        d_sum += int(ev[i])
        c_sum += int(ce[i])
        if d_sum + c_sum > 0 and ok(d_sum) and ok(c_sum):
            bins.append(current)
            current, d_sum, c_sum = [], 0, 0
    if current:
        if not bins:
            return None
        bins[-1].extend(current)
    # merging the tail may break the last bin: merge backwards until it holds
    while bins:
        last = bins[-1]
        d_last, c_last = int(ev[last].sum()), int(ce[last].sum())
        if ok(d_last) and ok(c_last):
            break
        if len(bins) == 1:
            return None
        bins[-2].extend(bins.pop())
    rows = []
    times = lt["time"].to_numpy()
    n = lt["at_risk"].to_numpy()
    for b in bins:
        with_events = [i for i in b if ev[i] > 0]
        t = times[with_events[-1]] if with_events else times[b[-1]]
        rows.append((float(t), int(n[b[0]]), int(ev[b].sum()), int(ce[b].sum())))
    return pd.DataFrame(rows, columns=COLUMNS)


def coarsen_joint(time: Sequence[float], event: Sequence[int | bool], groups: dict[str, Sequence],
                  min_cell_count: int) -> dict[str, pd.DataFrame] | None:
    """Life tables of the whole set ("all") and of each group, coarsened on one shared set of bins.

    ``groups``: name -> boolean mask of the persons in the group (groups of one partition must cover
    everyone once). Bins close only when every table's events and censored in the bin are 0 or >=
    min_cell_count, so differences between tables (all minus a subgroup, at shared times) show nothing
    smaller either. Without suppression (min_cell_count <= 1) the exact life tables are returned. None
    when no safe binning exists.
    """
    t = np.asarray(time, dtype=float)
    e = np.asarray(event).astype(bool)
    masks = {"all": np.ones(len(t), dtype=bool)}
    masks.update({name: np.asarray(m, dtype=bool) for name, m in groups.items()})
    k = int(min_cell_count)
    if k <= 1:
        return {name: life_table(t[m], e[m]) for name, m in masks.items()}
    if not len(t):
        return None
    times, inverse = np.unique(t, return_inverse=True)
    nt = len(times)
    d = np.vstack([np.bincount(inverse[m], weights=e[m], minlength=nt) for m in masks.values()]).astype(np.int64)
    tot = np.vstack([np.bincount(inverse[m], minlength=nt) for m in masks.values()]).astype(np.int64)
    c = tot - d

    def ok(v: np.ndarray) -> bool:
        return bool(np.all((v == 0) | (v >= k)))

    bins: list[list[int]] = []
    current: list[int] = []
    for j in range(nt):
        current.append(j)
        ds, cs = d[:, current].sum(axis=1), c[:, current].sum(axis=1)
        if ok(ds) and ok(cs):
            bins.append(current)
            current = []
    if current:
        if not bins:
            return None
        bins[-1].extend(current)
    while bins and not (ok(d[:, bins[-1]].sum(axis=1)) and ok(c[:, bins[-1]].sum(axis=1))):
        if len(bins) == 1:
            return None
        bins[-2].extend(bins.pop())
    out: dict[str, pd.DataFrame] = {}
    bin_time = []
    for b in bins:
        with_events = [j for j in b if d[0, j] > 0]
        bin_time.append(float(times[with_events[-1]] if with_events else times[b[-1]]))
    for gi, name in enumerate(masks):
        db = np.array([d[gi, b].sum() for b in bins], dtype=np.int64)
        cb = np.array([c[gi, b].sum() for b in bins], dtype=np.int64)
        n = (db + cb)[::-1].cumsum()[::-1]
        keep = (db + cb) > 0
        out[name] = pd.DataFrame({"time": np.asarray(bin_time)[keep], "at_risk": n[keep],
                                  "events": db[keep], "censored": cb[keep]})
    return out
