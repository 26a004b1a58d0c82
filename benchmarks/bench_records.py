"""Benchmark: ``l059-omop load-records`` source rows per second into DuckDB and PostgreSQL.

Input: ``synth --format records`` extracts (the files ``mappings/records/synth_site.yaml`` reads: patients,
diagnoses, staging, drug orders with dose text, infusions, labs with units and reference ranges, ECOG,
imaging responses in three languages, radiotherapy, adverse events, follow-up), about 67 rows a patient,
so 1,000,000 source rows are ~15,000 patients. The load runs in a child process, so wall time, CPU time
and peak RSS are the command's own; "memory flat" compares peak RSS at two sizes. On a shared machine
wall time depends on the other load: cpu_s (user + sys of the child) is the stabler figure; the note gives
every run's wall and CPU time and the load average. ``L059_BENCH_REPEAT=N`` repeats each load (medians).
Target (issue 5): >= 50,000 source rows/s into DuckDB at 1,000,000 rows (quick: 20,000 rows).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

try:
    from benchmarks import _util
except ImportError:  # run as a script from benchmarks/
    import _util  # type: ignore[no-redef]

ROWS_PER_PATIENT = 67  # synth records: ~67 extract rows per patient (infusions dominate)
FULL_ROWS = 1_000_000
QUICK_ROWS = 20_000
TARGET_ROWS_PER_S = {"duckdb": 50_000}


def generate(dest: Path, rows: int, seed: int = 5) -> int:
    """``synth --format records`` with enough patients for about ``rows`` source rows; returns the count."""
    from l059_omop.synth import generate as synth

    patients = max(1, round(rows / ROWS_PER_PATIENT))
    synth(patients, "records", dest, seed=seed)
    n = 0
    for f in dest.glob("*.csv"):
        if f.name != "truth.csv":
            with f.open("rb") as fh:
                n += sum(1 for _ in fh) - 1
    return n


def _repeats() -> int:
    try:
        return max(1, int(os.environ.get("L059_BENCH_REPEAT", "1")))
    except ValueError:
        return 1


def _case(backend: str, url_factory, folder: Path, rows: int, with_target: bool = True) -> dict:
    """``repeat`` loads into fresh databases; medians of wall and CPU time, the largest peak RSS."""
    walls, cpus, peaks, loads = [], [], [], []
    code, err = 0, ""
    for _ in range(_repeats()):
        with url_factory() as url:
            init = _util.run_child(_util.cli_args("--db", url, "-q", "init-db"))
            if init.returncode != 0:
                return {"area": "records", "case": f"load-records {backend}", "rows": rows,
                        "error": init.stderr[-300:]}
            load0 = os.getloadavg()[0]
            res = _util.run_child(_util.cli_args("--db", url, "-q", "load-records", "--mapping", "synth_site",
                                                 str(folder)))
            loads += [load0, os.getloadavg()[0]]
        code, err = max(code, res.returncode), res.stderr
        walls.append(res.seconds)
        cpus.append(res.cpu_seconds)
        peaks.append(res.peak_mb)
    wall, cpu = _util.median(walls), _util.median(cpus)
    rate = _util.rows_per_s(rows, wall)
    row = {"area": "records", "case": f"load-records {backend}", "rows": rows, "seconds": round(wall, 2),
           "rows_per_s": round(rate), "peak_mb": round(max(peaks)), "cpu_s": round(cpu, 2),
           "note": f"{len(walls)} run(s), wall {', '.join(f'{w:.1f}' for w in walls)} s; CPU (user+sys of the "
                   f"loader) {', '.join(f'{c:.1f}' for c in cpus)} s = {_util.rows_per_s(rows, cpu):,.0f} rows per "
                   f"CPU-s; load average {min(loads):.1f}-{max(loads):.1f}; exit {code}"}
    if backend in TARGET_ROWS_PER_S and with_target:  # the target is at the full size
        row["target"] = f">= {TARGET_ROWS_PER_S[backend]:,} rows/s"
        row["ok"] = code == 0 and rate >= TARGET_ROWS_PER_S[backend]
    if code != 0:
        row["error"] = err.strip().splitlines()[-1][:300] if err.strip() else ""
    return row


def run(quick: bool) -> list[dict]:
    sizes = [QUICK_ROWS] if quick else [FULL_ROWS // 5, FULL_ROWS]
    out: list[dict] = []
    tmp = Path(tempfile.mkdtemp(prefix="l059_bench_records_"))
    try:
        for n in sizes:
            folder = tmp / f"x{n}"
            rows = generate(folder, n)

            @contextlib.contextmanager
            def duck(n=n):
                db = tmp / f"bench{n}.duckdb"
                try:
                    yield f"duckdb:///{db}"
                finally:
                    for f in tmp.glob(f"bench{n}.duckdb*"):
                        f.unlink(missing_ok=True)

            out.append(_case("duckdb", duck, folder, rows, with_target=n == sizes[-1]))
            reason = _util.pg_available()
            if reason:
                out.append({"area": "records", "case": "load-records postgresql", "rows": rows, "skipped": reason})
            else:
                out.append(_case("postgresql", _util.pg_database, folder, rows))
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if len(sizes) > 1:
        small, big = [r for r in out if r.get("case") == "load-records duckdb" and "peak_mb" in r][:2] or [{}, {}]
        if small and big:
            out.append({"area": "records", "case": "memory flat (duckdb peak MB, 200k vs 1M rows)",
                        "rows": big.get("rows"), "peak_mb": big.get("peak_mb"),
                        "target": f"<= 1.5 x {small.get('peak_mb')} MB + 100",
                        "ok": big.get("peak_mb", 0) <= 1.5 * small.get("peak_mb", 1) + 100})
    return out


if __name__ == "__main__":
    import sys

    for r in run("--quick" in sys.argv):
        print(r)
