"""Helpers of the reliability tests: order-independent table checksums and the CLI as a subprocess."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import sqlalchemy as sa

from l059_omop.db import cdm_spec

CLI = [sys.executable, "-m", "l059_omop.cli"]
CDM_TABLES = list(cdm_spec.tables())
# etl bookkeeping compared between runs; run_id columns name the run that wrote a row, not its content
ETL_TABLES = {"source_id_map": ("run_id",), "source_resource": ("run_id",)}


# ----------------------------------------------------------------- checks
def _norm(v) -> str:
    if isinstance(v, float):
        return repr(round(v, 9))
    return "\x00" if v is None else str(v)


def table_checksums(url_or_engine, etl: bool = True, schemas: tuple[str, str] = ("cdm", "etl"),
                    etl_skip: dict | None = None) -> dict:
    """Per table: (row count, order-independent hash of all rows) — the sum mod 2**64 of each row's sha256,
    so equal multisets of rows give equal checksums whatever the physical order."""
    engine = sa.create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    cdm, etl_schema = schemas
    out: dict[str, tuple[int, int]] = {}
    try:
        with engine.connect() as con:
            targets = [(f"{cdm}.{t}", ()) for t in CDM_TABLES]
            if etl:
                targets += [(f"{etl_schema}.{t}", skip) for t, skip in (etl_skip or ETL_TABLES).items()]
            for name, skip in targets:
                res = con.execute(sa.text(f"select * from {name}"))
                keep = [i for i, c in enumerate(res.keys()) if c not in skip]
                total, n = 0, 0
                for row in res:
                    h = hashlib.sha256("\x1f".join(_norm(row[i]) for i in keep).encode("utf-8", "surrogatepass"))
                    total = (total + int.from_bytes(h.digest()[:8], "big")) % 2**64
                    n += 1
                out[name] = (n, total)
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()
    return out


def diff_checksums(a: dict, b: dict) -> list[str]:
    return [f"{t}: {a.get(t)} != {b.get(t)}" for t in sorted(set(a) | set(b)) if a.get(t) != b.get(t)]


def cli(*args: str, env: dict | None = None, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run ``l059-omop ARGS`` in a subprocess; text output."""
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, **kw)


def popen(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def assert_one_line_error(proc: subprocess.CompletedProcess) -> None:
    """DESIGN §2: no traceback escapes; an error is at most one line on stderr."""
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) <= 1, proc.stderr[-3000:]
