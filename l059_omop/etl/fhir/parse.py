"""Worker-side work of the FHIR loader: parse, validate with ``fhir.resources.R4B``, map. Pure (no database):
a task is a chunk of NDJSON lines, a JSON file, or an in-memory Bundle; the result is picklable.

This is what runs in the loader's process pool, so parsing, validation and mapping use every core while the
main process writes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from l059_omop.etl.block import FactBlock, split_units
from l059_omop.etl.fhir.mappers import Context, map_resource, unknown_modifier_extension
from l059_omop.etl.fhir.rules import rules
from l059_omop.etl.model import Definition, Quarantined, Skipped, SourceUnit
from l059_omop.etl.route import dates_plausible
from l059_omop.resources import mappings_path


@dataclass
class Task:
    """A unit of work for a worker: NDJSON lines of a file, a whole JSON file, or a Bundle already in memory."""

    kind: str                      # "ndjson" | "json" | "bundle"
    locator: str                   # file name or server URL
    lines: list | None = None      # ndjson (gzipped): [(line number, text)]
    offset: int = 0                # ndjson (plain): the worker reads ``length`` bytes from ``offset``,
    length: int = 0                # whose first line is line ``first_line`` of the file
    first_line: int = 1
    data: dict | None = None       # bundle
    timezone: str | None = None
    validate: bool = True
    in_folder: bool = False        # json: a non-FHIR JSON file found in a folder is ignored, not quarantined
    columnar: bool = False         # hand units of facts back as a FactBlock (etl.block), their ids hashed
    source_system: str | None = None  # with columnar: the system the ids are hashed for


@dataclass
class Result:
    read: Counter = field(default_factory=Counter)
    units: list[SourceUnit] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    definitions: list[Definition] = field(default_factory=list)
    dispensed: list[str] = field(default_factory=list)  # MedicationRequest ids a completed dispense carries out
    # (Medication id, MedicationRequest id): a dispense that waits for its Medication carries the order out
    # only once that Medication is read (never read: the dispense is quarantined and the order stays)
    dispensed_pending: list[tuple[str, str]] = field(default_factory=list)
    block: FactBlock | None = None  # Task.columnar: the units of facts only, as columns (the rest in units)
    notes: Counter = field(default_factory=Counter)


BUNDLE_TYPES = ("collection", "transaction", "batch", "searchset", "document", "transaction-response",
                "batch-response", "history", "message")


@lru_cache(maxsize=1)
def _rules_digest() -> str:
    h = hashlib.sha256()
    for name in ("rules.yaml", "response_values.csv"):
        h.update(mappings_path("fhir", name).read_bytes())
    return h.hexdigest()[:16]


@lru_cache(maxsize=64)
def _model(resource_type: str):
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(resource_type)


def _validation_reason(exc) -> str:
    try:
        errors = exc.errors()
    except Exception:  # noqa: BLE001
        return f"R4B validation: {str(exc).splitlines()[0]}"
    first = errors[0] if errors else {}
    loc = ".".join(str(x) for x in first.get("loc", ()))
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"R4B validation: {loc}: {first.get('msg', '')}{more}"


def digest(payload: str, timezone: str | None) -> str:
    """Content hash of a record as mapped: its text, the rules' version and the time zone."""
    h = _digest_prefix(timezone).copy()
    h.update(payload.encode("utf-8"))
    return h.hexdigest()


@lru_cache(maxsize=8)
def _digest_prefix(timezone: str | None):
    return hashlib.sha256(f"{_rules_digest()}|{timezone or ''}|".encode())


