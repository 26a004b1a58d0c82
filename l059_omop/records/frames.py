"""A vectorised write path into the loaders' sink (``l059_omop.etl.sink.Sink``), for tabular sources.

The sink's public ``write`` takes one Python object per source record and one dict per row, which is right
for FHIR resources but costs ~100 µs a row: a million-row extract would load at ~10,000 rows/s. This module
writes a whole mapped chunk as pandas frames *through the same Sink object*: its run (``etl.load_run``),
report, quarantine, transactions, id function and collision probing (``etl.ids`` + ``etl.source_id_map``),
replacement rules (``etl.source_resource`` content hashes: an unchanged row is left alone, a changed one has
its rows replaced with the same ids, person rows are upserted), ``touched_person`` and the observation
periods the sink derives at the end. Only the per-row Python is gone.

It uses the sink's underscore helpers (``_tx``, ``_fetch_resources``, ``_fetch_map``, ``_taken``,
``_delete_ids``, ``_delete_keys``, ``_upsert``, ``_flush_quarantine``); if the sink grows a frame API this
adapter should become a call to it. ``tests/records`` checks that both paths write identical databases.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sqlalchemy as sa

from l059_omop.db import bulk, cdm_spec
from l059_omop.etl.ids import hashed_id, key_text
from l059_omop.etl.model import Quarantined, Ref
from l059_omop.etl.sink import _DELETE_ORDER, _REFERENCED, Sink
from l059_omop.records.mapper import PATIENT, TableRows

log = logging.getLogger(__name__)

_INSERT_ORDER = tuple(reversed(_DELETE_ORDER))


@dataclass
class Batch:
    """One mapped chunk: the record type, each source row's id / content hash / locator, and its rows."""

    resource_type: str
    source_ids: dict[int, str]        # source row number -> source id (row key, or the patient pseudonym)
    content: dict[int, str]           # source row number -> content sha256
    locators: dict[int, str]          # source row number -> "file:row N"
    outputs: list[TableRows]


