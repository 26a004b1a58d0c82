"""load-fhir --server against a real FHIR server on 127.0.0.1 started by the test: sekmet-fhir (pinned in the
test extras), bound to loopback, its order simulator off, bearer-token auth. Synthetic bundles are posted to
it; loading from the server gives the same CDM as loading the files. Retries, paging and clear errors are
checked against a tiny http.server as well."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
import sqlalchemy as sa
from fhir_builders import bundle, patient_resources, write_json

from l059_omop.db.api import init_db
from l059_omop.errors import RuntimeFailure
from l059_omop.etl.fhir import server as server_mod
from l059_omop.etl.fhir.load import load_fhir
from l059_omop.etl.fhir.server import FhirClient

pytest.importorskip("sekmet")
TOKEN = "test-token-7c1f"
CDM = ["person", "death", "visit_occurrence", "condition_occurrence", "measurement", "observation",
       "drug_exposure", "procedure_occurrence", "observation_period"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sekmet(tmp_path_factory):
    root = tmp_path_factory.mktemp("sekmet")
    port = _free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    (root / "settings.yaml").write_text(json.dumps({
        "base_url": base, "host": "127.0.0.1", "port": port, "data_dir": str(root / "data"),
        "db_path": str(root / "data" / "sekmet.db"), "own_private_key_path": str(root / "keys" / "k.pem"),
        "log_inbound": False, "simulator": {"enabled": False},
        "server_auth": {"types": ["bearer"], "tokens": [TOKEN]}, "validation": {"inbound": "warn"}}))
    (root / "data").mkdir()
    env = dict(os.environ, SEKMET_CONFIG=str(root / "settings.yaml"))
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "sekmet.main:app_factory", "--factory", "--host",
                             "127.0.0.1", "--port", str(port), "--log-level", "warning"], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"))  # noqa: SIM115
    try:
        for _ in range(150):
            try:
                if requests.get(f"{base}/metadata", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None:
                pytest.fail(f"sekmet exited: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        else:
            pytest.fail("sekmet did not start")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _post(base: str, b: dict) -> None:
    r = requests.post(base, json=b, timeout=120, headers={"Authorization": f"Bearer {TOKEN}",
                                                          "Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text[:500]


def _cdm(engine) -> dict:
    with engine.connect() as c:
        return {t: sorted(tuple(str(x) for x in r) for r in c.execute(sa.text(f"select * from cdm.{t}")))
                for t in CDM}


def test_server_load_equals_file_load(sekmet, tmp_path, monkeypatch):
    resources = [r for i in range(5) for r in patient_resources(f"s{i}", deceased=None if i % 2 else "2021-02-01")]
    # the server keeps ids given by PUT in a transaction
    _post(sekmet, bundle(resources, kind="transaction"))
    files = write_json(tmp_path / "in" / "all.json", bundle(resources))
    monkeypatch.setattr(server_mod, "PAGE_SIZE", 2)  # Patient search over three pages
    monkeypatch.setenv("L059_FHIR_TOKEN", TOKEN)
    a = sa.create_engine(f"duckdb:///{tmp_path / 'a.duckdb'}")
    b = sa.create_engine(f"duckdb:///{tmp_path / 'b.duckdb'}")
    init_db(a)
    init_db(b)
    ra = load_fhir(a, server=sekmet, source_system="urn:test:site", workers=2)
    rb = load_fhir(b, [files], source_system="urn:test:site", workers=1)
    assert ra.quarantined == 0 and not ra.check()
    assert ra.t("Patient").read == 5
    assert {k: (c.read, c.mapped) for k, c in ra.types.items()} == {k: (c.read, c.mapped) for k, c in rb.types.items()}
    assert _cdm(a) == _cdm(b)
    with a.connect() as c:
        stored = " ".join(str(x) for x in c.execute(sa.text("select source, counts_json from etl.load_run")).one())
    assert TOKEN not in stored and sekmet in stored
    # a reload from the server changes nothing
    again = load_fhir(a, server=sekmet, source_system="urn:test:site", workers=1)
    assert sum(again.rows_inserted.values()) == 0


def test_server_without_token_is_a_clear_error(sekmet, monkeypatch):
    monkeypatch.delenv("L059_FHIR_TOKEN", raising=False)
    client = FhirClient(sekmet, retries=0)
    client.check()  # metadata is public
    with pytest.raises(RuntimeFailure, match="HTTP 401"):
        client.get("Patient")


class _Flaky(http.server.BaseHTTPRequestHandler):
    calls: list = []

    def log_message(self, *a):
        pass

    def do_GET(self):  # noqa: N802 - http.server API
        self.calls.append((self.path, self.headers.get("Authorization")))
        if self.path.startswith("/html"):
            body, ctype, code = b"<html>hello</html>", "text/html", 200
        elif len(self.calls) <= 2:
            body, ctype, code = b"{}", "application/json", 429 if len(self.calls) == 1 else 503
        else:
            body = json.dumps({"resourceType": "CapabilityStatement", "rest": []}).encode()
            ctype, code = "application/fhir+json", 200
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        if code == 429:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_retries_backoff_and_not_fhir(monkeypatch):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        monkeypatch.setenv("MY_TOKEN", "abc")
        client = FhirClient(base, token_env="MY_TOKEN", backoff=0.01)
        assert client.check()["resourceType"] == "CapabilityStatement"
        assert len(_Flaky.calls) == 3 and _Flaky.calls[0][1] == "Bearer abc"
        with pytest.raises(RuntimeFailure, match="does not answer FHIR"):
            FhirClient(base + "/html", backoff=0.01).check()
    finally:
        srv.shutdown()
    with pytest.raises(RuntimeFailure, match="unreachable"):
        FhirClient(f"http://127.0.0.1:{_free_port()}", retries=1, backoff=0.01).check()