def process_resource(res, ctx: Context, payload: str | None, out: Result, validate: bool = True,
                     fallback_id: str | None = None, check_dates: bool = True) -> None:
    """Validate and map one resource into ``out``; ``check_dates=False``: the caller sets each unit's
    ``dates_checked`` (split_units does, a block at a time)."""
    r = rules()
    if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
        out.read[None] += 1
        out.quarantined.append(Quarantined(None, None, ctx.locator, "not a FHIR resource: no resourceType",
                                           payload or json.dumps(res, ensure_ascii=False)[:100000]))
        return
    rtype = res["resourceType"]
    out.read[rtype] += 1
    sid = res.get("id") or fallback_id
    try:
        model = _model(rtype)
    except Exception:  # noqa: BLE001 - fhir.resources raises different errors for unknown names
        model = None
    if model is None:
        out.quarantined.append(Quarantined(rtype, sid, ctx.locator, f"unknown resource type: {rtype}",
                                           payload or _dumps(res)))
        return
    if rtype not in _mapped_types():
        out.skipped.append(Skipped(rtype, f"resource type {rtype} is not used by the project"))
        return
    if payload is None:
        payload = _dumps(res)
    if _lone_surrogate(res, payload):
        out.quarantined.append(Quarantined(rtype, sid, ctx.locator, "invalid unicode: a lone surrogate "
                                           "(\\ud800-\\udfff escape) in a string", payload))
        return
    if "modifierExtension" in payload:
        url = unknown_modifier_extension(res, r.known_modifier_extensions)
        if url:
            out.quarantined.append(Quarantined(rtype, sid, ctx.locator, f"unknown modifierExtension: {url}", payload))
            return
    if validate:
        try:
            model.model_validate(res)
        except Exception as exc:  # noqa: BLE001 - pydantic ValidationError and friends
            out.quarantined.append(Quarantined(rtype, sid, ctx.locator, _validation_reason(exc), payload))
            return
    if not sid:
        out.quarantined.append(Quarantined(rtype, None, ctx.locator, "missing id: the resource has no id or fullUrl",
                                           payload))
        return
    try:
        got = map_resource(res, ctx, sid, r)
    except Exception as exc:  # noqa: BLE001 - a shape the mappers did not expect must not stop the load
        out.quarantined.append(Quarantined(rtype, sid, ctx.locator, f"mapping failed: {type(exc).__name__}: {exc}",
                                           payload))
        return
    if isinstance(got, SourceUnit):
        got.content_sha256 = digest(payload, ctx.timezone)
        if check_dates:
            got.dates_checked = dates_plausible(got)
        out.units.append(got)
        # a dispense whose dates the sink will quarantine carries nothing out: its order stays the exposure
        if rtype == "MedicationDispense" and not got.skip_rule and (got.dates_checked or dates_plausible(got)):
            for ref in res.get("authorizingPrescription") or []:
                hit = ctx.resolve((ref or {}).get("reference") or "")
                if hit and hit[0] == "MedicationRequest":
                    med = next((f.medication for f in got.facts if f.medication), None)
                    if med is None:
                        out.dispensed.append(hit[1])
                    else:
                        out.dispensed_pending.append((med, hit[1]))
    elif isinstance(got, Quarantined):
        got.payload = payload
        out.quarantined.append(got)
    elif isinstance(got, Skipped):
        out.skipped.append(got)
    else:
        out.definitions.append(got)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _lone_surrogate(res: dict, payload: str) -> bool:
    """JSON may escape a lone UTF-16 surrogate ("\\ud800"); such a string cannot be stored as UTF-8."""
    if payload.isascii() and ("\\u" not in payload or not _SURROGATE_ESCAPE.search(payload)):
        return False
    try:
        (payload if not _SURROGATE_ESCAPE.search(payload) else _dumps(res)).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@lru_cache(maxsize=1)
def _mapped_types() -> frozenset:
    from l059_omop.etl.fhir.mappers import MAPPERS

    return frozenset(MAPPERS) | frozenset(rules().raw.get("definitions") or [])


