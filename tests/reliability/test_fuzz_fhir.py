"""Fuzzing the FHIR loader (hypothesis): malformed and adversarial Bundles and NDJSON built from a valid
synthetic patient — truncated JSON, bad UTF-8 bytes, lone surrogates, wrong types, huge strings, deep
nesting, impossible dates, negative and non-finite quantities, duplicate ids, reference cycles, unknown
modifierExtensions, hostile ids.

Whatever the input, the load ends (no exception but BadInput), every record read is mapped, quarantined with
a reason or skipped by a rule, the counts reconcile in the returned report and in etl.load_run, and
etl.quarantine holds exactly the quarantined records of the run. One database per test function (the
examples share it, as successive loads of a site do).
"""

from __future__ import annotations

import copy
import itertools
import json
import math

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l059_omop.etl.fhir.load import load_fhir
from tests.reliability.helpers import assert_one_line_error, cli

EXAMPLES = {"duckdb": 50, "postgresql": 25}
FIGURES = {"inputs": 0, "records_read": 0, "quarantined": 0}
_counter = itertools.count()

BAD_DATES = ["2023-02-30", "2023-13-01", "2023-00-10", "0000-01-01", "2023-02-29", "9999-12-31", "2023-04-31",
             "2023-01-01T25:61:00+08:00", "20230101", "", "2023-1-1", "-2023-01-01", "2023-01-01T00:00:00+99:00",
             "1899-12-31", "2023-06-15T10:00:00.123456789Z", "２０２３-０１-０１"]
HOSTILE = ["'; drop table cdm.person; --", 'x" or 1=1 --', "Robert'); DROP TABLE person;--", "%s%s%n", "\x00",
           "\u202e\u0000\ufeff", "../../etc/passwd", "${jndi:ldap://x}", "🂡" * 3]


def _base_entries(synth_fhir) -> list[dict]:
    path = sorted((synth_fhir / "bundles").rglob("*.json"))[0]
    entries = json.loads(path.read_text(encoding="utf-8"))["entry"]
    keep, seen = [], set()
    for e in entries:
        t = e["resource"]["resourceType"]
        if t not in seen or t in ("MedicationRequest", "MedicationDispense"):
            seen.add(t)
            keep.append(e)
    return keep[:12]


def _lone_surrogates():
    return st.text(alphabet=st.characters(categories=["Cs"]), min_size=1, max_size=4)


WEIRD = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.none(), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2), st.text(max_size=40),
    st.integers(min_value=10_000, max_value=300_000).map(lambda n: "x" * n), _lone_surrogates(),
    st.sampled_from(BAD_DATES), st.sampled_from(HOSTILE), st.floats(max_value=-1e-9, allow_nan=False))


