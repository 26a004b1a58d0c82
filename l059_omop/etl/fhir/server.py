"""A small FHIR R4 REST client for ``load-fhir --server``: Patient search with paging (Bundle.link next), each
patient's ``$everything`` where the server supports it, else per-type searches; bearer token from an
environment variable (never logged); timeouts; retries with backoff on 429 / 5xx and connection errors.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from urllib.parse import urljoin

import requests

from l059_omop.errors import BadInput, RuntimeFailure
from l059_omop.etl.fhir.parse import Task

log = logging.getLogger(__name__)

# per-type searches when $everything is not offered: (type, search parameter for the patient)
PATIENT_SEARCHES = (("Encounter", "patient"), ("Condition", "patient"), ("Observation", "patient"),
                    ("Procedure", "patient"), ("MedicationRequest", "patient"),
                    ("MedicationAdministration", "patient"), ("MedicationStatement", "patient"),
                    ("MedicationDispense", "patient"), ("AdverseEvent", "subject"))
_INCLUDE = {"MedicationRequest": "MedicationRequest:medication",
            "MedicationAdministration": "MedicationAdministration:medication",
            "MedicationStatement": "MedicationStatement:medication",
            "MedicationDispense": "MedicationDispense:medication"}
FHIR_JSON = "application/fhir+json"
PAGE_SIZE = 100


class FhirClient:
    def __init__(self, base: str, token_env: str = "L059_FHIR_TOKEN", timeout: float = 30.0, retries: int = 5,
                 backoff: float = 0.5, page_size: int | None = None) -> None:
        if not base.startswith(("http://", "https://")):
            raise BadInput(f"--server: not an http(s) URL: {base!r}")
        self.base = base.rstrip("/")
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.page_size = page_size or PAGE_SIZE
        self.session = requests.Session()
        self.session.headers["Accept"] = FHIR_JSON
        token = os.environ.get(token_env)
        if token:
            self.session.headers["Authorization"] = f"Bearer {token.strip()}"
        self.everything = False
        self.types: set[str] = set()  # resource types the server says it supports

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else urljoin(self.base + "/", path.lstrip("/"))

    def get(self, path: str, params: dict | None = None, optional: bool = False) -> dict | None:
        """GET a FHIR JSON resource, retrying 429 / 5xx / connection errors with exponential backoff."""
        url = self._url(path)
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                resp = self.session.get(url, params=params, timeout=self.timeout)
            except requests.RequestException as exc:
                if attempt == self.retries:
                    raise RuntimeFailure(f"FHIR server {self.base} unreachable: {type(exc).__name__}") from None
                time.sleep(delay)
                delay *= 2
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                if attempt == self.retries:
                    raise RuntimeFailure(f"FHIR server {self.base}: HTTP {resp.status_code} on {_path(url)} "
                                         f"after {self.retries} retries")
                wait = delay
                ra = resp.headers.get("Retry-After")
                if ra and ra.isdigit():
                    wait = min(float(ra), 30.0)
                log.info("HTTP %s from %s, retrying in %.1f s", resp.status_code, _path(url), wait)
                time.sleep(wait)
                delay *= 2
                continue
            if resp.status_code in (401, 403):
                raise RuntimeFailure(f"FHIR server {self.base}: HTTP {resp.status_code} (set the bearer token "
                                     "in the environment variable named by --token-env)")
            if resp.status_code >= 400:
                if optional and resp.status_code in (400, 404, 405, 501):
                    log.info("HTTP %s on optional search %s: skipped", resp.status_code, _path(url))
                    return None
                raise RuntimeFailure(f"FHIR server {self.base}: HTTP {resp.status_code} on {_path(url)}")
            try:
                data = resp.json()
            except ValueError:
                raise RuntimeFailure(f"{self.base} does not answer FHIR: {_path(url)} returned "
                                     f"{resp.headers.get('Content-Type', 'no content type')}, not JSON") from None
            if not isinstance(data, dict) or "resourceType" not in data:
                raise RuntimeFailure(f"{self.base} does not answer FHIR: no resourceType in the answer to "
                                     f"{_path(url)}")
            return data
        raise AssertionError("unreachable")

    def check(self) -> dict:
        """Read the CapabilityStatement; note whether Patient/$everything is offered."""
        cap = self.get("metadata")
        if cap.get("resourceType") != "CapabilityStatement":
            raise RuntimeFailure(f"{self.base} does not answer FHIR: /metadata is a {cap.get('resourceType')}, "
                                 "not a CapabilityStatement")
        for rest in cap.get("rest") or []:
            ops = [o.get("name") for o in rest.get("operation") or []]
            for res in rest.get("resource") or []:
                self.types.add(res.get("type"))
                if res.get("type") == "Patient":
                    ops += [o.get("name") for o in res.get("operation") or []]
            if any(o in ("everything", "patient-everything", "$everything") for o in ops):
                self.everything = True
        return cap

    def pages(self, path: str, params: dict | None = None, optional: bool = False) -> Iterator[dict]:
        """A search and its following pages (Bundle.link relation=next); ``optional``: a 4xx ends it quietly."""
        page = self.get(path, params, optional)
        seen = set()
        while page is not None:
            yield page
            nxt = next((link.get("url") for link in page.get("link") or [] if link.get("relation") == "next"), None)
            if not nxt or nxt in seen:
                return
            seen.add(nxt)
            page = self.get(nxt, None, optional)


def _path(url: str) -> str:
    return url.split("?")[0]


def _belongs(res: dict, pid: str) -> bool:
    """A resource of a per-patient search really is this patient's (or is an included Medication ...)."""
    ref = (res.get("subject") or res.get("patient") or {}).get("reference")
    if ref is None:
        return True
    return ref == f"Patient/{pid}" or ref.endswith(f"/Patient/{pid}")


