"""Small-cell suppression for everything that leaves a site.

Every count from 1 to min_cell_count - 1 is suppressed, and so is any published value from which such a
count could be worked out by addition or subtraction of other published values:

- a partition of persons (response categories, subgroup sizes, adverse-event grades) with published totals
  and sums: after the small cells, the smallest other non-zero cells are suppressed too until the suppressed
  cells add up to at least min_cell_count; a published sum (e.g. ORR = CR + PR) stays only when it contains
  none or all of the suppressed cells, so it never isolates a part of them (``partition``);
- attrition: a "persons remaining" value is shown only when its difference from the previous shown value is
  0 or >= min_cell_count (``attrition``), so the number excluded by a rule cannot be derived;
- Kaplan-Meier life tables: coarsened (``lifetable.coarsen_joint``).

Each suppression is logged (table, row, column, reason) without its value; the log travels with the
results as ``suppressed_cells.csv``. The scope is linear disclosure within and between these published
tables; it is not a full statistical-disclosure-control system (see docs/network.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

SMALL = "count below min_cell_count"
COMPLEMENTARY = "complementary: would reveal a suppressed count"
DERIVED = "derived from a suppressed count"
WITHHELD = "withheld: too few persons to publish safely"
COARSENED = "rows merged so that no count below min_cell_count shows"


def is_small(value: int | float | None, k: int) -> bool:
    return value is not None and value == value and 0 < value < k


@dataclass
class SuppressionLog:
    """Which cells were suppressed, and why; never their values."""

    min_cell_count: int
    rows: list[dict] = field(default_factory=list)

    def add(self, table: str, row: str, column: str, reason: str) -> None:
        self.rows.append({"table": table, "row": row, "column": column, "reason": reason})

    @property
    def active(self) -> bool:
        return self.min_cell_count > 1


def partition(cells: Mapping[str, int], sums: Mapping[str, Sequence[str]], k: int
              ) -> tuple[dict[str, int | None], dict[str, str]]:
    """Suppress a partition's cells and published sums of them.

    ``cells``: name -> count (the cells add up to the total); ``sums``: name -> the cells it adds (include
    the total, e.g. {"n": all cells}). Returns (published values, None where suppressed) and the reason per
    suppressed name.
    """
    shown: dict[str, int | None] = dict(cells)
    reasons: dict[str, str] = {}
    total = sum(int(v) for v in cells.values())
    if k <= 1:
        out = dict(cells)
        out.update({s: sum(int(cells[c]) for c in members) for s, members in sums.items()})
        return out, reasons
    if is_small(total, k):
        for name in list(cells) + list(sums):
            shown[name] = None
            reasons[name] = SMALL if name in sums else DERIVED
        return shown, reasons
    suppressed = {c for c, v in cells.items() if is_small(v, k)}
    for c in suppressed:
        reasons[c] = SMALL
    while suppressed and (len(suppressed) == 1 or sum(cells[c] for c in suppressed) < k):
        candidates = sorted((v, c) for c, v in cells.items() if c not in suppressed and v > 0)
        if not candidates:
            break
        suppressed.add(candidates[0][1])
        reasons[candidates[0][1]] = COMPLEMENTARY
    safe_total = bool(suppressed) and len(suppressed) > 1 and sum(cells[c] for c in suppressed) >= k
    for c in suppressed:
        shown[c] = None
    for name, members in sums.items():
        members = set(members)
        inside = members & suppressed
        value = sum(int(cells[c]) for c in members)
        if not inside or (inside == suppressed and (safe_total or not suppressed)):
            if is_small(value, k):
                shown[name], reasons[name] = None, SMALL
            else:
                shown[name] = value
        else:
            shown[name], reasons[name] = None, DERIVED
    return shown, reasons


def attrition(remaining: Sequence[int], k: int) -> list[bool]:
    """Which 'persons remaining' values of an ordered attrition can be shown.

    A value is shown when it is 0 or >= k and differs from the previous shown value by 0 or >= k; the
    last value (the cohort) is preferred over intermediate ones.
    """
    n = len(remaining)
    if k <= 1:
        return [True] * n

    def ok(v: int) -> bool:
        return v == 0 or v >= k

    show = [False] * n
    last = None
    for i, v in enumerate(remaining):
        if ok(v) and (last is None or ok(remaining[last] - v)):
            show[i] = True
            last = i
    if n and not show[-1] and ok(remaining[-1]):
        kept = [i for i in range(n - 1) if show[i]]
        while kept and not ok(remaining[kept[-1]] - remaining[-1]):
            show[kept.pop()] = False
        show[-1] = True
    return show
