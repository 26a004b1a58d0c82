"""``generate``: patients -> truth.csv, truth_meta.json and one output format."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from l059_omop import __version__
from l059_omop.errors import BadInput
from l059_omop.parallel import process_pool
from l059_omop.synth.generator import generate_patient
from l059_omop.synth.params import SynthParams
from l059_omop.synth.truth import RULES, TRUTH_COLUMNS, evaluate

FORMATS = ("omop", "fhir", "records")


@dataclass
class SynthSummary:
    patients: int
    format: str
    out: Path
    seed: int
    cohort_members: int
    entered: int
    deaths: int
    files: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    failed_rule_counts: dict[str, int] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        lines = [f"{self.patients:,} patients ({self.format}, seed {self.seed}) -> {self.out}",
                 f"entered {self.entered:,}; cohort members {self.cohort_members:,}; deaths {self.deaths:,}"]
        if self.rows:
            lines.append("rows: " + ", ".join(f"{k} {v:,}" for k, v in self.rows.items() if v))
        return lines


def generate(n: int, fmt: str, out: Path, seed: int = 1059, *, ndjson: bool = False, engine=None,
             cdm_schema: str = "cdm", params: SynthParams | None = None, batch_patients: int = 2000,
             workers: int | None = None, progress: Callable[[int], None] | None = None) -> SynthSummary:
    """Write ``n`` synthetic patients in format ``fmt`` into ``out`` (or, for omop with ``engine``, into
    that database's ``cdm_schema``), plus ``truth.csv`` and ``truth_meta.json`` in ``out``.

    Patients are rendered in blocks, by ``workers`` processes when asked (default: the CPU count for
    large runs); blocks are written in patient order, so the files do not depend on the worker count.
    """
    if n < 1:
        raise BadInput("--patients must be at least 1", field="patients")
    if fmt not in FORMATS:
        raise BadInput(f"unknown format {fmt!r} (use {', '.join(FORMATS)})", field="format")
    if engine is not None and fmt != "omop":
        raise BadInput("--db works with --format omop only", field="db")
    if n * 1000 >= 2**31:
        raise BadInput("at most 2,147,482 patients per run (OMOP integer ids)", field="patients")
    params = replace(params or SynthParams(), seed=seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = SynthSummary(n, fmt, out, seed, 0, 0, 0)
    fails: Counter[str] = Counter()
    rows: Counter[str] = Counter()
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if n >= 5_000 else 1
    db_writer = None
    if engine is not None:
        db_writer = _db_writer(engine, cdm_schema, batch_patients)
    job = _Job(fmt, out, params, ndjson, db_rows=db_writer is not None)
    files: dict[str, object] = {}
    for name, header in job.renderer().headers().items():
        fh = (out / name).open("w", encoding="utf-8", newline="")
        fh.write(header)
        files[name] = fh
    truth_fh = (out / "truth.csv").open("w", encoding="utf-8", newline="")
    truth_fh.write(",".join(TRUTH_COLUMNS) + "\n")
    done = 0
    try:
        for res in _run_blocks(job, n, workers):
            truth_fh.write(res.truth_csv)
            for name, text in res.texts.items():
                if text:
                    if name not in files:
                        files[name] = (out / name).open("w", encoding="utf-8", newline="")
                    files[name].write(text)  # type: ignore[attr-defined]
            if db_writer is not None:
                db_writer.write_block(res.rows)
            rows.update(res.counts)
            fails.update(res.fails)
            summary.cohort_members += res.members
            summary.entered += res.entered
            summary.deaths += res.deaths
            done += res.count
            if progress:
                progress(done)
    finally:
        for fh in files.values():
            fh.close()  # type: ignore[attr-defined]
        truth_fh.close()
    if db_writer is not None:
        rows = Counter(db_writer.close())
    summary.rows = dict(rows)
    summary.failed_rule_counts = {r: fails[r] for r in RULES}
    meta = _meta(params, n, fmt, ndjson, summary)
    (out / "truth_meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    summary.files = sorted(p.name for p in out.iterdir())
    return summary


BLOCK = 500


@dataclass
class _Job:
    """What a worker needs to render a block of patients (picklable)."""

    fmt: str
    out: Path
    params: SynthParams
    ndjson: bool
    db_rows: bool = False

    def renderer(self):
        if self.fmt == "omop":
            from l059_omop.synth.emit_omop import OmopCsvRenderer, OmopRowsRenderer

            return OmopRowsRenderer() if self.db_rows else OmopCsvRenderer()
        if self.fmt == "fhir":
            from l059_omop.synth.emit_fhir import FhirRenderer

            return FhirRenderer(self.out, ndjson=self.ndjson)
        from l059_omop.synth.emit_records import RecordsRenderer

        return RecordsRenderer()


@dataclass
class _BlockResult:
    count: int
    truth_csv: str
    texts: dict[str, str]
    counts: dict[str, int]
    rows: dict[str, list] | None
    fails: Counter
    members: int
    entered: int
    deaths: int


_RENDERER = None


def _render_block(job: _Job, start: int, count: int) -> _BlockResult:
    global _RENDERER
    if _RENDERER is None or getattr(_RENDERER, "_job", None) != job:
        _RENDERER = job.renderer()
        _RENDERER._job = job
    pts = []
    fails: Counter[str] = Counter()
    members = entered = deaths = 0
    buf = io.StringIO()
    tw = csv.DictWriter(buf, TRUTH_COLUMNS, lineterminator="\n")
    for i in range(start, start + count):
        p = generate_patient(i, job.params)
        t = evaluate(p, job.params)
        tw.writerow(t.row)
        pts.append((p, t))
        members += t.member
        entered += int(t.row["entered"])
        deaths += p.death_date is not None
        for r in str(t.row["failed_rules"]).split(";"):
            if r:
                fails[r] += 1
    texts, counts = _RENDERER.render(pts)
    rows = None
    if job.db_rows:
        rows, texts = texts, {}
    return _BlockResult(count, buf.getvalue(), texts, counts, rows, fails, members, entered, deaths)


def _run_blocks(job: _Job, n: int, workers: int) -> Iterator[_BlockResult]:
    blocks = [(s, min(BLOCK, n - s + 1)) for s in range(1, n + 1, BLOCK)]
    if workers <= 1 or len(blocks) == 1:
        for s, c in blocks:
            yield _render_block(job, s, c)
        return
    with process_pool(workers) as pool:
        pending: deque = deque()
        it = iter(blocks)
        for s, c in itertools.islice(it, 2 * workers):
            pending.append(pool.submit(_render_block, job, s, c))
        try:
            while pending:
                res = pending.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(_render_block, job, *nxt))
                yield res
        finally:
            for fut in pending:
                fut.cancel()


def _db_writer(engine, cdm_schema: str, batch: int):
    from l059_omop.db.bulk import count_rows
    from l059_omop.synth.emit_omop import OmopDbWriter

    try:
        with engine.connect() as con:
            count_rows(con, cdm_schema, "person")
    except Exception as exc:  # noqa: BLE001
        raise BadInput(f"no table {cdm_schema}.person: run init-db first ({type(exc).__name__})",
                       field="db") from None
    return OmopDbWriter(engine, cdm_schema, batch)


def _pfs_median(params: SynthParams, hr_p: float, hr_d: float) -> float:
    """Median of min(progression, death) under independence: S(t) = S_p(t) * S_d(t)."""
    lp, ld = params.progression.scale_for(hr_p), params.death.scale_for(hr_d)
    kp, kd = params.progression.shape, params.death.shape

    def surv(t: float) -> float:
        return math.exp(-((t / lp) ** kp) - ((t / ld) ** kd))

    lo, hi = 0.0, 10_000.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if surv(mid) > 0.5 else (lo, mid)
    return (lo + hi) / 2


def _meta(params: SynthParams, n: int, fmt: str, ndjson: bool, s: SynthSummary) -> dict:
    hp, hd = dict(params.hr_progression), dict(params.hr_death)
    medians = {}
    for dose in hp:
        medians[dose] = {
            "progression_days": round(params.progression.median_for(hp[dose]), 2),
            "death_os_days": round(params.death.median_for(hd[dose]), 2),
            "pfs_days": round(_pfs_median(params, hp[dose], hd[dose]), 2),
        }
    return {
        "software": "l059-omop", "version": __version__, "format": fmt, "ndjson": ndjson,
        "seed": params.seed, "patients": n, "data_cutoff": params.data_cutoff.isoformat(),
        "study_window": [params.window_start.isoformat(), params.window_end.isoformat()],
        "parameters": params.as_json(),
        "latent_times": "true_os_days ~ Weibull(death), HR by starting dose; true_pfs_days = min(progression, "
                        "death), progression ~ Weibull(progression), HR by starting dose; days from index",
        "true_medians_days_by_starting_dose": medians,
        "counts": {"entered": s.entered, "cohort_members": s.cohort_members, "deaths": s.deaths,
                   "failed_rule_counts": s.failed_rule_counts},
        "conventions": "missing ES date / induction start: R4, R5 fail; R3, R6, R11 hold (NOT EXISTS over NULL)",
    }
