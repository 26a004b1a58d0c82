"""The sink through the FHIR loader, on DuckDB and PostgreSQL: idempotent reloads, version replacement,
rollback of a failing batch, strict mode, id collisions, references that arrive late."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import sqlalchemy as sa
from fhir_builders import L059, SNOMED, bundle, cc, patient_resources, write_json, write_ndjson

from l059_omop.etl.fhir import load as load_mod
from l059_omop.etl.fhir.load import load_fhir
from l059_omop.etl.sink import StrictQuarantine

TABLES = ["person", "death", "visit_occurrence", "condition_occurrence", "measurement", "observation",
          "drug_exposure", "procedure_occurrence", "observation_period"]


def snapshot(engine) -> dict:
    out = {}
    with engine.connect() as c:
        for t in TABLES:
            out[t] = sorted(tuple(str(x) for x in r) for r in c.execute(sa.text(f"select * from cdm.{t}")))
        for t in ("source_id_map", "source_resource"):
            out[t] = sorted(tuple(str(x) for x in r) for r in c.execute(sa.text(f"select * from etl.{t}")))
    return out


def snapshot_without_runs(engine, locators: bool = True) -> dict:
    """snapshot() with the run ids left out of the etl rows (they differ between two databases), and with
    ``locators=False`` the NDJSON locators too (for inputs that hold the same records in other files)."""
    snap = snapshot(engine)
    for t in ("source_id_map", "source_resource"):
        snap[t] = sorted(tuple(x for x in row if ("T" not in x or "-" not in x) and (locators or ".ndjson" not in x))
                         for row in snap[t])
    return snap


def _killed_run_row(engine, run_id: str = "killed") -> None:
    """The etl.load_run row a SIGKILLed load leaves: 'running', and no process behind it."""
    with engine.begin() as c:
        c.execute(sa.text("insert into etl.load_run (run_id, kind, started_at, status, software_version, "
                          "cdm_version) values (:r, 'fhir', now(), 'running', 'x', '5.4')"), {"r": run_id})


def fresh_engine(tmp_path, name: str, dialect: str, stack) -> sa.Engine:
    """An init-db'ed database: a DuckDB file ``name`` or a throw-away PostgreSQL database (closed by ``stack``)."""
    from l059_omop.db.api import init_db

    if dialect == "duckdb":
        url = f"duckdb:///{tmp_path / name}"
    else:
        from tests.pg import throwaway_database

        url = stack.enter_context(throwaway_database())
    engine = sa.create_engine(url)
    init_db(engine)
    return engine


def counts(engine) -> dict:
    with engine.connect() as c:
        return {t: c.execute(sa.text(f"select count(*) from cdm.{t}")).scalar_one() for t in TABLES}


def two_patients():
    rs = patient_resources("p1") + patient_resources("p2", deceased=None, gender="female", dose_mg=8)
    for r in rs:
        if r["id"] in ("p2", "p2-sclc"):
            r["meta"] = {"versionId": "1"}
    return rs


def test_reload_identical_then_newer_version_replaces(cdm_engine, tmp_path):
    f = write_json(tmp_path / "in" / "b.json", bundle(two_patients()))
    r1 = load_fhir(cdm_engine, [f], workers=1)
    assert not r1.check() and r1.quarantined == 0
    first = snapshot(cdm_engine)
    assert len(first["person"]) == 2 and len(first["death"]) == 1 and len(first["observation_period"]) == 2
    r2 = load_fhir(cdm_engine, [f], workers=1)
    assert snapshot(cdm_engine) == first
    assert r2.rows_inserted == {} and r2.t("Condition").unchanged == r1.t("Condition").mapped

    # a newer version of a condition (new code) and of a patient (new gender, now deceased)
    rs = two_patients()
    for r in rs:
        if r["id"] == "p2-sclc":
            r["meta"] = {"versionId": "2"}
            r["code"] = cc(SNOMED, "67841000119103")  # SCLC TNM stage 4
        if r["id"] == "p2":
            r["meta"] = {"versionId": "2"}
            r["deceasedDateTime"] = "2021-06-01"
    f2 = write_json(tmp_path / "in2" / "b.json", bundle(rs))
    r3 = load_fhir(cdm_engine, [f2], workers=1)
    after = snapshot(cdm_engine)
    assert r3.rows_deleted["condition_occurrence"] == 1 and r3.rows_inserted["condition_occurrence"] == 1
    assert len(after["death"]) == 2 and len(after["person"]) == 2
    ids_before = {r[0] for r in first["condition_occurrence"]}
    ids_after = {r[0] for r in after["condition_occurrence"]}
    assert ids_before == ids_after  # same ids, replaced content
    assert ("37395651" in {r[2] for r in after["condition_occurrence"]})
    # the old version again: skipped, nothing changes
    r4 = load_fhir(cdm_engine, [tmp_path / "in" / "b.json"], workers=1)
    assert snapshot(cdm_engine) == after
    assert r4.t("Condition").skipped["older version than the one loaded"] == 1
    assert r4.t("Patient").skipped["older version than the one loaded"] == 1
    assert not r4.check()


