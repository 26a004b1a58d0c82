"""Shared helpers for the benchmarks: timing, peak memory of a child process, PostgreSQL scratch databases.

Peak memory is measured on a child process (``os.wait4`` returns that child's own rusage), so the number
is the loader's, not the benchmark driver's or an earlier case's. For PostgreSQL it is the client's memory;
the server's is its own configuration (shared_buffers, work_mem).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_ADMIN_URL = os.environ.get("L059_BENCH_PG_URL",
                              os.environ.get("L059_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
REPO = Path(__file__).resolve().parents[1]


@dataclass
class ChildResult:
    returncode: int
    seconds: float
    peak_mb: float
    stdout: str
    stderr: str
    cpu_seconds: float = 0.0  # the child's user + system CPU time (not a database server's)


def run_child(args: list[str], env: dict[str, str] | None = None) -> ChildResult:
    """Run ``args`` as a child process; wall time and the child's own peak RSS in MB (``os.wait4``)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            open(os.devnull, "rb") as devnull:
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdin=devnull, stdout=out, stderr=err, text=True,
                                env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildResult(proc.returncode, seconds, usage.ru_maxrss / 1024.0, out.read(), err.read(),
                           usage.ru_utime + usage.ru_stime)


def cli_args(*args: str) -> list[str]:
    """The ``l059-omop`` command line run by the current interpreter."""
    return [sys.executable, "-m", "l059_omop.cli", *args]


def rows_per_s(rows: int, seconds: float) -> float:
    return rows / seconds if seconds > 0 else float("inf")


@contextlib.contextmanager
def timer() -> Iterator[dict]:
    out: dict = {}
    start = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - start


def pg_available() -> str | None:
    """None when the PostgreSQL admin URL answers, else the reason."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(PG_ADMIN_URL)
        with engine.connect() as con:
            con.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"PostgreSQL not reachable ({type(exc).__name__})"


@contextlib.contextmanager
def pg_database(prefix: str = "l059_bench") -> Iterator[str]:
    """A throw-away PostgreSQL database; yields its URL and drops it afterwards."""
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as con:
        con.execute(sa.text(f'create database "{name}"'))
    try:
        yield sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as con:
            con.execute(sa.text("select pg_terminate_backend(pid) from pg_stat_activity "
                                "where datname = :n and pid <> pg_backend_pid()"), {"n": name})
            con.execute(sa.text(f'drop database if exists "{name}"'))
        admin.dispose()


def median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    if not n:
        return float("nan")
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
