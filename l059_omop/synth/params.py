"""Parameters of a synthetic run: everything that changes what is generated, stored in truth_meta.json."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import date

DAYS_PER_MONTH = 30.4375


@dataclass(frozen=True)
class Weibull:
    """S(t) = exp(-(t / scale)^shape) for the reference group (12 mg); other groups by a hazard ratio."""

    shape: float
    median_days: float

    @property
    def scale(self) -> float:
        return self.median_days / math.log(2) ** (1 / self.shape)

    def scale_for(self, hr: float) -> float:
        # proportional hazards: S(t)^hr = exp(-(t / (scale * hr^(-1/shape)))^shape)
        return self.scale * hr ** (-1 / self.shape)

    def median_for(self, hr: float) -> float:
        return self.scale_for(hr) * math.log(2) ** (1 / self.shape)


@dataclass(frozen=True)
class SynthParams:
    seed: int = 1059
    data_cutoff: date = date(2025, 6, 30)
    window_start: date = date(2022, 1, 1)
    window_end: date = date(2024, 12, 31)
    fail_share: float = 0.45        # patients given at least one deliberate rule / entry failure
    boundary_share: float = 0.25    # eligible patients given a value exactly on a passing boundary
    loss_share: float = 0.10        # patients lost to follow-up (censored before the cut-off)
    # latent progression and death times from the index date, 12 mg = reference
    progression: Weibull = field(default_factory=lambda: Weibull(shape=1.3, median_days=6 * DAYS_PER_MONTH))
    death: Weibull = field(default_factory=lambda: Weibull(shape=1.2, median_days=15 * DAYS_PER_MONTH))
    dose_weights: tuple[tuple[str, float], ...] = (("12", 0.70), ("10", 0.20), ("8", 0.07), ("unknown", 0.03))
    hr_progression: tuple[tuple[str, float], ...] = (("12", 1.0), ("10", 1.15), ("8", 1.3), ("unknown", 1.0))
    hr_death: tuple[tuple[str, float], ...] = (("12", 1.0), ("10", 1.1), ("8", 1.2), ("unknown", 1.0))

    def as_json(self) -> dict:
        d = asdict(self)
        for k in ("data_cutoff", "window_start", "window_end"):
            d[k] = getattr(self, k).isoformat()
        for k, w in (("progression", self.progression), ("death", self.death)):
            d[k] = {"distribution": "Weibull", "shape": w.shape, "scale_days_12mg": round(w.scale, 4),
                    "median_days_12mg": round(w.median_days, 4)}
        d["dose_weights"] = dict(self.dose_weights)
        d["hr_progression"] = dict(self.hr_progression)
        d["hr_death"] = dict(self.hr_death)
        return d