def test_failing_batch_leaves_nothing_partial(cdm_engine, tmp_path):
    rs = [r for i in range(6) for r in patient_resources(f"p{i}")]
    f = write_ndjson(tmp_path / "all.ndjson", rs)
    with pytest.raises(RuntimeError, match="injected failure"):
        load_fhir(cdm_engine, [f], workers=1, batch_size=16, _fail_after_batches=1)
    with cdm_engine.connect() as c:
        mapped = c.execute(sa.text("select count(*) from etl.source_resource")).scalar_one()
        rows = sum(counts(cdm_engine)[t] for t in TABLES if t != "observation_period")
        in_map = c.execute(sa.text("select count(*) from etl.source_id_map")).scalar_one()
        status = c.execute(sa.text("select status from etl.load_run")).scalar_one()
    assert mapped == 16  # the first batch only
    assert rows == in_map  # every CDM row written is one of the committed batch's rows
    assert status == "failed"
    # loading again completes the job
    report = load_fhir(cdm_engine, [f], workers=1, batch_size=16)
    assert report.t("Patient").unchanged > 0 and counts(cdm_engine)["person"] == 6


def test_strict_any_quarantine_writes_nothing(cdm_engine, tmp_path):
    rs = patient_resources()
    rs[3] = dict(rs[3], effectiveDateTime="2020-13-45")
    f = write_json(tmp_path / "b.json", bundle(rs))
    with pytest.raises(StrictQuarantine, match="nothing was written"):
        load_fhir(cdm_engine, [f], workers=1, strict=True)
    assert all(n == 0 for n in counts(cdm_engine).values())
    with cdm_engine.connect() as c:
        assert c.execute(sa.text("select status from etl.load_run")).scalar_one() == "failed-strict"
        reason = c.execute(sa.text("select reason from etl.quarantine")).scalar_one()
    assert reason.startswith("R4B validation: effectiveDateTime")
    # without --strict the rest loads and the bad record is quarantined
    report = load_fhir(cdm_engine, [f], workers=1)
    assert report.quarantined == 1 and counts(cdm_engine)["person"] == 1


def _collide(monkeypatch, n: int) -> None:
    """Ids forced into 1..n, so rows collide (both the sink's per-id hash and its array form; workers=1)."""
    import l059_omop.etl.sink as sink_mod

    real = sink_mod.hashed_id
    monkeypatch.setattr(sink_mod, "hashed_id", lambda text, probe=0: real(text, probe) % n + 1)
    monkeypatch.setattr(sink_mod, "_hash_ids", lambda texts: np.asarray([real(t) % n + 1 for t in texts],
                                                                         dtype=np.int64))


def test_id_collisions_resolved_and_stable(cdm_engine, tmp_path, monkeypatch):

    _collide(monkeypatch, 40)
    rs = [r for i in range(3) for r in patient_resources(f"p{i}")]
    f = write_json(tmp_path / "b.json", bundle(rs))
    r1 = load_fhir(cdm_engine, [f], workers=1)
    assert r1.id_collisions > 0
    snap = snapshot(cdm_engine)
    for t in ("condition_occurrence", "measurement", "observation", "drug_exposure"):
        ids = [r[0] for r in snap[t]]
        assert len(ids) == len(set(ids))
    load_fhir(cdm_engine, [f], workers=1)
    assert snapshot(cdm_engine) == snap


def test_late_references_and_unresolved(cdm_engine, tmp_path, monkeypatch):
    monkeypatch.setattr(load_mod, "NDJSON_CHUNK", 2)
    rs = patient_resources("late")
    patient = rs[0]
    orphan = {"resourceType": "Condition", "id": "orph", "subject": {"reference": "Patient/ghost"},
              "code": cc(SNOMED, "254632001"), "onsetDateTime": "2020-01-01"}
    med_req = {"resourceType": "MedicationRequest", "id": "mr", "status": "active", "intent": "order",
               "subject": {"reference": "Patient/late"}, "medicationReference": {"reference": "Medication/m1"},
               "authoredOn": "2020-04-01"}
    med = {"resourceType": "Medication", "id": "m1", "code": cc(L059, "ANLOTINIB-12MG")}
    f = write_ndjson(tmp_path / "mixed.ndjson", [*rs[1:], orphan, med_req, patient, med])
    report = load_fhir(cdm_engine, [f], workers=2, batch_size=3)
    assert not report.check()
    assert report.t("Condition").quarantined == {"unresolved reference": 1}
    assert report.quarantined == 1
    with cdm_engine.connect() as c:
        drugs = c.execute(sa.text("select drug_concept_id from cdm.drug_exposure")).scalars().all()
        loc = c.execute(sa.text("select source_locator from etl.quarantine")).scalar_one()
    assert 2000000004 in drugs
    assert loc.endswith("mixed.ndjson:16")


