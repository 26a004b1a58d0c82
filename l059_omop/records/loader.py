"""``load_records``: hospital extracts -> OMOP through a mapping spec, written through the loaders' sink.

Order of work: the spec is validated, every input file is matched to a source and its header checked
against the columns the spec reads, the code tables' concepts are checked against the vocabulary — all
before a row is written. Then each file streams in chunks: the pure mapper turns a chunk into rows and
quarantine records, and the sink (``l059_omop.etl.sink``, shared with the FHIR loader) assigns
deterministic ids, writes one transaction per chunk, skips unchanged rows on a reload and keeps the run
report (read = mapped + quarantined + skipped).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from l059_omop.db import bulk
from l059_omop.db.engine import validate_identifier
from l059_omop.errors import BadInput
from l059_omop.etl.model import Quarantined
from l059_omop.etl.report import RunReport
from l059_omop.etl.sink import FrameBatch, Sink, TableFrame, hashed_ids, require_initialised, typed_frame
from l059_omop.parallel import ordered_map, process_pool
from l059_omop.records import reader
from l059_omop.records.mapper import PATIENT, ChunkResult, Resolved, codes_needed, keyed, map_chunk
from l059_omop.records.spec import MappingSpec, SourceSpec, SpecError, check_header, load_spec
from l059_omop.vocab import Vocabulary

log = logging.getLogger(__name__)

PSEUDONYM_ENV = "L059_PSEUDONYM_KEY"


@dataclass
class RecordsResult:
    """What a load did: the sink's run report plus the files read and the folder files ignored."""

    report: RunReport
    inputs: list[str]
    ignored: list[str]

    def lines(self) -> list[str]:
        out = [f"mapping: {len(self.inputs)} input(s): " + ", ".join(self.inputs)]
        if self.ignored:
            out.append(f"ignored (no source in the spec): {', '.join(self.ignored)}")
        return out + self.report.lines()


def record_type(source: SourceSpec) -> str:
    """The run report's record type of a source: 'Patient' for a patients file (its rows key the person)."""
    return PATIENT if any(o.table == "person" for o in source.outputs.values()) else source.name


def _check_concepts(engine: Engine, cdm: str, spec: MappingSpec) -> dict[int, str]:
    """Every concept a code table or a constant names must exist (PostgreSQL enforces it by foreign key);
    returns their domains (a row follows its standard concept's domain)."""
    wanted: dict[int, str] = {}
    for ct in spec.code_tables.values():
        for e in ct.entries.values():
            for cid in (e.target_concept_id, e.source_concept_id):
                if cid:
                    wanted.setdefault(cid, f"{ct.path}:{e.line}")
    for s in spec.sources.values():
        for o in s.outputs.values():
            for f in o.fields.values():
                if f.value is not None and f.name.endswith("concept_id") and isinstance(f.value, int) and f.value:
                    wanted.setdefault(f.value, spec.where(f.line))
    if spec.type_concept_id:
        wanted.setdefault(spec.type_concept_id, f"{spec.path}: defaults.type_concept_id")
    if not wanted:
        return {}
    ids = sorted(wanted)
    found: dict[int, str] = {}
    with engine.connect() as con:
        for i in range(0, len(ids), 1000):
            q = sa.text(f"select concept_id, domain_id from {cdm}.concept where concept_id in :ids").bindparams(
                sa.bindparam("ids", expanding=True))
            found.update({int(r[0]): r[1] for r in con.execute(q, {"ids": ids[i:i + 1000]})})
    missing = [c for c in ids if c not in found]
    if missing:
        c = missing[0]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise BadInput(f"{wanted[c]}: concept {c} is not in {cdm}.concept{more}; load a vocabulary that has it "
                       "or fix the mapping")
    return found