def _typed(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """Columns in specification order with the table's types (nullable ints, so PostgreSQL COPY reads them)."""
    spec = {f.name: f.datatype for f in cdm_spec.tables()[table]}
    cols = [c for c in spec if c in df.columns]
    out = {}
    for c in cols:
        t, s = spec[c], df[c]
        if t == "integer":
            out[c] = pd.array(pd.to_numeric(s, errors="coerce").round(), dtype="Int64")
        elif t == "float":
            out[c] = pd.to_numeric(s, errors="coerce").astype("float64")
        elif t in ("date", "datetime"):
            out[c] = pd.to_datetime(s)
        else:
            out[c] = s.astype(object).where(s.notna(), None)
    return pd.DataFrame(out)


@dataclass
class _Outcome:
    """What one batch did; added to the sink's report only once its transaction committed."""

    mapped: int = 0
    unchanged: int = 0
    collisions: int = 0
    inserted: Counter = field(default_factory=Counter)
    deleted: Counter = field(default_factory=Counter)
    quarantine: list[Quarantined] = field(default_factory=list)
    persons: dict[str, int] = field(default_factory=dict)


def _row_key(tr: TableRows) -> str:
    """etl.source_id_map.row_key of an output: '' for the person (as the FHIR path), 'death', else its name."""
    return "" if tr.table == "person" else "death" if tr.table == "death" else tr.output


class FrameWriter:
    """Writes :class:`Batch` es through ``sink`` (see the module docstring)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.persons: dict[str, int] = {}  # patient pseudonym -> person_id (this run and looked up)
        self._fresh: dict[str, bool] = {}

    # ------------------------------------------------------------------ ids
    def _person_ids(self, keys: set[str]) -> dict[str, int]:
        todo = {k for k in keys if k not in self.persons}
        if todo:
            found = self.sink._fetch_map({(PATIENT, k) for k in todo})
            for ref, oid in found.items():
                if ref.table == "person":
                    self.persons[ref.source_id] = oid
            if len(self.persons) > 2_000_000:
                self.persons = {k: v for k, v in self.persons.items() if k in keys}
        return {k: self.persons[k] for k in keys if k in self.persons}

    def _assign(self, table: str, keys: list[tuple[str, str, str]], reuse: dict[Ref, int],
                res: _Outcome) -> list[int]:
        """Ids for rows of ``table`` named by (resource type, source id, row key): a replaced row keeps its
        id, a new one gets the sink's hash of its key, probed past ids already taken (collisions)."""
        s = self.sink
        out: list[int | None] = [reuse.get(Ref(table, *k)) for k in keys] if reuse else [None] * len(keys)
        todo = [(i, key_text(s.source_system, *k), 0) for i, k in enumerate(keys) if out[i] is None]
        used = {x for x in out if x is not None}
        while todo:
            cands = [(i, text, p, hashed_id(text, p)) for i, text, p in todo]
            taken = s._taken(table, [c for *_, c in cands]) | used
            todo = []
            for i, text, p, cand in cands:
                if cand in taken:
                    res.collisions += 1
                    todo.append((i, text, p + 1))
                else:
                    out[i] = cand
                    used.add(cand)
                    taken.add(cand)
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ the batch
    def _is_fresh(self, rt: str) -> bool:
        """True when the database holds no record of this type from this source (a first load)."""
        if rt not in self._fresh:
            s = self.sink
            q = sa.text(f"select count(*) from {s.etl}.source_resource where source_system = :ss and "
                        "resource_type = :rt")
            self._fresh[rt] = s._con.execute(q, {"ss": s.source_system, "rt": rt}).scalar_one() == 0
        return self._fresh[rt]

    def write(self, b: Batch) -> None:
        """Write one batch in one transaction (the sink's); quarantine rows whose patient is unknown.

        On a first load of a record type nothing can be replaced, so the lookup of stored content hashes
        is skipped; should a key nevertheless exist (the same key twice in a file) the transaction fails
        on the primary key and the batch is redone with the lookup.
        """
        fresh = self._fresh.get(b.resource_type)
        try:
            with self.sink._tx() as con:
                if fresh is None:
                    fresh = self._is_fresh(b.resource_type)
                out = self._write(con, b, fresh)
        except Exception:
            if not fresh:
                raise
            log.debug("first-load shortcut failed for %s; redoing the batch with lookups", b.resource_type)
            self._fresh[b.resource_type] = False
            with self.sink._tx() as con:
                out = self._write(con, b, False)
        s = self.sink
        counts = s.report.t(b.resource_type)
        counts.mapped += out.mapped
        counts.unchanged += out.unchanged
        for t, n in out.inserted.items():
            s.report.rows_inserted[t] += n
        for t, n in out.deleted.items():
            s.report.rows_deleted[t] += n
        s.report.id_collisions += out.collisions
        self.persons.update(out.persons)
        for q in out.quarantine:
            s.quarantine(q)

    def _write(self, con, b: Batch, fresh: bool) -> _Outcome:
        s = self.sink
        rt = b.resource_type
        res = _Outcome()
        rows_with_output = sorted({r for tr in b.outputs for r in tr.rownums.tolist()})
        keys = {(rt, b.source_ids[r]) for r in rows_with_output}
        existing = s._fetch_resources(keys) if keys and not fresh else {}
        if existing:
            unchanged = {r for r in rows_with_output
                         if existing.get((rt, b.source_ids[r]), (None,))[0] == b.content[r]}
            replaced = {r for r in rows_with_output if (rt, b.source_ids[r]) in existing and r not in unchanged}
        else:  # a first load: nothing to compare
            unchanged, replaced = set(), set()
        res.mapped = res.unchanged = len(unchanged)
        old = s._fetch_map({(rt, b.source_ids[r]) for r in replaced}, con) if replaced else {}
        # person links: this batch's own patients, else the run's / the database's
        need: set[str] = set()
        for tr in b.outputs:
            if tr.person_keys is not None:
                need |= set(tr.person_keys.dropna().tolist())
        own_person: dict[str, int] = {}
        for tr in b.outputs:
            if tr.table != "person":
                continue
            keep = ~tr.rownums.isin(unchanged).to_numpy()
            pkeys = tr.person_keys[keep].tolist()
            own_person.update(zip(pkeys, self._assign("person", [(PATIENT, k, "") for k in pkeys], old, res),
                                  strict=True))
        known = {**self._person_ids(need - set(own_person)), **own_person}
        missing_rows: dict[int, str] = {}
        for tr in b.outputs:
            if tr.person_keys is None:
                continue
            for r, k in zip(tr.rownums.tolist(), tr.person_keys.tolist(), strict=True):
                if k not in known and r not in unchanged:
                    missing_rows.setdefault(r, k)
        res.quarantine = [Quarantined(rt, b.source_ids[r], b.locators[r],
                                      f"unresolved reference: Patient/{k} (1 missing)")
                          for r, k in sorted(missing_rows.items())]
        drop = unchanged | set(missing_rows)
        # own ids first (refs between outputs of a row need them)
        ids_of: dict[tuple[str, int], int] = {}
        plan: list[tuple[TableRows, np.ndarray, list[int] | None]] = []
        for tr in b.outputs:
            keep = ~tr.rownums.isin(drop).to_numpy()
            if not keep.any():
                continue
            rown = tr.rownums[keep].tolist()
            own_ids: list[int] | None = None
            if tr.table == "person":
                own_ids = [known[k] for k in tr.person_keys[keep]]
            elif tr.table != "death":
                own_ids = self._assign(tr.table, [(rt, b.source_ids[r], tr.output) for r in rown], old, res)
            if own_ids is not None:
                ids_of.update(zip([(tr.output, r) for r in rown], own_ids, strict=True))
            plan.append((tr, keep, own_ids))
        frames: dict[str, list[pd.DataFrame]] = defaultdict(list)
        map_parts: list[pd.DataFrame] = []
        written_rows: set[int] = set()
        for tr, keep, own_ids in plan:
            df = tr.frame[keep].reset_index(drop=True).copy()
            rown = tr.rownums[keep].tolist()
            written_rows |= set(rown)
            if tr.person_keys is not None:
                df["person_id"] = [known[k] for k in tr.person_keys[keep]]
            pk = next((f.name for f in cdm_spec.tables()[tr.table] if f.primary_key), None)
            if own_ids is not None and pk and tr.table != "person":
                df[pk] = own_ids
            for fname, (_table, ref_rt, ref_keys) in tr.refs.items():
                target = ref_rt.split(".", 1)[1] if "." in ref_rt else ref_rt
                vals = ref_keys[keep].tolist()
                df[fname] = [ids_of.get((target, r)) if v is not None else None
                             for r, v in zip(rown, vals, strict=True)]
            frames[tr.table].append(df)
            oids = own_ids if own_ids is not None else df["person_id"].tolist()
            map_parts.append(pd.DataFrame({
                "resource_type": rt, "source_id": [b.source_ids[r] for r in rown],
                "row_key": _row_key(tr), "omop_table": tr.table, "omop_id": pd.array(oids, dtype="int64")}))
        if not written_rows and not replaced:
            s._flush_quarantine(con)
            return res
        new_ids = {(t, int(i)) for part in map_parts
                   for t, i in zip(part["omop_table"], part["omop_id"], strict=True)} if old else set()
        by_table: dict[str, list[int]] = defaultdict(list)
        for ref, oid in old.items():
            if ref.table in _REFERENCED and (ref.table, oid) in new_ids:
                continue
            by_table[ref.table].append(oid)
        for table in sorted(by_table, key=lambda t: _DELETE_ORDER.index(t) if t in _DELETE_ORDER else -1):
            col = "person_id" if table in ("death", "person") else f"{table}_id"
            res.deleted[table] += s._delete_ids(con, s.cdm, table, col, by_table[table])
        if replaced:
            rkeys = {(rt, b.source_ids[r]) for r in replaced}
            s._delete_keys(con, "source_id_map", rkeys)
            s._delete_keys(con, "source_resource", rkeys)
        old_tables = {ref.table for ref in old}
        for table in sorted(frames, key=lambda t: _INSERT_ORDER.index(t) if t in _INSERT_ORDER else 99):
            df = _typed(table, pd.concat(frames[table], ignore_index=True))
            if table in _REFERENCED and table in old_tables:
                res.inserted[table] += s._upsert(con, table, df)
            else:
                res.inserted[table] += bulk.insert_frame(con, s.cdm, table, df)
        if map_parts:
            m = pd.concat(map_parts, ignore_index=True)
            m.insert(0, "source_system", s.source_system)
            m["run_id"] = s.run_id
            bulk.insert_frame(con, s.etl, "source_id_map", m)
        rows = sorted(written_rows)
        bulk.insert_frame(con, s.etl, "source_resource", pd.DataFrame({
            "source_system": s.source_system, "resource_type": rt,
            "source_id": [b.source_ids[r] for r in rows], "version_id": None, "last_updated": None,
            "content_sha256": [b.content[r] for r in rows], "run_id": s.run_id,
            "locator": [b.locators[r] for r in rows], "imputed": None}))
        pcols = [f["person_id"] for fs in frames.values() for f in fs if "person_id" in f]
        persons = sorted(pd.concat(pcols, ignore_index=True).astype("int64").unique().tolist()) if pcols else []
        if persons:
            bulk.insert_frame(con, s.etl, "touched_person",
                              pd.DataFrame({"run_id": s.run_id, "person_id": pd.array(persons, dtype="int64")}))
        s._flush_quarantine(con)
        res.mapped += len(written_rows)
        res.persons = own_person
        return res
