"""Benchmark: the FHIR loader (issue 4). Resources per second and peak memory for
(a) JSON parsing alone, (b) parsing + R4B validation (1 process, and both cores), (c) the full load into
DuckDB and PostgreSQL (``l059-omop load-fhir``, default workers = cores), on the Synthea bundle repeated and
on synthetic NDJSON (``synth --format fhir --ndjson``).

Targets (issue 4): (c) >= 70 % of (b) on both cores; >= 5,000 resources/s into DuckDB; peak memory < 1 GB
whatever the input size. Every case runs in a child process; its peak memory is the largest of the child
and its worker processes (``RUSAGE_CHILDREN`` in the child, after stopping the forkserver that reaped the
workers). Each case also reports its CPU seconds (user + sys of the child and all its workers), so a run on a
busy shared machine still says what the work cost.

Environment: ``L059_BENCH_FHIR_INPUTS`` (comma-separated: ``synthea``, ``ndjson``; default both),
``L059_BENCH_FHIR_CASES`` (comma-separated of ``a``, ``b1``, ``b``, ``c_duck``, ``c_pg``, ``c_order``; default
all; ``c_order``, NDJSON only: the same files in the order that costs the loader most, the Patient and
Encounter files last, so every other resource is held back to the end, and MedicationRequest before
MedicationDispense, so every dispensed order is written and then taken back),
``L059_BENCH_FHIR_NDJSON`` (an existing folder of ``synth --format fhir --ndjson`` output to use instead of
generating one; the full size is 1,000,000 resources, e.g. ``synth --patients 13334 --seed 4``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from benchmarks import _util
except ImportError:  # run as a script from benchmarks/
    import _util  # type: ignore[no-redef]

SAMPLE = Path("/work/shared/fhir-samples/synthea_r4_bundle")
if not SAMPLE.is_dir():
    SAMPLE = _util.REPO.parent / "shared" / "fhir-samples" / "synthea_r4_bundle"
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def _synthea_copies(out: Path, copies: int) -> int:
    """The Synthea transaction bundle ``copies`` times with fresh uuids (references stay consistent)."""
    src = next(SAMPLE.glob("*.json")).read_text(encoding="utf-8")
    n = len(json.loads(src)["entry"])
    out.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        text = _UUID.sub(lambda m, k=k: f"{k:08x}" + m.group()[8:], src)
        (out / f"synthea_{k:05d}.json").write_text(text, encoding="utf-8")
    return n * copies


def _synth_ndjson(out: Path, resources: int) -> int:
    from l059_omop.synth import generate

    patients = max(5, resources // 75)
    generate(patients, "fhir", out, seed=4, ndjson=True)
    for extra in ("truth.csv", "truth_meta.json"):
        (out / extra).unlink(missing_ok=True)
    return sum(1 for f in out.glob("*.ndjson") for _ in f.open(encoding="utf-8"))


def _count_ndjson(folder: Path) -> int:
    return sum(1 for f in folder.glob("*.ndjson") for _ in f.open(encoding="utf-8"))


# ----------------------------------------------------------------------------- child side
def _iter_resources(folder: Path):
    for f in sorted(folder.iterdir()):
        if f.suffix == ".ndjson":
            with f.open(encoding="utf-8") as fh:
                for line in fh:
                    yield json.loads(line)
        elif f.suffix == ".json":
            for e in json.loads(f.read_text(encoding="utf-8")).get("entry", []):
                yield e["resource"]


def _validate_task(task) -> int:
    """json.loads + R4B model_validate of every resource of a loader task."""
    from fhir.resources.R4B import get_fhir_model_class

    if task.kind == "ndjson":
        from l059_omop.etl.fhir.parse import _read_lines

        lines = task.lines if task.lines is not None else _read_lines(task)
        resources = (json.loads(text) for _, text in lines)
    else:
        resources = (e["resource"] for e in json.loads(Path(task.locator).read_text(encoding="utf-8"))["entry"])
    n = 0
    for res in resources:
        get_fhir_model_class(res["resourceType"]).model_validate(res)
        n += 1
    return n


def _child(case: str, folder: str, db: str | None, workers: int) -> None:
    import resource

    start = time.perf_counter()
    folder_p = Path(folder)
    if case == "parse":
        n = sum(1 for _ in _iter_resources(folder_p))
    elif case == "validate":
        # the loader's own chunks (NDJSON: 1,000 lines; a Bundle file each), validated in 1 or N processes
        from l059_omop.etl.fhir.load import collect_files, file_tasks

        tasks = file_tasks(collect_files([folder_p]), None)
        if workers == 1:
            n = sum(map(_validate_task, tasks))
        else:
            from l059_omop.etl.fhir.load import worker_init
            from l059_omop.parallel import process_pool

            # the loader's own worker set-up (its collector threshold), so (b) is the best of parse + validate
            with process_pool(workers, initializer=worker_init) as ex:
                n = sum(ex.map(_validate_task, tasks, chunksize=1))
    else:
        import sqlalchemy as sa

        from l059_omop.etl.fhir.load import load_fhir

        engine = sa.create_engine(db)
        report = load_fhir(engine, [folder_p], workers=workers)
        n = report.read
        engine.dispose()
    seconds = time.perf_counter() - start
    try:  # workers are the forkserver's children: stop it so their usage (reaped by it) reaches ours
        from multiprocessing import forkserver

        forkserver._forkserver._stop()
    except Exception:  # noqa: BLE001 - no forkserver was started
        pass
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (large) benchmark driver
    own = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
    ru_self, ru_kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    kids = ru_kids.ru_maxrss / 1024
    cpu = ru_self.ru_utime + ru_self.ru_stime + ru_kids.ru_utime + ru_kids.ru_stime
    print(json.dumps({"n": n, "seconds": seconds, "peak_mb": max(own, kids), "cpu_s": cpu}))


def _run_child(case: str, folder: Path, db: str | None = None, workers: int = 1) -> dict:
    args = [sys.executable, str(Path(__file__).resolve()), "--child", case, str(folder), db or "-", str(workers)]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=_util.REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{case} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _against_the_loader(folder: Path, out: Path) -> Path:
    """``folder``'s NDJSON files under names that sort the loader's way last: Patient and Encounter after
    everything (names without a resource type sort by name), MedicationRequest before MedicationDispense."""
    names = {"Patient": "z_patient", "Encounter": "z_encounter", "MedicationRequest": "a_request",
             "MedicationDispense": "b_dispense"}
    out.mkdir(parents=True)
    for f in sorted(folder.glob("*.ndjson")):
        stem = f.name.split(".")[0]
        (out / f"{names.get(stem, 'a_' + stem.lower())}.ndjson").symlink_to(f.resolve())
    return out


def _init_duckdb(path: Path) -> str:
    import sqlalchemy as sa

    from l059_omop.db.api import init_db

    url = f"duckdb:///{path}"
    engine = sa.create_engine(url)
    init_db(engine)
    engine.dispose()
    return url


def run(quick: bool) -> list[dict]:
    workers = min(os.cpu_count() or 1, 8)
    copies = 10 if quick else 200
    ndjson_resources = 10_000 if quick else 1_000_000
    tmp = Path(tempfile.mkdtemp(prefix="bench_fhir_"))
    rows: list[dict] = []
    try:
        which = os.environ.get("L059_BENCH_FHIR_INPUTS", "synthea,ndjson").split(",")
        cases = os.environ.get("L059_BENCH_FHIR_CASES", "a,b1,b,c_duck,c_pg,c_order").split(",")
        inputs = {}
        if "synthea" in which:
            inputs[f"Synthea bundle x{copies}"] = (tmp / "synthea", _synthea_copies(tmp / "synthea", copies))
        if "ndjson" in which:
            given = os.environ.get("L059_BENCH_FHIR_NDJSON")
            nd = Path(given) if given else tmp / "ndjson"
            n_nd = _count_ndjson(nd) if given else _synth_ndjson(nd, ndjson_resources)
            inputs[f"synth NDJSON ~{n_nd:,}"] = (nd, n_nd)
        pg_reason = _util.pg_available()
        for label, (folder, _n) in inputs.items():
            load = os.getloadavg()[0]
            res = {}
            if "a" in cases:
                res["a"] = _run_child("parse", folder)
            if "b1" in cases:
                res["b1"] = _run_child("validate", folder, workers=1)
            res["b"] = _run_child("validate", folder, workers=workers)
            if "c_duck" in cases:
                res["c_duck"] = _run_child("load", folder, _init_duckdb(tmp / f"{folder.name}.duckdb"), workers)
            if pg_reason is None and "c_pg" in cases:
                with _util.pg_database() as url:
                    import sqlalchemy as sa

                    from l059_omop.db.api import init_db

                    e = sa.create_engine(url)
                    init_db(e)
                    e.dispose()
                    res["c_pg"] = _run_child("load", folder, url, workers)
            if "c_order" in cases and label.startswith("synth NDJSON"):
                res["c_order"] = _run_child("load", _against_the_loader(folder, tmp / "order"),
                                            _init_duckdb(tmp / "order.duckdb"), workers)
            b_rate = res["b"]["n"] / res["b"]["seconds"]
            for key, case, target, okf in (
                    ("a", "(a) JSON parse, 1 process", None, None),
                    ("b1", "(b) parse + R4B validation, 1 process", None, None),
                    ("b", f"(b) parse + R4B validation, {workers} processes", None, None),
                    ("c_duck", f"(c) load-fhir -> DuckDB, {workers} workers",
                     ">= 5,000/s; >= 70% of (b); < 1 GB",
                     lambda r, b=b_rate: r >= 5000 and r >= 0.7 * b),
                    ("c_pg", f"(c) load-fhir -> PostgreSQL, {workers} workers", ">= 70% of (b); < 1 GB",
                     lambda r, b=b_rate: r >= 0.7 * b),
                    ("c_order", f"(c) DuckDB, input against the loader's order, {workers} workers", "< 1 GB",
                     lambda r: True)):
                if key == "c_order" and not label.startswith("synth NDJSON"):
                    continue
                if key not in res:
                    why = pg_reason if key == "c_pg" and pg_reason else "not selected (L059_BENCH_FHIR_CASES)"
                    rows.append({"case": f"{label}: {case}", "note": f"skipped: {why}"})
                    continue
                r = res[key]
                rate = _util.rows_per_s(r["n"], r["seconds"])
                ok = None if okf is None else bool(okf(rate) and r["peak_mb"] < 1024)
                note = f"load avg {load:.1f}->{os.getloadavg()[0]:.1f}; CPU {r['cpu_s']:.0f} s " \
                       f"({r['cpu_s'] / max(r['n'], 1) * 1e6:.0f} us/resource)"
                if key.startswith("c"):
                    note += f"; {rate / b_rate:.0%} of (b) on {workers} cores, " \
                            f"{res['b']['cpu_s'] / r['cpu_s']:.0%} by CPU"
                rows.append({"case": f"{label}: {case}", "rows": r["n"], "seconds": r["seconds"],
                             "rows_per_s": rate, "peak_mb": r["peak_mb"], "target": target, "ok": ok,
                             "note": note})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], None if sys.argv[4] == "-" else sys.argv[4], int(sys.argv[5]))
    else:
        for row in run("--quick" in sys.argv):
            print(row)
