"""The loaders' sink: deterministic ids, transactional batches, idempotent reloads, version replacement,
quarantine and the run report. Shared by the FHIR loader and the hospital-records loader (one sink, not two).

A loader hands the sink :class:`~l059_omop.etl.model.SourceUnit` objects (one per source record: finished
rows and/or facts to route by domain, ids as :class:`~l059_omop.etl.model.Ref`), and reports what it read,
skipped and quarantined::

    with Sink(engine, source_system="urn:site:records", kind="records", source="extract.csv") as sink:
        sink.count_read("lab_row", n)
        sink.skip("lab_row", "no value")
        sink.quarantine(Quarantined("lab_row", "17", "extract.csv:17", "bad date: '2020-13-01'", raw_text))
        deferred = sink.write(units)           # one transaction per call
        sink.write(deferred, final=True)       # references still missing -> quarantined
    report = sink.report                       # finished, stored in etl.load_run

Each ``write`` is one transaction: nothing of a failing batch stays. A record already loaded with the same
content is left as it is (counted as mapped + unchanged); a changed record (a newer meta.versionId /
lastUpdated, or none given) has its old rows deleted and its new rows written with the same ids; an older
version is skipped. In strict mode the whole run is one transaction and the first quarantine aborts it
(``StrictQuarantine``), leaving only the load_run and quarantine rows that say why.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from l059_omop import __version__
from l059_omop.db import bulk, cdm_spec
from l059_omop.db.engine import dialect_of, validate_identifier
from l059_omop.errors import BadInput, RuntimeFailure
from l059_omop.etl.block import FactBlock
from l059_omop.etl.block import concat as block_concat
from l059_omop.etl.hashset import HashSet, key_hashes
from l059_omop.etl.ids import MAX_ID, hashed_id, key_text
from l059_omop.etl.model import Fact, Quarantined, Ref, SourceUnit, type_concept
from l059_omop.etl.report import RunReport
from l059_omop.etl.route import PLAUSIBLE_YEARS, TABLE_ID, route
from l059_omop.resources import read_sql
from l059_omop.sqlrender import render
from l059_omop.vocab import Vocabulary

log = logging.getLogger(__name__)

# rows other rows point to by foreign key: replaced in place (upsert), never deleted while referenced
_REFERENCED = ("person", "visit_occurrence")
# delete order for replaced rows (children first)
_DELETE_ORDER = ("measurement", "observation", "drug_exposure", "procedure_occurrence", "device_exposure",
                 "condition_occurrence", "death", "visit_occurrence", "person")
_CACHE_MAX = 300_000  # cached ids of referenced rows (~200 bytes each); past it the cache starts again
# entries of the first-load sets in all (8 bytes each, ~3x that while two parts merge): past it the
# largest goes and its checks are the database's
SET_MAX = 4_000_000


class StrictQuarantine(BadInput):
    """--strict: a record was quarantined, so nothing was written."""


def require_initialised(engine: Engine, cdm_schema: str, etl_schema: str) -> None:
    """A load into a database init-db never ran on fails with that hint (exit 2), not a catalog error."""
    with engine.connect() as con:
        inspector = sa.inspect(con)
        for schema, table in ((etl_schema, "load_run"), (cdm_schema, "person"), (cdm_schema, "concept")):
            if not inspector.has_table(table, schema=schema):
                raise BadInput(f"no table {schema}.{table} in this database: run init-db first "
                               "(with the same --cdm-schema / --etl-schema)")


def content_sha256(payload: bytes | str) -> str:
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return hashlib.sha256(payload).hexdigest()


def is_older(new_v: str | None, new_lu: str | None, old_v: str | None, old_lu: str | None) -> bool:
    """True when the stored version is known to be newer than the incoming one."""
    if new_v and old_v and new_v.isdigit() and old_v.isdigit() and new_v != old_v:
        return int(new_v) < int(old_v)
    if new_lu and old_lu and new_lu != old_lu:
        try:
            return dt.datetime.fromisoformat(new_lu.replace("Z", "+00:00")) < \
                dt.datetime.fromisoformat(old_lu.replace("Z", "+00:00"))
        except ValueError:
            return new_lu < old_lu
    return False


class Sink:
    """Writes source units to the CDM; see the module docstring for the protocol."""

    def __init__(self, engine: Engine, source_system: str, *, cdm_schema: str = "cdm", etl_schema: str = "etl",
                 kind: str = "fhir", source: str = "", strict: bool = False,
                 vocabulary: Vocabulary | None = None, run_id: str | None = None,
                 skip_digests: Mapping[str, Callable[[str], str]] | None = None) -> None:
        """``skip_digests``: rules the caller applies to a record once it has read more of the input (a
        MedicationRequest that a later MedicationDispense carries out), each with the digest such a record is
        stored with, made from its content's: a record arriving before the caller knows, stored that way
        with the same content, is unchanged (skipped by the rule), not a new version."""
        self.engine = engine
        self.skip_digests = dict(skip_digests or {})
        self.dialect = dialect_of(engine)
        self.source_system = source_system
        self.cdm = validate_identifier(cdm_schema)
        self.etl = validate_identifier(etl_schema)
        self.kind = kind
        self.strict = strict
        self.vocab = vocabulary or Vocabulary(engine, cdm_schema)
        self.run_id = run_id or f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        self.report = RunReport(self.run_id, source=source)
        self.started_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        self._con: Connection | None = None
        self._outer = None
        self._ids: dict[Ref, int] = {}
        self._pending_q: list[Quarantined] = []
        self._columns = {t: [f.name for f in fs] for t, fs in cdm_spec.tables().items()}
        self._types = {t: {f.name: f.datatype for f in fs} for t, fs in cdm_spec.tables().items()}
        # columns that may hold a Ref (a row id or a link to another row): the tables' non-concept *_id columns
        self._ref_cols = {t: tuple(c for c in cols if c.endswith("_id") and not c.endswith("concept_id"))
                          for t, cols in self._columns.items()}
        self._finished = False
        self._fresh: dict[str, bool] = {}  # write_frames: record type -> nothing of it stored before
        self._frame_persons: dict[str, int] = {}  # write_frames: patient source id -> person_id
        self._seen: defaultdict[str, HashSet] = defaultdict(HashSet)  # keys written while fresh
        # omop table -> no etl.source_id_map row of it existed when the run started, so (while the run is
        # alone) an id is taken only if this run gave it (kept here, 8 bytes an id); see _taken_mask
        self._map_fresh: dict[str, bool] = {}
        self._run_ids: defaultdict[str, HashSet] = defaultdict(HashSet)
        self._staged: list[tuple[str, np.ndarray]] = []  # ids / keys of the open batch, kept once it commits
        self._staged_keys: list[tuple[str, list[str]]] = []
        # whether the first-load sets above are exact: DuckDB always; PostgreSQL while no other run writes (_alone)
        self._alone_now = self.dialect == "duckdb"
        self._shared = False
        self._others_at_start = 0
        self._live_lock = False  # PostgreSQL: this run holds its live-run lock (_take_live_lock)
        self._prepare_threshold: int | None = None  # PostgreSQL: psycopg's, restored at the end (_custom_plans)

    # ----------------------------------------------------------------- lifecycle
    def __enter__(self) -> Sink:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abort(exc)

    def start(self) -> None:
        require_initialised(self.engine, self.cdm, self.etl)
        shared = self.dialect != "duckdb"
        self._con = self.engine.connect()
        try:
            if shared:  # the live lock before the run's load_run row: no run sees the row without the lock
                self._take_live_lock()
            with self._con.begin():
                self._con.execute(self._t("load_run").insert().values(
                    run_id=self.run_id, kind=self.kind, started_at=self.started_at, status="running",
                    software_version=__version__, cdm_version=cdm_spec.CDM_VERSION,
                    vocabulary_version=self._vocab_version(self._con), source=self.report.source[:10000]))
            if shared:
                self._note_others()
        except BaseException:
            self._con.close()  # and a live lock with it
            self._con = None
            raise
        self._custom_plans(True)
        if self.strict:
            self._outer = self._con.begin()
            self._serialize(self._con)

    def _custom_plans(self, on: bool) -> None:
        """PostgreSQL: no server-side prepared statements on the sink's connection while it loads. psycopg
        prepares a query after 5 executions, and PostgreSQL then moved to a generic plan for the per-batch id
        lookups (``omop_table = $1 and omop_id = any($2)``) that took 2-3.5 s a batch at 100,000 resources and
        grew with the map, where the plan made for the actual values takes milliseconds (measured)."""
        if self.dialect != "postgresql" or self._con is None:
            return
        raw = self._con.connection.driver_connection
        if on:
            self._prepare_threshold = raw.prepare_threshold
            raw.prepare_threshold = None
        else:
            raw.prepare_threshold = self._prepare_threshold

    def _vocab_version(self, con: Connection) -> str | None:
        try:
            return con.execute(sa.text(f"select vocabulary_version from {self.cdm}.vocabulary "
                                       "where vocabulary_id = 'None'")).scalar()
        except Exception:  # noqa: BLE001 - a CDM without a vocabulary table still loads
            return None

    def _t(self, name: str) -> sa.Table:
        from l059_omop.db.layout import etl_metadata

        if not hasattr(self, "_etl_md"):
            self._etl_md = etl_metadata(self.etl)
        return self._etl_md.tables[f"{self.etl}.{name}"]

    # ----------------------------------------------------------------- counting
    def count_read(self, resource_type: str | None, n: int = 1) -> None:
        self.report.t(resource_type).read += n

    def skip(self, resource_type: str, rule: str, n: int = 1) -> None:
        self.report.t(resource_type).skipped[rule] += n

    def note(self, what: str, n: int = 1) -> None:
        self.report.notes[what] += n

    def quarantine(self, q: Quarantined) -> None:
        """Record a rejected record (reason as 'category: detail'); fatal in strict mode."""
        self.report.t(q.resource_type).quarantined[q.reason.split(":", 1)[0]] += 1
        self._pending_q.append(q)
        if self.strict:
            self.abort(None, status="failed-strict")
            raise StrictQuarantine(f"--strict: {q.locator}: {q.reason} (nothing was written)")
        if len(self._pending_q) >= 5000 and not self._con.in_transaction():
            with self._tx() as con:
                self._flush_quarantine(con)

    def _flush_quarantine(self, con: Connection) -> None:
        if not self._pending_q:
            return
        # rejected input is hostile by nature: its text must not make the quarantine write itself fail
        df = pd.DataFrame([{"run_id": self.run_id, "source_locator": _db_text(q.locator),
                            "resource_type": _db_text(q.resource_type, 64), "resource_id": _db_text(q.source_id, 255),
                            "reason": _db_text(q.reason), "payload": _db_text(q.payload, 1_000_000) or None}
                           for q in self._pending_q])
        bulk.insert_frame(con, self.etl, "quarantine", df)
        self._pending_q = []

    class _NoTx:
        def __init__(self, con):
            self.con = con

        def __enter__(self):
            return self.con

        def __exit__(self, *a):
            return False

    def _tx(self):
        """A transaction per batch, or (strict) the run's single outer transaction."""
        if self._con is None:
            raise RuntimeError("Sink.start() was not called")
        if self._outer is not None:
            return self._NoTx(self._con)
        return _Begin(self._con, self._serialize)

    def _serialize(self, con: Connection) -> None:
        """PostgreSQL: one writing transaction at a time per etl schema (a transaction-level advisory lock).

        Two loaders of overlapping input would otherwise both find a record new and both insert its rows
        (a duplicate-key failure of one of them), or both recompute one person's observation period; under
        the lock each batch reads what the other committed and counts it as unchanged.
        """
        if self.dialect == "postgresql":
            key = _lock_key(f"l059-omop sink {self.etl}", 64)
            con.execute(sa.text("select pg_advisory_xact_lock(:k)"), {"k": key})

    # ----------------------------------------------------------------- the batch
    def write(self, units: list[SourceUnit], final: bool = False, blocks: Sequence[FactBlock] = ()
              ) -> list[SourceUnit]:
        """Write a batch in one transaction; return units whose references are not (yet) loaded.

        With ``final=True`` such units are quarantined instead ("unresolved reference"). Units written are
        consumed: their rows' Refs are replaced by the ids in place (a returned unit is left as it was).
        ``blocks``: more units of the batch as columns (:class:`~l059_omop.etl.block.FactBlock`), written by
        array operations after ``units``; the block units the array path does not take (stored before,
        twice in the batch, a reference not yet loaded) join ``units`` or come back as deferred units.
        """
        if not units and not blocks:
            return []
        self._staged, self._staged_keys = [], []
        with self._tx():
            self._alone_now = self._alone()
            block, existing = None, {}
            if blocks and not final:
                block, more, existing = self._partition(block_concat(list(blocks)), units)
                units = [*units, *more]
            elif blocks:
                units = [*units, *(u for b in blocks for u in b.units())]
            deferred = self._write(units, final, existing) if units else []
            if block is not None and len(block):
                deferred += self._write_block(block)
        self._keep_staged()
        return deferred

    def _partition(self, b: FactBlock, units: list[SourceUnit]
                   ) -> tuple[FactBlock, list[SourceUnit], dict[tuple[str, str], tuple]]:
        """(the block's units the array path writes, the others as units, the stored versions found): a unit
        goes back to the object path when its key is twice in the batch or is stored already
        (_keys_to_look_up's rule, then the lookup), as those need its dedupe, unchanged and replacement logic."""
        rts, sids = b.unit["resource_type"], b.unit["source_id"]
        n = len(sids)
        rt_arr = np.asarray(rts, dtype=object)
        sid_arr = np.asarray(sids, dtype=object)
        hashes = key_hashes(sid_arr)
        # twice in the batch: by 64-bit hash of the source id within its type (a false match only sends a
        # unit to the object path, which dedupes exactly)
        types = pd.factorize(rt_arr)[0]
        slow = pd.DataFrame({"t": types, "h": hashes}).duplicated(keep=False).to_numpy()
        if units:
            taken = {(u.resource_type, u.source_id) for u in units}
            slow |= np.fromiter(((rt, sid) in taken for rt, sid in zip(rts, sids, strict=True)), dtype=bool, count=n)
        look = np.zeros(n, dtype=bool)
        for rt in set(rts):
            of_type = rt_arr == rt
            fresh = self._fresh.get(rt)
            if fresh is None:
                fresh = self._fresh[rt] = self._is_fresh(rt)
            if self._alone_now and fresh:
                pos = np.flatnonzero(of_type & ~slow)
                look[pos[self._seen[rt].contains(hashes[pos])]] = True
            else:
                look |= of_type & ~slow
        found: dict[tuple[str, str], tuple] = {}
        if look.any():
            pos = np.flatnonzero(look)
            found = self._fetch_resources({(rts[i], sids[i]) for i in pos.tolist()})
            if found:
                slow[[i for i in pos.tolist() if (rts[i], sids[i]) in found]] = True
        if not slow.any():
            return b, [], found
        return b.take(np.flatnonzero(~slow)), b.units(np.flatnonzero(slow)), found

    def _write_block(self, b: FactBlock) -> list[SourceUnit]:
        """The array path of :meth:`_write` for new, unique units of facts (see _partition): route(), ids,
        references and the bookkeeping rows, the same rows as the object path; units whose patient or
        encounter is not loaded yet come back (deferred) as units."""
        from l059_omop.etl import route_block as rb

        con = self._con
        f, uc = b.fact, b.unit
        combos = rb.combinations(b)
        pairs = rb.code_pairs(b, combos[0])
        r = rb.route_facts(b, self.vocab.resolve_many(pairs) if pairs else {}, combos)
        if r.unmapped:
            self.report.unmapped.update(f"{v}|{c}" for _, (v, c) in r.unmapped)
        rts, sids = uc["resource_type"], uc["source_id"]
        # hard links: the patient and the encounter must be loaded (this batch's object part, or before)
        person = self._link_ids("person", "Patient", f["person"])
        visit = self._link_ids("visit_occurrence", "Encounter", f["visit"])
        missing = (person == 0) | ((visit == 0) & np.asarray([v is not None for v in f["visit"]], dtype=bool))
        deferred: list[SourceUnit] = []
        if missing.any():
            bad = np.unique(b.of[missing])
            deferred = b.units(bad)
            keep_u = np.ones(len(b), dtype=bool)
            keep_u[bad] = False
            keep_f = keep_u[b.of]
            b, r = b.take(np.flatnonzero(keep_u)), r.take(keep_f)
            person, visit = person[keep_f], visit[keep_f]
            f, uc = b.fact, b.unit
            rts, sids = uc["resource_type"], uc["source_id"]
        if not len(b):
            return deferred
        of = b.of
        own = self._block_ids(b, r)
        event = self._event_ids(b, r, own)
        map_parts: list[pd.DataFrame] = []
        cols = rb.Columns(b)
        rt_of = np.asarray(rts, dtype=object)[of]
        sid_of = np.asarray(sids, dtype=object)[of]
        key_of = cols.take("key", slice(None))
        for t_no, table in enumerate(rb.TABLES):
            sel = np.flatnonzero(r.table == t_no)
            if not len(sel):
                continue
            df = rb.table_frame(cols, r, table, sel, own[sel], person[sel], visit[sel], event[sel],
                                self._columns[table])
            self.report.rows_inserted[table] += bulk.insert_frame(con, self.cdm, table, df)
            map_parts.append(pd.DataFrame({"resource_type": rt_of[sel], "source_id": sid_of[sel],
                                           "row_key": key_of[sel], "omop_table": table, "omop_id": own[sel]}))
        if map_parts:
            m = pd.concat(map_parts, ignore_index=True)
            m.insert(0, "source_system", self.source_system)
            m["run_id"] = self.run_id
            bulk.insert_frame(con, self.etl, "source_id_map", m)
            self._stage_ids(m)
        bulk.insert_frame(con, self.etl, "source_resource", pd.DataFrame({
            "source_system": self.source_system, "resource_type": rts, "source_id": sids,
            "version_id": uc["version_id"], "last_updated": uc["last_updated"],
            "content_sha256": uc["content_sha256"], "run_id": self.run_id, "locator": uc["locator"],
            "imputed": ["; ".join(i) or None for i in uc["imputed"]]}))
        if len(person):
            bulk.insert_frame(con, self.etl, "touched_person",
                              pd.DataFrame({"run_id": self.run_id, "person_id": np.unique(person)}))
        self._flush_quarantine(con)
        self._stage_keys(rts, sids)
        self._count_written(rts, uc["skip_rule"], uc["imputed"])
        return deferred

    def _link_ids(self, table: str, resource_type: str, source_ids: list) -> np.ndarray:
        """Ids of the rows (person, visit) per source id, 0 where None or not loaded."""
        codes, uniques = pd.factorize(np.asarray(source_ids, dtype=object))  # None -> code -1
        ids: dict[str, int] = {}
        todo = []
        for s in uniques.tolist():
            ref = Ref(table, resource_type, s)
            got = self._ids.get(ref)
            if got is None:
                todo.append(ref)
            else:
                ids[s] = got
        if todo:  # (the cache may be cleared by the lookup: what it held is read first)
            self._resolve_existing(todo)
            ids.update((ref.source_id, self._ids.get(ref, 0)) for ref in todo)
        if not len(uniques):
            return np.zeros(len(codes), dtype=np.int64)
        per_unique = np.fromiter((ids[s] for s in uniques.tolist()), dtype=np.int64, count=len(uniques))
        return np.where(codes < 0, 0, per_unique[codes.clip(min=0)])

    def _block_ids(self, b: FactBlock, r) -> np.ndarray:
        """Own ids of the block's rows: the hash of each key, probed past ids taken (in the database, by this
        run, by this batch's object part) as :meth:`_assign` does."""
        from l059_omop.etl import route_block as rb

        rts, sids, keys = b.unit["resource_type"], b.unit["source_id"], b.fact["key"]
        of = b.of
        if b.hashed is not None and b.source_system == self.source_system:
            ids = b.hashed.copy()
        else:
            ids = _hash_ids([key_text(self.source_system, rts[i], sids[i], k)
                             for i, k in zip(of.tolist(), keys, strict=True)])
        for t_no, table in enumerate(rb.TABLES):
            sel = np.flatnonzero(r.table == t_no)
            if not len(sel):
                continue
            cands = ids[sel]
            bad = self._taken_mask(table, cands) | pd.Series(cands).duplicated(keep="first").to_numpy()
            staged = [a for t, a in self._staged if t == table]
            if staged:
                bad |= np.isin(cands, np.concatenate(staged))
            if not bad.any():
                continue
            used = set(cands[~bad].tolist()) | {int(x) for a in staged for x in a.tolist()}
            for j in sel[bad].tolist():
                text = key_text(self.source_system, rts[of[j]], sids[of[j]], keys[j])
                p = 0
                while True:
                    self.report.id_collisions += 1
                    p += 1
                    cand = hashed_id(text, p)
                    if cand not in used and not self._taken_mask(table, np.asarray([cand], dtype=np.int64))[0]:
                        break
                ids[j] = cand
                used.add(cand)
        return ids

    def _event_ids(self, b: FactBlock, r, own: np.ndarray) -> np.ndarray:
        """measurement_event_id / observation_event_id per fact (0 = none), as the object path links them:
        a row of this batch, else one loaded before, else the id the row will have (a soft link)."""
        from l059_omop.etl import route_block as rb

        events = b.fact["event"]
        out = np.zeros(b.n_facts, dtype=np.int64)
        todo = [j for j, e in enumerate(events) if e is not None]
        if not todo:
            return out
        rts, sids, keys, of = b.unit["resource_type"], b.unit["source_id"], b.fact["key"], b.of
        targets: dict[int, Ref] = {}
        for j in todo:
            e = events[j]
            if e.table == "*":  # the row of the same record with that key routed before this fact
                u = of[j]
                first = int(np.searchsorted(of, u))
                hit = next((k for k in range(j - 1, first - 1, -1) if keys[k] == e.row), None)
                if hit is None:
                    continue
                e = Ref(rb.TABLES[r.table[hit]], e.resource_type, e.source_id, e.row)
            targets[j] = e
        wanted = {(e.resource_type, e.source_id) for e in targets.values()}
        mine = {Ref(rb.TABLES[r.table[k]], rts[of[k]], sids[of[k]], keys[k]): int(own[k])
                for k in range(b.n_facts) if (rts[of[k]], sids[of[k]]) in wanted}
        self._resolve_existing([e for e in set(targets.values()) if e not in mine and e not in self._ids])
        for j, e in targets.items():
            got = mine.get(e) or self._ids.get(e)
            if got is None:
                got = hashed_id(key_text(self.source_system, e.resource_type, e.source_id, e.row))
            out[j] = got
        return out

    def _keep_staged(self) -> None:
        """After a batch committed: the ids and keys it wrote join the run's in-memory sets (_alone)."""
        for table, ids in self._staged:
            if self._map_fresh.get(table):
                self._run_ids[table].add(ids)
        for rt, sids in self._staged_keys:
            if self._fresh.get(rt):
                self._seen[rt].add(key_hashes(sids))
        self._staged, self._staged_keys = [], []
        self._bound_sets()

    def _bound_sets(self) -> None:
        """Memory stays bounded whatever the input size: while the sets hold more than SET_MAX entries in
        all, the largest is dropped and its record type or table is checked in the database from then on
        (the lookups the sets stand in for)."""
        sizes = {("key", rt): len(v) for rt, v in self._seen.items()}
        sizes.update({("id", t): len(v) for t, v in self._run_ids.items()})
        total = sum(sizes.values())
        for (kind, name), n in sorted(sizes.items(), key=lambda x: -x[1]):
            if total <= SET_MAX:
                break
            if kind == "key":
                self._fresh[name] = False
                self._seen.pop(name, None)
            else:
                self._forget_fresh({name})
            total -= n

    def _live_keys(self) -> tuple[int, int]:
        return live_lock_keys(self.etl, self.run_id)

    def _take_live_lock(self) -> None:
        """PostgreSQL: hold a session advisory lock for as long as the run is live (PostgreSQL drops it when
        the process dies, however it dies). Taken before the run's etl.load_run row is written (start), so a
        run whose row another run counts is live in pg_locks too, or has ended."""
        cls, obj = self._live_keys()
        got = self._con.execute(sa.text("select pg_try_advisory_lock(:c, :o)"), {"c": cls, "o": obj}).scalar_one()
        self._live_lock = bool(got)
        self._shared = not got  # not got: another live run has the same 31-bit key
        self._con.commit()

    def _note_others(self) -> None:
        """What _alone compares with, read after this run's row is written: how many other runs etl.load_run
        has, then whether any other run is live (a lock of the same class; a row left 'running' by a killed
        run holds none). In that order: a run whose row the count missed adds one to a later count, which
        _alone sees at the next batch; a run whose row it counted took its lock before writing the row, so
        the lock count sees it unless it has ended (and then all it wrote is committed and looked up)."""
        self._others_at_start = self._other_runs()
        others = live_run_objects(self._con, self.etl) - {self._live_keys()[1]}
        self._shared = self._shared or bool(others)
        self._con.commit()

    def _alone(self) -> bool:
        """Does the database hold only what it held when this run started plus this run's own writes (so
        the in-memory first-load sets are exact)? DuckDB: yes, the file is this process's alone while it
        writes. PostgreSQL: checked at each batch, under the advisory lock that lets one writing batch at a
        time through (_serialize): no other run was live when this one started (_note_others) and no run
        has been started since (a count of etl.load_run rows, not clocks); once another run is seen, never
        again for this run."""
        if self.dialect == "duckdb":
            return True
        if not self._shared and self._other_runs() != self._others_at_start:
            self._shared = True
        if self._shared:
            self._map_fresh.clear()
            self._run_ids.clear()
        return not self._shared

    def _other_runs(self) -> int:
        """Rows of etl.load_run besides this run's (a run started since adds one)."""
        return int(self._con.execute(sa.text(f"select count(*) from {self.etl}.load_run where run_id <> :me"),
                                     {"me": self.run_id}).scalar_one())

    def _keys_to_look_up(self, units: list[SourceUnit]) -> set[tuple[str, str]]:
        """Keys whose stored version must be fetched. While the run is alone (_alone): a record type
        nothing was stored of when the run started needs no lookup for keys this run has not written either (a
        64-bit hash of each key written is kept; a hit, even a false one, looks the batch's keys of that type
        up). Otherwise every key is looked up: another loader may have committed between our batches."""
        keys = {(u.resource_type, u.source_id) for u in units}
        if not self._alone_now or not keys:
            return keys
        by_type: defaultdict[str, list[str]] = defaultdict(list)
        for rt, sid in keys:
            by_type[rt].append(sid)
        out: set[tuple[str, str]] = set()
        for rt, sids in by_type.items():
            fresh = self._fresh.get(rt)
            if fresh is None:
                fresh = self._fresh[rt] = self._is_fresh(rt)
            if fresh and not self._seen[rt].has_any(key_hashes(sids)):
                continue
            out.update((rt, s) for s in sids)
        return out

    def _write(self, units: list[SourceUnit], final: bool, known: dict | None = None) -> list[SourceUnit]:
        """``known``: stored versions already fetched for some of the units' keys (_partition)."""
        units = self._dedupe(units)
        known = known or {}
        existing = {**known, **self._fetch_resources(self._keys_to_look_up(units) - known.keys())}
        todo: list[SourceUnit] = []
        changed: set[tuple[str, str]] = set()
        for u in units:
            ex = existing.get((u.resource_type, u.source_id))
            if ex is not None and ex[0] == u.content_sha256:
                c = self.report.t(u.resource_type)
                if u.skip_rule:
                    c.skipped[u.skip_rule] += 1
                else:
                    c.mapped += 1
                    c.unchanged += 1
                continue
            if ex is not None and not u.skip_rule and self.skip_digests:
                rule = next((r for r, fn in self.skip_digests.items() if ex[0] == fn(u.content_sha256)), None)
                if rule is not None:
                    self.report.t(u.resource_type).skipped[rule] += 1
                    continue
            if ex is not None:
                if is_older(u.version_id, u.last_updated, ex[1], ex[2]):
                    self.skip(u.resource_type, "older version than the one loaded")
                    continue
                changed.add((u.resource_type, u.source_id))
            todo.append(u)
        if not todo:
            return []
        routed = self._route(todo)
        todo = [u for u, rows in zip(todo, routed, strict=True) if rows is not None]
        routed = [rows for rows in routed if rows is not None]
        # references: a unit is ready when every Ref it points to (not its own) exists
        info = []
        own_all: set[Ref] = set()
        needed: set[Ref] = set()
        ref_cols = self._ref_cols
        for u, rows in zip(todo, routed, strict=True):
            owns, hard, row_refs = [], [], []
            for table, row in rows:
                own = self._own(table, row)
                owns.append(own)
                refs = []
                for k in ref_cols[table]:
                    v = row.get(k)
                    if v.__class__ is Ref:
                        refs.append((k, v))
                        if v != own:
                            needed.add(v)
                            if k not in _SOFT:
                                hard.append(v)
                row_refs.append(refs)
            own_all.update(owns)
            info.append((u, rows, owns, hard, row_refs))
        self._resolve_existing([r for r in needed if r not in own_all and r not in self._ids])
        deferred: list[SourceUnit] = []
        while True:  # drop units with missing refs, then units that needed those units' rows
            present = {o for _, _, owns, _, _ in info for o in owns}
            keep, drop = [], []
            for item in info:
                missing = [v for v in item[3] if v not in present and v not in self._ids]
                if missing:
                    drop.append((item[0], missing))
                else:
                    keep.append(item)
            info = keep
            for u, missing in drop:
                if final:
                    m = missing[0]
                    self.quarantine(Quarantined(u.resource_type, u.source_id, u.locator,
                                                f"unresolved reference: {m.resource_type}/{m.source_id} "
                                                f"({len(missing)} missing)"))
                else:
                    deferred.append(u)
            if not drop:
                break
        if info:
            ready_keys = {(u.resource_type, u.source_id) for u, *_ in info} if changed else set()
            self._write_ready([(u, rows, owns, refs) for u, rows, owns, _, refs in info], changed & ready_keys)
        return deferred

    def retract(self, resource_type: str, source_ids: Iterable[str], rule: str) -> int:
        """Records this run wrote rows for that a rule, learnt later in the input, says make none: each is
        stored again with no row, skipped by ``rule`` (its digest from skip_digests), its rows deleted and
        its person's observation period recomputed; the report moves it from mapped to skipped. Returns how
        many. Records with no row of this run (skipped already, unchanged, loaded by another run) are left."""
        digest = self.skip_digests[rule]
        done = 0
        for keys in _key_chunks(resource_type, source_ids, 10_000):  # a chunk written before the next is read
            with self._tx():
                mine = {(rt, sid) for rt, sid, run in self._select_by_keys(
                    f"select distinct m.resource_type, m.source_id, m.run_id from {self.etl}.source_id_map m",
                    "m", keys) if run == self.run_id}
                rows = self._select_by_keys(
                    f"select s.resource_type, s.source_id, s.content_sha256, s.version_id, s.last_updated, "
                    f"s.locator, s.imputed from {self.etl}.source_resource s", "s", mine)
            units = [SourceUnit(rt, sid, loc, digest(h), version_id=v, last_updated=lu, skip_rule=rule,
                                imputed=imp.split("; ") if imp else [])
                     for rt, sid, h, v, lu, loc, imp in rows]
            if units:  # counted once already, when first written
                self.report.t(resource_type).mapped -= len(units)
                for u in units:
                    for what in u.imputed:
                        self.report.imputed[f"{u.resource_type}.{what}"] -= 1
                self.write(units, final=True)
                done += len(units)
        return done

    def _dedupe(self, units: list[SourceUnit]) -> list[SourceUnit]:
        """The same record twice in one batch: keep the newest (else the last), skip the others."""
        seen: dict[tuple[str, str], int] = {}
        out: list[SourceUnit | None] = []
        for u in units:
            k = (u.resource_type, u.source_id)
            if k in seen:
                i = seen[k]
                prev = out[i]
                if prev.content_sha256 == u.content_sha256 or is_older(u.version_id, u.last_updated,
                                                                       prev.version_id, prev.last_updated):
                    self.skip(u.resource_type, "duplicate in this input")
                    continue
                self.skip(prev.resource_type, "superseded by a newer version in this input")
                out[i] = None
            seen[k] = len(out)
            out.append(u)
        return [u for u in out if u is not None]

    @staticmethod
    def _own(table: str, row: dict) -> Ref:
        if table == "death":
            return Ref("death", "Patient", row["person_id"].source_id, "death")
        return row[TABLE_ID[table]]

    def _route(self, units: list[SourceUnit]) -> list[list[tuple[str, dict]] | None]:
        """Rows per unit; None (and the unit quarantined) when its values cannot make a storable row."""
        pairs = {p for u in units for f in u.facts for p in (f.code, f.value_code, f.unit, *f.alt_codes) if p}
        lookup = self.vocab.resolve_many(pairs) if pairs else {}
        out = []
        for u in units:
            rows = list(u.rows)
            unmapped: list = []
            routed_by_key: dict[str, str] = {}
            try:
                for f in u.facts:
                    if f.event is not None and f.event.table == "*":
                        f = _with_event_table(f, routed_by_key)
                    table, row = route(f, u.resource_type, u.source_id, lookup, unmapped)
                    routed_by_key[f.key] = table
                    rows.append((table, row))
                if not u.dates_checked:  # FHIR workers check the dates (route.dates_plausible)
                    _check_dates(rows)
            except (ValueError, OverflowError, TypeError) as exc:  # e.g. days supply 10**20: no end date
                self.quarantine(Quarantined(u.resource_type, u.source_id, u.locator,
                                            f"mapping failed: {type(exc).__name__}: {exc}"))
                out.append(None)
                continue
            for v, c in unmapped:
                self.report.unmapped[f"{v}|{c}"] += 1
            out.append(rows)
        return out

    # ----------------------------------------------------------------- ids
    def _resolve_existing(self, refs: Iterable[Ref]) -> None:
        """Look references up in etl.source_id_map (rows written by earlier batches or runs)."""
        refs = list(refs)
        if not refs:
            return
        found = self._fetch_map({(r.resource_type, r.source_id) for r in refs})
        if len(self._ids) > _CACHE_MAX:
            self._ids.clear()
        for ref, oid in found.items():
            self._ids[ref] = oid

    def _fetch_map(self, keys: set[tuple[str, str]], con: Connection | None = None) -> dict[Ref, int]:
        out: dict[Ref, int] = {}
        if not keys:
            return out
        rows = self._select_by_keys(
            f"select m.resource_type, m.source_id, m.omop_table, m.row_key, m.omop_id from {self.etl}.source_id_map m",
            "m", keys, con)
        for rt, sid, table, row, oid in rows:
            out[Ref(table, rt, sid, row)] = int(oid)
        return out

    def _fetch_resources(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], tuple]:
        rows = self._select_by_keys(
            f"select s.resource_type, s.source_id, s.content_sha256, s.version_id, s.last_updated "
            f"from {self.etl}.source_resource s", "s", keys)
        return {(rt, sid): (h, v, lu) for rt, sid, h, v, lu in rows}

    def _select_by_keys(self, select: str, alias: str, keys: set[tuple[str, str]], con: Connection | None = None):
        """Rows of ``select`` whose (resource_type, source_id) is in ``keys`` for this source system."""
        con = con or self._con
        if not keys:
            return []
        rts, sids = zip(*keys, strict=True)
        if self.dialect == "duckdb":
            raw = con.connection.driver_connection
            frame = pd.DataFrame({"k_rt": list(rts), "k_sid": list(sids)})
            raw.register("_l059_keys", frame)
            try:
                return raw.execute(f"{select} join _l059_keys k on {alias}.resource_type = k.k_rt and "
                                   f"{alias}.source_id = k.k_sid where {alias}.source_system = ?",
                                   [self.source_system]).fetchall()
            finally:
                raw.unregister("_l059_keys")
        # a lateral subquery per key: the primary key's index, whatever the table's statistics say (with a
        # plain join PostgreSQL hashed a scan of the whole growing table: ~400 ms a batch at 1M resources)
        q = sa.text(f"select x.* from unnest(cast(:rts as text[]), cast(:sids as text[])) as k(k_rt, k_sid) "
                    f"cross join lateral ({select} where {alias}.source_system = :ss and "
                    f"{alias}.resource_type = k.k_rt and {alias}.source_id = k.k_sid) x")
        return con.execute(q, {"rts": list(rts), "sids": list(sids), "ss": self.source_system}).fetchall()

    def _taken(self, table: str, ids: list[int]) -> set[int]:
        if not ids:
            return set()
        if self.dialect == "duckdb":
            raw = self._con.connection.driver_connection
            raw.register("_l059_ids", pd.DataFrame({"i": ids}))
            try:
                rows = raw.execute(f"select m.omop_id from {self.etl}.source_id_map m join _l059_ids k "
                                   "on m.omop_id = k.i where m.omop_table = ?", [table]).fetchall()
            finally:
                raw.unregister("_l059_ids")
        else:
            rows = self._con.execute(sa.text(f"select omop_id from {self.etl}.source_id_map where omop_table = :t "
                                             "and omop_id = any(cast(:ids as bigint[]))"),
                                     {"t": table, "ids": ids}).fetchall()
        return {int(r[0]) for r in rows}

    def _assign(self, refs: list[Ref], reuse: dict[Ref, int]) -> dict[Ref, int]:
        """Ids for the batch's own rows: the stored id of a replaced row, else the hash (probed on collision)."""
        out: dict[Ref, int] = {}
        todo: dict[str, list[tuple[Ref, str, int]]] = defaultdict(list)
        for r in refs:
            if r.table == "death":
                continue
            if r in reuse:
                out[r] = reuse[r]
            else:
                text = key_text(self.source_system, r.resource_type, r.source_id, r.row)
                todo[r.table].append((r, text, 0))
        for table, items in todo.items():
            used = {i for ref, i in out.items() if ref.table == table}
            while items:
                cands = [(ref, text, p, hashed_id(text, p)) for ref, text, p in items]
                arr = np.fromiter((c for *_, c in cands), dtype=np.int64, count=len(cands))
                taken = set(arr[self._taken_mask(table, arr)].tolist()) | used
                items = []
                for ref, text, p, cand in cands:
                    if cand in taken:
                        self.report.id_collisions += 1
                        items.append((ref, text, p + 1))
                    else:
                        out[ref] = cand
                        used.add(cand)
                        taken.add(cand)
        return out

    # ----------------------------------------------------------------- writing
    def _write_ready(self, ready: list[tuple[SourceUnit, list[tuple[str, dict]], list[Ref], list[list]]],
                     replaced_keys: set[tuple[str, str]]) -> None:
        """Write units whose references all exist. Each comes with its rows, each row's own Ref and the
        (column, Ref) pairs it holds (found once by _write); the rows get their ids in place."""
        con = self._con
        old = self._fetch_map(replaced_keys, con)  # rows of records loaded before (being replaced)
        own_refs = [own for _, _, owns, _ in ready for own in owns]
        ids = self._assign(own_refs, old)
        new_ids = {(ref.table, oid) for ref, oid in ids.items()}

        known = self._ids

        def rid(v: Ref) -> int:
            got = ids.get(v) or known.get(v)
            if got is None:  # a soft link (measurement_event_id) to a row not loaded: its predicted id
                got = hashed_id(key_text(self.source_system, v.resource_type, v.source_id, v.row))
            return got

        # delete replaced rows (children first); referenced tables are upserted instead
        by_table: dict[str, list[int]] = defaultdict(list)
        for ref, oid in old.items():
            if ref.table in _REFERENCED and (ref.table, oid) in new_ids:
                continue
            by_table[ref.table].append(oid)
        deleted, gone_from = self._delete_replaced(con, by_table)
        self.report.rows_deleted.update(deleted)
        if replaced_keys:
            self._delete_keys(con, "source_id_map", replaced_keys)
            self._delete_keys(con, "source_resource", replaced_keys)
        self._forget_fresh({ref.table for ref in old})
        # rows per table
        frames: dict[str, list[dict]] = defaultdict(list)
        map_rows = []
        touched: set[int] = set(gone_from)
        for u, rows, owns, row_refs in ready:
            for (table, row), own, refs in zip(rows, owns, row_refs, strict=True):
                for k, v in refs:
                    row[k] = rid(v)
                frames[table].append(row)
                oid = row["person_id"] if table == "death" else row[TABLE_ID[table]]
                map_rows.append((u.resource_type, u.source_id, own.row, table, oid))
                if "person_id" in row:
                    touched.add(row["person_id"])
        for table in sorted(frames, key=lambda t: -_DELETE_ORDER.index(t) if t in _DELETE_ORDER else 0):
            df = self._frame(table, frames[table])
            upsert = table in _REFERENCED and any(r.table == table for r in old)
            n = self._upsert(con, table, df) if upsert else bulk.insert_frame(con, self.cdm, table, df)
            self.report.rows_inserted[table] += n
        if map_rows:
            mdf = pd.DataFrame(map_rows, columns=["resource_type", "source_id", "row_key", "omop_table",
                                                  "omop_id"])
            mdf.insert(0, "source_system", self.source_system)
            mdf["run_id"] = self.run_id
            mdf["omop_id"] = mdf["omop_id"].astype("int64")
            bulk.insert_frame(con, self.etl, "source_id_map", mdf)
            self._stage_ids(mdf)
        units = [u for u, *_ in ready]
        self._stage_keys([u.resource_type for u in units], [u.source_id for u in units])
        sdf = pd.DataFrame({
            "source_system": self.source_system, "resource_type": [u.resource_type for u in units],
            "source_id": [u.source_id for u in units], "version_id": [u.version_id for u in units],
            "last_updated": [u.last_updated for u in units],
            "content_sha256": [u.content_sha256 for u in units], "run_id": self.run_id,
            "locator": [u.locator for u in units], "imputed": ["; ".join(u.imputed) or None for u in units]})
        bulk.insert_frame(con, self.etl, "source_resource", sdf)
        if touched:
            bulk.insert_frame(con, self.etl, "touched_person",
                              pd.DataFrame({"run_id": self.run_id, "person_id": sorted(touched)}))
        self._flush_quarantine(con)
        for ref, oid in ids.items():
            if ref.table in _REFERENCED:
                self._ids[ref] = oid
        self._count_written([u.resource_type for u in units], [u.skip_rule for u in units],
                            [u.imputed for u in units])

    def _count_written(self, rts: Sequence[str], rules: Sequence[str | None],
                       imputed: Sequence[Sequence[str]]) -> None:
        """The run report's counts of units written (both write paths): mapped or skipped by rule, and
        each imputed field."""
        for rt, rule, imp in zip(rts, rules, imputed, strict=True):
            c = self.report.t(rt)
            if rule:
                c.skipped[rule] += 1
            else:
                c.mapped += 1
            for what in imp:
                self.report.imputed[f"{rt}.{what}"] += 1

    def _frame(self, table: str, rows: list[dict]) -> pd.DataFrame:
        types = self._types[table]
        first = tuple(rows[0]) if rows else ()
        if all(tuple(r) == first for r in rows):
            # rows of one table usually share their keys (in order): transpose in C, not a .get per cell
            by_key = dict(zip(first, (list(v) for v in zip(*map(dict.values, rows), strict=True)), strict=True))
        else:
            present: set[str] = set()
            for r in rows:
                present.update(r)
            by_key = {c: [r.get(c) for r in rows] for c in present}
        cols = [c for c in self._columns[table] if c in by_key]
        data = {}
        for c in cols:
            values = by_key[c]
            t = types[c]
            if t == "integer":
                data[c] = pd.array(values, dtype="Int64")
            elif t == "float":
                data[c] = pd.array([None if v is None else float(v) for v in values], dtype="Float64")
            elif t in ("date", "datetime"):
                data[c] = pd.to_datetime(pd.Series(values, dtype="object"))
            else:
                data[c] = pd.Series(values, dtype="object")
        return pd.DataFrame(data)

    def _upsert(self, con: Connection, table: str, df: pd.DataFrame) -> int:
        """Insert or replace rows by primary key (rows other tables reference cannot be deleted)."""
        pk = TABLE_ID[table]
        cols = list(df.columns)
        sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c != pk)
        target = f"{self.cdm}.{table}"
        if self.dialect == "duckdb":
            raw = con.connection.driver_connection
            raw.register("_l059_upsert", df)
            try:
                raw.execute(f"insert into {target} ({', '.join(cols)}) select {', '.join(cols)} from _l059_upsert "
                            f"on conflict ({pk}) do update set {sets}")
            finally:
                raw.unregister("_l059_upsert")
        else:
            con.execute(sa.text(f"create temp table if not exists _l059_upsert_{table} "
                                f"(like {target}) on commit delete rows"))
            bulk.insert_frame(con, "pg_temp", f"_l059_upsert_{table}", df)
            con.execute(sa.text(f"insert into {target} ({', '.join(cols)}) select {', '.join(cols)} "
                                f"from pg_temp._l059_upsert_{table} on conflict ({pk}) do update set {sets}"))
        return len(df)

    def _delete_replaced(self, con: Connection, by_table: dict[str, list[int]]) -> tuple[Counter, set[int]]:
        """Delete the rows of replaced records (children first): (rows deleted per table, the persons they
        were of). Those persons are touched: a record's new version may make fewer rows of its person, or
        none (entered-in-error), and the observation period must shrink with them."""
        deleted: Counter = Counter()
        persons: set[int] = set()
        for table in sorted(by_table, key=lambda t: _DELETE_ORDER.index(t) if t in _DELETE_ORDER else -1):
            col = TABLE_ID.get(table, f"{table}_id")
            ids = by_table[table]
            if "person_id" in self._columns[table]:
                persons.update(self._persons_of(con, table, col, ids))
            deleted[table] += self._delete_ids(con, self.cdm, table, col, ids)
        return deleted, persons

    def _persons_of(self, con: Connection, table: str, col: str, ids: list[int]) -> set[int]:
        sql = f"select distinct person_id from {self.cdm}.{table} where {col} in :ids"
        return {int(p) for res in _by_id_chunks(con, sql, ids) for (p,) in res}

    def _delete_ids(self, con: Connection, schema: str, table: str, col: str, ids: list[int]) -> int:
        sql = f"delete from {schema}.{table} where {col} in :ids"
        return sum(res.rowcount or 0 for res in _by_id_chunks(con, sql, ids))

    def _delete_keys(self, con: Connection, table: str, keys: set[tuple[str, str]]) -> None:
        keys = list(keys)
        if self.dialect == "duckdb":
            raw = con.connection.driver_connection
            frame = pd.DataFrame({"k_rt": [k[0] for k in keys], "k_sid": [k[1] for k in keys]})
            raw.register("_l059_del", frame)
            try:
                raw.execute(f"delete from {self.etl}.{table} where source_system = ? and "
                            f"(resource_type, source_id) in (select k_rt, k_sid from _l059_del)",
                            [self.source_system])
            finally:
                raw.unregister("_l059_del")
        else:
            con.execute(sa.text(
                f"delete from {self.etl}.{table} t using unnest(cast(:rts as text[]), cast(:sids as text[])) "
                "as k(k_rt, k_sid) where t.source_system = :ss and t.resource_type = k.k_rt and "
                "t.source_id = k.k_sid"),
                {"rts": [k[0] for k in keys], "sids": [k[1] for k in keys], "ss": self.source_system})

    # ----------------------------------------------------------------- frames (tabular sources)
    def write_frames(self, batch: FrameBatch) -> None:
        """Write a :class:`FrameBatch` (a chunk of tabular source records as per-table frames) in one
        transaction: the frame counterpart of :meth:`write`, for sources where one object per record and
        one dict per row would cost more than the whole load (hospital extracts of millions of rows).

        Same guarantees as ``write``: ids are the deterministic hashes of (source system, resource type,
        source id, row key), probed past ids taken in ``etl.source_id_map``; a record whose content hash
        is stored unchanged is counted as mapped + unchanged and not written; a changed record has its old
        rows deleted (person rows upserted) and its new rows written with the same ids; rows whose patient
        is neither in the batch nor loaded quarantine their record ("unresolved reference"); pending
        quarantine rows are flushed in the same transaction; the touched persons get their observation
        periods recomputed by :meth:`finish`. Person rows are keyed as :func:`~l059_omop.etl.model.person_ref`
        (Patient/<source id>), so other record types (and the FHIR path) link to them.

        On a first load of a record type (no stored record of it) the stored-hash lookup is skipped. The
        run keeps a 64-bit hash of every key it wrote that way (8 bytes a record): a batch with a key that may
        have been written before (the same key twice in a file, in two files of one source) does the
        lookup instead, as every later batch of that type. Should a stored key nevertheless clash (a
        PostgreSQL primary key), the batch is redone with the lookup (not in strict mode, where the run's
        single transaction cannot be retried). The same source id twice in one batch: the first is
        written, the others are skipped ("duplicate in this input").
        """
        rt = batch.resource_type
        fresh = self._fresh.get(rt)
        seen = None
        if fresh:
            seen = key_hashes(batch.source_id)
            if self._seen[rt].has_any(seen):
                fresh = self._fresh[rt] = False
                self._seen.pop(rt, None)
        self._staged, self._staged_keys = [], []
        try:
            with self._tx() as con:
                self._alone_now = self._alone()
                if fresh is None:
                    fresh = self._outer is None and self._is_fresh(rt)
                    self._fresh[rt] = fresh
                out = self._write_frames(con, batch, fresh)
        except Exception:
            if not fresh or self._outer is not None:
                raise
            log.debug("first-load shortcut failed for %s; redoing the batch with lookups", rt)
            self._fresh[rt] = False
            self._seen.pop(rt, None)
            self._staged = []
            with self._tx() as con:
                self._alone_now = self._alone()
                out = self._write_frames(con, batch, False)
        self._keep_staged()
        if self._fresh.get(rt):
            self._seen[rt].add(seen if seen is not None else key_hashes(batch.source_id))
        self._bound_sets()
        counts = self.report.t(rt)
        counts.mapped += out.mapped
        counts.unchanged += out.unchanged
        for rule, k in out.skipped.items():
            counts.skipped[rule] += k
        for t, n in out.inserted.items():
            self.report.rows_inserted[t] += n
        for t, n in out.deleted.items():
            self.report.rows_deleted[t] += n
        self.report.id_collisions += out.collisions
        self._frame_persons.update(out.persons)
        if len(self._frame_persons) > _CACHE_MAX:
            self._frame_persons.clear()
        for q in out.quarantine:
            self.quarantine(q)

    def _stage_ids(self, map_rows: pd.DataFrame) -> None:
        """Ids just written to etl.source_id_map, per table, kept in memory once the batch commits."""
        if not self._alone_now:
            return
        for table, ids in map_rows.groupby("omop_table", sort=False)["omop_id"]:
            if table != "death" and self._map_fresh.get(table):
                self._staged.append((table, ids.to_numpy(dtype=np.int64)))

    def _stage_keys(self, rts: Sequence[str], sids: Sequence[str]) -> None:
        """Keys of the records just written to etl.source_resource, kept in memory once the batch commits."""
        if not self._alone_now:
            return
        by_type: defaultdict[str, list[str]] = defaultdict(list)
        for rt, sid in zip(rts, sids, strict=True):
            by_type[rt].append(sid)
        self._staged_keys.extend(by_type.items())

    def _forget_fresh(self, tables: set[str]) -> None:
        """Rows of these tables were replaced (their map rows deleted): their ids are checked in the database
        from now on, as the in-memory set would still hold the freed ones."""
        for t in tables:
            self._map_fresh[t] = False
            self._run_ids.pop(t, None)

    def _map_is_fresh(self, table: str) -> bool:
        q = sa.text(f"select count(*) from (select 1 from {self.etl}.source_id_map where omop_table = :t limit 1) x")
        return self._con.execute(q, {"t": table}).scalar_one() == 0

    def _is_fresh(self, rt: str) -> bool:
        q = sa.text(f"select count(*) from {self.etl}.source_resource where source_system = :ss and "
                    "resource_type = :rt")
        return self._con.execute(q, {"ss": self.source_system, "rt": rt}).scalar_one() == 0

    def _person_ids(self, keys: set[str], con: Connection) -> dict[str, int]:
        """person_id of patients (source ids) loaded by this run or before; unknown ones are left out."""
        todo = {k for k in keys if k not in self._frame_persons}
        if todo:
            for ref, oid in self._fetch_map({("Patient", k) for k in todo}, con).items():
                if ref.table == "person":
                    self._frame_persons[ref.source_id] = oid
        return {k: self._frame_persons[k] for k in keys if k in self._frame_persons}

    def _frame_ids(self, table: str, rt: str, sids: np.ndarray, row_key: str, reuse: dict[Ref, int],
                   used: set[int], out: _FrameOutcome, hint: np.ndarray | None = None) -> np.ndarray:
        """Ids of new rows: a replaced row keeps its stored id, a new one gets the hash of its key
        (:func:`~l059_omop.etl.ids.hashed_id`, vectorised; ``hint``: those hashes, computed by the caller),
        probed past ids already taken in the database or by this batch."""
        ids = np.zeros(len(sids), dtype=np.int64)
        if reuse:
            for i, s in enumerate(sids.tolist()):
                got = reuse.get(Ref(table, rt, s, row_key))
                if got is not None:
                    ids[i] = got
            used.update(ids[ids > 0].tolist())
        todo = np.flatnonzero(ids == 0)
        prefix = f"{self.source_system}|{rt}|"
        pending = sids[todo]
        probe = 0
        while len(todo):
            suffix = f"|{row_key}#{probe}" if probe else f"|{row_key}"
            if probe == 0 and hint is not None:
                cands = np.asarray(hint, dtype=np.int64)[todo]
                bad = self._taken_mask(table, cands)
            elif self.dialect == "duckdb":
                cands, bad = self._duckdb_candidates(table, prefix, pending, suffix)
            else:
                cands = _hash_ids([f"{prefix}{s}{suffix}" for s in pending.tolist()])
                bad = self._taken_mask(table, cands)
            bad |= pd.Series(cands).duplicated(keep="first").to_numpy()
            if used:
                bad |= np.isin(cands, np.fromiter(used, dtype=np.int64, count=len(used)))
            good = ~bad
            ids[todo[good]] = cands[good]
            used.update(cands[good].tolist())
            out.collisions += int(bad.sum())
            todo = todo[bad]
            pending = pending[bad]
            probe += 1
        return ids

    def _duckdb_candidates(self, table: str, prefix: str, sids: np.ndarray, suffix: str
                           ) -> tuple[np.ndarray, np.ndarray]:
        """DuckDB: :func:`~l059_omop.etl.ids.hashed_id` of prefix + source id + suffix for many source ids,
        computed by DuckDB's vectorised sha256 (the same value: the first 8 bytes of the digest, big-endian,
        mod 2**31-1, + 1) without the GIL, and whether each is taken in etl.source_id_map for ``table``."""
        raw = self._con.connection.driver_connection
        raw.register("_l059_sids", pd.DataFrame({"i": np.arange(len(sids), dtype=np.int64), "s": sids}))
        try:
            ids = np.asarray(raw.execute(
                f"select (('0x' || left(sha256(?::varchar || s || ?::varchar), 16))::ubigint % {MAX_ID} + 1)::bigint "
                "as id from _l059_sids order by i", [prefix, suffix]).fetchnumpy()["id"], dtype=np.int64)
        finally:
            raw.unregister("_l059_sids")
        return ids, self._taken_mask(table, ids)

    def _taken_mask(self, table: str, ids: np.ndarray) -> np.ndarray:
        """Per id: is it taken in etl.source_id_map for ``table``?

        While the run is alone (_alone) and the map held no row of ``table`` when the run started (and the
        run replaced none), the ids taken are exactly those this run wrote, kept in memory: no lookup in the
        growing map per batch."""
        if self._alone_now:
            fresh = self._map_fresh.get(table)
            if fresh is None:
                fresh = self._map_fresh[table] = self._map_is_fresh(table)
            if fresh:
                return self._run_ids[table].contains(ids)
        if self.dialect != "duckdb":
            taken = self._taken(table, ids.tolist())
            return np.isin(ids, np.fromiter(taken, dtype=np.int64, count=len(taken)))
        # the batch's candidates are the small side of the join (a hash table of them, probed by the scan)
        raw = self._con.connection.driver_connection
        raw.register("_l059_cand", pd.DataFrame({"id": ids}))
        try:
            got = raw.execute(f"select distinct m.omop_id from {self.etl}.source_id_map m join _l059_cand k "
                              "on m.omop_id = k.id where m.omop_table = ?", [table]).fetchnumpy()["omop_id"]
        finally:
            raw.unregister("_l059_cand")
        return np.isin(ids, np.asarray(got, dtype=np.int64))

    def _write_frames(self, con: Connection, b: FrameBatch, fresh: bool) -> _FrameOutcome:
        rt = b.resource_type
        out = _FrameOutcome()
        n = len(b.source_id)
        sids = np.asarray(b.source_id, dtype=object)
        has_rows = np.zeros(n, dtype=bool)
        for tf in b.tables:
            has_rows[tf.record] = True
        dup = pd.Series(sids).duplicated(keep="first").to_numpy() & has_rows
        if dup.any():
            out.skipped["duplicate in this input"] += int(dup.sum())
            has_rows &= ~dup
        unchanged = np.zeros(n, dtype=bool)
        replaced = np.zeros(n, dtype=bool)
        if not fresh and has_rows.any():
            existing = self._fetch_resources({(rt, s) for s in sids[has_rows].tolist()})
            if existing:
                for i in np.flatnonzero(has_rows).tolist():
                    ex = existing.get((rt, sids[i]))
                    if ex is not None:
                        if ex[0] == b.content_sha256[i]:
                            unchanged[i] = True
                        else:
                            replaced[i] = True
        out.mapped = out.unchanged = int(unchanged.sum())
        unchanged |= dup  # not written either
        old = self._fetch_map({(rt, s) for s in sids[replaced].tolist()}, con) if replaced.any() else {}
        # person links: this batch's own patients first, else the run's or the database's
        used: dict[str, set[int]] = defaultdict(set)
        own_person: dict[str, int] = {}
        for tf in b.tables:
            if tf.table == "person":
                keep = ~unchanged[tf.record]
                keys = tf.person.to_numpy(dtype=object)[keep]
                pids = self._frame_ids("person", "Patient", keys, "", old, used["person"], out,
                                       None if tf.hashed is None else tf.hashed[keep])
                own_person.update(zip(keys.tolist(), pids.tolist(), strict=True))
        need: set[str] = set()
        for tf in b.tables:
            if tf.person is not None and tf.table != "person":
                need.update(tf.person[~unchanged[tf.record]].dropna().tolist())
        known = {**self._person_ids(need - own_person.keys(), con), **own_person}
        missing = np.zeros(n, dtype=bool)
        first_missing: dict[int, str] = {}
        pid_of: list[np.ndarray | None] = []
        for tf in b.tables:
            if tf.person is None:
                pid_of.append(None)
                continue
            pid = tf.person.map(known).to_numpy(dtype="float64")
            miss = np.isnan(pid) & ~unchanged[tf.record]
            if miss.any():
                missing[tf.record[miss]] = True
                for r, k in zip(tf.record[miss].tolist(), tf.person[miss].tolist(), strict=True):
                    first_missing.setdefault(r, k)
            pid_of.append(pid)
        out.quarantine = [Quarantined(rt, sids[r], b.locator[r], f"unresolved reference: Patient/{k} (1 missing)")
                          for r, k in sorted(first_missing.items())]
        drop = unchanged | missing
        # own ids first (links between a record's rows need them)
        id_by_key: dict[str, np.ndarray] = {}
        plan = []
        for tf, pid in zip(b.tables, pid_of, strict=True):
            keep = ~drop[tf.record]
            if not keep.any():
                continue
            rec = tf.record[keep]
            if tf.table == "person":
                own = pid[keep].astype(np.int64)
            elif tf.table == "death":
                own = None
            else:
                own = self._frame_ids(tf.table, rt, sids[rec], tf.row_key, old, used[tf.table], out,
                                      None if tf.hashed is None else tf.hashed[keep])
            if own is not None:
                arr = id_by_key.setdefault(tf.row_key, np.zeros(n, dtype=np.int64))
                arr[rec] = own
            plan.append((tf, keep, rec, pid, own))
        frames: dict[str, list[pd.DataFrame]] = defaultdict(list)
        map_parts: list[pd.DataFrame] = []
        written = np.zeros(n, dtype=bool)
        touched: list[np.ndarray] = []
        for tf, keep, rec, pid, own in plan:
            df = tf.frame[keep].reset_index(drop=True)
            written[rec] = True
            if pid is not None:
                df["person_id"] = pid[keep].astype(np.int64)
                touched.append(df["person_id"].to_numpy())
            if own is not None and tf.table != "person":
                df[TABLE_ID[tf.table]] = own
            for fname, target in tf.links.items():
                got = id_by_key[target][rec] if target in id_by_key else np.zeros(len(rec), dtype=np.int64)
                df[fname] = pd.arrays.IntegerArray(got, got == 0)
            frames[tf.table].append(df)
            map_parts.append(pd.DataFrame({
                "resource_type": rt, "source_id": sids[rec], "row_key": tf.row_key, "omop_table": tf.table,
                "omop_id": own if own is not None else df["person_id"].to_numpy()}))
        if not written.any() and not replaced.any():
            self._flush_quarantine(con)
            return out
        by_table: dict[str, list[int]] = defaultdict(list)
        if old:
            new_ids = {(t, int(i)) for part in map_parts
                       for t, i in zip(part["omop_table"], part["omop_id"], strict=True)}
            for ref, oid in old.items():
                if ref.table in _REFERENCED and (ref.table, oid) in new_ids:
                    continue
                by_table[ref.table].append(oid)
        deleted, gone_from = self._delete_replaced(con, by_table)
        out.deleted.update(deleted)
        if gone_from:
            touched.append(np.fromiter(gone_from, dtype=np.int64, count=len(gone_from)))
        if replaced.any():
            rkeys = {(rt, s) for s in sids[replaced].tolist()}
            self._delete_keys(con, "source_id_map", rkeys)
            self._delete_keys(con, "source_resource", rkeys)
        self._forget_fresh({ref.table for ref in old})
        old_tables = {ref.table for ref in old}
        order = tuple(reversed(_DELETE_ORDER))
        for table in sorted(frames, key=lambda t: order.index(t) if t in order else 99):
            df = self._typed(table, pd.concat(frames[table], ignore_index=True))
            if table in _REFERENCED and table in old_tables:
                out.inserted[table] += self._upsert(con, table, df)
            else:
                out.inserted[table] += bulk.insert_frame(con, self.cdm, table, df)
        # a batch may write nothing new: its changed records' new versions all quarantined (their old rows
        # are gone above, as the source no longer says what they said)
        if map_parts:
            m = pd.concat(map_parts, ignore_index=True)
            m.insert(0, "source_system", self.source_system)
            m["run_id"] = self.run_id
            m["omop_id"] = m["omop_id"].astype("int64")
            bulk.insert_frame(con, self.etl, "source_id_map", m)
            self._stage_ids(m)
        w = np.flatnonzero(written)
        if len(w):
            bulk.insert_frame(con, self.etl, "source_resource", pd.DataFrame({
                "source_system": self.source_system, "resource_type": rt, "source_id": sids[w],
                "version_id": None, "last_updated": None,
                "content_sha256": np.asarray(b.content_sha256, dtype=object)[w], "run_id": self.run_id,
                "locator": np.asarray(b.locator, dtype=object)[w], "imputed": None}))
        if touched:
            persons = np.unique(np.concatenate(touched))
            bulk.insert_frame(con, self.etl, "touched_person",
                              pd.DataFrame({"run_id": self.run_id, "person_id": persons.astype(np.int64)}))
        self._flush_quarantine(con)
        out.mapped += len(w)
        out.persons = own_person
        return out

    def _typed(self, table: str, df: pd.DataFrame) -> pd.DataFrame:
        return typed_frame(table, df)

    # ----------------------------------------------------------------- the end
    def finish(self, status: str | None = None) -> RunReport:
        """Recompute touched persons' observation periods, commit, store the report."""
        if self._finished:
            return self.report
        if self.dialect == "duckdb":
            with self._tx() as con:
                problem = self._duplicate_keys(con)
            if problem:
                exc = RuntimeFailure(problem)
                self.abort(exc)
                raise exc
        with self._tx() as con:
            self._flush_quarantine(con)
            params = {"cdm_schema": self.cdm, "etl_schema": self.etl,
                      "period_type_concept_id": type_concept("observation_period")}
            # persons touched by a run that died before its finish (SIGKILL, power loss) are recomputed
            # here too: a re-run finds their records unchanged and would otherwise never touch them again
            con.execute(sa.text(f"update {self.etl}.touched_person set run_id = :run_id where run_id <> :run_id"),
                        {"run_id": self.run_id})
            con.execute(sa.text(f"delete from {self.cdm}.observation_period where person_id in "
                                f"(select person_id from {self.etl}.touched_person where run_id = :run_id)"),
                        {"run_id": self.run_id})
            res = con.execute(sa.text(render(read_sql("etl", "observation_period.sql"), params)),
                              {"run_id": self.run_id})
            self.report.persons_with_period = res.rowcount if res.rowcount and res.rowcount > 0 else 0
            con.execute(sa.text(f"delete from {self.etl}.touched_person where run_id = :run_id"),
                        {"run_id": self.run_id})
        if self._outer is not None:
            self._outer.commit()
            self._outer = None
        self.report.status = status or ("loaded with quarantine" if self.report.quarantined else "loaded")
        self._close(self.report.status)
        return self.report

    def _duplicate_keys(self, con: Connection) -> str | None:
        """DuckDB's etl tables have no primary key (db.layout): the keys this run wrote must be unique. A key
        stored by an earlier run is always looked up before it is written (the first-load shortcut is only
        taken for a record type nothing is stored of), so the check covers this run's rows: 64-bit hashes seen
        twice (a grouped aggregate, which DuckDB spills within a memory limit), confirmed exactly when any is."""
        for table, key in (("source_resource", "resource_type, source_id"),
                           ("source_id_map", "resource_type, source_id, omop_table, row_key")):
            args = {"ss": self.source_system, "run": self.run_id}
            where = f"from {self.etl}.{table} where source_system = :ss and run_id = :run"
            # a grouped aggregate, not count(distinct): DuckDB spills it to disk within a memory limit
            if not con.execute(sa.text(f"select count(*) from (select hash({key}) as h {where} group by h "
                                       "having count(*) > 1) d"), args).scalar_one():
                continue
            n = con.execute(sa.text(f"select count(*) from (select {key} {where} group by {key} "
                                    "having count(*) > 1) d"), args).scalar_one()
            if n:
                return (f"{self.etl}.{table}: {n} key(s) written twice by run {self.run_id} "
                        f"({self.source_system}); this is a bug, please report it")
        return None

    def abort(self, exc: BaseException | None, status: str = "failed") -> None:
        """Roll back what is open, keep the run's record (and, in strict mode, why it stopped)."""
        if self._finished:
            return
        try:
            if self._outer is not None:
                self._outer.rollback()
                self._outer = None
        finally:
            self.report.status = status
            if exc is not None:
                self.report.notes[f"error: {type(exc).__name__}"] += 1
            pending, self._pending_q = self._pending_q, []
            self._close(status, pending)

    def _close(self, status: str, quarantine: list[Quarantined] | None = None) -> None:
        self._finished = True
        if self._con is not None:
            self._custom_plans(False)
            if self._live_lock:
                try:
                    if self._con.in_transaction():
                        self._con.rollback()
                    self._con.execute(sa.text("select pg_advisory_unlock(:c, :o)"),
                                      dict(zip(("c", "o"), self._live_keys(), strict=True)))
                    self._con.commit()
                except Exception:  # noqa: BLE001 - the connection is gone: so is its lock
                    log.debug("releasing the live-run lock failed", exc_info=True)
            self._con.close()
            self._con = None
        with self.engine.begin() as con:
            if quarantine:
                self._pending_q = quarantine
                self._flush_quarantine(con)
            con.execute(self._t("load_run").update().where(self._t("load_run").c.run_id == self.run_id).values(
                finished_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None), status=status,
                counts_json=_db_text(self.report.to_json())))


