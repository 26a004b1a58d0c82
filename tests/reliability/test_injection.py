"""Injection: SQL carried by schema names, cohort ids, cohort table names, cohort parameters, source-system
names, file names, concept codes, FHIR strings and extract cells is harmless. Identifiers are validated
(refused with one line, exit 2, before any SQL runs); values are bound parameters (stored verbatim, not
executed). After every attempt the database is intact: the same tables, the same persons.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import shutil

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from l059_omop.cli import main
from l059_omop.cohort import build_cohort
from l059_omop.errors import BadInput
from l059_omop.etl.fhir.load import load_fhir
from l059_omop.records import load_records
from l059_omop.resources import mappings_path
from tests.reliability.helpers import assert_one_line_error, cli

SQL = ["'; drop table cdm.person; --", 'x" or 1=1 --', "cdm; drop schema cdm cascade", "cdm.person--",
       "1); delete from cdm.person; --", "$$; drop table cdm.person; $$", "cdm\"; drop table person; --",
       "results/**/;drop table cdm.person", "ok_name\n; drop table cdm.person"]
FIGURES = {"attempts": 0}


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request):
    return request.getfixturevalue("duck_cdm_url" if request.param == "duckdb" else "pg_cdm_url")


def _state(engine) -> tuple:
    insp = sa.inspect(engine)
    tables = tuple(sorted((s, t) for s in ("cdm", "results", "etl") for t in insp.get_table_names(schema=s)))
    with engine.connect() as con:
        persons = con.execute(sa.text("select count(*) from cdm.person")).scalar_one()
    return tables, persons


def _hostile_bundle(synth_fhir) -> dict:
    path = sorted((synth_fhir / "bundles").rglob("*.json"))[0]
    bundle = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for i, e in enumerate(bundle["entry"][:15]):
        e = copy.deepcopy(e)
        res = e["resource"]
        if res["resourceType"] == "Condition":
            res["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": SQL[i % len(SQL)]}],
                           "text": SQL[0]}
        if res["resourceType"] == "Observation":
            res["code"]["text"] = SQL[1]
            res["note"] = [{"text": SQL[2]}]
        out.append(e)
    evil = copy.deepcopy(out[1])
    evil["resource"]["id"] = SQL[0]  # not a FHIR id: quarantined, its id kept verbatim
    out.append(evil)
    return {**bundle, "entry": out}


def test_values_are_bound_and_stored_verbatim(url, synth_fhir, synth_records, tmp_path):
    engine = sa.create_engine(url)
    folder = tmp_path / SQL[0].replace("/", "_")
    folder.mkdir()
    name = folder / 'x" or 1=1 --.json'
    name.write_text(json.dumps(_hostile_bundle(synth_fhir)), encoding="utf-8")
    tables0, _ = _state(engine)
    report = load_fhir(engine, [name], workers=1, source_system=SQL[1])
    assert report.mapped > 0 and report.quarantined >= 1
    with engine.connect() as con:
        codes = {r[0] for r in con.execute(sa.text("select condition_source_value from cdm.condition_occurrence"))}
        systems = {r[0] for r in con.execute(sa.text("select distinct source_system from etl.source_id_map"))}
        qids = {r[0] for r in con.execute(sa.text("select resource_id from etl.quarantine"))}
        locs = {r[0] for r in con.execute(sa.text("select locator from etl.source_resource"))}
    assert codes & set(SQL), codes  # the hostile code is a value: stored as written
    assert systems == {SQL[1]}
    assert SQL[0] in qids
    assert any(str(name) in (loc or "") for loc in locs)
    assert _state(engine)[0] == tables0 and _state(engine)[1] >= 1

    # records: a hostile patients file name (it matches the spec's 'patients*.csv') and hostile cells
    rec = tmp_path / "rec"
    shutil.copytree(synth_records, rec)
    (rec / "patients.csv").rename(rec / "patients'; drop table cdm.person; --.csv")
    rows = list(csv.reader(io.StringIO((rec / "drug_orders.csv").read_text(encoding="utf-8-sig"))))
    for r in rows[1:3]:
        r[rows[0].index("drug_name")] = SQL[0]
        r[rows[0].index("drug_code")] = SQL[1]
    for r in rows[4:6]:
        r[rows[0].index("usage_text")] = SQL[4]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    (rec / "drug_orders.csv").write_text(buf.getvalue(), encoding="utf-8")
    result = load_records(engine, mappings_path("records", "synth_site.yaml"), [rec])
    assert result.report.quarantined >= 2 or result.report.unmapped  # unknown drug names: not guessed
    with engine.connect() as con:
        sigs = {r[0] for r in con.execute(sa.text("select sig from cdm.drug_exposure"))}
    tables, persons = _state(engine)
    assert tables == tables0 and persons >= 8
    assert SQL[4] in sigs or any(SQL[4] in (s or "") for s in sigs)
    engine.dispose()


def test_identifiers_and_numbers_are_validated_by_the_api(url):
    engine = sa.create_engine(url)
    before = _state(engine)
    for bad in SQL:
        for call in (lambda bad=bad: build_cohort(engine, cdm_schema=bad),
                     lambda bad=bad: build_cohort(engine, results_schema=bad),
                     lambda bad=bad: build_cohort(engine, cohort_table=bad),
                     lambda bad=bad: build_cohort(engine, cohort_id=bad),
                     lambda bad=bad: build_cohort(engine, max_inr=bad),
                     lambda bad=bad: build_cohort(engine, **{bad: 1}),
                     lambda bad=bad: load_fhir(engine, ["/nonexistent"], cdm_schema=bad),
                     lambda bad=bad: load_fhir(engine, ["/nonexistent"], etl_schema=bad),
                     lambda bad=bad: load_records(engine, mappings_path("records", "synth_site.yaml"), [], cdm_schema=bad),
                     lambda bad=bad: load_records(engine, mappings_path("records", "synth_site.yaml"), [], etl_schema=bad)):
            with pytest.raises(BadInput):
                call()
            FIGURES["attempts"] += 1
    assert _state(engine) == before
    engine.dispose()


def test_cli_refuses_hostile_identifiers(duck_cdm_url, synth_fhir, tmp_path):
    runner = CliRunner()
    load = runner.invoke(main, ["--db", duck_cdm_url, "-q", "load-fhir", str(synth_fhir), "--workers", "1"])
    assert load.exit_code == 0, load.output
    engine = sa.create_engine(duck_cdm_url)
    before = _state(engine)
    engine.dispose()
    for bad in SQL:
        for args in (["--cdm-schema", bad, "build-cohort"], ["--results-schema", bad, "build-cohort"],
                     ["build-cohort", "--cohort-table", bad], ["build-cohort", "--cohort-id", bad],
                     ["build-cohort", "--param", f"max_inr={bad}"], ["build-cohort", "--param", f"{bad}=1"],
                     ["load-fhir", "--etl-schema", bad, str(synth_fhir)],
                     ["--cdm-schema", bad, "load-records", "--mapping", "synth_site", str(tmp_path)],
                     ["render-sql", "--dialect", bad], ["--cdm-schema", bad, "dq"]):
            r = runner.invoke(main, ["--db", duck_cdm_url, *args])
            assert r.exit_code == 2, (args, r.output)
            assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.exception)
            lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
            assert len(lines) <= 4 and "Traceback" not in r.output, (args, r.output)  # click usage + error
            FIGURES["attempts"] += 1
    engine = sa.create_engine(duck_cdm_url)
    assert _state(engine) == before
    engine.dispose()
    # one real process, as a site runs it
    r = cli("--db", duck_cdm_url, "--cdm-schema", SQL[0], "build-cohort")
    assert r.returncode == 2
    assert_one_line_error(r) if "Usage" not in r.stderr else None