def test_run_report_stored(cdm_engine, tmp_path):
    f = write_json(tmp_path / "b.json", bundle(patient_resources()))
    report = load_fhir(cdm_engine, [f], workers=1)
    with cdm_engine.connect() as c:
        row = c.execute(sa.text("select status, counts_json, software_version, cdm_version from etl.load_run "
                                "where run_id = :r"), {"r": report.run_id}).one()
    stored = json.loads(row[1])
    assert row[0] == "loaded" and row[3] == "5.4"
    assert stored["totals"] == {"read": 16, "mapped": 13, "quarantined": 0, "skipped": 3}
    assert stored["rows_inserted"]["measurement"] == 4
    assert stored["types"]["Observation"]["skipped"] == {"status preliminary makes no row": 1}
    assert copy.deepcopy(stored) == stored


@pytest.mark.parametrize("dialect", ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_first_load_shortcuts_match_lookups(tmp_path, monkeypatch, dialect):
    """A run alone on its database skips the stored-version lookup and the taken-id lookup for what nothing
    was stored of (Sink._alone, _keys_to_look_up, _taken_mask); with ids forced to collide across batches and a
    resource repeated in a later batch as a newer version, the database must be exactly what the lookups give
    (the shortcuts switched off)."""
    import contextlib

    import l059_omop.etl.sink as sink_mod

    _collide(monkeypatch, 60)
    rs = [r for i in range(4) for r in patient_resources(f"p{i}")]
    newer = copy.deepcopy(next(r for r in rs if r["id"] == "p0-sclc"))
    newer["meta"] = {"versionId": "2"}
    newer["code"] = cc(SNOMED, "67841000119103")
    f = write_ndjson(tmp_path / "in" / "all.ndjson", [*rs, newer])

    def load(name: str) -> tuple[dict, object]:
        with contextlib.ExitStack() as stack:
            engine = fresh_engine(tmp_path, name, dialect, stack)
            report = load_fhir(engine, [f], workers=1, batch_size=7)
            snap = snapshot_without_runs(engine)
            engine.dispose()
        return snap, report

    calls = {"lookups": 0}
    look_up = sink_mod.Sink._fetch_resources

    def counted(self, keys):
        calls["lookups"] += len(keys)
        return look_up(self, keys)

    monkeypatch.setattr(sink_mod.Sink, "_fetch_resources", counted)
    fast, r_fast = load("fast.duckdb")
    fast_lookups, calls["lookups"] = calls["lookups"], 0
    monkeypatch.setattr(sink_mod.Sink, "_alone", lambda self: False)
    slow, r_slow = load("slow.duckdb")
    # alone: only the batch holding the repeated key looks its type's keys up; else every key is looked up
    assert 1 <= fast_lookups <= 7 and calls["lookups"] == len(rs) + 1
    assert r_fast.id_collisions > 0 and r_fast.id_collisions == r_slow.id_collisions
    assert r_fast.rows_deleted["condition_occurrence"] == 1  # the newer version replaced the first
    assert fast == slow


@pytest.mark.postgres
def test_postgresql_run_is_not_alone_beside_another(pg_url):
    """PostgreSQL: a run started while another is live, or seeing one start, checks the database again; a
    row left 'running' by a killed run does not count (it holds no session lock)."""
    from l059_omop.db.api import init_db
    from l059_omop.etl.sink import Sink

    engine = sa.create_engine(pg_url)
    init_db(engine)
    def alone(sink: Sink) -> bool:
        with sink._tx():  # as in a batch: under the sink's advisory lock
            return sink._alone()

    first, second = Sink(engine, "urn:a"), Sink(engine, "urn:b")
    first.start()
    assert alone(first)
    second.start()
    assert not alone(second)  # the first was running when it started
    assert not alone(first)   # a run was started since the first began
    first.finish()
    second.finish()
    third = Sink(engine, "urn:c")
    third.start()
    assert alone(third)  # the others had finished before it started
    third.finish()
    # a run killed without its end leaves its row 'running' but holds no lock: not a live run
    _killed_run_row(engine)
    fourth = Sink(engine, "urn:d")
    fourth.start()
    assert alone(fourth)
    fourth.finish()
    with engine.connect() as c:  # every run released its lock
        assert c.execute(sa.text("select count(*) from pg_locks where locktype = 'advisory' and database = "
                                 "(select oid from pg_database where datname = current_database())")).scalar_one() == 0
    engine.dispose()


@pytest.mark.postgres
def test_postgresql_run_is_live_before_its_row_is_seen(pg_url):
    """A run takes its live lock before it writes its etl.load_run row. The other order let two loaders
    started together both think they were alone: A counted B's row among the runs at its start, B's lock
    not yet taken, so A never looked B's writes up (a duplicate person_pkey, 1 in 10 runs under load)."""
    from l059_omop.db.api import init_db
    from l059_omop.etl.sink import Sink

    engine = sa.create_engine(pg_url)
    other = sa.create_engine(pg_url)
    init_db(engine)
    sink = Sink(engine, "urn:live")
    cls, obj = sink._live_keys()
    seen: list[int] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def hook(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().lower().startswith("insert into etl.load_run"):
            with other.connect() as c:
                seen.append(c.execute(sa.text(
                    "select count(*) from pg_locks where locktype = 'advisory' and granted and objsubid = 2 "
                    "and classid = cast(cast(:c as bigint) as oid) and objid = cast(cast(:o as bigint) as oid)"),
                    {"c": cls, "o": obj}).scalar_one())

    sink.start()
    sink.finish()
    engine.dispose()
    other.dispose()
    assert seen == [1]


@pytest.mark.postgres
def test_close_stale_leaves_a_live_run(pg_url):
    """runs --close-stale on PostgreSQL: a run that holds its live lock (started, not finished) stays
    'running'; a row whose process is gone (no lock) becomes 'interrupted'; a finished run is left alone."""
    from l059_omop.db.api import init_db
    from l059_omop.etl.runs import close_stale, list_runs
    from l059_omop.etl.sink import Sink

    engine = sa.create_engine(pg_url)
    init_db(engine)
    done = Sink(engine, "urn:done")
    done.start()
    done.finish()
    _killed_run_row(engine)
    live = Sink(engine, "urn:live")
    live.start()
    try:
        assert close_stale(engine) == ["killed"]
        assert close_stale(engine) == []
        got = dict(list_runs(engine)[["run_id", "status"]].itertuples(index=False))
        assert got == {done.run_id: "loaded", "killed": "interrupted", live.run_id: "running"}
    finally:
        live.finish()
    assert dict(list_runs(engine)[["run_id", "status"]].itertuples(index=False))[live.run_id] == "loaded"
    engine.dispose()


@pytest.mark.postgres
def test_postgresql_sink_plans_per_batch_without_prepared_statements(pg_url):
    """The sink's PostgreSQL connection runs its per-batch lookups unprepared (a generic plan of the taken-id
    query took seconds a batch, Sink._custom_plans); the pooled connection gets its setting back."""
    from l059_omop.db.api import init_db
    from l059_omop.etl.sink import Sink

    engine = sa.create_engine(pg_url, pool_size=1, max_overflow=0)
    init_db(engine)
    sink = Sink(engine, "urn:test")
    sink.start()
    raw = sink._con.connection.driver_connection
    assert raw.prepare_threshold is None
    sink.finish()
    with engine.connect() as c:
        assert c.connection.driver_connection is raw and raw.prepare_threshold == 5
    engine.dispose()


def test_cli_batch_size_default_is_the_loaders():
    from l059_omop.commands.load_fhir import command

    opt = next(p for p in command.params if p.name == "batch_size")
    assert opt.default == load_mod.BATCH_SIZE


def test_first_load_sets_bounded(tmp_path, monkeypatch):
    """Memory stays bounded: past SET_MAX entries in all, the largest first-load set is dropped and the run
    checks the database for it from then on; the database is the same as with the sets kept."""
    import contextlib

    import l059_omop.etl.sink as sink_mod

    rs = [r for i in range(4) for r in patient_resources(f"p{i}")]
    f = write_ndjson(tmp_path / "in" / "all.ndjson", rs)
    seen = {"dropped": 0, "over": 0}
    real = sink_mod.Sink._bound_sets

    def spy(self):
        before = sum(1 for v in self._fresh.values() if v) + sum(1 for v in self._map_fresh.values() if v)
        real(self)
        after = sum(1 for v in self._fresh.values() if v) + sum(1 for v in self._map_fresh.values() if v)
        seen["dropped"] += before - after
        seen["over"] += sum(len(s) for s in [*self._seen.values(), *self._run_ids.values()]) > sink_mod.SET_MAX

    def load(name: str) -> dict:
        with contextlib.ExitStack() as stack:
            engine = fresh_engine(tmp_path, name, "duckdb", stack)
            load_fhir(engine, [f], workers=1, batch_size=5)
            snap = snapshot_without_runs(engine)
            engine.dispose()
        return snap

    kept = load("kept.duckdb")
    monkeypatch.setattr(sink_mod, "SET_MAX", 3)
    monkeypatch.setattr(sink_mod.Sink, "_bound_sets", spy)
    bounded = load("bounded.duckdb")
    assert seen["dropped"] > 0 and seen["over"] == 0
    assert bounded == kept