def _resolved_static(engine: Engine, cdm: str, spec: MappingSpec, vocab: Vocabulary) -> Resolved:
    """Unit concepts of the unit table and single-ingredient drug strengths (for 'strength_from')."""
    res = Resolved()
    if spec.units:
        codes = {e.ucum_code for e in spec.units.entries.values()}
        for (_v, c), m in vocab.resolve_many([("UCUM", c) for c in codes]).items():
            res.unit_concepts[c] = m.standard_concept_id or m.source_concept_id
    key = os.environ.get(PSEUDONYM_ENV, "")
    res.pseudonym_key = (key or f"l059-omop:{spec.site}").encode("utf-8")
    if any(f.strength_from for s in spec.sources.values() for o in s.outputs.values() for f in o.fields.values()):
        mg = vocab.resolve_many([("UCUM", "mg")])[("UCUM", "mg")].standard_concept_id
        ingredients = sorted({e.target_concept_id for ct in spec.code_tables.values() for e in ct.entries.values()})
        if mg and ingredients:
            # single-ingredient standard clinical drugs with an amount in mg; an (ingredient, amount) pair
            # with several such drugs (tablet and capsule ...) is ambiguous and not refined
            q = sa.text(f"""select ds.drug_concept_id, ds.ingredient_concept_id, ds.amount_value
                from {cdm}.drug_strength ds join {cdm}.concept c on c.concept_id = ds.drug_concept_id
                where ds.ingredient_concept_id in :ids and ds.amount_unit_concept_id = :mg
                  and ds.invalid_reason is null and c.standard_concept = 'S' and c.concept_class_id = 'Clinical Drug'
                  and not exists (select 1 from {cdm}.drug_strength o where o.drug_concept_id = ds.drug_concept_id
                                  and o.ingredient_concept_id <> ds.ingredient_concept_id)"""
                        ).bindparams(sa.bindparam("ids", expanding=True))
            with engine.connect() as con:
                rows = con.execute(q, {"ids": ingredients, "mg": mg}).fetchall()
            cands: dict[tuple[int, float], set[int]] = {}
            for drug, ingr, amount in rows:
                if amount is not None:
                    cands.setdefault((int(ingr), float(amount)), set()).add(int(drug))
            res.strengths = {k: next(iter(v)) for k, v in cands.items() if len(v) == 1}
    return res


def _row_text(chunk: pd.DataFrame) -> list[str]:
    return ["\x1f".join(t) for t in zip(*[chunk[c] for c in chunk.columns], strict=False)]


def load_records(engine: Engine, mapping: str | Path, paths: list[str | Path], *, cdm_schema: str = "cdm",
                 etl_schema: str = "etl", chunk_rows: int | None = None, strict: bool = False,
                 progress: Callable[[str, int], None] | None = None, workers: int | None = None) -> RecordsResult:
    """Load hospital extracts (CSV in the spec's encoding, .xlsx) into the CDM through ``mapping``.

    Fails with :class:`~l059_omop.errors.BadInput` before writing anything when the spec, a file's columns
    or a code table's concepts are wrong; bad rows are quarantined and the rest loads. ``workers``: processes
    that map chunks (default :func:`default_workers`); 1 maps in this process, on a thread beside the
    writer. The output is the same whatever the number (chunks are written in input order).
    """
    cdm = validate_identifier(cdm_schema)
    validate_identifier(etl_schema)
    spec = load_spec(mapping)
    inputs, ignored = reader.plan(spec, [Path(p) for p in paths])
    workers = workers or default_workers()
    with contextlib.ExitStack() as stack:
        pool, warm, split = None, [], None
        size = chunk_rows or spec.chunk_rows
        if workers > 1:  # started first: the workers start while the inputs and concepts are checked
            pool, warm = mapping_pool(workers)
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)
            split = _split(pool, inputs, size)
        for inp in inputs:
            head = reader.header(inp)
            if any(reader.BAD_BYTES in h for h in head):
                raise SpecError(spec.path, inp.source.line, f"sources.{inp.source.name}.encoding",
                                f"the header of {inp.label} is not valid {inp.source.encoding}: declare the file's "
                                "encoding (e.g. encoding: gb18030)")
            check_header(spec, inp.source, head, inp.label)
        require_initialised(engine, cdm, etl_schema)
        domains = _check_concepts(engine, cdm, spec)
        vocab = Vocabulary(engine, cdm)
        res = _resolved_static(engine, cdm, spec, vocab)
        res.domains.update({c: d for c, d in domains.items() if c and d})
        spec_digest = hashlib.sha256(Path(spec.path).read_bytes()
                                     + b"".join(ct.path.read_bytes() for ct in spec.code_tables.values())
                                     + (spec.units.path.read_bytes() if spec.units else b"")).hexdigest()
        sink = Sink(engine, source_system=f"records:{spec.site}", cdm_schema=cdm, etl_schema=etl_schema,
                    kind="records", source=f"{spec.path} " + " ".join(str(i.label) for i in inputs),
                    strict=strict, vocabulary=vocab)
        state = (spec, res, spec_digest, sink.source_system)
        with bulk.duckdb_load_settings(engine, threads=_duckdb_threads()) as loaded, sink:
            jobs = _jobs(spec, inputs, size, res, vocab, progress, split)
            if pool is not None:
                _load_pooled(sink, jobs, pool, warm, workers, state)
            else:
                _load_threaded(sink, jobs, state)
            loaded()  # the sink's finish (observation periods) and the checkpoint run alone: every thread
    return RecordsResult(sink.report, [i.label for i in inputs], [str(p) for p in ignored])


