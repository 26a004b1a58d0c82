"""``load-fhir``: FHIR R4 Bundles, bulk NDJSON, folders of them, or a FHIR server -> OMOP, through the sink.

The main process reads files (NDJSON in chunks of lines: bounded memory) and writes batches; a process pool
parses, validates (fhir.resources R4B) and maps. Results come back in input order, so a run is
deterministic whatever the number of workers. Units made only of facts come back as columns
(:class:`~l059_omop.etl.block.FactBlock`), which the sink writes by array operations; the rest as objects.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine

from l059_omop.db.bulk import duckdb_load_settings
from l059_omop.errors import BadInput
from l059_omop.etl.block import FactBlock
from l059_omop.etl.fhir.parse import Result, Task, run_task, type_priority
from l059_omop.etl.hashset import HashSet, key_hashes
from l059_omop.etl.model import Definition, Quarantined, SourceUnit
from l059_omop.etl.report import RunReport
from l059_omop.etl.sink import Sink
from l059_omop.etl.spill import SpillList
from l059_omop.parallel import ordered_map, process_pool

log = logging.getLogger(__name__)

DEFAULT_SOURCE_SYSTEM = "urn:l059:fhir"
NDJSON_CHUNK = 1000
JSON_GROUP_BYTES = 256_000
JSON_GROUP_FILES = 64
BATCH_SIZE = 20_000  # units a transaction: at 1M resources 5,000 cost 4.5 CPU-s more (commits, per-batch lookups)
PREFETCH_PER_WORKER = 8  # tasks in flight per worker (bounded memory: ~1 MB of results a task)
DISPENSED_RULE = "order carried out by a MedicationDispense (the dispense is the exposure)"


def _file_type(path: Path) -> str | None:
    return path.name.split(".")[0] if path.name[:1].isupper() else None


def _is_ndjson(path: Path) -> bool:
    n = path.name.lower()
    return n.endswith((".ndjson", ".ndjson.gz", ".jsonl"))


def collect_files(paths: Iterable[str | Path]) -> list[tuple[Path, bool]]:
    """Files to load, folders expanded; NDJSON files of referenced types (Patient, Encounter, Medication) first."""
    out: list[tuple[Path, bool]] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise BadInput("no such file or folder", file=str(p))
        if p.is_dir():
            found = sorted(x for x in p.rglob("*") if x.is_file() and (_is_ndjson(x) or x.suffix.lower() == ".json"))
            out.extend((x, True) for x in found)
        else:
            out.append((p, False))
    return sorted(out, key=lambda x: (type_priority(_file_type(x[0])) if _is_ndjson(x[0]) else 5, str(x[0])))


def file_tasks(files: list[tuple[Path, bool]], timezone: str | None, validate: bool = True) -> Iterator[Task]:
    """Tasks for the pool. A plain NDJSON file is cut into runs of NDJSON_CHUNK lines that the worker reads
    itself (offset and length: the main process neither decodes nor ships the text); a gzipped one travels
    as lines (it cannot be read from an offset)."""
    for path, in_folder in files:
        if _is_ndjson(path) and path.name.lower().endswith(".gz"):
            chunk: list = []
            # bytes that are not UTF-8 stay as surrogates: the worker quarantines that line, the rest loads
            with gzip.open(path, "rt", encoding="utf-8-sig", errors="surrogateescape") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    chunk.append((lineno, line))
                    if len(chunk) >= NDJSON_CHUNK:
                        yield Task("ndjson", str(path), lines=chunk, timezone=timezone, validate=validate)
                        chunk = []
            if chunk:
                yield Task("ndjson", str(path), lines=chunk, timezone=timezone, validate=validate)
        elif _is_ndjson(path):
            for offset, length, first in ndjson_ranges(path, NDJSON_CHUNK):
                yield Task("ndjson", str(path), offset=offset, length=length, first_line=first,
                           timezone=timezone, validate=validate)
        else:
            yield Task("json", str(path), timezone=timezone, validate=validate, in_folder=in_folder)


def ndjson_ranges(path: Path, lines: int) -> Iterator[tuple[int, int, int]]:
    """(byte offset, byte length, number of its first line) of consecutive runs of ``lines`` lines; a line
    ends at "\n" (NDJSON's separator, "\r\n" included). The newlines are found by NumPy in 8 MB blocks: the
    main process does not loop over the lines."""
    start, first, base = 0, 1, 0
    pending = 0  # lines of the current run in earlier blocks
    with open(path, "rb") as fh:
        while block := fh.read(1 << 23):
            nl = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
            cuts = nl[lines - pending - 1::lines] if len(nl) >= lines - pending else nl[:0]
            for pos in cuts.tolist():
                end = base + pos + 1
                yield start, end - start, first
                start, first = end, first + lines
            pending = (pending + len(nl)) % lines
            base += len(block)
    if base > start:
        yield start, base - start, first


def grouped(tasks: Iterable[Task], max_bytes: int = JSON_GROUP_BYTES, max_files: int = JSON_GROUP_FILES,
            ) -> Iterator[list[Task]]:
    """Tasks in groups for the pool: small JSON files (a Bundle per patient) travel together, so a worker gets
    enough work per round trip and the pool's bounded window holds about a batch of resources, not a handful
    of files (else the workers idle while the main process writes). Other tasks go alone; order is kept."""
    group: list[Task] = []
    size = 0
    for t in tasks:
        if t.kind != "json":
            if group:
                yield group
                group, size = [], 0
            yield [t]
            continue
        try:
            size += os.path.getsize(t.locator)
        except OSError:
            size += 1
        group.append(t)
        if size >= max_bytes or len(group) >= max_files:
            yield group
            group, size = [], 0
    if group:
        yield group


def run_tasks(group: list[Task]) -> list[Result]:
    """Worker entry point: the results of a group's tasks, in order."""
    return [run_task(t) for t in group]


# Young-generation threshold of the cyclic collector during a load. The collector counts tracked objects
# allocated minus freed, so cyclic garbage still triggers a collection once it piles up this high (memory stays
# bounded); objects freed by reference counting, nearly all of them here, never count. Measured at 1M
# resources: the main process spent ~4 s of ~40 CPU-s in collections at 70,000 (buffered units survive a
# young collection and are scanned again in the middle generation), 0.07 s at 1,000,000; a worker ~7 % of its
# time at Python's default of 700, nothing at 100,000.
MAIN_GC_THRESHOLD = 1_000_000
WORKER_GC_THRESHOLD = 100_000


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """The main process unpickles every result (millions of small objects) beside long-lived caches: for the
    load, what exists is frozen (never scanned) and young collections run far less often
    (MAIN_GC_THRESHOLD); memory is freed by reference counting as before, cycles at the next collection."""
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(MAIN_GC_THRESHOLD, max(old[1], 20), old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def worker_init() -> None:
    """Pool initializer: the worker's imports frozen, young collections at WORKER_GC_THRESHOLD (validation
    allocates and frees a model tree per resource; at the default 700 the collector rescanned each chunk's
    results over and over)."""
    gc.freeze()
    old = gc.get_threshold()
    gc.set_threshold(WORKER_GC_THRESHOLD, old[1], old[2])


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _dispensed_digest(content: str) -> str:
    return hashlib.sha256(f"{content}|dispensed".encode()).hexdigest()


class _Loader:
    """Feeds task results to the sink: resolves Medication references, buffers, defers, retries."""

    def __init__(self, sink: Sink, batch_size: int) -> None:
        self.sink = sink
        self.batch_size = batch_size
        self.medications: dict[str, Definition] = {}
        self.buffer: list[SourceUnit] = []
        # held back to the end of the input (a reference not loaded yet): on disk past SPILL_LIMIT, as
        # with an unhelpful order (Observations before their Patients) they can be most of the input
        self.deferred: SpillList[SourceUnit] = SpillList()
        self.waiting_med: SpillList[SourceUnit] = SpillList()
        # MedicationRequest ids a completed dispense carries out (hashed: a false hit, odds about
        # orders x dispenses / 2**64, would skip an order); the orders written as exposures; and the
        # dispensed ones among those, whose rows finish() takes back
        self.dispensed = HashSet()
        self.orders_sent = HashSet()
        self.late: SpillList[str] = SpillList(limit=500_000, chunk=50_000)
        self.dispensed_pending: defaultdict[str, list[str]] = defaultdict(list)  # Medication id -> orders
        self.blocks: list[FactBlock] = []
        self.in_blocks = 0

    def feed(self, res: Result) -> None:
        s = self.sink
        for rt, n in res.read.items():
            s.count_read(rt, n)
        for sk in res.skipped:
            s.skip(sk.resource_type, sk.rule)
        for q in res.quarantined:
            s.quarantine(q)
        for med, order in res.dispensed_pending:
            if med in self.medications:
                res.dispensed.append(order)
            else:
                self.dispensed_pending[med].append(order)
        for what, n in res.notes.items():
            s.note(what, n)
        for d in res.definitions:
            self.medications[d.source_id] = d
            s.skip(d.resource_type, "definition referenced by other resources (no row of its own)")
            res.dispensed.extend(self.dispensed_pending.pop(d.source_id, ()))
        if res.dispensed:
            self._carried_out(res.dispensed)
        for u in res.units:
            if self._resolve_medication(u):
                self.buffer.append(u)
            else:
                self.waiting_med.append(u)
        if res.block is not None:
            self.blocks.append(res.block)
            self.in_blocks += len(res.block)
        while len(self.buffer) + self.in_blocks >= self.batch_size:
            self._write_batch()

    def _write_batch(self) -> None:
        """Up to a batch of buffered units, with the blocks buffered so far (one transaction)."""
        batch, self.buffer = self.buffer[:self.batch_size], self.buffer[self.batch_size:]
        room = self.batch_size - len(batch)
        blocks: list[FactBlock] = []
        while self.blocks and room > 0:
            b = self.blocks.pop(0)
            if len(b) > room:  # the rest waits for the next batch
                self.blocks.insert(0, b.take(np.arange(room, len(b))))
                b = b.take(np.arange(room))
            blocks.append(b)
            room -= len(b)
            self.in_blocks -= len(b)
        for b in blocks:
            self._dispensed_block(b)
        self.deferred.extend(self.sink.write(self._dispensed_rule(batch), blocks=blocks))

    def _carried_out(self, orders: list[str]) -> None:
        """Orders a dispense read now carries out; those already written as exposures are late (finish)."""
        h = key_hashes(orders)
        if len(self.orders_sent):
            self.late.extend(np.asarray(orders, dtype=object)[self.orders_sent.contains(h)].tolist())
        self.dispensed.add(h)

    def _dispensed(self, sids: list[str]) -> np.ndarray:
        """Per order about to be written: does a dispense read so far carry it out? Those that none does are
        noted as sent (a dispense read later takes them back, finish)."""
        h = key_hashes(sids)
        hit = self.dispensed.contains(h) if len(self.dispensed) else np.zeros(len(sids), dtype=bool)
        self.orders_sent.add(h[~hit])
        return hit

    def _dispensed_block(self, b: FactBlock) -> None:
        """_dispensed_rule for a block's units (their facts dropped)."""
        uc = b.unit
        sids, rules = uc["source_id"], uc["skip_rule"]
        orders = [i for i in np.flatnonzero(np.asarray(uc["resource_type"], dtype=object) == "MedicationRequest")
                  .tolist() if not rules[i]]
        if not orders:
            return
        hit = [i for i, yes in zip(orders, self._dispensed([sids[i] for i in orders]), strict=True) if yes]
        if not hit:
            return
        for i in hit:
            uc["skip_rule"][i] = DISPENSED_RULE
            uc["content_sha256"][i] = _dispensed_digest(uc["content_sha256"][i])
        mask = np.zeros(len(b), dtype=bool)
        mask[hit] = True
        b.drop_facts(mask)

    def _dispensed_rule(self, units: list[SourceUnit]) -> list[SourceUnit]:
        """Project rule: a MedicationRequest carried out by a completed MedicationDispense makes no row of its
        own (the dispense is the exposure); other orders count as exposures."""
        orders = [u for u in units if u.resource_type == "MedicationRequest" and not u.skip_rule]
        if not orders:
            return units
        for u, yes in zip(orders, self._dispensed([u.source_id for u in orders]), strict=True):
            if yes:
                u.skip_rule = DISPENSED_RULE
                u.content_sha256 = _dispensed_digest(u.content_sha256)
                u.facts = []
                u.rows = []
        return units

    def _resolve_medication(self, u: SourceUnit) -> bool:
        for i, f in enumerate(u.facts):
            if f.medication:
                d = self.medications.get(f.medication)
                if d is None:
                    return False
                u.facts[i] = replace(f, code=d.code, source_value=(d.code[1] if d.code else d.text) or "",
                                     medication=None)
        return True

    def flush(self) -> None:
        while self.buffer or self.blocks:
            self._write_batch()

    def finish(self) -> None:
        self.flush()
        for u in self.waiting_med:
            if self._resolve_medication(u):
                self.deferred.append(u)
            else:
                med = next(f.medication for f in u.facts if f.medication)
                self.sink.quarantine(Quarantined(u.resource_type, u.source_id, u.locator,
                                                 f"unresolved reference: Medication/{med}"))
        self.waiting_med.close()
        todo = self.deferred
        for _ in range(3):  # references that arrived later in the input
            if not todo:
                break
            left: SpillList[SourceUnit] = SpillList()
            for batch in todo.chunks(self.batch_size):
                left.extend(self.sink.write(self._dispensed_rule(batch)))
            if len(left) == len(todo):
                left.close()
                break
            todo.close()
            todo = left
        for batch in todo.chunks(self.batch_size):
            self.sink.write(self._dispensed_rule(batch), final=True)
        todo.close()
        if self.late:  # orders written before the dispense that carries them out was read
            self.sink.retract("MedicationRequest", self.late, DISPENSED_RULE)
        self.late.close()


def load_fhir(engine: Engine, paths: Iterable[str | Path] = (), *, server: str | None = None,
              cdm_schema: str = "cdm", etl_schema: str = "etl", source_system: str | None = None,
              strict: bool = False, timezone: str | None = None, workers: int | None = None,
              batch_size: int = BATCH_SIZE, token_env: str = "L059_FHIR_TOKEN", validate: bool = True,
              columnar: bool = True,
              progress: Callable[[RunReport], None] | None = None, _fail_after_batches: int | None = None,
              ) -> RunReport:
    """Load FHIR input into the CDM and return the run report (also stored in etl.load_run).

    ``columnar=False`` sends every unit through the sink's object path (the array path, etl.block, writes
    the same rows; the tests compare the two)."""
    paths = list(paths)
    if bool(paths) == bool(server):
        raise BadInput("give either PATH... or --server URL")
    if timezone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise BadInput(f"--timezone: unknown time zone {timezone!r} (e.g. Asia/Shanghai, UTC)") from None
    workers = workers or default_workers()
    if server:
        from l059_omop.etl.fhir.server import FhirClient, server_tasks

        client = FhirClient(server, token_env=token_env)
        client.check()
        tasks: Iterable[Task] = server_tasks(client, timezone, validate)
        source = server
        source_system = source_system or client.base
    else:
        files = collect_files(paths)
        tasks = file_tasks(files, timezone, validate)
        source = ", ".join(str(p) for p in paths)
        source_system = source_system or DEFAULT_SOURCE_SYSTEM
    if columnar:
        tasks = _columnar(tasks, source_system)
    executor = process_pool(workers, initializer=worker_init) if workers > 1 else None
    sink = Sink(engine, source_system, cdm_schema=cdm_schema, etl_schema=etl_schema, kind="fhir",
                source=source, strict=strict, skip_digests={DISPENSED_RULE: _dispensed_digest})
    if _fail_after_batches is not None:
        _inject_failure(sink, _fail_after_batches)
    try:
        # DuckDB with one thread while the workers run (the writes are the main process's share of the two
        # cores; at 1M resources its own thread pool cost 1.8 CPU-s more and gained nothing), all after
        with duckdb_load_settings(engine, threads=1 if executor is not None else None) as every_thread, \
                _fewer_collections(), sink:
            loader = _Loader(sink, batch_size)
            # in-process (1 worker) a group would only delay the first write: tasks one by one
            groups = grouped(tasks) if executor is not None else ([t] for t in tasks)
            # the window must outlast a batch's write (and DuckDB's occasional checkpoint) so the workers do
            # not stall: ~3 batches of NDJSON (16 x 1,000 lines with 2 workers), ~10 MB of results
            for results in ordered_map(executor, run_tasks, groups, prefetch=max(8, workers * PREFETCH_PER_WORKER)):
                for res in results:
                    loader.feed(res)
                if progress:
                    progress(sink.report)
            every_thread()
            loader.finish()
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    return sink.report


def _columnar(tasks: Iterable[Task], source_system: str) -> Iterator[Task]:
    for t in tasks:
        t.columnar, t.source_system = True, source_system
        yield t


def _inject_failure(sink: Sink, after: int) -> None:
    """Tests: make the (after+1)-th batch fail after its first table is written (rollback must undo it)."""
    import l059_omop.db.bulk as bulk_mod

    calls = {"batches": 0}
    original_write = sink.write

    def failing(*args, **kwargs):
        calls["batches"] += 1
        if calls["batches"] > after:
            real = bulk_mod.insert_frame

            def boom(con, schema, table, df):
                real(con, schema, table, df)
                raise RuntimeError(f"injected failure after writing {table}")

            bulk_mod.insert_frame = boom
            try:
                return original_write(*args, **kwargs)
            finally:
                bulk_mod.insert_frame = real
        return original_write(*args, **kwargs)

    sink.write = failing
