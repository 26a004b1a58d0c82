"""Interruption of ``l059-omop build-cohort``: SIGKILL at random points of a build leaves the results schema
with the previous cohort or the new one, never a mixture or an empty table, and the next build succeeds
(whatever scratch tables the killed one left) with the same rows as an uninterrupted build.

The "previous cohort" is a sentinel row (a person who is not in the data), so a kill that lands after the
commit is told apart from one that lands before it.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import time

import pytest
import sqlalchemy as sa

from tests.reliability.helpers import cli, popen

COHORT = 1059
SENTINEL = (987654321, dt.date(2023, 1, 1), dt.date(2023, 6, 30))
KILLS = 6
FIGURES: dict[str, dict] = {}


def _cohort(url: str) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as con:
            rows = con.execute(sa.text(
                "select subject_id, cohort_start_date, cohort_end_date from results.cohort "
                "where cohort_definition_id = :c order by 1, 2"), {"c": COHORT}).fetchall()
    finally:
        engine.dispose()
    return [(int(s), _date(a), _date(b)) for s, a, b in rows]


def _date(v) -> dt.date:
    return v.date() if isinstance(v, dt.datetime) else v


def _set_sentinel(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as con:
            con.execute(sa.text("delete from results.cohort where cohort_definition_id = :c"), {"c": COHORT})
            con.execute(sa.text("insert into results.cohort (cohort_definition_id, subject_id, cohort_start_date, "
                                "cohort_end_date) values (:c, :s, :a, :b)"),
                        {"c": COHORT, "s": SENTINEL[0], "a": SENTINEL[1], "b": SENTINEL[2]})
    finally:
        engine.dispose()


def _run(url: str, synth_fhir, seed: int, label: str) -> None:
    load = cli("--db", url, "load-fhir", str(synth_fhir / "bundles"))
    assert load.returncode in (0, 3), load.stderr
    t0 = time.monotonic()
    ref = cli("--db", url, "build-cohort")
    duration = time.monotonic() - t0  # start-up + build: kills land anywhere in it
    assert ref.returncode == 0, ref.stderr
    want = _cohort(url)
    assert want and SENTINEL[0] not in {r[0] for r in want}

    rng = random.Random(seed)
    seen = {"old": 0, "new": 0}
    for _ in range(KILLS):
        _set_sentinel(url)
        proc = popen("--db", url, "build-cohort")
        time.sleep(rng.uniform(0.3 * duration, 1.1 * duration))
        proc.kill()
        proc.communicate()
        got = _cohort(url)
        state = "old" if got == [SENTINEL] else "new" if got == want else None
        assert state, f"after a kill the cohort is neither the previous nor the new one ({len(got)} rows)"
        seen[state] += 1
    again = cli("--db", url, "build-cohort")
    assert again.returncode == 0, again.stderr
    assert _cohort(url) == want
    FIGURES[label] = {**seen, "build_seconds": round(duration, 2)}
    print(f"\n{label}: {FIGURES[label]}")


@pytest.mark.slow
def test_sigkill_build_cohort_duckdb(duckdb_template, tmp_path, synth_fhir):
    path = tmp_path / "cohort.duckdb"
    shutil.copyfile(duckdb_template, path)
    _run(f"duckdb:///{path}", synth_fhir, 11, "build-cohort-duckdb")


@pytest.mark.slow
@pytest.mark.postgres
def test_sigkill_build_cohort_postgresql(pg_cdm_url, synth_fhir):
    _run(pg_cdm_url, synth_fhir, 12, "build-cohort-postgresql")
