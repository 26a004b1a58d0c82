"""Source units as columns: the FHIR loader's workers hand most of their output to the writing process this way.

A :class:`FactBlock` holds the units of a task whose whole output is facts (no finished rows, every date
checked plausible, no Medication reference left to resolve) with one list per :class:`~l059_omop.etl.model.Fact`
field instead of one object per fact. It pickles in a fraction of the time, and the sink routes, ids and
writes it with array operations (:meth:`~l059_omop.etl.sink.Sink.write`, ``blocks=``) instead of a Python
dict per row: at a million resources the per-object work of the writing process was the largest cost of a
load after validation. Anything the array path does not handle (a record already stored, a duplicate key,
a reference not yet loaded) goes back to units (:meth:`FactBlock.units`) and takes the object path, so both
paths write the same rows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields

import numpy as np

from l059_omop.etl.ids import key_text
from l059_omop.etl.model import Fact, SourceUnit
from l059_omop.etl.route import PLAUSIBLE_YEARS, dates_plausible

FACT_FIELDS = tuple(f.name for f in fields(Fact))
UNIT_FIELDS = ("resource_type", "source_id", "locator", "content_sha256", "version_id", "last_updated",
               "imputed", "skip_rule")


@dataclass
class FactBlock:
    """Units (one entry per unit in each ``unit`` list) and their facts (one entry per fact in each ``fact``
    list; ``of`` is each fact's unit). ``hashed``: each fact's first-probe id
    (:func:`~l059_omop.etl.ids.hashed_id` of its key), computed by the worker when it knew the source system."""

    unit: dict[str, list] = field(default_factory=lambda: {k: [] for k in UNIT_FIELDS})
    fact: dict[str, list] = field(default_factory=lambda: {k: [] for k in FACT_FIELDS})
    of: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    hashed: np.ndarray | None = None
    source_system: str | None = None

    def __len__(self) -> int:
        return len(self.unit["source_id"])

    @property
    def n_facts(self) -> int:
        return len(self.of)

    def units(self, which: np.ndarray | list[int] | None = None) -> list[SourceUnit]:
        """The units at positions ``which`` (all by default) as objects, facts in their order."""
        idx = range(len(self)) if which is None else [int(i) for i in which]
        starts = np.searchsorted(self.of, np.arange(len(self) + 1))
        u, f = self.unit, self.fact
        out = []
        for i in idx:
            facts = [Fact(**{k: f[k][j] for k in FACT_FIELDS}) for j in range(starts[i], starts[i + 1])]
            out.append(SourceUnit(u["resource_type"][i], u["source_id"][i], u["locator"][i], u["content_sha256"][i],
                                  u["version_id"][i], u["last_updated"][i], rows=[], facts=facts,
                                  imputed=list(u["imputed"][i]), skip_rule=u["skip_rule"][i], dates_checked=True))
        return out

    def drop_facts(self, units: np.ndarray) -> None:
        """Drop the facts of the units where ``units`` (a mask) is set, in place."""
        keep = ~units[self.of]
        fl = np.flatnonzero(keep).tolist()
        self.fact = {k: [v[j] for j in fl] for k, v in self.fact.items()}
        self.of = self.of[keep]
        if self.hashed is not None:
            self.hashed = self.hashed[keep]

    def take(self, which: np.ndarray) -> FactBlock:
        """The units at the (sorted) positions ``which`` and their facts."""
        which = np.asarray(which, dtype=np.int64)
        keep = np.zeros(len(self), dtype=bool)
        keep[which] = True
        fmask = keep[self.of]
        renumber = np.cumsum(keep) - 1
        wl = which.tolist()
        fl = np.flatnonzero(fmask).tolist()
        return FactBlock(unit={k: [v[i] for i in wl] for k, v in self.unit.items()},
                         fact={k: [v[j] for j in fl] for k, v in self.fact.items()},
                         of=renumber[self.of[fmask]],
                         hashed=None if self.hashed is None else self.hashed[fmask],
                         source_system=self.source_system)


def split_units(units: list[SourceUnit], source_system: str | None, check_dates: bool = False
                ) -> tuple[FactBlock | None, list[SourceUnit]]:
    """(a block of the units that can be columns, the others as they are); order within each is kept.
    ``check_dates``: the units' ``dates_checked`` is not set yet; it is found here (for a block's facts by
    their dates' extremes, unit by unit only when those are out of bounds)."""
    if check_dates:
        _check_dates(units)
    b = FactBlock(source_system=source_system)
    rest: list[SourceUnit] = []
    heads: list[tuple] = []
    rows: list[tuple] = []  # each fact's field values (a Fact's __dict__ is in field order)
    of: list[int] = []
    for u in units:
        if u.rows or not u.dates_checked or any(f.medication for f in u.facts):
            rest.append(u)
            continue
        n = len(heads)
        heads.append((u.resource_type, u.source_id, u.locator, u.content_sha256, u.version_id, u.last_updated,
                      tuple(u.imputed), u.skip_rule))
        for f in u.facts:
            of.append(n)
            rows.append(tuple(f.__dict__.values()))
    if not heads:
        return None, rest
    b.unit = {k: list(v) for k, v in zip(UNIT_FIELDS, zip(*heads, strict=True), strict=True)}
    if rows:
        b.fact = {k: list(v) for k, v in zip(FACT_FIELDS, zip(*rows, strict=True), strict=True)}
    uc, fc = b.unit, b.fact
    b.of = np.asarray(of, dtype=np.int64)
    if source_system is not None:
        from l059_omop.etl.sink import _hash_ids

        rts, sids = uc["resource_type"], uc["source_id"]
        b.hashed = _hash_ids([key_text(source_system, rts[i], sids[i], k)
                              for i, k in zip(of, fc["key"], strict=True)])
    return b, rest


_DAY_BOUNDS = (dt.date(PLAUSIBLE_YEARS[0], 1, 1), dt.date(PLAUSIBLE_YEARS[1], 12, 31))
_TIME_BOUNDS = (dt.datetime(PLAUSIBLE_YEARS[0], 1, 1), dt.datetime(PLAUSIBLE_YEARS[1], 12, 31, 23, 59, 59, 999999))
_MAX_SUPPLY = 36_500  # days: below this, a plausible start keeps its computed end plausible (bounds above)


def _check_dates(units: list[SourceUnit]) -> None:
    """Set ``dates_checked`` (route.dates_plausible's answer) on every unit: units with rows one by one;
    facts-only units all at once when every date of theirs lies within bounds (min / max over the dates, in
    C) and no days supply could carry a computed end out of them, else one by one too."""
    plain = [u for u in units if not u.rows]
    for u in units:
        if u.rows:
            u.dates_checked = dates_plausible(u)
    facts = [f for u in plain for f in u.facts]
    try:
        ok = (_within([f.start for f in facts] + [f.end for f in facts], _DAY_BOUNDS)
              and _within([f.start_dt for f in facts] + [f.end_dt for f in facts], _TIME_BOUNDS)
              and max((int(f.days_supply) for f in facts if f.days_supply), default=0) <= _MAX_SUPPLY
              and _within([f.start for f in facts], (_DAY_BOUNDS[0], _DAY_BOUNDS[1] - dt.timedelta(_MAX_SUPPLY))))
    except (TypeError, ValueError, OverflowError):  # a value of another type: ask route, unit by unit
        ok = False
    for u in plain:
        u.dates_checked = True if ok else dates_plausible(u)


def _within(values: list, bounds: tuple) -> bool:
    present = [v for v in values if v is not None]
    if not present:
        return True
    lo, hi = bounds
    # (a datetime among dates, or the reverse, would compare wrongly or not at all: unit by unit then)
    return {type(v) for v in present} == {type(lo)} and lo <= min(present) and max(present) <= hi


def concat(blocks: list[FactBlock]) -> FactBlock:
    """One block of several (their source systems agree, else the hashes are dropped)."""
    if len(blocks) == 1:
        return blocks[0]
    out = FactBlock(source_system=blocks[0].source_system)
    offsets = np.cumsum([0] + [len(b) for b in blocks[:-1]])
    for b in blocks:
        for k, v in b.unit.items():
            out.unit[k].extend(v)
        for k, v in b.fact.items():
            out.fact[k].extend(v)
    out.of = np.concatenate([b.of + off for b, off in zip(blocks, offsets, strict=True)]).astype(np.int64)
    if all(b.hashed is not None and b.source_system == out.source_system for b in blocks):
        out.hashed = np.concatenate([b.hashed for b in blocks])
    return out
