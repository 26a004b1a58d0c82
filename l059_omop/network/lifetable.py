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
    with np.errstate(invalid="ignore"):
        out["std_err"] = np.where(surv > 0, surv * se, 0.0)
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
    # the lower band reaches 0.5 first: it gives the lower limit of the median
    lower = _first_time_at_or_below(times, np.nan_to_num(km["lower"].to_numpy(), nan=0.0))
    upper = _first_time_at_or_below(times, np.nan_to_num(km["upper"].to_numpy(), nan=0.0))
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
    """A life table made safe for publication (see ``coarsen_joint``); None when that is impossible."""
    lt = _normalize(lt)
    k = int(min_cell_count)
    if k <= 1 or not len(lt):
        return lt
    tables = _coarsen_counts(lt["time"].to_numpy(), lt["events"].to_numpy()[None, :],
                             lt["censored"].to_numpy()[None, :], k)
    return None if tables is None else tables[0]


def coarsen_joint(time: Sequence[float], event: Sequence[int | bool], groups: dict[str, Sequence],
                  min_cell_count: int) -> dict[str, pd.DataFrame] | None:
    """Life tables of the whole set ("all") and of the groups of ONE partition, coarsened on shared bins.

    ``groups``: name -> boolean mask; the groups must cover every person exactly once, so that "all" is
    their sum. Rules (min_cell_count k > 1):

    - a bin closes at the first time when "all" has >= k events since the last bin and every group has 0
      or >= k; the bin's time is the median time of its events, its at_risk the number at risk at its start;
    - censorings are released in a bin only once a group has >= k of them pending; until then those
      persons count as still at risk (a small, documented shift of their censoring time);
    - what remains at the end goes into the last bin (merged backwards until it is safe).

    Every published count, and every difference of numbers at risk within or between these tables, is
    then 0 or >= k. Without suppression (k <= 1) the exact life tables are returned. None when no safe
    binning exists.
    """
    t = np.asarray(time, dtype=float)
    e = np.asarray(event).astype(bool)
    masks = {name: np.asarray(m, dtype=bool) for name, m in groups.items()}
    k = int(min_cell_count)
    if k <= 1:
        out = {"all": life_table(t, e)}
        out.update({name: life_table(t[m], e[m]) for name, m in masks.items()})
        return out
    if not len(t):
        return None
    if masks:
        cover = np.sum(np.vstack(list(masks.values())), axis=0)
        if not np.all(cover == 1):
            raise ValueError("groups must cover every person exactly once")
    else:
        masks = {"all": np.ones(len(t), dtype=bool)}
    times, inverse = np.unique(t, return_inverse=True)
    nt = len(times)
    d = np.vstack([np.bincount(inverse[m], weights=e[m], minlength=nt) for m in masks.values()]).astype(np.int64)
    tot = np.vstack([np.bincount(inverse[m], minlength=nt) for m in masks.values()]).astype(np.int64)
    tables = _coarsen_counts(times, d, tot - d, k)
    if tables is None:
        return None
    names = list(masks)
    out = {name: tables[i] for i, name in enumerate(names)}
    if "all" not in out:
        out["all"] = _sum_tables(tables)
    return out


def _sum_tables(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Sum tables that share one set of bins (rows may be missing where a group had nothing)."""
    allrows = pd.concat(tables, ignore_index=True)
    g = allrows.groupby("time", sort=True).agg(events=("events", "sum"), censored=("censored", "sum")).reset_index()
    g["at_risk"] = (g["events"] + g["censored"])[::-1].cumsum()[::-1]
    return g[COLUMNS].astype({"at_risk": np.int64, "events": np.int64, "censored": np.int64})


def _coarsen_counts(times: np.ndarray, d: np.ndarray, c: np.ndarray, k: int) -> list[pd.DataFrame] | None:
    """Bins over per-group event and censoring counts (rows: groups, columns: distinct times)."""

    def ok(v: np.ndarray) -> bool:
        return bool(np.all((v == 0) | (v >= k)))

    n_groups, nt = d.shape
    bins: list[dict] = []  # each: time, event times with counts, events (vector), censored (vector)
    d_acc = np.zeros(n_groups, dtype=np.int64)
    c_pending = np.zeros(n_groups, dtype=np.int64)
    ev_times: list[tuple[float, int]] = []
    for j in range(nt):
        d_acc += d[:, j]
        c_pending += c[:, j]
        if d[:, j].sum() > 0:
            ev_times.append((float(times[j]), int(d[:, j].sum())))
        release = np.where(c_pending >= k, c_pending, 0)
        if d_acc.sum() >= k and ok(d_acc):
            bins.append({"time": None, "ev": ev_times, "events": d_acc.copy(), "censored": release})
            c_pending = c_pending - release
            d_acc[:] = 0
            ev_times = []
        elif d_acc.sum() == 0 and release.sum() > 0:
            bins.append({"time": float(times[j]), "ev": [], "events": d_acc.copy(), "censored": release})
            c_pending = c_pending - release
    if d_acc.sum() or c_pending.sum():
        if not bins:
            return None
        bins[-1]["events"] = bins[-1]["events"] + d_acc
        bins[-1]["ev"] = bins[-1]["ev"] + ev_times
        # censorings still pending at the end join the latest bin that already releases >= k of that
        # group's censorings (they leave the risk set a little early); otherwise the last bin
        for g in np.nonzero(c_pending)[0]:
            target = next((b for b in reversed(bins) if b["censored"][g] >= k), bins[-1])
            target["censored"] = target["censored"].copy()
            target["censored"][g] += c_pending[g]
    while bins and not (ok(bins[-1]["events"]) and ok(bins[-1]["censored"])):
        if len(bins) == 1:
            return None
        last = bins.pop()
        bins[-1]["events"] = bins[-1]["events"] + last["events"]
        bins[-1]["censored"] = bins[-1]["censored"] + last["censored"]
        bins[-1]["ev"] = bins[-1]["ev"] + last["ev"]
        if bins[-1]["time"] is not None and not bins[-1]["ev"]:
            bins[-1]["time"] = max(bins[-1]["time"], last["time"] or bins[-1]["time"])
    if not bins:
        return None
    for b in bins:
        if b["ev"]:
            # the bin's events are placed at their median time (an observed event time): placing them at
            # the first or last one would bias the curve down or up by up to a bin's width
            ts = np.repeat([t for t, _ in b["ev"]], [n for _, n in b["ev"]])
            b["time"] = float(ts[(len(ts) - 1) // 2])
    out = []
    btime = np.array([b["time"] for b in bins])
    for gi in range(n_groups):
        ev = np.array([b["events"][gi] for b in bins], dtype=np.int64)
        ce = np.array([b["censored"][gi] for b in bins], dtype=np.int64)
        n = (ev + ce)[::-1].cumsum()[::-1]
        keep = (ev + ce) > 0
        out.append(pd.DataFrame({"time": btime[keep], "at_risk": n[keep], "events": ev[keep], "censored": ce[keep]}))
    return out