class _Begin:
    def __init__(self, con: Connection, on_begin=None) -> None:
        self.con = con
        self.on_begin = on_begin

    def __enter__(self) -> Connection:
        self.tx = self.con.begin()
        if self.on_begin is not None:
            self.on_begin(self.con)
        return self.con

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.tx.commit()
        else:
            self.tx.rollback()
        return False


_SOFT = ("measurement_event_id", "observation_event_id")


def _by_id_chunks(con: Connection, sql: str, ids: list[int], size: int = 1000) -> Iterator:
    """``sql`` (with ``in :ids``) run for each chunk of ``size`` ids; the results."""
    q = sa.text(sql).bindparams(sa.bindparam("ids", expanding=True))
    for i in range(0, len(ids), size):
        yield con.execute(q, {"ids": [int(x) for x in ids[i:i + size]]})


def live_run_objects(con: Connection, etl_schema: str) -> set[int]:
    """PostgreSQL: the object keys of the live-run locks held now for ``etl_schema`` (see live_lock_keys):
    one per run that is live, whoever asks."""
    cls = live_lock_keys(etl_schema, "")[0]
    return {int(o) for (o,) in con.execute(sa.text(
        "select objid::bigint from pg_locks where locktype = 'advisory' and objsubid = 2 and granted and "
        "database = (select oid from pg_database where datname = current_database()) and "
        "classid = cast(cast(:c as bigint) as oid)"), {"c": cls})}