def default_workers() -> int:
    """Mapping in this process (on a thread beside the writer) unless asked. The writer is the critical
    path; on 2 cores worker processes cost +2.6 CPU-s (+20 %) and ~400 MB (summed) per million rows, were
    ~10 % faster on the idle machine and 25 % slower beside other work (docs/records.md, Performance)."""
    return 1


def _jobs(spec: MappingSpec, inputs: list[reader.Input], size: int, res: Resolved, vocab: Vocabulary,
          progress: Callable[[str, int], None] | None,
          split: dict[int, Future] | None = None) -> Iterator[_Job]:
    """The chunks of every input, in order, as mapping jobs: read and looked up here, or (inputs in
    ``split``, by id) as byte ranges for a worker to read."""
    for inp in inputs:
        rtype = record_type(inp.source)
        done = 0
        bcs, clean = None, False
        if split is not None and id(inp) in split:
            bcs, clean = split[id(inp)].result()
        elif split is not None and _worker_readable(inp):
            bcs, clean = _cut(inp, size)
        if bcs is not None:
            for bc in bcs:
                yield _Job(inp.source.name, inp.path, inp.sheet, rtype, None, None, clean, {}, {}, bc)
                done += bc.rows
                if progress:
                    progress(inp.label, done)
            continue
        for chunk, rownums in reader.chunks(inp, size):
            yield _job(spec, inp, rtype, chunk, rownums, res, vocab)
            done += len(chunk)
            if progress:
                progress(inp.label, done)


BIG_FILE = 8 << 20  # bytes: a file of this size or more is cut into byte chunks by a worker (~30 ms a MB)


def _split(pool: Executor, inputs: list[reader.Input], size: int) -> dict[int, Future]:
    """Big files the workers cut into byte ranges (:func:`_cut`), by the input's id; smaller ones are cut
    here when their turn comes (:func:`_jobs`)."""
    out = {}
    for inp in inputs:
        with contextlib.suppress(OSError):
            if _worker_readable(inp) and inp.path.stat().st_size >= BIG_FILE:
                out[id(inp)] = pool.submit(_cut, inp, size)
    return out


def _worker_readable(inp: reader.Input) -> bool:
    """Not a source with vocabulary-coded fields: their codes are looked up here, in the read chunk."""
    return not any(f.vocabulary for o in inp.source.outputs.values() for f in o.fields.values())


def _cut(inp: reader.Input, size: int) -> tuple[list[reader.ByteChunk] | None, bool]:
    """Worker: a file's byte chunks and whether its rows need no byte check (both one pass over the file)."""
    bcs = reader.byte_chunks(inp, size)
    return bcs, bcs is not None and bool(inp.source.key) and reader.is_clean(inp)


def _load_threaded(sink: Sink, jobs: Iterator[_Job], state: tuple) -> None:
    """One process: chunks mapped on this thread, written by the pipe's thread while the next is mapped."""
    pipe = _Pipe()
    try:
        for job in jobs:
            pipe.submit(functools.partial(_apply, sink, _map_job(*state, job)))
    except BaseException:
        pipe.stop()
        raise
    pipe.close()


