"""Interruption: ``l059-omop load-fhir`` killed with SIGKILL at random points, then re-run, leaves the database
identical (per-table order-independent checksums of every CDM table and of etl.source_id_map /
etl.source_resource) to one uninterrupted load — on DuckDB and on PostgreSQL.

Small batches (``--batch-size 40``) make a load many transactions, so most kills land between commits of
a half-done load; each kill is followed by a restart that is itself killed, until one runs to the end.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.reliability.helpers import cli, diff_checksums, popen, table_checksums

KILLS = int(os.environ.get("L059_RELIABILITY_KILLS", "3"))
LOAD_ARGS = ["--batch-size", "40", "--workers", "1"]
PATIENTS = 10
STARTUP = 0.0  # seconds until a load process has imported its modules (measured)
FIGURES: dict[str, dict] = {}


def _committed(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as con:
            return con.execute(sa.text("select count(*) from etl.source_resource")).scalar_one()
    finally:
        engine.dispose()


def _running(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as con:
            return con.execute(sa.text("select count(*) from etl.load_run where status = 'running'")).scalar_one()
    finally:
        engine.dispose()


def _wait_progress(proc, url: str, need: int, deadline: float) -> None:
    """PostgreSQL: poll the committed records; return once ``need`` more than at the start are in."""
    engine = sa.create_engine(url)
    q = sa.text("select count(*) from etl.source_resource")
    try:
        with engine.connect() as con:
            start = con.execute(q).scalar_one()
            con.commit()
            while proc.poll() is None and time.monotonic() < deadline:
                done = con.execute(q).scalar_one()
                con.commit()
                if done - start >= need:
                    return
                time.sleep(0.01)
    finally:
        engine.dispose()


def _interrupted_load(url: str, cmd: list[str], rng: random.Random, duration: float, total: int, poll: bool) -> dict:
    """Kill loads until KILLS kills landed inside a run (its load_run row says 'running'), then finish."""
    kills, fractions, attempts = 0, [], 0
    while kills < KILLS and attempts < 2 * KILLS + 2:
        attempts += 1
        running0 = _running(url)
        proc = popen("--db", url, *cmd)
        try:
            left = total - _committed(url) if poll else 0
            if left > 0:  # a random part of what is left committed, then the kill
                _wait_progress(proc, url, max(1, int(rng.uniform(0.0, 0.6) * left)), time.monotonic() + 4 * duration)
            elif poll:  # all records in: kill during the final observation-period transaction or earlier
                proc.wait(timeout=rng.uniform(0.5, 1.0) * duration)
            else:  # DuckDB: once the run writes (its WAL changes), somewhere in the load
                began = time.time()
                wal = Path(url.removeprefix("duckdb:///") + ".wal")
                deadline = time.monotonic() + 4 * duration
                while proc.poll() is None and time.monotonic() < deadline and not (
                        wal.exists() and wal.stat().st_mtime > began + 0.3):
                    time.sleep(0.01)
                proc.wait(timeout=rng.uniform(0.0, 0.8) * max(0.1, duration - STARTUP))
        except subprocess.TimeoutExpired:
            pass
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        if proc.returncode == -signal.SIGKILL and _running(url) > running0:
            kills += 1
            fractions.append(round(_committed(url) / total, 2))
    final = cli("--db", url, *cmd)
    assert final.returncode in (0, 3), final.stderr
    assert "Traceback" not in final.stderr
    return {"kills": kills, "attempts": attempts, "committed_at_kill": fractions}


def _fhir_cmd(synth_fhir, tmp_path) -> list[str]:
    src = tmp_path / "input"
    src.mkdir()
    for f in sorted((synth_fhir / "bundles").rglob("*.json"))[:PATIENTS]:
        shutil.copyfile(f, src / f.name)
    return ["load-fhir", str(src), *LOAD_ARGS]


def _run(make_url, cmd: list[str], seed: int, label: str, persons: int = PATIENTS, poll: bool = False) -> None:
    global STARTUP
    t0 = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", "import l059_omop.cli, l059_omop.etl.fhir.load, l059_omop.records.loader"], check=True)
    STARTUP = time.monotonic() - t0
    ref_url = make_url()
    t0 = time.monotonic()
    ref = cli("--db", ref_url, *cmd)
    duration = time.monotonic() - t0
    assert ref.returncode in (0, 3), ref.stderr
    want = table_checksums(ref_url)
    total = _committed(ref_url)
    assert total > 50 and want["cdm.person"][0] == persons

    url = make_url()
    figures = _interrupted_load(url, cmd, random.Random(seed), duration, total, poll)
    got = table_checksums(url)
    assert not diff_checksums(want, got), diff_checksums(want, got)
    # the killed runs' records stay, marked as not finished; the bookkeeping of unfinished runs is emptied
    engine = sa.create_engine(url)
    with engine.connect() as con:
        statuses = [r[0] for r in con.execute(sa.text("select status from etl.load_run"))]
        leftover = con.execute(sa.text("select count(*) from etl.touched_person")).scalar_one()
    engine.dispose()
    # a SIGKILLed run cannot say more than 'running' (a kill during start-up leaves no run at all)
    assert statuses.count("running") == figures["kills"] and any(s.startswith("loaded") for s in statuses)
    assert leftover == 0
    # `runs --close-stale` ends exactly the killed runs' rows: no run is live any more
    closed = cli("--db", url, "runs", "--close-stale")
    assert closed.returncode == 0, closed.stderr
    assert f"marked {figures['kills']} run(s) interrupted" in closed.stdout
    engine = sa.create_engine(url)
    with engine.connect() as con:
        after = [r[0] for r in con.execute(sa.text("select status from etl.load_run"))]
    engine.dispose()
    assert after.count("interrupted") == figures["kills"] and "running" not in after
    FIGURES[label] = {**figures, "records": total, "load_seconds": round(duration, 1)}
    print(f"\n{label}: {FIGURES[label]}")
    assert figures["kills"] >= 1  # at least one kill inside a run, or the test proved nothing


def _duck_factory(duckdb_template, tmp_path):
    n = iter(range(100))

    def make() -> str:
        path = tmp_path / f"db{next(n)}.duckdb"
        shutil.copyfile(duckdb_template, path)
        return f"duckdb:///{path}"

    return make


@pytest.mark.slow
def test_sigkill_and_rerun_duckdb(duckdb_template, tmp_path, synth_fhir):
    _run(_duck_factory(duckdb_template, tmp_path), _fhir_cmd(synth_fhir, tmp_path), 1, "duckdb")


@pytest.mark.slow
def test_sigkill_and_rerun_records_duckdb(duckdb_template, tmp_path, synth_records):
    """load-records through the same sink: 8 patients' extracts, 60 rows a transaction."""
    cmd = ["load-records", "--mapping", "synth_site", str(synth_records), "--chunk-rows", "60"]
    _run(_duck_factory(duckdb_template, tmp_path), cmd, 3, "records-duckdb", persons=8)


@pytest.mark.slow
@pytest.mark.postgres
def test_sigkill_and_rerun_postgresql(pg_cdm_factory, synth_fhir, tmp_path):
    _run(pg_cdm_factory, _fhir_cmd(synth_fhir, tmp_path), 2, "postgresql", poll=True)


@pytest.mark.slow
@pytest.mark.postgres
def test_sigkill_and_rerun_records_postgresql(pg_cdm_factory, synth_records):
    cmd = ["load-records", "--mapping", "synth_site", str(synth_records), "--chunk-rows", "60"]
    _run(pg_cdm_factory, cmd, 4, "records-postgresql", persons=8, poll=True)
