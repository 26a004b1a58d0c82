"""Privacy: no hospital patient id, name, phone number or address reaches an OMOP table (cdm, results) or a
log, and a password in --db never appears in any output.

Recognisable markers go into FHIR Patient.identifier / name / telecom / address and into the records
extracts' hospital id, name, phone and address columns; the whole pipeline runs through the CLI with -vv
(load-fhir, load-records, build-cohort); then every column of every table of cdm, results and etl is searched,
and all captured output.

The guarantee, as tested:
- cdm and results: no marker, anywhere.
- etl: the records path keeps no marker at all (patients are linked by a keyed hash of the hospital id;
  quarantine payloads keep only the columns the spec maps, hospital id masked). The FHIR path keeps a
  rejected resource verbatim in etl.quarantine.payload (the site must be able to fix it) — only there:
  not in source_id_map, source_resource or load_run. The etl schema stays at the site: study packages and
  network results are aggregate-only.
- logs: no marker in any output of any command at -vv, whatever was loaded or rejected.
"""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest
import sqlalchemy as sa

from tests.reliability.helpers import cli

FIGURES = {"markers": 0, "columns_searched": 0, "cells_searched": 0, "output_chars_searched": 0}
MARK = "ZQXMARK"  # every marker contains it


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request):
    return request.getfixturevalue("duck_cdm_url" if request.param == "duckdb" else "pg_cdm_url")