def _dumps(res) -> str:
    return json.dumps(res, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _id_from_full_url(full_url: str | None) -> str | None:
    if not full_url:
        return None
    if full_url.startswith("urn:uuid:"):
        return full_url[9:]
    if full_url.startswith("urn:oid:"):
        return full_url[8:]
    parts = full_url.rstrip("/").split("/")
    return parts[-1] if parts else None


_PRIORITY = {"Patient": 0, "Encounter": 1, "Medication": 2, "Condition": 3, "MedicationDispense": 3}


def type_priority(resource_type: str | None) -> int:
    """Resources others refer to first, so a batch usually finds its references already loaded."""
    return _PRIORITY.get(resource_type or "", 4)


def process_bundle(bundle: dict, locator: str, timezone: str | None, out: Result, validate: bool = True) -> None:
    """Every entry of a Bundle (any type), references resolved within it (fullUrl, conditional, contained)."""
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        out.read[None] += 1
        out.quarantined.append(Quarantined(None, None, locator, "not a Bundle: entry is not a list",
                                           _dumps(bundle)[:100000]))
        return
    ctx = Context(locator=locator, timezone=timezone)
    for e in entries:
        res = e.get("resource") if isinstance(e, dict) else None
        if not isinstance(res, dict):
            continue
        rtype, rid = res.get("resourceType"), res.get("id") or _id_from_full_url(e.get("fullUrl"))
        if not isinstance(rtype, str) or not isinstance(rid, str):
            continue
        if isinstance(e.get("fullUrl"), str):
            ctx.full_urls[e["fullUrl"]] = (rtype, rid)
        ctx.full_urls[f"{rtype}/{rid}"] = (rtype, rid)
        idents = res.get("identifier") or []
        for ident in idents if isinstance(idents, list) else [idents]:
            if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                ctx.conditional[f"{rtype}?identifier={ident.get('system', '')}|{ident['value']}"] = (rtype, rid)
                ctx.conditional[f"{rtype}?identifier={ident['value']}"] = (rtype, rid)
        cond = (e.get("request") or {}).get("ifNoneExist") if isinstance(e.get("request"), dict) else None
        if isinstance(cond, str):
            ctx.conditional[f"{rtype}?{cond}"] = (rtype, rid)
        if rtype == "Medication":
            for k in (e.get("fullUrl"), rid, f"Medication/{rid}"):
                if k:
                    ctx.medications[k] = res
    def prio(e) -> int:
        res = e.get("resource") if isinstance(e, dict) else None
        return type_priority(res.get("resourceType") if isinstance(res, dict) else None)

    order = sorted(range(len(entries)), key=lambda i: prio(entries[i]))
    for i in order:
        e = entries[i]
        if not isinstance(e, dict):
            out.read[None] += 1
            out.quarantined.append(Quarantined(None, None, f"{locator}#entry[{i}]",
                                               "not a Bundle entry: not a JSON object", _dumps(e)))
            continue
        res = e.get("resource")
        if res is None:
            continue  # a DELETE / GET request entry carries no resource
        if (e.get("search") or {}).get("mode") == "outcome":
            continue  # a server's OperationOutcome about the search
        ctx.locator = f"{locator}#entry[{i}]"
        if isinstance(res, dict) and res.get("resourceType") == "Bundle":
            process_bundle(res, ctx.locator, timezone, out, validate)
            ctx.locator = locator
            continue
        process_resource(res, ctx, None, out, validate, _id_from_full_url(e.get("fullUrl")))


def _read_lines(task: Task) -> Iterator[tuple[int, str]]:
    """The non-blank lines of a plain NDJSON task's byte range, numbered; bytes that are not UTF-8 stay as
    surrogates (that line is quarantined, the rest loads); a UTF-8 byte order mark opening the file is dropped."""
    with open(task.locator, "rb") as fh:
        fh.seek(task.offset)
        data = fh.read(task.length)
    if task.offset == 0 and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for i, line in enumerate(data.decode("utf-8", "surrogateescape").split("\n")):
        if line.strip():
            yield task.first_line + i, line[:-1] if line.endswith("\r") else line


def run_task(task: Task) -> Result:
    """Entry point of a worker process."""
    out = _run_task(task)
    if task.columnar and out.units:
        if task.kind != "ndjson":  # (NDJSON lines leave the date check to split_units)
            for u in out.units:
                u.dates_checked = dates_plausible(u)
        out.block, out.units = split_units(out.units, task.source_system, check_dates=task.kind == "ndjson")
    return out


def _run_task(task: Task) -> Result:
    out = Result()
    if task.kind == "ndjson":
        ctx = Context(timezone=task.timezone)  # one for the task's lines: a line has no references of its own
        for lineno, text in (task.lines if task.lines is not None else _read_lines(task)):
            ctx.locator = f"{task.locator}:{lineno}"
            try:
                if not text.isascii():
                    text.encode("utf-8")
            except UnicodeEncodeError:  # bytes that are not UTF-8 (read with surrogateescape)
                out.read[None] += 1
                out.quarantined.append(Quarantined(None, None, ctx.locator, "invalid UTF-8: bytes that are not "
                                                   "UTF-8 in the line", text[:100000]))
                continue
            try:
                res = json.loads(text)
            except (ValueError, RecursionError) as exc:
                out.read[None] += 1
                out.quarantined.append(Quarantined(None, None, ctx.locator, f"invalid JSON: {exc}", text[:100000]))
                continue
            if isinstance(res, dict) and res.get("resourceType") == "Bundle":
                out.read["Bundle"] += 0
                process_bundle(res, ctx.locator, task.timezone, out, task.validate)
                continue
            process_resource(res, ctx, text.strip(), out, task.validate, check_dates=not task.columnar)
        return out
    if task.kind == "json":
        try:
            text = Path(task.locator).read_text(encoding="utf-8-sig")
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            out.read[None] += 1
            out.quarantined.append(Quarantined(None, None, task.locator, f"invalid JSON: {exc}", None))
            return out
    else:
        data = task.data
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        process_bundle(data, task.locator, task.timezone, out, task.validate)
    elif task.in_folder and not (isinstance(data, dict) and "resourceType" in data):
        out.notes["JSON files in a folder ignored: not FHIR (no resourceType)"] += 1
    else:
        process_resource(data, Context(locator=task.locator, timezone=task.timezone), None, out, task.validate)
    return out
