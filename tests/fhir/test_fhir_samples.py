"""Third-party samples (../shared/fhir-samples): exact counts derived from the input files themselves;
invalid fixtures are quarantined with reasons and crash nothing. Plus the CLI's exit codes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fhir_builders import bundle, patient_resources, write_json

from l059_omop.cli import main
from l059_omop.etl.fhir.load import load_fhir
from l059_omop.etl.fhir.rules import rules

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "fhir-samples"
if not SAMPLES.is_dir():
    SAMPLES = Path("/work/shared/fhir-samples")
pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared/fhir-samples not present")

EVENT_TABLES = ["condition_occurrence", "measurement", "observation", "drug_exposure", "procedure_occurrence",
                "device_exposure"]


def _expected_status(res: dict) -> bool:
    """Does this resource make rows under mappings/fhir/rules.yaml (independent re-statement for the test)?"""
    spec = rules().status.get(res["resourceType"])
    if not spec or not spec.get("field"):
        return True
    v = res.get(spec["field"])
    if isinstance(v, dict):
        v = v["coding"][0]["code"]
    if v not in spec["keep"] and not (v is None and None in spec["keep"]):
        return False
    return not spec.get("intent_field") or res.get(spec["intent_field"]) in spec["intent_keep"]


def _rows_of(res: dict) -> int:
    if res["resourceType"] != "Observation":
        return 1
    comps = res.get("component") or []
    has_value = any(k.startswith("value") for k in res)
    return len(comps) + (1 if has_value or not comps else 0)


def _map_counts(engine) -> tuple[Counter, Counter]:
    with engine.connect() as c:
        by_type = Counter(dict(c.execute(sa.text(
            "select resource_type, count(*) from etl.source_id_map group by resource_type")).fetchall()))
        by_table = Counter({t: c.execute(sa.text(f"select count(*) from cdm.{t}")).scalar_one()
                            for t in [*EVENT_TABLES, "person", "death", "visit_occurrence", "observation_period"]})
    return by_type, by_table


def test_synthea_bulk_ndjson_exact_counts(cdm_engine):
    folder = SAMPLES / "synthea_bulk_10patients"
    resources = [json.loads(line) for f in sorted(folder.glob("*.ndjson")) for line in f.open(encoding="utf-8")]
    report = load_fhir(cdm_engine, [folder], workers=2)
    assert not report.check() and report.quarantined == 0
    by_type, by_table = _map_counts(cdm_engine)
    read = Counter(r["resourceType"] for r in resources)
    kept = Counter(r["resourceType"] for r in resources if _expected_status(r))
    for rtype, n in read.items():
        c = report.t(rtype)
        assert (c.read, c.mapped, sum(c.skipped.values())) == (n, kept[rtype], n - kept[rtype]), rtype
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    assert by_table["person"] == len(patients) == 13
    assert by_table["death"] == sum(1 for p in patients if p.get("deceasedDateTime")) == 3
    assert by_table["visit_occurrence"] == kept["Encounter"]
    events = sum(by_table[t] for t in EVENT_TABLES)
    assert events == kept["Condition"] + kept["Procedure"] + kept["MedicationRequest"]
    assert by_type["Condition"] == kept["Condition"] and by_type["Procedure"] == kept["Procedure"]
    assert by_table["observation_period"] == len(patients)
    # a reload changes nothing
    again = load_fhir(cdm_engine, [folder], workers=2)
    assert sum(again.rows_inserted.values()) == 0 and again.mapped == report.mapped


def test_synthea_transaction_bundle_exact_counts(duckdb_url):
    from l059_omop.db.api import init_db

    engine = sa.create_engine(duckdb_url)
    init_db(engine)
    path = next((SAMPLES / "synthea_r4_bundle").glob("*.json"))
    entries = [e["resource"] for e in json.loads(path.read_text(encoding="utf-8"))["entry"]]
    report = load_fhir(engine, [path], workers=1)
    assert not report.check() and report.quarantined == 0
    by_type, by_table = _map_counts(engine)
    mapped_types = {"Patient", "Encounter", "Condition", "Observation", "Procedure", "MedicationRequest"}
    for rtype, n in Counter(r["resourceType"] for r in entries).items():
        c = report.t(rtype)
        kept = sum(1 for r in entries if r["resourceType"] == rtype and _expected_status(r))
        assert c.read == n
        assert c.mapped == (kept if rtype in mapped_types else 0), rtype
    rows = Counter()
    for r in entries:
        if r["resourceType"] in mapped_types - {"Patient", "Encounter"} and _expected_status(r):
            rows[r["resourceType"]] += _rows_of(r)
    for rtype, n in rows.items():
        assert by_type[rtype] == n, rtype
    assert sum(by_table[t] for t in EVENT_TABLES) == sum(rows.values())
    assert by_table["death"] == 1 and by_table["person"] == 1 and by_table["visit_occurrence"] == 25


def test_ips_and_mcode_fixtures_quarantined_with_reasons(duckdb_url):
    from l059_omop.db.api import init_db

    engine = sa.create_engine(duckdb_url)
    init_db(engine)
    report = load_fhir(engine, [SAMPLES / "hl7_ips_example", SAMPLES / "mcode_mitre_fixtures"], workers=2)
    assert not report.check()
    ips = report.t("MedicationStatement")
    assert ips.read == 3 and ips.quarantined == {"R4B validation": 3}  # the copy lacks text.div
    with engine.connect() as c:
        q = c.execute(sa.text("select source_locator, resource_type, reason, payload from etl.quarantine")).fetchall()
    assert len(q) == report.quarantined > 20
    assert all(loc and reason and payload for loc, _, reason, payload in q)
    assert any("#entry[" in loc for loc, *_ in q)
    reasons = {reason.split(":")[0] for _, _, reason, _ in q}
    assert {"R4B validation", "unresolved reference"} <= reasons


def test_cli_exit_codes(tmp_path, duckdb_url):
    runner = CliRunner()
    assert runner.invoke(main, ["--db", duckdb_url, "-q", "init-db"]).exit_code == 0
    good = write_json(tmp_path / "good.json", bundle(patient_resources("g")))
    r = runner.invoke(main, ["--db", duckdb_url, "load-fhir", "--workers", "1", str(good)])
    assert r.exit_code == 0, r.output
    assert "read 16, mapped 13, quarantined 0, skipped 3" in r.output
    rs = patient_resources("b")
    rs[2] = dict(rs[2], onsetDateTime="2020-02-30")
    bad = write_json(tmp_path / "bad.json", bundle(rs))
    r = runner.invoke(main, ["--db", duckdb_url, "load-fhir", "--workers", "1", "--strict", str(bad)])
    assert r.exit_code == 2 and "nothing was written" in r.output
    r = runner.invoke(main, ["--db", duckdb_url, "load-fhir", "--workers", "1", str(bad)])
    assert r.exit_code == 3 and "quarantined" in r.output
    r = runner.invoke(main, ["--db", duckdb_url, "load-fhir", "--workers", "1", "--server", "http://127.0.0.1:9",
                             str(bad)])
    assert r.exit_code == 2
