"""The loads a database has seen (etl.load_run), and the end of those that never ended.

A load killed outright (SIGKILL, power loss) leaves its row 'running' for good: its batches are committed
or rolled back, and the next load recomputes the persons it touched, but the row would still say running.
``close_stale`` marks such rows 'interrupted', and only those whose run is certainly not live: on
PostgreSQL a live run holds a session advisory lock (the server drops it with the process); a DuckDB file is
held by one writing process, so whoever can write it is alone and every 'running' row is stale."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from l059_omop.db.engine import dialect_of
from l059_omop.db.schema import validate_identifier
from l059_omop.etl.sink import live_lock_keys, live_run_objects, require_initialised

INTERRUPTED = "interrupted"
_COLUMNS = ["run_id", "kind", "status", "started_at", "finished_at", "read", "mapped", "quarantined", "skipped",
            "source"]


def list_runs(engine: Engine, etl_schema: str = "etl", cdm_schema: str = "cdm", limit: int | None = None
              ) -> pd.DataFrame:
    """The runs, newest first, with the totals of their reports (none for a run that never ended)."""
    etl = validate_identifier(etl_schema)
    require_initialised(engine, validate_identifier(cdm_schema), etl)
    q = sa.text(f"select run_id, kind, status, started_at, finished_at, source, counts_json from {etl}.load_run "
                "order by started_at desc, run_id desc" + (" limit :n" if limit else ""))
    with engine.connect() as con:
        rows = con.execute(q, {"n": int(limit)} if limit else {}).all()
    out = []
    for run_id, kind, status, started, finished, source, counts in rows:
        totals = _totals(counts)
        out.append({"run_id": run_id, "kind": kind, "status": status, "started_at": started,
                    "finished_at": finished, **totals, "source": source})
    df = pd.DataFrame(out, columns=_COLUMNS)
    for c in ("read", "mapped", "quarantined", "skipped"):
        df[c] = df[c].astype("Int64")
    return df


def _totals(counts_json: str | None) -> dict[str, int | None]:
    try:
        t = json.loads(counts_json)["totals"] if counts_json else {}
    except (ValueError, KeyError, TypeError):
        t = {}
    return {k: t.get(k) for k in ("read", "mapped", "quarantined", "skipped")}


def close_stale(engine: Engine, etl_schema: str = "etl", cdm_schema: str = "cdm") -> list[str]:
    """Mark 'running' rows of runs that are not live 'interrupted' (finished_at now); their run ids."""
    etl = validate_identifier(etl_schema)
    require_initialised(engine, validate_identifier(cdm_schema), etl)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    with engine.begin() as con:
        running = [r for (r,) in con.execute(sa.text(f"select run_id from {etl}.load_run where status = 'running'"))]
        if dialect_of(engine) == "postgresql" and running:
            live = live_run_objects(con, etl)
            running = [r for r in running if live_lock_keys(etl, r)[1] not in live]
        for run_id in running:
            con.execute(sa.text(f"update {etl}.load_run set status = :s, finished_at = :t where run_id = :r "
                                "and status = 'running'"), {"s": INTERRUPTED, "t": now, "r": run_id})
    return running
