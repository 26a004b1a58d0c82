"""Benchmark: ``l059-omop synth`` patients per second per format and peak memory (issue 3).

Each case runs the command in a child process (wall time; peak RSS of the process tree's largest member,
from ``os.wait4``) at 100,000 patients (quick: 2,000), and the omop and fhir cases again at a tenth of that
to show memory flat in N. Targets: >= 2,000 patients/s omop, >= 500 patients/s fhir, peak memory at N
within 1.5x (+50 MB) of the peak at N/10.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

try:
    from benchmarks import _util
except ImportError:  # run as a script from benchmarks/
    import _util  # type: ignore[no-redef]

TARGETS = {"omop": 2000, "omop --db duckdb": 2000, "fhir": 500, "fhir --ndjson": 500, "records": None}


@dataclass
class _Run:
    returncode: int
    seconds: float
    cpu_seconds: float
    peak_mb: float
    stderr: str


def _run(args: list[str]) -> _Run:
    """Like ``_util.run_child``, plus the CPU time of the child and its reaped workers (load-independent)."""
    with tempfile.TemporaryFile("w+") as err, open(os.devnull, "rb") as devnull, open(os.devnull, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdin=devnull, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        err.seek(0)
        return _Run(os.waitstatus_to_exitcode(status), seconds, usage.ru_utime + usage.ru_stime,
                    usage.ru_maxrss / 1024.0, err.read())


def _case(tmp: Path, fmt: str, n: int) -> _Run:
    out = tmp / f"{fmt.replace(' ', '_').replace('-', '')}_{n}"
    args = ["synth", "--patients", str(n), "--format", fmt.split()[0], "--out", str(out), "--seed", "1"]
    if "--ndjson" in fmt:
        args.append("--ndjson")
    if "--db" in fmt:
        url = f"duckdb:///{tmp / f'synth_{n}.duckdb'}"
        init = _util.run_child(_util.cli_args("--db", url, "init-db"))
        if init.returncode:
            raise RuntimeError(f"init-db failed: {init.stderr[-500:]}")
        args += ["--db", url]
    res = _run(_util.cli_args("-q", *args))
    if res.returncode:
        raise RuntimeError(f"synth {fmt} failed: {res.stderr[-800:]}")
    shutil.rmtree(out, ignore_errors=True)
    return res


def run(quick: bool = False) -> list[dict]:
    n = 2_000 if quick else 100_000
    small = n // 10
    tmp = Path(tempfile.mkdtemp(prefix="l059_bench_synth_"))
    rows: list[dict] = []
    try:
        for fmt, target in TARGETS.items():
            big = _case(tmp, fmt, n)
            rate = _util.rows_per_s(n, big.seconds)
            note = f"{n / big.cpu_seconds:,.0f} patients per CPU-second"
            flat = True
            if fmt in ("omop", "fhir"):
                lit = _case(tmp, fmt, small)
                flat = big.peak_mb <= 1.5 * lit.peak_mb + 50
                note += f"; peak {lit.peak_mb:.0f} MB at {small:,} patients"
            ok = (target is None or rate >= target) and flat
            rows.append({"case": f"synth {fmt}", "rows": n, "seconds": big.seconds, "rows_per_s": rate,
                         "peak_mb": big.peak_mb,
                         "target": (f">= {target:,} patients/s, " if target else "") + "memory flat in N",
                         "ok": ok, "note": note})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows
