"""synth --format fhir / records: R4B validity, determinism, agreement with the omop output and the truth."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from l059_omop.synth import generate
from l059_omop.synth.emit_records import FILES

N = 120
SEED = 23


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("synth")
    out = {}
    for fmt, nd in (("omop", False), ("fhir", False), ("fhir", True), ("records", False)):
        d = base / (fmt + ("_ndjson" if nd else ""))
        generate(N, fmt, d, SEED, ndjson=nd, workers=1)
        out[d.name] = d
    return out


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _bundles(folder: Path) -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((folder / "bundles").rglob("*.json"))]


def _validate(folder: Path) -> dict:
    """fhir.resources R4B validation in its own process: tests/fhir on sys.path would shadow ``fhir``."""
    proc = subprocess.run([sys.executable, "-m", "l059_omop.synth.validate", str(folder)], capture_output=True,
                          text=True, cwd=folder, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def test_every_bundle_and_resource_validates_r4b(runs):
    bundles = _bundles(runs["fhir"])
    assert len(bundles) == N
    res = _validate(runs["fhir"])
    assert res["errors"] == []
    types: Counter[str] = Counter()
    for b in bundles:
        assert b["type"] == "collection"
        for e in b["entry"]:
            r = e["resource"]
            assert e["fullUrl"].endswith(f"/{r['resourceType']}/{r['id']}")
            types[r["resourceType"]] += 1
    assert res["resources"] == {**dict(types), "Bundle": N}
    assert set(types) >= {"Patient", "Condition", "Observation", "MedicationAdministration", "MedicationRequest",
                          "MedicationDispense", "AdverseEvent", "Encounter"}


def test_ndjson_holds_the_same_resources(runs):
    nd = runs["fhir_ndjson"]
    res = _validate(nd)
    assert res["errors"] == []
    ids = set()
    for p in sorted(nd.glob("*.ndjson")):
        for line in p.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            ids.add((r["resourceType"], r["id"]))
    from_bundles = {(e["resource"]["resourceType"], e["resource"]["id"]) for b in _bundles(runs["fhir"])
                    for e in b["entry"]}
    assert ids == from_bundles
    assert sum(res["resources"].values()) == len(ids)


def test_same_seed_same_bytes(runs, tmp_path):
    for name, nd in (("fhir", False), ("fhir_ndjson", True)):
        again = tmp_path / name
        generate(N, "fhir", again, SEED, ndjson=nd, workers=2)
        assert _digest(again) == _digest(runs[name])
    again = tmp_path / "records"
    generate(N, "records", again, SEED, workers=2)
    assert _digest(again) == _digest(runs["records"])


def test_truth_is_the_same_whatever_the_format(runs):
    ref = (runs["omop"] / "truth.csv").read_bytes()
    for d in runs.values():
        assert (d / "truth.csv").read_bytes() == ref


def test_fhir_agrees_with_omop_and_truth(runs):
    truth = pd.read_csv(runs["omop"] / "truth.csv", dtype=str, keep_default_na=False).set_index("patient_id")
    drug = pd.read_csv(runs["omop"] / "DRUG_EXPOSURE.csv")
    anl_omop = int(drug.drug_concept_id.between(2000000001, 2000000004).sum())
    anl_fhir = 0
    for b in _bundles(runs["fhir"]):
        pat = b["entry"][0]["resource"]
        t = truth.loc[pat["id"]]
        assert pat["birthDate"] == t.birth_date
        assert pat.get("deceasedDateTime", "") == t.death_date
        disp = [e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "MedicationDispense"
                and e["resource"]["medicationCodeableConcept"]["coding"][0]["code"].startswith("ANLOTINIB")]
        anl_fhir += len(disp)
        first = min((d["whenHandedOver"] for d in disp), default="")
        assert first == t.index_date
    assert anl_fhir == anl_omop


def test_records_files_and_identifiers(runs):
    rec = runs["records"]
    for name, cols in FILES.items():
        with (rec / name).open(encoding="utf-8", newline="") as fh:
            assert next(csv.reader(fh)) == cols, name
    truth = pd.read_csv(rec / "truth.csv", dtype=str, keep_default_na=False)
    pats = pd.read_csv(rec / "patients.csv", dtype=str)
    assert list(pats.hospital_id) == list(truth.hospital_id)
    assert pats.patient_name.str.startswith("测试").all() and pats.phone.str.startswith("100").all()
    orders = pd.read_csv(rec / "drug_orders.csv", dtype=str)
    anl = orders[orders.generic_name == "anlotinib"]
    drug = pd.read_csv(runs["omop"] / "DRUG_EXPOSURE.csv")
    assert len(anl) == int(drug.drug_concept_id.between(2000000001, 2000000004).sum())
    first = anl.groupby("hospital_id").dispense_date.min()
    t = truth.set_index("hospital_id")
    assert (first == t.index_date[first.index]).all()
    fu = pd.read_csv(rec / "followup.csv", dtype=str, keep_default_na=False)
    assert set(fu[fu.status == "死亡"].hospital_id) == set(truth[truth.death_date != ""].hospital_id)
    # hospital numbers, names and phones never reach OMOP
    omop_text = "".join(p.read_text(encoding="utf-8") for p in runs["omop"].glob("*.csv") if p.stem.isupper())
    assert "ZY2" not in omop_text and "测试" not in omop_text