def _paths(obj, prefix=()):
    """Every path to a value inside a resource (dict keys and list indexes)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _set(obj, path, value):
    for p in path[:-1]:
        obj = obj[p]
    if value is _DELETE:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value


_DELETE = object()


@st.composite
def mutation(draw, entries):
    """One mutation of the entry list: (kind, new entries)."""
    entries = copy.deepcopy(entries)
    kind = draw(st.sampled_from(["field", "delete", "date", "negative", "duplicate", "cycle", "modifier",
                                 "id", "type", "entries"]))
    usable = [j for j, e in enumerate(entries) if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    if not usable:
        return "none", entries
    i = draw(st.sampled_from(usable))
    res = entries[i]["resource"]
    paths = [p for p in _paths(res) if p[0] not in ("resourceType",)]
    if kind == "field":
        _set(res, draw(st.sampled_from(paths)), draw(WEIRD))
    elif kind == "delete":
        _set(res, draw(st.sampled_from(paths)), _DELETE)
    elif kind == "date":
        dated = [p for p in paths if isinstance(p[-1], str) and
                 any(w in p[-1] for w in ("Date", "date", "start", "end", "authoredOn", "whenHandedOver"))]
        if dated:
            _set(res, draw(st.sampled_from(dated)), draw(st.sampled_from(BAD_DATES)))
    elif kind == "negative":
        nums = [p for p in paths if p[-1] == "value" or p[-1] in ("valueInteger", "valueDecimal")]
        if nums:
            _set(res, draw(st.sampled_from(nums)), draw(st.sampled_from([-1, -14, -0.001, -1e308, 1e308, 0])))
    elif kind == "duplicate":
        dup = copy.deepcopy(entries[i])
        if draw(st.booleans()):
            dup["resource"].setdefault("meta", {})["versionId"] = draw(st.sampled_from(["1", "2", "x", ""]))
            dup["resource"]["language"] = "zh"
        entries.insert(draw(st.integers(0, len(entries))), dup)
    elif kind == "cycle":
        me = f"{res.get('resourceType')}/{res.get('id')}"
        choice = draw(st.sampled_from(["subject", "partOf", "hasMember", "link", "pair"]))
        if choice == "subject":
            res["subject"] = {"reference": me}
        elif choice == "partOf":
            res["partOf"] = [{"reference": me}]
        elif choice == "hasMember":
            res["hasMember"] = [{"reference": me}]
        elif choice == "link":
            res["link"] = [{"other": {"reference": me}, "type": "seealso"}]
        else:  # two observations derived from each other
            obs = [entries[j]["resource"] for j in usable
                   if entries[j]["resource"].get("resourceType") == "Observation" and "id" in entries[j]["resource"]]
            if obs:
                twin = copy.deepcopy(obs[0])
                twin["id"] = obs[0]["id"] + "-twin"
                obs[0]["derivedFrom"] = [{"reference": f"Observation/{twin['id']}"}]
                twin["derivedFrom"] = [{"reference": f"Observation/{obs[0]['id']}"}]
                entries.append({"fullUrl": f"urn:uuid:{twin['id']}", "resource": twin})
    elif kind == "modifier":
        target = res
        nested = [p for p in paths if isinstance(p[-1], str) and isinstance(_get(res, p), dict)]
        if nested and draw(st.booleans()):
            target = _get(res, draw(st.sampled_from(nested)))
        target["modifierExtension"] = [{"url": f"http://example.org/fhir/unknown-{draw(st.integers(0, 9))}",
                                        "valueBoolean": True}]
    elif kind == "id":
        res["id"] = draw(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=300), _lone_surrogates()))
    elif kind == "type":
        res["resourceType"] = draw(st.one_of(st.sampled_from(["Bogus", "", "patient", "Bundle", "Medication"]),
                                             WEIRD))
    elif kind == "entries":
        entries[i] = draw(st.sampled_from([{}, {"resource": None}, {"resource": 5}, {"resource": []}, 7, None,
                                           {"resource": {"resourceType": "Patient"}}]))
    return kind, entries


def _get(obj, path):
    for p in path:
        obj = obj[p]
    return obj


@st.composite
def fhir_input(draw, entries):
    """(file name, bytes, what) — a Bundle or NDJSON, possibly damaged at the byte level."""
    kinds, ents = [], entries
    for _ in range(draw(st.integers(1, 3))):
        kind, ents = draw(mutation(ents))
        kinds.append(kind)
    ndjson = draw(st.booleans())
    if ndjson:
        lines = [json.dumps(e.get("resource") if isinstance(e, dict) else e, ensure_ascii=draw(st.booleans()),
                            allow_nan=True) for e in ents]
        text = "\n".join(lines) + "\n"
        name = "input.ndjson"
    else:
        text = json.dumps({"resourceType": "Bundle", "type": draw(st.sampled_from(["collection", "transaction",
                                                                                  "searchset", "bogus"])),
                           "entry": ents}, ensure_ascii=draw(st.booleans()), allow_nan=True)
        name = "input.json"
    data = text.encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none", "none", "truncate", "bytes", "nest", "bom"]))
    if damage == "truncate":
        data = data[:draw(st.integers(0, max(0, len(data) - 1)))]
    elif damage == "bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b"\xe2\x82"])) \
            + data[at:]
    elif damage == "nest":
        depth = draw(st.sampled_from([50, 500, 5000, 100_000]))
        blob = b'{"a":' * depth + b"1" + b"}" * depth
        data = data.replace(b'"status":', b'"_deep":' + blob + b',"status":', 1) if b'"status":' in data else blob
    elif damage == "bom":
        data = b"\xef\xbb\xbf" + data
    kinds.append(damage)
    return name, data, "+".join(kinds)


def check_run(engine, report, figures: dict | None = None) -> None:
    """The run's counts reconcile, in the report and in etl.load_run, and quarantine rows match."""
    assert not report.check(), report.check()
    assert report.read == report.mapped + report.quarantined + report.skipped
    with engine.connect() as con:
        status, counts = con.execute(sa.text("select status, counts_json from etl.load_run where run_id = :r"),
                                     {"r": report.run_id}).one()
        qrows = con.execute(sa.text("select reason, source_locator from etl.quarantine where run_id = :r"),
                            {"r": report.run_id}).fetchall()
    stored = json.loads(counts)
    assert status.startswith("loaded"), status
    assert stored["totals"] == {"read": report.read, "mapped": report.mapped, "quarantined": report.quarantined,
                                "skipped": report.skipped}
    for t, c in stored["types"].items():
        assert c["read"] == c["mapped"] + sum(c["quarantined"].values()) + sum(c["skipped"].values()), t
    assert len(qrows) == report.quarantined
    assert all(reason and reason.strip() and loc for reason, loc in qrows)
    figures = FIGURES if figures is None else figures
    figures["inputs"] += 1
    figures["records_read"] += report.read
    figures["quarantined"] += report.quarantined