MAP_WHILE_STARTING = True  # tests: False sends every chunk through the workers


def _load_pooled(sink: Sink, jobs: Iterator[_Job], pool: Executor, warm: list[Future], workers: int,
                 state: tuple) -> None:
    """Chunks mapped by worker processes, results written in input order by the pipe's thread (so the
    output does not depend on the number of workers). At most ``workers + 2`` chunks are in the pool and
    two mapped ones wait for the writer (bounded memory). Until the workers have started (~1 s: they
    import pandas ...) chunks are mapped here, so the writer starts at once. The writing, and the reading
    of files the workers do not read themselves, stay in this process (the workers hold no connection: a
    DuckDB file is open in one process only)."""
    pipe = _Pipe()
    mapped = ordered_map(pool, functools.partial(_worker_map, state), jobs, workers + 2,
                         inline=functools.partial(_map_job, *state),
                         ready=lambda: not MAP_WHILE_STARTING or all(f.done() for f in warm))
    try:
        for result in mapped:
            pipe.submit(functools.partial(_apply, sink, result))
    except BaseException:
        pipe.stop()
        raise
    pipe.close()


def _duckdb_threads() -> int:
    """DuckDB's threads during a load: one core is the mapping's (2 cores: 1 thread, which also saved ~3
    CPU-s per million rows of parallel-insert overhead against DuckDB's default of one per core)."""
    return max(1, (os.cpu_count() or 2) - 1)


@dataclass
class _Mapped:
    """A mapped chunk, ready for the sink: what :func:`_apply` writes (picklable: made in a worker process
    when the load has several)."""

    rtype: str
    n_read: int
    quarantine: list[Quarantined]
    result: ChunkResult  # its skip counts, unmapped codes and moved rows (its outputs are already in batch)
    batch: FrameBatch


@dataclass
class _Job:
    """One chunk to map, with what it needs from the database (looked up by the loading process, in input
    order): the vocabulary concepts and domains of the chunk's codes. Everything else the mapping reads is
    the spec and :func:`_resolved_static`'s facts, fixed for the run."""

    source: str  # the source's name in the spec
    path: Path
    sheet: str | None
    rtype: str
    chunk: pd.DataFrame | None  # None: the worker reads ``byte_chunk`` of the file
    rownums: pd.Series | None
    clean: bool  # the rows need no byte check (reader.is_clean of the file, read once per file)
    concepts: dict[tuple[str, str], tuple[int, int]]
    domains: dict[int, str]
    byte_chunk: reader.ByteChunk | None = None


def _job(spec: MappingSpec, inp: reader.Input, rtype: str, chunk: pd.DataFrame, rownums: pd.Series, res: Resolved,
         vocab: Vocabulary) -> _Job:
    """Look up the chunk's vocabulary codes (cached across chunks in ``vocab``); the job carries only them."""
    pairs, _units = codes_needed(inp.source, chunk)
    concepts: dict[tuple[str, str], tuple[int, int]] = {}
    domains: dict[int, str] = {}
    if pairs:
        for key, m in vocab.resolve_many(pairs).items():
            concepts[key] = (m.source_concept_id, m.standard_concept_id)
            if m.standard_concept_id and m.domain_id:
                domains[m.standard_concept_id] = m.domain_id
    clean = bool(inp.source.key) and reader.is_clean(inp)
    return _Job(inp.source.name, inp.path, inp.sheet, rtype, chunk, rownums, clean, concepts, domains)