def _key_chunks(resource_type: str, source_ids: Iterable[str], size: int) -> Iterator[set[tuple[str, str]]]:
    chunk: set[tuple[str, str]] = set()
    for sid in source_ids:
        chunk.add((resource_type, sid))
        if len(chunk) >= size:
            yield chunk
            chunk = set()
    if chunk:
        yield chunk


def live_lock_keys(etl_schema: str, run_id: str) -> tuple[int, int]:
    """(class, object) of a run's session advisory lock on PostgreSQL, held while the run is live: the class
    names the etl schema, the object the run (both 31-bit, so they read back unchanged from pg_locks)."""
    return _lock_key(f"l059-omop live run {etl_schema}", 31), _lock_key(run_id, 31)


def _lock_key(text: str, bits: int) -> int:
    """A PostgreSQL advisory-lock key from a text: 64 bits (signed: the one-key form) or 31 (a non-negative
    int4 of the two-key form, which reads back unchanged from pg_locks)."""
    digest = hashlib.sha256(text.encode()).digest()
    if bits == 64:
        return int.from_bytes(digest[:8], "big", signed=True)
    return int.from_bytes(digest[:4], "big") & ((1 << bits) - 1)


def _with_event_table(f: Fact, routed_by_key: dict[str, str]) -> Fact:
    from dataclasses import replace

    table = routed_by_key.get(f.event.row)
    if table is None:
        return replace(f, event=None)
    return replace(f, event=Ref(table, f.event.resource_type, f.event.source_id, f.event.row))