def _mark_fhir(src, dest) -> list[str]:
    markers = []
    dest.mkdir()
    for n, path in enumerate(sorted((src / "bundles").rglob("*.json"))[:8]):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        for e in bundle["entry"]:
            r = e["resource"]
            if r["resourceType"] != "Patient":
                continue
            ident, name, phone = f"{MARK}MRN{n:04d}", f"{MARK}Name{n}", f"+86{MARK}5550{n:03d}"
            addr, city = f"{n} {MARK} Road", f"{MARK}City{n}"
            r["identifier"] = [{"system": "urn:l059:hospital-patient-id", "value": ident},
                               {"system": "urn:oid:2.16.156.10011.1.1", "value": f"{MARK}ID{n:06d}"}]
            r["name"] = [{"family": name, "given": [f"{MARK}Given{n}"], "text": name}]
            r["telecom"] = [{"system": "phone", "value": phone}, {"system": "email", "value": f"{MARK}{n}@x.cn"}]
            r["address"] = [{"line": [addr], "city": city, "postalCode": f"{MARK}{n}"}]
            markers += [ident, name, phone, addr, city]
        if n == 0:  # one rejected patient: its payload is kept in etl.quarantine only
            bad = json.loads(json.dumps(next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")))
            bad["resource"]["id"] = "rejected-1"
            bad["fullUrl"] = "urn:uuid:rejected-1"
            bad["resource"]["modifierExtension"] = [{"url": "http://example.org/unknown", "valueBoolean": True}]
            bundle["entry"].append(bad)
        (dest / path.name).write_text(json.dumps(bundle, ensure_ascii=False), encoding="utf-8")
    return markers


def _mark_records(src, dest) -> list[str]:
    shutil.copytree(src, dest)
    markers: list[str] = []
    ids: dict[str, str] = {}
    rows = list(csv.reader(io.StringIO((dest / "patients.csv").read_text(encoding="utf-8-sig"))))
    head = rows[0] + ["address"]
    for n, r in enumerate(rows[1:]):
        ids[r[0]] = f"{MARK}H{n:05d}"
        r[head.index("patient_name")] = f"{MARK}姓名{n}"
        r[head.index("phone")] = f"139{MARK}{n:04d}"
        r.append(f"北京市{MARK}路{n}号")
        markers += [ids[r[0]], r[head.index("patient_name")], r[head.index("phone")], r[-1]]
    rows[0] = head
    for f in dest.glob("*.csv"):
        text = (dest / f.name).read_text(encoding="utf-8-sig") if f.name != "patients.csv" else None
        if text is None:
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows(rows)
            text = buf.getvalue()
        for old, new in ids.items():  # the hospital id everywhere it occurs (row ids embed it too)
            text = text.replace(old, new)
        f.write_text(text, encoding="utf-8")
    # one broken row: the quarantine payload must not carry the name, phone or hospital id
    orders = (dest / "drug_orders.csv").read_text(encoding="utf-8").splitlines()
    parts = next(csv.reader([orders[1]]))
    parts[2] = "2023-02-30"
    orders.append(",".join(parts).replace("-001,", "-999,", 1))
    (dest / "drug_orders.csv").write_text("\n".join(orders) + "\n", encoding="utf-8")
    return markers


def _search(url: str, markers: list[str]) -> dict[str, set[str]]:
    """table.column -> markers found in it, over every column of every table of cdm, results and etl."""
    engine = sa.create_engine(url)
    insp = sa.inspect(engine)
    found: dict[str, set[str]] = {}
    with engine.connect() as con:
        for schema in ("cdm", "results", "etl"):
            for table in insp.get_table_names(schema=schema):
                res = con.execute(sa.text(f"select * from {schema}.{table}"))
                cols = list(res.keys())
                FIGURES["columns_searched"] += len(cols)
                for row in res:
                    for c, v in zip(cols, row, strict=True):
                        FIGURES["cells_searched"] += 1
                        if v is not None and MARK in str(v):
                            found.setdefault(f"{schema}.{table}.{c}", set()).update(
                                m for m in markers if m in str(v))
    engine.dispose()
    return found


def _run(*args) -> str:
    r = cli(*args)
    assert r.returncode in (0, 3), r.stderr[-2000:]
    FIGURES["output_chars_searched"] += len(r.stdout) + len(r.stderr)
    return r.stdout + r.stderr


@pytest.mark.slow
def test_no_identifier_in_omop_tables_or_logs(url, synth_fhir, synth_records, tmp_path):
    fhir_markers = _mark_fhir(synth_fhir, tmp_path / "fhir")
    rec_markers = _mark_records(synth_records, tmp_path / "rec")
    markers = fhir_markers + rec_markers
    FIGURES["markers"] += len(markers)
    out = _run("--db", url, "-vv", "load-fhir", str(tmp_path / "fhir"), "--workers", "1")
    out += _run("--db", url, "-vv", "load-records", "--mapping", "synth_site", str(tmp_path / "rec"))
    out += _run("--db", url, "-vv", "build-cohort")
    assert MARK not in out, [ln for ln in out.splitlines() if MARK in ln][:5]

    found = _search(url, markers)
    omop = {k: v for k, v in found.items() if not k.startswith("etl.")}
    assert not omop, omop
    assert set(found) <= {"etl.quarantine.payload"}, found
    leaked_records = {m for v in found.values() for m in v} & set(rec_markers)
    assert not leaked_records, leaked_records
    # the FHIR patient that was rejected is kept (whole) in the site-local quarantine, nothing else is
    # (and the search does find markers where they are: the rejected patient's payload)
    assert found.get("etl.quarantine.payload") and found["etl.quarantine.payload"] <= set(fhir_markers[:5])


def test_passwords_never_printed(pg_cdm_url, duckdb_url, tmp_path, synth_fhir):
    secret = "S3cr3tPw_ZQX"
    bad_hosts = [f"postgresql+psycopg://l059:{secret}@127.0.0.1:1/none",
                 f"postgresql://l059:{secret}@no-such-host.invalid/db",
                 f"postgresql+psycopg://l059:{secret}@127.0.0.1:1/none?sslmode=require"]
    for db in bad_hosts:
        for args in (["--db", db, "-vv", "build-cohort"], ["--db", db, "-vv", "load-fhir", str(synth_fhir)],
                     ["--db", db, "init-db"]):
            r = cli(*args)
            assert r.returncode == 1, r.stderr
            assert secret not in r.stdout + r.stderr, r.stderr
            FIGURES["output_chars_searched"] += len(r.stdout) + len(r.stderr)
    # a reachable server with the password in the URL (ignored by a trust server, still never printed),
    # and the env var form
    url = sa.engine.make_url(pg_cdm_url).set(password=secret).render_as_string(hide_password=False)
    r = cli("--db", url, "-vv", "load-fhir", str(synth_fhir), "--workers", "1", "--etl-schema", "no such")
    out = r.stdout + r.stderr
    assert secret not in out and r.returncode == 2
    r = cli("-vv", "build-cohort", "--cohort-table", "bad name", env={"L059_OMOP_DB": url})
    assert secret not in r.stdout + r.stderr and r.returncode == 2
