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

KILLS = int(os.environ.get("L059_RELIABILITY_KILLS", "3"))
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


def _interrupted_load(url: str, src, rng: random.Random, duration: float, total: int) -> dict:
    kills, mid, fractions = 0, 0, []
    for _ in range(KILLS):
        proc = popen("--db", url, "load-fhir", str(src), *LOAD_ARGS)
        delay = rng.uniform(0.25, 1.0) * duration
        try:
            proc.wait(timeout=delay)  # it finished first: nothing to kill this round
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            done = _committed(url)
            fractions.append(round(done / total, 2))
            if 0 < done < total:
                mid += 1
        finally:
            proc.stdout.close()
            proc.stderr.close()
    final = cli("--db", url, "load-fhir", str(src), *LOAD_ARGS)
    assert final.returncode in (0, 3), final.stderr
    assert "Traceback" not in final.stderr
    return {"kills": kills, "mid_load": mid, "committed_at_kill": fractions}


def _run(make_url, synth_fhir, seed: int, label: str, tmp_path) -> None:
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
    figures = _interrupted_load(url, src, random.Random(seed), duration, total)
    got = table_checksums(url)
    assert not diff_checksums(want, got), diff_checksums(want, got)
    # the killed runs' records stay, marked as not finished; the bookkeeping of unfinished runs is emptied
    engine = sa.create_engine(url)
    with engine.connect() as con:
        statuses = [r[0] for r in con.execute(sa.text("select status from etl.load_run"))]
        leftover = con.execute(sa.text("select count(*) from etl.touched_person")).scalar_one()
    engine.dispose()
    # a SIGKILLed run cannot say more than 'running' (a kill during start-up leaves no run at all)
    assert statuses.count("running") <= figures["kills"] and any(s.startswith("loaded") for s in statuses)
    assert leftover == 0
    FIGURES[label] = {**figures, "records": total, "load_seconds": round(duration, 1)}
    print(f"\n{label}: {FIGURES[label]}")
    assert figures["kills"] >= 1


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
    _run(pg_cdm_factory, synth_fhir, 2, "postgresql", tmp_path)