_YEARS = PLAUSIBLE_YEARS


def _check_dates(rows: list[tuple[str, dict]]) -> None:
    for table, row in rows:
        for k, v in row.items():
            if isinstance(v, (dt.date, dt.datetime)) and not _YEARS[0] <= v.year <= _YEARS[1]:
                raise ValueError(f"implausible date: {table}.{k} = {v.isoformat()} (outside {_YEARS[0]}-{_YEARS[1]})")


def _db_text(value, limit: int | None = None) -> str | None:
    """Text every database stores: cut to the column's length, NUL and lone surrogates (from JSON escapes
    such as \\ud800, which UTF-8 cannot encode) written as backslash escapes."""
    if value is None:
        return None
    text = str(value)[:limit] if limit else str(value)
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def dumps_payload(resource) -> str:
    return resource if isinstance(resource, str) else json.dumps(resource, ensure_ascii=False)


@dataclass
class TableFrame:
    """Rows of one CDM table made from a :class:`FrameBatch`'s records (for :meth:`Sink.write_frames`)."""

    table: str
    row_key: str                # tells a record's rows apart in etl.source_id_map ('' the person, 'death', a name)
    record: np.ndarray          # per row: position of its source record in the batch
    frame: pd.DataFrame         # the table's fields, without its own id and person_id (the sink fills them)
    person: pd.Series | None = None  # per row: the patient's source id (Patient/<id>), -> person_id
    links: dict[str, str] = field(default_factory=dict)  # field -> row_key of the same record's row whose id fills it
    hashed: np.ndarray | None = None  # per row, optional: its first-probe id, :func:`hashed_ids` (off the writer)


