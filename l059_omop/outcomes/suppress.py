"""Small-cell suppression for everything that leaves the site (DESIGN §8): a count c with 0 < c < N is
written as ``<N`` and the percentages derived from it are blanked, so they cannot give the count back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd


def mask_count(value, min_cell_count: int):
    """``<N`` for 0 < value < N; the value otherwise (missing stays missing)."""
    if min_cell_count <= 1 or value is None or pd.isna(value):
        return value
    v = float(value)
    if 0 < v < min_cell_count:
        return f"<{min_cell_count}"
    return int(v) if v == int(v) else v


def suppress(df: pd.DataFrame, counts: Sequence[str], min_cell_count: int,
             derived: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """Copy of ``df`` with ``counts`` columns masked; ``derived`` maps a count column to the columns computed
    from it (percentages), blanked where that count is masked."""
    out = df.copy()
    if min_cell_count <= 1 or out.empty:
        return out
    for col in counts:
        if col not in out:
            continue
        small = pd.to_numeric(out[col], errors="coerce").between(0, min_cell_count, inclusive="neither")
        out[col] = out[col].astype(object)
        out.loc[small, col] = f"<{min_cell_count}"
        for dep in (derived or {}).get(col, ()):
            if dep in out:
                out[dep] = out[dep].astype(object)
                out.loc[small, dep] = None
    return out