def _map_job(spec: MappingSpec, res: Resolved, spec_digest: str, source_system: str, job: _Job) -> _Mapped:
    """Map one chunk (pure: no connection). ``res`` holds the run's fixed facts; the job's concepts and
    domains are added to it (a concept's domain is a fact of the vocabulary, so what earlier chunks added
    changes nothing)."""
    inp = reader.Input(job.path, spec.sources[job.source], job.sheet)
    rtype = job.rtype
    chunk, rownums = (job.chunk, job.rownums) if job.byte_chunk is None else reader.read_byte_chunk(inp, job.byte_chunk)
    n_read = len(chunk)
    chunk = chunk.reset_index(drop=True)
    rownums = rownums.reset_index(drop=True)
    # undecodable bytes (U+FFFD) and NUL characters (no database stores them in text) -> quarantined; a
    # file that decodes cleanly and has no NUL byte (reader.is_clean, checked once) needs no look at its rows
    texts = None if job.clean else _row_text(chunk)
    badenc = np.zeros(len(chunk), dtype=bool) if texts is None else np.fromiter(
        (reader.BAD_BYTES in t or "\x00" in t for t in texts), dtype=bool, count=len(texts))
    quarantine: list[Quarantined] = []
    if badenc.any():
        quarantine += [Quarantined(rtype, None, f"{inp.label}:row {rownums.iat[i]}",
                                   f"bytes not valid in encoding {inp.source.encoding}: row not loaded"
                                   if reader.BAD_BYTES in texts[i] else "NUL character in a cell: row not loaded",
                                   None)
                       for i in np.flatnonzero(badenc)]
        keep = ~badenc
        chunk = chunk[keep].reset_index(drop=True)
        rownums = rownums[keep].reset_index(drop=True)
        texts = [t for t, k in zip(texts, keep, strict=True) if k]
    if len(res.concepts) > 200_000:  # bounded memory with a full vocabulary and many distinct codes
        res.concepts.clear()
    res.concepts.update(job.concepts)
    res.domains.update(job.domains)
    result = map_chunk(spec, inp.source, chunk, rownums, inp.label, res)
    quarantine += [Quarantined(rtype, None, q.locator, q.reason, q.payload) for q in result.quarantine]
    batch = _frame_batch(inp, rtype, chunk, rownums, texts, result, res.pseudonym_key, spec_digest, source_system)
    result.outputs = []  # in the batch now (not sent back twice)
    return _Mapped(rtype, n_read, quarantine, result, batch)


def _apply(sink: Sink, m: _Mapped) -> None:
    """The sink's part of a chunk: counts, quarantine, then the batch's one transaction."""
    sink.count_read(m.rtype, m.n_read)
    for q in m.quarantine:
        sink.quarantine(q)
    for rule, n in m.result.skipped.items():
        sink.skip(m.rtype, rule, n)
    for k, n in m.result.unmapped.items():
        sink.report.unmapped[k] += n
    for (src, dst), n in m.result.routed.items():
        sink.note(f"rows moved by their concept's domain: {src} -> {dst}", n)
    sink.write_frames(m.batch)


def _warm() -> None:
    """Worker start: import the mapping code (pandas ...) while the loading process checks the inputs."""


def _worker_map(state: tuple, job: _Job) -> _Mapped:
    return _map_job(*state, job)


def mapping_pool(workers: int) -> tuple[ProcessPoolExecutor, list[Future]]:
    """The load's worker processes, started at once (each imports the mapping code while the inputs are
    checked), and the futures that tell when they have."""
    pool = process_pool(workers, _warm)
    return pool, [pool.submit(_warm) for _ in range(workers)]


