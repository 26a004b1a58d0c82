"""Bulk writes through each database's fast path: DuckDB's vectorised insert from Arrow/pandas and
read_csv, PostgreSQL's COPY. Table and schema names come from the CDM specification or are validated."""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from l059_omop.db.engine import dialect_of, validate_identifier

log = logging.getLogger(__name__)

# DuckDB checkpoints (writes the changed tables and their primary-key indexes into the file) whenever its
# WAL passes checkpoint_threshold, 16 MB by default: every batch or two of a loader, each time rewriting the
# growing CDM primary-key indexes (load-records: 5 more CPU-s per million rows than 128 MB; 512 MB saves
# 2.5 more but peaks at ~1 GB). A load raises the threshold and checkpoints once at the end.
DUCKDB_LOAD_CHECKPOINT = "128MB"
# DuckDB's buffer pool during a load (its default is 80 % of the machine's memory, and it keeps what a load
# writes cached: at 3,000,000 FHIR resources the loading process peaked at 827-842 MB, 652 MB with 300 MB
# here); only DuckDB's default is lowered, and restored after. Beyond it DuckDB spills to disk.
DUCKDB_LOAD_MEMORY = "300MB"
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20,
          "gib": 2**30, "tib": 2**40}


def _size_bytes(text: str) -> float | None:
    """'18.6 GiB' -> bytes (DuckDB's size settings), None when not a size."""
    m = re.fullmatch(r"([0-9.]+) ?([A-Za-z]*)", str(text).strip())
    if not m or m.group(2).lower() not in _UNITS:
        return None
    return float(m.group(1)) * _UNITS[m.group(2).lower()]


def _duckdb_default_memory() -> str:
    """DuckDB's default memory_limit on this machine, as it shows it (a fresh in-memory database's)."""
    import duckdb

    with duckdb.connect(":memory:") as con:
        return con.execute("select current_setting('memory_limit')").fetchone()[0]


def _qualified(schema: str, table: str) -> str:
    return f"{validate_identifier(schema)}.{validate_identifier(table, 'table name')}"


def quote_columns(columns) -> str:
    """A column list with each (validated) name double-quoted: the CDM has a column named offset, a
    reserved word in PostgreSQL and DuckDB."""
    return ", ".join(f'"{validate_identifier(c, "column name")}"' for c in columns)


@contextmanager
def duckdb_load_settings(engine: Engine, *, threads: int | None = None) -> Iterator[Callable[[], None]]:
    """DuckDB, for a load: a higher checkpoint threshold, DuckDB's default memory limit capped
    (DUCKDB_LOAD_MEMORY) and, with ``threads``, at most that many DuckDB threads while batches are written (the
    callable yielded gives every thread back, for the work that then runs alone; the memory cap stays to the
    exit); all restored after, then one checkpoint. Other databases: nothing."""
    if dialect_of(engine) != "duckdb":
        yield lambda: None
        return
    with engine.connect() as con:
        old = con.execute(sa.text("select current_setting('checkpoint_threshold')")).scalar()
        all_of_them = int(con.execute(sa.text("select current_setting('threads')")).scalar())
        con.execute(sa.text(f"set global checkpoint_threshold = '{DUCKDB_LOAD_CHECKPOINT}'"))
        # only DuckDB's own default is lowered (a limit someone set is theirs), and RESET brings it back exactly
        # (DuckDB shows sizes rounded: setting the shown value back would drift)
        old_memory = con.execute(sa.text("select current_setting('memory_limit')")).scalar()
        old_bytes = _size_bytes(old_memory)
        lower_memory = (old_memory == _duckdb_default_memory() and old_bytes is not None
                        and old_bytes > _size_bytes(DUCKDB_LOAD_MEMORY))
        if lower_memory:
            con.execute(sa.text(f"set global memory_limit = '{DUCKDB_LOAD_MEMORY}'"))
        if threads is not None:
            con.execute(sa.text(f"set global threads = {max(1, min(int(threads), all_of_them))}"))
        con.commit()

    state = {"given_back": False}

    def every_thread() -> None:
        """Every thread back, for the work that runs alone at the end (the memory cap stays until the exit:
        the run's final queries spill within it)."""
        if state["given_back"]:
            return
        state["given_back"] = True
        if threads is not None:
            with engine.connect() as con:
                con.execute(sa.text(f"set global threads = {all_of_them}"))
                con.commit()

    try:
        yield every_thread
    finally:
        every_thread()
        with engine.connect() as con:
            if lower_memory:
                con.execute(sa.text("reset global memory_limit"))
                con.commit()
            if re.fullmatch(r"[0-9.]+ ?[A-Za-z]*", str(old)):
                con.execute(sa.text(f"set global checkpoint_threshold = '{old}'"))
                con.commit()
            try:
                con.execute(sa.text("checkpoint"))
                con.commit()
            except Exception:  # noqa: BLE001 - another open transaction: DuckDB checkpoints later by itself
                con.rollback()
                log.debug("checkpoint after the load deferred", exc_info=True)