def server_tasks(client: FhirClient, timezone: str | None, validate: bool = True) -> Iterator[Task]:
    """Pages of patients, then each patient's data, as worker tasks (one Bundle page each)."""
    for page in client.pages("Patient", {"_count": client.page_size}):
        ids = [e["resource"]["id"] for e in page.get("entry") or []
               if (e.get("resource") or {}).get("resourceType") == "Patient" and e["resource"].get("id")
               and (e.get("search") or {}).get("mode", "match") == "match"]
        yield Task("bundle", f"{client.base}/Patient?page", data=page, timezone=timezone, validate=validate)
        for pid in ids:
            searches = PATIENT_SEARCHES
            if client.everything:
                seen: set[str] = set()
                for p in client.pages(f"Patient/{pid}/$everything", {"_count": 500}):
                    p["entry"] = [e for e in p.get("entry") or []
                                  if (e.get("resource") or {}).get("resourceType") != "Patient"]
                    seen.update((e.get("resource") or {}).get("resourceType") for e in p["entry"])
                    yield Task("bundle", f"{client.base}/Patient/{pid}/$everything", data=p, timezone=timezone,
                               validate=validate)
                # servers differ in what their Patient compartment holds (some leave out AdverseEvent):
                # a mapped type $everything did not return is searched for explicitly
                searches = tuple((t, prm) for t, prm in PATIENT_SEARCHES if t not in seen)
            for rtype, param in searches:
                params = {param: f"Patient/{pid}", "_count": 500}
                if rtype in _INCLUDE:
                    params["_include"] = _INCLUDE[rtype]
                for p in client.pages(rtype, params, optional=client.everything or rtype not in client.types):
                    # a server that ignores an unknown search parameter answers with everyone's resources
                    p["entry"] = [e for e in p.get("entry") or [] if _belongs(e.get("resource") or {}, pid)]
                    yield Task("bundle", f"{client.base}/{rtype}?{param}=Patient/{pid}", data=p,
                               timezone=timezone, validate=validate)