class _Pipe:
    """Runs the sink's work on one thread, in submission order, while the caller maps the next chunk.

    The databases insert and commit without holding the GIL, so mapping and writing overlap on two cores.
    At most ``depth`` mapped chunks wait (bounded memory). The first error stops the work and is raised to
    the caller; everything that touches the sink runs on this thread only.
    """

    def __init__(self, depth: int = 2) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="l059-records-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            if self._error is None:
                try:
                    job()
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    self._error = exc

    def submit(self, job: Callable[[], None]) -> None:
        if self._error is not None:
            raise self._error
        self._q.put(job)

    def stop(self) -> None:
        """Finish without raising (the caller is already failing)."""
        self._error = self._error or RuntimeError("stopped")
        self._q.put(None)
        self._thread.join()

    def close(self) -> None:
        self._q.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def _frame_batch(inp: reader.Input, rtype: str, chunk: pd.DataFrame, rownums: pd.Series, texts: list[str] | None,
                 result: ChunkResult, key: bytes, spec_digest: str, source_system: str) -> FrameBatch:
    """The sink's frame batch of a mapped chunk: per source row its id, content hash and locator; per output
    its rows, pointing at their source row by position, and their first-probe ids (``TableFrame.hashed``):
    hashed here, on the mapping thread, because the writer thread is the longer one."""
    rn = rownums.to_numpy()
    content = content_hashes(chunk, spec_digest)
    label = f"{inp.label}:row "
    locators = [f"{label}{i}" for i in rn.tolist()]
    sids = _row_keys(inp.source, chunk, texts, key, result.keys)
    tables = []
    for tr in result.outputs:
        pos = np.searchsorted(rn, tr.rownums.to_numpy())
        if rtype == PATIENT and tr.person_keys is not None:
            for i, p in zip(pos.tolist(), tr.person_keys.tolist(), strict=True):
                sids[i] = p  # a patient's record is keyed by its pseudonym (Patient/<pseudonym>)
        row_key = "" if tr.table == "person" else "death" if tr.table == "death" else tr.output
        links = {f: rt.split(".", 1)[1] for f, (_t, rt, _k) in tr.refs.items()}
        # typed here (the writer's typing of them is then a pass-through): off the writer's critical path
        tables.append(TableFrame(tr.table, row_key, pos, typed_frame(tr.table, tr.frame), tr.person_keys, links))
    for tf in tables:
        if tf.table == "person":
            tf.hashed = hashed_ids(source_system, PATIENT, tf.person.tolist(), "")
        elif tf.table != "death":
            tf.hashed = hashed_ids(source_system, rtype, [sids[i] for i in tf.record.tolist()], tf.row_key)
    return FrameBatch(rtype, sids, content, locators, tables)


def content_hashes(chunk: pd.DataFrame, spec_digest: str) -> list[str]:
    """Per row a 64-bit hash (16 hex digits) of all its cells, keyed by the spec's digest (so a changed spec
    or code table changes every row's), by pandas' vectorised SipHash: a tenth of the cost of a sha256 of
    each row's text. Only compared with the hash stored for the same row key: a changed row goes unseen
    only if its two versions collide (2**-64). Should pandas ever change the function, a reload re-maps
    every row once (rewritten with the same ids), nothing worse."""
    if chunk.empty:
        return []
    hash_key = hashlib.sha256(spec_digest.encode("utf-8")).hexdigest()[:16]  # SipHash's 16-byte key
    h = pd.util.hash_pandas_object(chunk, index=False, hash_key=hash_key).to_numpy()
    return _hex64(h)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex64(values: np.ndarray) -> list[str]:
    """uint64 values as 16 lower-case hex digits each (vectorised)."""
    b = values.astype(">u8").view(np.uint8).reshape(-1, 8)
    out = np.empty((len(values), 16), dtype=np.uint8)
    out[:, 0::2] = _HEX[b >> 4]
    out[:, 1::2] = _HEX[b & 15]
    return out.view("S16").ravel().astype("U16").tolist()


def _row_keys(source: SourceSpec, chunk: pd.DataFrame, texts: list[str] | None, key: bytes,
              mapped_keys: pd.Series | None = None) -> list[str]:
    """Source id of each row in etl tables: a keyed hash of its key columns (row ids often embed the
    hospital id, which must not be stored), else of its whole content. ``mapped_keys``: the mapper's
    source keys of the chunk (the same key text: stripped key columns joined by U+001F)."""
    if source.key and mapped_keys is not None and len(mapped_keys) == len(chunk):
        texts = mapped_keys.tolist()
    elif source.key:
        cols = [[v.strip() for v in chunk[c].tolist()] for c in source.key]
        texts = cols[0] if len(cols) == 1 else ["\x1f".join(t) for t in zip(*cols, strict=True)]
    elif texts is None:
        texts = _row_text(chunk)
    base = hashlib.blake2b(key=keyed(key), digest_size=16)  # keyed once, copied per row: the same digests
    out = []
    for t in texts:
        h = base.copy()
        h.update(t.encode("utf-8"))
        out.append(h.hexdigest())
    return out