def _fuzz(url: str, synth_fhir, tmp_path, max_examples: int) -> None:
    entries = _base_entries(synth_fhir)
    engine = sa.create_engine(url)

    @settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(fhir_input(entries))
    def run(case):
        name, data, _what = case
        folder = tmp_path / f"case{next(_counter)}"
        folder.mkdir()
        (folder / name).write_bytes(data)
        report = load_fhir(engine, [folder / name], workers=1)
        check_run(engine, report)

    try:
        run()
    finally:
        engine.dispose()


def test_fuzz_fhir_duckdb(duck_cdm_url, synth_fhir, tmp_path):
    _fuzz(duck_cdm_url, synth_fhir, tmp_path, EXAMPLES["duckdb"])


@pytest.mark.postgres
def test_fuzz_fhir_postgresql(pg_cdm_url, synth_fhir, tmp_path):
    _fuzz(pg_cdm_url, synth_fhir, tmp_path, EXAMPLES["postgresql"])


def _adversarial_folder(synth_fhir, folder):
    """One file per kind of damage, for the CLI."""
    entries = _base_entries(synth_fhir)
    folder.mkdir()
    good = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries})
    (folder / "truncated.json").write_text(good[: len(good) // 2])
    (folder / "badbytes.ndjson").write_bytes(b'{"resourceType": "Patient", "id": "b\xff\xfe"}\n')
    (folder / "surrogate.ndjson").write_text('{"resourceType": "Patient", "id": "s1", "gender": "\\ud800"}\n')
    (folder / "deep.json").write_bytes(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    bad = copy.deepcopy(entries)
    bad[0]["resource"]["birthDate"] = "2023-02-30"
    bad[1]["resource"]["modifierExtension"] = [{"url": "http://example.org/unknown", "valueBoolean": True}]
    bad.append(copy.deepcopy(bad[2]))
    (folder / "bundle.json").write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": bad}))
    (folder / "nan.ndjson").write_text(json.dumps({"resourceType": "Observation", "id": "n1", "status": "final",
                                                   "code": {"text": "x"}, "subject": {"reference": "Patient/x"},
                                                   "valueQuantity": {"value": math.nan}}, allow_nan=True) + "\n")
    return folder


def test_cli_adversarial_folder_one_line_and_exit_3(duck_cdm_url, synth_fhir, tmp_path):
    folder = _adversarial_folder(synth_fhir, tmp_path / "bad")
    r = cli("--db", duck_cdm_url, "load-fhir", str(folder), "--workers", "2")
    assert r.returncode == 3, r.stderr
    assert_one_line_error(r)
    assert "quarantined" in r.stderr
    engine = sa.create_engine(duck_cdm_url)
    with engine.connect() as con:
        reasons = [x[0] for x in con.execute(sa.text("select reason from etl.quarantine"))]
        before = con.execute(sa.text("select count(*) from cdm.person")).scalar_one()
    engine.dispose()
    text = "\n".join(reasons)
    for what in ("invalid JSON", "unknown modifierExtension", "birthDate", "invalid UTF-8", "lone surrogate"):
        assert what in text, text
    # --strict: the same input is fatal, one line, exit 2, nothing more written
    r = cli("--db", duck_cdm_url, "load-fhir", "--strict", str(folder))
    assert r.returncode == 2
    assert_one_line_error(r)
    engine = sa.create_engine(duck_cdm_url)
    with engine.connect() as con:
        assert con.execute(sa.text("select count(*) from cdm.person")).scalar_one() == before
    engine.dispose()