@dataclass
class FrameBatch:
    """A chunk of tabular source records of one type and the rows they make, per table."""

    resource_type: str
    source_id: Sequence[str]       # per record
    content_sha256: Sequence[str]  # per record: changes when the record (or how it is mapped) changes
    locator: Sequence[str]         # per record: "file:row N"
    tables: list[TableFrame]


@dataclass
class _FrameOutcome:
    """What one frame batch did; added to the report only once its transaction committed."""

    mapped: int = 0
    unchanged: int = 0
    collisions: int = 0
    inserted: Counter = field(default_factory=Counter)
    deleted: Counter = field(default_factory=Counter)
    quarantine: list[Quarantined] = field(default_factory=list)
    persons: dict[str, int] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)


_SPEC_TYPES: dict[str, list[tuple[str, str]]] = {}


def typed_frame(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """Columns of ``table`` in specification order with the table's types (nullable ints, so PostgreSQL
    COPY reads them). Already typed columns pass through, so a caller may type its frames on its own
    thread first (the records loader does, off the writer's critical path)."""
    if not _SPEC_TYPES:
        _SPEC_TYPES.update({t: [(f.name, f.datatype) for f in fs] for t, fs in cdm_spec.tables().items()})
    data = {}
    for c, t in _SPEC_TYPES[table]:
        if c not in df.columns:
            continue
        s = df[c]
        if t == "integer":
            if s.dtype.kind in "iu":
                data[c] = s
            elif s.dtype == np.float64 and (len(s) == 0 or np.nanmax(np.abs(s.to_numpy()), initial=0) < 2**53):
                v = s.to_numpy()  # exact integers in float64: no per-value checks needed
                na = np.isnan(v)
                data[c] = pd.arrays.IntegerArray(np.where(na, 0, np.round(v)).astype(np.int64), na)
            else:
                data[c] = pd.array(pd.to_numeric(s, errors="coerce").round(), dtype="Int64")
        elif t == "float":
            data[c] = s if s.dtype == np.float64 else pd.to_numeric(s, errors="coerce").astype("float64")
        elif t in ("date", "datetime"):
            data[c] = s if s.dtype.kind == "M" else pd.to_datetime(s)
        else:
            data[c] = s if s.dtype == object and not s.hasnans else s.astype(object).where(s.notna(), None)
    return pd.DataFrame(data)


def hashed_ids(source_system: str, resource_type: str, source_ids: Sequence[str], row_key: str) -> np.ndarray:
    """The first-probe ids :meth:`Sink.write_frames` gives rows of a table frame (``TableFrame.hashed``):
    ``hashed_id(key_text(source_system, resource_type, source_id, row_key))`` of each source id. A caller
    mapping on another thread computes them there, off the writer's critical path; the sink still probes
    them past ids already taken."""
    prefix, suffix = f"{source_system}|{resource_type}|", f"|{row_key}"
    return _hash_ids([f"{prefix}{s}{suffix}" for s in source_ids])


def _hash_ids(texts: list[str]) -> np.ndarray:
    """:func:`~l059_omop.etl.ids.hashed_id` of many texts at once (same values)."""
    sha = hashlib.sha256
    digests = b"".join([sha(t.encode("utf-8")).digest()[:8] for t in texts])
    return (np.frombuffer(digests, dtype=">u8") % np.uint64(MAX_ID) + np.uint64(1)).astype(np.int64)