def _driver(con: Connection):
    return con.connection.driver_connection


def insert_frame(con: Connection, schema: str, table: str, df: pd.DataFrame) -> int:
    """Append a DataFrame (columns named as the table's) inside the caller's transaction."""
    if df.empty:
        return 0
    cols = [validate_identifier(c, "column name") for c in df.columns]
    target = _qualified(schema, table)
    if con.dialect.name == "duckdb":
        raw = _driver(con)
        view = "_l059_bulk_frame"
        raw.register(view, df)
        try:
            raw.execute(f"insert into {target} ({quote_columns(cols)}) select {quote_columns(cols)} from {view}")
        finally:
            raw.unregister(view)
    else:
        raw = _driver(con)
        buf = io.StringIO()
        df.to_csv(buf, index=False, header=False, na_rep="\\N", quoting=csv.QUOTE_MINIMAL,
                  date_format="%Y-%m-%d %H:%M:%S")
        buf.seek(0)
        with raw.cursor() as cur:
            with cur.copy(f"copy {target} ({quote_columns(cols)}) from stdin with (format csv, null '\\N')") as cp:
                while chunk := buf.read(1 << 20):
                    cp.write(chunk)
    return len(df)


def copy_athena_file(engine: Engine, schema: str, table: str, path: Path, columns: list[str],
                     types: dict[str, str], progress: Callable[[int], None] | None = None) -> int:
    """Load one Athena TSV (header, no quoting, dates YYYYMMDD) into ``schema.table`` by the bulk path."""
    target = _qualified(schema, table)
    if dialect_of(engine) == "duckdb":
        spec = "{" + ", ".join(f"'{c}': '{types[c]}'" for c in columns) + "}"
        with engine.begin() as con:
            raw = _driver(con)
            before = raw.execute(f"select count(*) from {target}").fetchone()[0]
            raw.execute(
                f"insert into {target} ({quote_columns(columns)}) select {quote_columns(columns)} from read_csv(?, "
                f"delim='\t', header=true, quote='', escape='', dateformat='%Y%m%d', columns={spec}, "
                "auto_detect=false, strict_mode=false)", [str(path)])
            after = raw.execute(f"select count(*) from {target}").fetchone()[0]
        if progress:
            progress(path.stat().st_size)
        return after - before
    n = 0
    with engine.begin() as con:
        raw = _driver(con)
        with raw.cursor() as cur, path.open("rb") as fh:
            fh.readline()  # header
            sql = (f"copy {target} ({quote_columns(columns)}) from stdin with "
                   "(format csv, delimiter E'\\t', quote E'\\b', null '')")
            with cur.copy(sql) as cp:
                while block := fh.read(1 << 22):
                    cp.write(block)
                    if progress:
                        progress(len(block))
            n = cur.rowcount
    return n


def count_rows(con: Connection, schema: str, table: str) -> int:
    return con.execute(sa.text(f"select count(*) from {_qualified(schema, table)}")).scalar_one()


def insert_frames(engine: Engine, schema: str, frames: Iterable[tuple[str, pd.DataFrame]]) -> dict[str, int]:
    """Insert several tables' frames in one transaction."""
    out: dict[str, int] = {}
    with engine.begin() as con:
        for table, df in frames:
            out[table] = out.get(table, 0) + insert_frame(con, schema, table, df)
    return out
