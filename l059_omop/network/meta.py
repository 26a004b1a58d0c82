"""Inverse-variance meta-analysis of log hazard ratios: fixed effect and DerSimonian-Laird random effects.

Each site contributes an estimate b_i (log HR) and its variance v_i (the diagonal of the Cox covariance).
Fixed effect: weights 1/v_i. Cochran's Q = sum w_i (b_i - b_FE)^2 on k-1 degrees of freedom; I² =
max(0, (Q - df) / Q); DerSimonian-Laird tau² = max(0, (Q - df) / (sum w - sum w² / sum w)); random-effects
weights 1 / (v_i + tau²).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

Z95 = float(stats.norm.ppf(0.975))


@dataclass
class MetaResult:
    k: int
    fe_log_hr: float
    fe_se: float
    re_log_hr: float
    re_se: float
    q: float
    q_df: int
    q_p: float
    i2: float
    tau2: float

    def hr(self, which: str = "fe") -> tuple[float, float, float]:
        b, se = (self.fe_log_hr, self.fe_se) if which == "fe" else (self.re_log_hr, self.re_se)
        return math.exp(b), math.exp(b - Z95 * se), math.exp(b + Z95 * se)

    def as_dict(self) -> dict:
        out = asdict(self)
        for which in ("fe", "re"):
            hr, lo, hi = self.hr(which)
            out[f"{which}_hr"], out[f"{which}_lower"], out[f"{which}_upper"] = hr, lo, hi
        return out


def inverse_variance(estimates: Sequence[float], variances: Sequence[float]) -> MetaResult:
    """Pool log hazard ratios; sites with a missing or non-positive variance must be dropped before."""
    b = np.asarray(estimates, dtype=float)
    v = np.asarray(variances, dtype=float)
    if len(b) == 0 or len(b) != len(v):
        raise ValueError("need as many variances as estimates, at least one")
    if not np.all(np.isfinite(b)) or not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError("estimates must be finite and variances positive")
    w = 1.0 / v
    fe = float(np.sum(w * b) / np.sum(w))
    fe_se = float(math.sqrt(1.0 / np.sum(w)))
    k = len(b)
    q = float(np.sum(w * (b - fe) ** 2))
    df = k - 1
    if df > 0:
        c = float(np.sum(w) - np.sum(w**2) / np.sum(w))
        tau2 = max(0.0, (q - df) / c) if c > 0 else 0.0
        i2 = max(0.0, (q - df) / q) if q > 0 else 0.0
        q_p = float(stats.chi2.sf(q, df))
    else:
        tau2, i2, q_p = 0.0, 0.0, float("nan")
    w_re = 1.0 / (v + tau2)
    re = float(np.sum(w_re * b) / np.sum(w_re))
    re_se = float(math.sqrt(1.0 / np.sum(w_re)))
    return MetaResult(k, fe, fe_se, re, re_se, q, df, q_p, i2, tau2)
