"""The run report: what was read, mapped, quarantined and skipped, per source record type; rows written per
OMOP table; the most frequent unmapped codes. Stored as JSON in ``etl.load_run.counts_json`` and printed.

The numbers reconcile by construction: every record read is counted exactly once as mapped, quarantined or
skipped (``check()`` says when they do not).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class TypeCounts:
    read: int = 0
    mapped: int = 0
    unchanged: int = 0  # part of mapped: already in the database with the same content
    quarantined: Counter = field(default_factory=Counter)  # reason category -> n
    skipped: Counter = field(default_factory=Counter)      # rule -> n

    @property
    def reconciles(self) -> bool:
        return self.read == self.mapped + sum(self.quarantined.values()) + sum(self.skipped.values())


@dataclass
class RunReport:
    run_id: str
    source: str = ""
    status: str = "running"
    types: dict[str, TypeCounts] = field(default_factory=dict)
    rows_inserted: Counter = field(default_factory=Counter)
    rows_deleted: Counter = field(default_factory=Counter)
    unmapped: Counter = field(default_factory=Counter)     # "vocabulary|code" -> n
    imputed: Counter = field(default_factory=Counter)      # "Type.field: what" -> n
    notes: Counter = field(default_factory=Counter)        # other counted events (deceasedBoolean only ...)
    id_collisions: int = 0
    persons_with_period: int = 0

    def t(self, resource_type: str | None) -> TypeCounts:
        key = resource_type or "(unknown)"
        if key not in self.types:
            self.types[key] = TypeCounts()
        return self.types[key]

    @property
    def read(self) -> int:
        return sum(c.read for c in self.types.values())

    @property
    def mapped(self) -> int:
        return sum(c.mapped for c in self.types.values())

    @property
    def quarantined(self) -> int:
        return sum(sum(c.quarantined.values()) for c in self.types.values())

    @property
    def skipped(self) -> int:
        return sum(sum(c.skipped.values()) for c in self.types.values())

    def check(self) -> list[str]:
        """Types whose counts do not reconcile (empty when all do)."""
        return [f"{k}: read {c.read} != mapped {c.mapped} + quarantined {sum(c.quarantined.values())} + "
                f"skipped {sum(c.skipped.values())}" for k, c in self.types.items() if not c.reconciles]

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id, "status": self.status, "source": self.source,
            "totals": {"read": self.read, "mapped": self.mapped, "quarantined": self.quarantined,
                       "skipped": self.skipped},
            "types": {k: {"read": c.read, "mapped": c.mapped, "unchanged": c.unchanged,
                          "quarantined": dict(c.quarantined), "skipped": dict(c.skipped)}
                      for k, c in sorted(self.types.items())},
            "rows_inserted": dict(sorted(self.rows_inserted.items())),
            "rows_deleted": dict(sorted(self.rows_deleted.items())),
            "unmapped_top": [[k, n] for k, n in self.unmapped.most_common(20)],
            "unmapped_distinct": len(self.unmapped),
            "imputed": dict(self.imputed), "notes": dict(self.notes),
            "id_collisions": self.id_collisions, "persons_with_period": self.persons_with_period,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=False)

    def lines(self) -> list[str]:
        """The printed report."""
        out = [f"run {self.run_id}: {self.status}; read {self.read:,}, mapped {self.mapped:,}, "
               f"quarantined {self.quarantined:,}, skipped {self.skipped:,}"]
        w = max([len(k) for k in self.types] + [13])
        out.append(f"  {'record type':<{w}} {'read':>8} {'mapped':>8} {'unchanged':>9} {'quarant.':>8} {'skipped':>8}")
        for k, c in sorted(self.types.items()):
            out.append(f"  {k:<{w}} {c.read:>8,} {c.mapped:>8,} {c.unchanged:>9,} {sum(c.quarantined.values()):>8,} "
                       f"{sum(c.skipped.values()):>8,}")
            for reason, n in c.quarantined.most_common():
                out.append(f"  {'':<{w}}   quarantined {n:,}: {reason}")
            for rule, n in c.skipped.most_common():
                out.append(f"  {'':<{w}}   skipped {n:,}: {rule}")
        if self.rows_inserted or self.rows_deleted:
            out.append("  rows written: " + ", ".join(f"{t} {n:,}" for t, n in sorted(self.rows_inserted.items())))
        if self.rows_deleted:
            out.append("  rows replaced (deleted): " + ", ".join(f"{t} {n:,}" for t, n in sorted(self.rows_deleted.items())))
        if self.unmapped:
            out.append(f"  unmapped codes ({len(self.unmapped):,} distinct), most frequent:")
            for k, n in self.unmapped.most_common(10):
                out.append(f"    {k}: {n:,}")
        for k, n in sorted(self.imputed.items()):
            out.append(f"  imputed {k}: {n:,}")
        for k, n in sorted(self.notes.items()):
            out.append(f"  note {k}: {n:,}")
        if self.id_collisions:
            out.append(f"  id collisions resolved: {self.id_collisions}")
        for bad in self.check():
            out.append(f"  DOES NOT RECONCILE: {bad}")
        return out
