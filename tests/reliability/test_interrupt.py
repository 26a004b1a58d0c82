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
import time

import pytest
import sqlalchemy as sa

from tests.reliability.helpers import cli, diff_checksums, popen, table_checksums

KILLS = int(os.environ.get("L059_RELIABILITY_KILLS", "4"))
LOAD_ARGS = ["--batch-size", "40", "--workers", "1"]
PATIENTS = 10
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


def _interrupted_load(url: str, src, rng: random.Random, duration: float, total: int, poll: bool) -> dict:
    """Kill loads until KILLS kills landed inside a run (its load_run row says 'running'), then finish."""
    kills, fractions, attempts = 0, [], 0
    while kills < KILLS and attempts < 3 * KILLS:
        attempts += 1
        running0 = _running(url)
        proc = popen("--db", url, "load-fhir", str(src), *LOAD_ARGS)
        try:
            left = total - _committed(url) if poll else 0
            if left > 0:  # a random part of what is left committed, then the kill
                _wait_progress(proc, url, max(1, int(rng.uniform(0.0, 1.0) * left)), time.monotonic() + 4 * duration)
            elif poll:  # all records in: kill during the final observation-period transaction or earlier
                proc.wait(timeout=rng.uniform(0.5, 1.0) * duration)
            else:
                proc.wait(timeout=rng.uniform(0.4, 1.0) * duration)
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
    final = cli("--db", url, "load-fhir", str(src), *LOAD_ARGS)
    assert final.returncode in (0, 3), final.stderr
    assert "Traceback" not in final.stderr
    return {"kills": kills, "attempts": attempts, "committed_at_kill": fractions}


def _run(make_url, synth_fhir, seed: int, label: str, tmp_path, poll: bool = False) -> None:
    src = tmp_path / "input"
    src.mkdir()
    for f in sorted((synth_fhir / "bundles").rglob("*.json"))[:PATIENTS]:
        shutil.copyfile(f, src / f.name)
    ref_url = make_url()
    t0 = time.monotonic()
    ref = cli("--db", ref_url, "load-fhir", str(src), *LOAD_ARGS)
    duration = time.monotonic() - t0
    assert ref.returncode in (0, 3), ref.stderr
    want = table_checksums(ref_url)
    total = _committed(ref_url)
    assert total > 500 and want["cdm.person"][0] == PATIENTS

    url = make_url()
    figures = _interrupted_load(url, src, random.Random(seed), duration, total, poll)
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
    FIGURES[label] = {**figures, "records": total, "load_seconds": round(duration, 1)}
    print(f"\n{label}: {FIGURES[label]}")
    assert figures["kills"] >= min(2, KILLS)


@pytest.mark.slow
def test_sigkill_and_rerun_duckdb(duckdb_template, tmp_path, synth_fhir):
    n = iter(range(100))

    def make() -> str:
        path = tmp_path / f"db{next(n)}.duckdb"
        shutil.copyfile(duckdb_template, path)
        return f"duckdb:///{path}"

    _run(make, synth_fhir, 1, "duckdb", tmp_path)


@pytest.mark.slow
@pytest.mark.postgres
def test_sigkill_and_rerun_postgresql(pg_cdm_factory, synth_fhir, tmp_path):
    _run(pg_cdm_factory, synth_fhir, 2, "postgresql", tmp_path, poll=True)
