"""Figures: Kaplan-Meier curves with the numbers at risk under the axis, and a CONSORT-style attrition
diagram. matplotlib's Agg renderer through ``Figure`` objects (no pyplot, so no global backend switch and no
display), PNG bytes out."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from l059_omop.outcomes.km import DAYS_PER_MONTH, KaplanMeier
from l059_omop.outcomes.suppress import mask_count

_COLOURS = ["#1f4e79", "#c0504d", "#4f8a3c", "#8064a2", "#e08a1e", "#2c9fae", "#7f7f7f", "#b5527a"]
ENDPOINT_TITLES = {"os": "Overall survival", "pfs": "Progression-free survival"}


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _steps(curve: KaplanMeier) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    t = curve.table
    x = np.concatenate([[0.0], t["time"].to_numpy(float)]) / DAYS_PER_MONTH
    s = np.concatenate([[1.0], t["survival"].to_numpy(float)])
    lo = np.concatenate([[1.0], t["lower"].to_numpy(float)])
    hi = np.concatenate([[1.0], t["upper"].to_numpy(float)])
    return x, s, lo, hi


def km_plot(curves: Sequence[tuple[str, KaplanMeier]], title: str, min_cell_count: int = 0,
            band: bool | None = None) -> bytes:
    """Kaplan-Meier curves (months on the x axis), censoring ticks, and a numbers-at-risk table below."""
    if band is None:
        band = len(curves) == 1
    rows = len(curves)
    # fixed sizes in inches: title, axes, x label, then one line per numbers-at-risk row
    top, axes_h, xlab, row_h, bottom = 0.45, 3.4, 0.75, 0.24, 0.25
    height = top + axes_h + xlab + row_h * (rows + 1) + bottom
    fig = _figure(8.0, height)
    ax = fig.add_axes((0.2, 1 - (top + axes_h) / height, 0.75, axes_h / height))
    tmax = max((c.table["time"].max() for _, c in curves if len(c.table)), default=0.0) / DAYS_PER_MONTH
    step = 3 if tmax <= 36 else 6 if tmax <= 72 else 12
    ticks = np.arange(0, max(np.ceil(tmax / step), 1) * step + 1e-9, step)
    for i, (label, curve) in enumerate(curves):
        colour = _COLOURS[i % len(_COLOURS)]
        x, s, lo, hi = _steps(curve)
        med = curve.median()[0]
        n_txt = mask_count(curve.n, min_cell_count)
        n_txt = f"n{n_txt}" if isinstance(n_txt, str) else f"n={n_txt}"
        legend = f"{label} ({n_txt}; median " + (
            f"{med / DAYS_PER_MONTH:.1f} mo)" if np.isfinite(med) else "not reached)")
        ax.step(x, s, where="post", color=colour, lw=1.6, label=legend)
        if band:
            ax.fill_between(x, np.nan_to_num(lo, nan=0.0), np.nan_to_num(hi, nan=0.0), step="post",
                            color=colour, alpha=0.15, lw=0)
        t = curve.table
        cens = t[(t["censored"] > 0)]
        if len(cens):
            ax.plot(cens["time"].to_numpy(float) / DAYS_PER_MONTH, cens["survival"].to_numpy(float), "|",
                    color=colour, ms=6 if len(cens) < 300 else 3, mew=1 if len(cens) < 300 else 0.5)
    ax.axhline(0.5, color="#999999", lw=0.6, ls=":")
    ax.set_xlim(0, ticks[-1] if len(ticks) else 1)
    ax.set_ylim(0, 1.02)
    ax.set_xticks(ticks)
    ax.set_xlabel("Months since index")
    ax.set_ylabel("Probability")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.grid(alpha=0.25)
    # numbers at risk under the axis, aligned with the ticks
    def y_of(i: int) -> float:  # axes fraction of the i-th at-risk line (0 = heading)
        return -(xlab + row_h * (i + 0.5)) / axes_h

    ax.text(-0.22, y_of(0), "At risk", transform=ax.transAxes, fontsize=8, fontweight="bold", ha="left")
    for i, (label, curve) in enumerate(curves):
        colour = _COLOURS[i % len(_COLOURS)]
        y = y_of(i + 1)
        ax.text(-0.22, y, label[:22], transform=ax.transAxes, fontsize=7.5, color=colour, ha="left")
        at = curve.at_risk(ticks * DAYS_PER_MONTH)
        for tk, a in zip(ticks, at, strict=True):
            xpos = tk / ticks[-1] if ticks[-1] else 0
            ax.text(xpos, y, str(mask_count(int(a), min_cell_count)), transform=ax.transAxes, fontsize=7.5,
                    ha="center", color=colour)
    return _png(fig)


def attrition_diagram(attrition: pd.DataFrame | None, final_n: int, min_cell_count: int = 0) -> bytes:
    """CONSORT-style flow: remaining persons down the left, each rule's exclusions to the right."""
    steps: list[tuple[str, object, object]] = []
    if attrition is not None and len(attrition):
        for _, r in attrition.sort_values("rule_sequence").iterrows():
            steps.append((str(r["rule_name"]), r["persons_remaining"], r["persons_excluded"]))
    if steps and steps[0][2] == 0 and len(steps) > 1:
        n_boxes = len(steps)
    else:
        n_boxes = len(steps) + 1
    height = max(3.0, 0.62 * n_boxes + 0.8)
    fig = _figure(9.0, height)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, n_boxes + 0.5)
    ax.axis("off")

    def box(x, y, w, text, face):
        ax.add_patch(FancyBboxPatch((x, y - 0.24), w, 0.48, boxstyle="round,pad=0.02", fc=face, ec="#333333",
                                    lw=0.8))
        ax.text(x + w / 2, y, text, ha="center", va="center", fontsize=8, wrap=True)

    def fmt(v):
        return f"n = {mask_count(v, min_cell_count)}"

    y = n_boxes
    if steps:
        entry_name = "Entered the cohort"
        if steps[0][2] == 0 and len(steps) > 1:  # build-cohort's entry row: persons entering, none excluded
            entry_name, entrants = steps[0][0], steps[0][1]
            steps = steps[1:]
        else:
            entrants = int(steps[0][1]) + int(steps[0][2])
        box(0.3, y, 4.2, f"{entry_name[:70]}\n{fmt(entrants)}", "#dce6f1")
        for i, (name, remaining, excluded) in enumerate(steps):
            ax.annotate("", xy=(2.4, y - 0.76), xytext=(2.4, y - 0.24),
                        arrowprops={"arrowstyle": "->", "lw": 0.8})
            ax.annotate("", xy=(5.2, y - 0.5), xytext=(2.4, y - 0.5), arrowprops={"arrowstyle": "->", "lw": 0.6})
            box(5.2, y - 0.5, 4.5, f"Excluded: {name[:60]}\n{fmt(excluded)}", "#f2dcdb")
            y -= 1
            if i == len(steps) - 1:
                box(0.3, y, 4.2, f"In the cohort {fmt(remaining)}\nanalysed {fmt(final_n)}", "#d7e4bd")
            else:
                box(0.3, y, 4.2, f"Remaining\n{fmt(remaining)}", "#dce6f1")
    else:
        box(0.3, y, 4.2, f"Persons in the cohort (no attrition recorded)\n{fmt(final_n)}", "#d7e4bd")
    return _png(fig)
