"""Concurrency on PostgreSQL: two ``load-fhir`` processes into one database at once (disjoint and
overlapping inputs) leave no duplicate row and the same state as the two loads run one after the other;
``build-cohort`` while a load runs reads one consistent snapshot (its cohort is the before- or the
after-state's cohort, never a mixture)."""

from __future__ import annotations

import shutil
import time

import pytest
import sqlalchemy as sa

from l059_omop.cohort import build_cohort
from l059_omop.etl.fhir.load import load_fhir
from tests.reliability.helpers import cli, diff_checksums, popen, table_checksums

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
LOAD_ARGS = ["--batch-size", "100", "--workers", "1"]
FIGURES: dict[str, int] = {"concurrent_loads": 0, "cohort_builds_during_load": 0}


def _subset(src, dest, lo: int, hi: int):
    files = sorted((src / "bundles").rglob("*.json"))
    dest.mkdir(parents=True)
    for f in files[lo:hi]:
        shutil.copyfile(f, dest / f.name)
    return dest


def _together(url: str, *dirs) -> None:
    procs = [popen("--db", url, "load-fhir", str(d), *LOAD_ARGS) for d in dirs]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode in (0, 3), err
        assert "Traceback" not in err
    FIGURES["concurrent_loads"] += len(procs)


def _one_after_other(url: str, *dirs) -> None:
    for d in dirs:
        r = cli("--db", url, "load-fhir", str(d), *LOAD_ARGS)
        assert r.returncode in (0, 3), r.stderr


def _no_duplicates(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.connect() as con:
        for t, cols in (("cdm.person", "person_source_value"),
                        ("etl.source_id_map", "source_system, resource_type, source_id, omop_table, row_key"),
                        ("cdm.drug_exposure", "person_id, drug_concept_id, drug_exposure_start_date, "
                                              "drug_source_value, drug_type_concept_id, quantity")):
            n, d = con.execute(sa.text(f"select count(*), count(distinct ({cols})) from {t}")).one()
            assert n == d, f"{t}: {n - d} duplicate rows"
    engine.dispose()


@pytest.mark.parametrize("ranges", [((0, 6), (6, 12)), ((0, 8), (4, 12)), ((0, 12), (0, 12))],
                         ids=["disjoint", "overlapping", "identical"])
def test_two_loaders_at_once_equal_sequential(pg_cdm_factory, synth_fhir, tmp_path, ranges):
    a = _subset(synth_fhir, tmp_path / "a", *ranges[0])
    b = _subset(synth_fhir, tmp_path / "b", *ranges[1])
    seq, par = pg_cdm_factory(), pg_cdm_factory()
    _one_after_other(seq, a, b)
    _together(par, a, b)
    # etl.source_resource.locator names the file a record was first loaded from: a/... or b/...
    skip = {"source_id_map": ("run_id",), "source_resource": ("run_id", "locator")}
    want, got = table_checksums(seq, etl_skip=skip), table_checksums(par, etl_skip=skip)
    assert want["cdm.person"][0] == 12
    assert not diff_checksums(want, got), diff_checksums(want, got)
    _no_duplicates(par)


def _cohort(engine) -> frozenset:
    build_cohort(engine)
    with engine.connect() as con:
        return frozenset(tuple(r) for r in con.execute(sa.text(
            "select subject_id, cohort_start_date, cohort_end_date from results.cohort "
            "where cohort_definition_id = 1059")))


def test_build_cohort_during_a_load_sees_before_or_after(pg_cdm_url, synth_fhir, tmp_path):
    a = _subset(synth_fhir, tmp_path / "a", 0, 10)
    b = _subset(synth_fhir, tmp_path / "b", 10, 20)
    engine = sa.create_engine(pg_cdm_url)
    load_fhir(engine, [a], workers=1)
    before = _cohort(engine)
    # --strict: the whole load is one transaction, so the database has exactly two states
    proc = popen("--db", pg_cdm_url, "load-fhir", "--strict", str(b), *LOAD_ARGS)
    seen = []
    while proc.poll() is None:
        seen.append(_cohort(engine))
        time.sleep(0.05)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    after = _cohort(engine)
    engine.dispose()
    assert before != after and len(after) > len(before)
    FIGURES["cohort_builds_during_load"] += len(seen)
    odd = [s for s in seen if s not in (before, after)]
    assert not odd, f"{len(odd)} of {len(seen)} builds saw a mixture"
    assert seen


def test_build_cohort_reads_one_snapshot(pg_cdm_url, synth_fhir, tmp_path):
    """Deterministic: right after the cohort's first statement, another connection commits a new person;
    a later statement of the same build, in the build's own transaction, must not see it (PostgreSQL's
    default READ COMMITTED would: each statement would read a newer state)."""
    a = _subset(synth_fhir, tmp_path / "a", 0, 6)
    engine = sa.create_engine(pg_cdm_url)
    other = sa.create_engine(pg_cdm_url)
    load_fhir(engine, [a], workers=1)
    seen: dict[str, object] = {"n": 0}

    @sa.event.listens_for(engine, "after_cursor_execute")
    def hook(conn, cursor, statement, parameters, context, executemany):
        if seen.get("busy") or "_codeset" not in statement or not conn.in_transaction():
            return
        seen["n"] += 1
        seen["busy"] = True
        try:
            if seen["n"] == 1:  # the build's first statement: a load commits meanwhile
                with other.begin() as c:
                    c.execute(sa.text("insert into cdm.person (person_id, gender_concept_id, year_of_birth, "
                                      "race_concept_id, ethnicity_concept_id) values (987654321, 0, 1960, 0, 0)"))
            elif seen["n"] == 6:
                seen["visible"] = conn.exec_driver_sql(
                    "select count(*) from cdm.person where person_id = 987654321").scalar()
        finally:
            seen["busy"] = False

    build_cohort(engine)
    engine.dispose()
    other.dispose()
    assert seen["n"] >= 6
    assert seen["visible"] == 0, "the cohort build read data committed after it started"
