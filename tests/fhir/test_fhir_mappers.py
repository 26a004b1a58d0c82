"""Pure mapper tests: no database (DESIGN §5 rules, CONVENTIONS.md representations)."""

from __future__ import annotations

import datetime as dt

from fhir_builders import L059, SNOMED, bundle, cc, patient_resources

from l059_omop.etl.fhir import parse as parse_mod
from l059_omop.etl.fhir.mappers import Context, map_resource, parse_when
from l059_omop.etl.fhir.parse import Result, Task, process_bundle, run_task
from l059_omop.etl.ids import MAX_ID, hashed_id, key_text
from l059_omop.etl.model import Quarantined, Skipped, SourceUnit
from l059_omop.etl.route import route
from l059_omop.vocab import ConceptMatch


def _by_id(rs):
    return {r["id"]: r for r in rs}


def test_ids_fit_omop_integers_and_are_deterministic():
    ids = {hashed_id(key_text("s", "Patient", str(i))) for i in range(20000)}
    assert all(1 <= i <= MAX_ID for i in ids)
    assert hashed_id(key_text("s", "Patient", "7")) == hashed_id(key_text("s", "Patient", "7"))
    assert hashed_id("x", 1) != hashed_id("x")


def test_partial_dates_imputed_and_recorded_impossible_quarantined():
    ctx = Context()
    assert parse_when("2020-03", ctx, "onset") == (dt.date(2020, 3, 1), None)
    assert parse_when("2019", ctx, "onset") == (dt.date(2019, 1, 1), None)
    assert ctx.imputed == ["onset: day imputed", "onset: month and day imputed"]
    assert parse_when("2020-01-10T23:30:00+08:00", Context(), "x")[1] == dt.datetime(2020, 1, 10, 23, 30)
    # one time zone per instance: with --timezone UTC the date moves
    assert parse_when("2020-01-10T05:30:00+08:00", Context(timezone="UTC"), "x")[0] == dt.date(2020, 1, 9)
    res = {"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/p"},
           "code": cc(SNOMED, "254632001"), "onsetDateTime": "2020-02-30"}
    got = map_resource(res, Context(), "c")
    assert isinstance(got, Quarantined) and got.reason.startswith("impossible date")


def test_status_rules_and_entered_in_error():
    rs = _by_id(patient_resources())
    assert map_resource(rs["p1-prelim"], Context(), "p1-prelim").skip_rule == "status preliminary makes no row"
    assert map_resource(rs["p1-eie"], Context(), "p1-eie").skip_rule == "entered-in-error"
    assert map_resource(rs["p1-plan"], Context(), "p1-plan").skip_rule == "intent plan makes no row"
    not_done = dict(rs["p1-carbo"], status="not-done")
    assert map_resource(not_done, Context(), "x").skip_rule
    in_progress = dict(rs["p1-carbo"], status="in-progress")
    assert map_resource(in_progress, Context(), "x").skip_rule is None
    assert isinstance(map_resource({"resourceType": "Claim", "id": "x"}, Context(), "x"), Skipped)


def test_patient_death_rules():
    u = map_resource(patient_resources()[0], Context(), "p1")
    assert [t for t, _ in u.rows] == ["person", "death"]
    alive_bool = {"resourceType": "Patient", "id": "q", "birthDate": "1950", "deceasedBoolean": True}
    u = map_resource(alive_bool, Context(), "q")
    assert [t for t, _ in u.rows] == ["person"]  # deceasedBoolean only: no death row, reported
    assert any("deceasedBoolean" in x for x in u.imputed)
    person = u.rows[0][1]
    assert (person["year_of_birth"], person["month_of_birth"], person["gender_concept_id"]) == (1950, None, 0)


def test_anlotinib_end_date_from_days_supply():
    rs = _by_id(patient_resources(dose_mg=10))
    u = map_resource(rs["p1-anlo"], Context(), "p1-anlo")
    f = u.facts[0]
    assert f.code == ("L059", "ANLOTINIB-10MG") and f.days_supply == 14 and f.type_concept_id == 32838
    lookup = {f.code: ConceptMatch("L059", "ANLOTINIB-10MG", 2000000003, 2000000003, "Drug")}
    table, row = route(f, "MedicationRequest", "p1-anlo", lookup)
    assert table == "drug_exposure"
    assert row["drug_exposure_start_date"] == dt.date(2020, 4, 1)
    assert row["drug_exposure_end_date"] == dt.date(2020, 4, 14)  # start + days_supply - 1
    assert row["verbatim_end_date"] is None


def test_domain_routes_table_and_unmapped_counted():
    rs = _by_id(patient_resources())
    f = map_resource(rs["p1-stage"], Context(), "p1-stage").facts[0]
    unmapped: list = []
    lookup = {("L059", "VALG-ES"): ConceptMatch("L059", "VALG-ES", 2000000010, 2000000010, "Measurement")}
    assert route(f, "Observation", "p1-stage", lookup, unmapped)[0] == "measurement"
    f2 = map_resource(rs["p1-sclc"], Context(), "p1-sclc").facts[0]
    table, row = route(f2, "Condition", "p1-sclc", {}, unmapped)
    assert table == "condition_occurrence" and row["condition_concept_id"] == 0
    assert row["condition_source_value"] == "254632001"
    assert unmapped == [("SNOMED", "254632001")]


def test_tumour_response_and_ae_grade():
    rs = _by_id(patient_resources())
    f = map_resource(rs["p1-resp2"], Context(), "p1-resp2").facts[0]
    assert f.concept_override == 36305408 and f.value_code == ("L059", "RECIST-PD")  # worsened -> PD
    u = map_resource(rs["p1-ae1"], Context(), "p1-ae1")
    assert [x.key for x in u.facts] == ["", "grade"]
    grade = u.facts[1]
    assert grade.concept_override == 2000000045 and grade.value_number == 3.0 and grade.event.row == ""


def test_unknown_modifier_extension_quarantined():
    res = dict(patient_resources()[2], modifierExtension=[{"url": "http://example.org/negated",
                                                            "valueBoolean": True}])
    out = Result()
    process_bundle(bundle([res]), "b.json", None, out)
    assert len(out.quarantined) == 1
    assert out.quarantined[0].reason == "unknown modifierExtension: http://example.org/negated"
    assert out.quarantined[0].locator == "b.json#entry[0]"


def test_references_urn_uuid_contained_conditional():
    pat = {"resourceType": "Patient", "id": "pp", "birthDate": "1960-01-01",
           "identifier": [{"system": "urn:mrn", "value": "M1"}]}
    cond = {"resourceType": "Condition", "id": "cc1", "subject": {"reference": "urn:uuid:patient-pp"},
            "code": cc(SNOMED, "254632001"), "onsetDateTime": "2020-01-01"}
    cond2 = {"resourceType": "Condition", "id": "cc2", "subject": {"reference": "Patient?identifier=urn:mrn|M1"},
             "code": cc(SNOMED, "254632001"), "onsetDateTime": "2020-01-01"}
    med = {"resourceType": "Medication", "id": "m9", "code": cc(L059, "ANLOTINIB-8MG")}
    req = {"resourceType": "MedicationRequest", "id": "r1", "status": "active", "intent": "order",
           "subject": {"reference": "Patient/pp"}, "medicationReference": {"reference": "urn:uuid:medication-m9"},
           "authoredOn": "2020-02-01"}
    bad = {"resourceType": "Condition", "id": "cc3", "subject": {"reference": "urn:uuid:nowhere"},
           "code": cc(SNOMED, "254632001"), "onsetDateTime": "2020-01-01"}
    out = Result()
    process_bundle(bundle([cond, cond2, med, req, bad, pat], kind="transaction"), "t.json", None, out)
    units = {u.source_id: u for u in out.units}
    assert units["cc1"].facts[0].person == "pp" and units["cc2"].facts[0].person == "pp"
    assert units["r1"].facts[0].code == ("L059", "ANLOTINIB-8MG")
    assert [q.reason for q in out.quarantined] == ["unresolved reference: Condition.subject = urn:uuid:nowhere"]
    assert [d.source_id for d in out.definitions] == ["m9"]
    assert list(units)[0] == "pp"  # referenced types first


def test_ndjson_bad_lines_quarantined_with_line_numbers(tmp_path):
    rs = patient_resources()
    lines = [(1, '{"resourceType": "Patient", "id": "a", "birthDate": "1950-01-01"}'), (2, "{not json"),
             (3, '{"resourceType": "Patient", "id": "b", "birthDate": "1950-13-01"}'),
             (4, '{"resourceType": "Nonsense", "id": "c"}'), (5, '{"resourceType": "Observation", "id": "o", '
                                                                '"status": "final", "code": {"text": "x"}}')]
    out = run_task(Task("ndjson", "x.ndjson", lines=lines))
    assert [u.source_id for u in out.units] == ["a"]
    reasons = {q.locator: q.reason for q in out.quarantined}
    assert reasons["x.ndjson:2"].startswith("invalid JSON")
    assert reasons["x.ndjson:3"].startswith("R4B validation: birthDate")
    assert reasons["x.ndjson:4"] == "unknown resource type: Nonsense"
    assert reasons["x.ndjson:5"].startswith("missing reference: Observation.subject")
    assert sum(out.read.values()) == 5
    assert rs  # builders import used


def test_units_are_picklable():
    import pickle

    out = Result()
    process_bundle(bundle(patient_resources()), "b.json", None, out)
    again = pickle.loads(pickle.dumps(out))
    assert all(isinstance(u, SourceUnit) for u in again.units) and len(again.units) == len(out.units)


def test_reading_is_bounded(tmp_path):
    """NDJSON is read in chunks and at most ``prefetch`` tasks are in flight: memory does not follow the input."""
    from l059_omop.etl.fhir import load as load_mod

    path = tmp_path / "Observation.ndjson"
    path.write_text("".join(f'{{"resourceType": "Basic", "id": "{i}"}}\n' for i in range(5000)), encoding="utf-8")
    tasks = load_mod.file_tasks(load_mod.collect_files([tmp_path]), None)
    first = next(tasks)  # a generator, not a list; the worker reads the lines itself
    assert first.kind == "ndjson" and first.lines is None and first.offset == 0 and first.first_line == 1
    got = list(parse_mod._read_lines(first))
    assert len(got) == load_mod.NDJSON_CHUNK and got[-1] == (load_mod.NDJSON_CHUNK, f'{{"resourceType": "Basic", '
                                                                                  f'"id": "{load_mod.NDJSON_CHUNK - 1}"}}')
    second = next(tasks)
    assert second.offset == first.length and second.first_line == load_mod.NDJSON_CHUNK + 1

    pulled = []

    def items():
        for i in range(100):
            pulled.append(i)
            yield i

    class Ex:  # an executor whose futures are already done
        def submit(self, fn, x):
            from concurrent.futures import Future

            f = Future()
            f.set_result(fn(x))
            return f

    it = load_mod.ordered_map(Ex(), lambda x: x * 2, items(), prefetch=3)
    assert next(it) == 0 and len(pulled) == 3
    assert list(it)[-1] == 198
    # inline while the pool is not ready (the records loader's warm-up): same results, same order
    calls = {"ready": 0}

    def ready():
        calls["ready"] += 1
        return calls["ready"] > 4

    got = list(load_mod.ordered_map(Ex(), lambda x: ("pool", x), range(10), prefetch=3,
                                    inline=lambda x: ("here", x), ready=ready))
    assert [x for _, x in got] == list(range(10))
    assert [w for w, _ in got[:4]] == ["here"] * 4 and {w for w, _ in got[4:]} == {"pool"}


def test_ndjson_byte_ranges_give_every_line_once(tmp_path, monkeypatch):
    """Workers read plain NDJSON by byte range: across chunk boundaries every non-blank line arrives once,
    numbered as in the file, with a byte order mark dropped, "\r\n" ends, blank lines, a line of bytes that
    are not UTF-8 (kept as surrogates for the worker to quarantine) and a last line without a newline."""
    from l059_omop.etl.fhir import load as load_mod

    monkeypatch.setattr(load_mod, "NDJSON_CHUNK", 3)
    raw = (b"\xef\xbb\xbf" + b'{"a": 1}\r\n' + b"\n" + b'{"a": 3}\n' + b'{"a": "\xff"}\n' + b"   \n"
           + "".join(f'{{"a": {i}}}\n' for i in range(6, 11)).encode() + b'{"a": 11}')
    path = tmp_path / "x.ndjson"
    path.write_bytes(raw)
    tasks = list(load_mod.file_tasks([(path, False)], None))
    assert len(tasks) == 4 and all(t.lines is None for t in tasks)
    assert sum(t.length for t in tasks) == len(raw)
    got = [x for t in tasks for x in parse_mod._read_lines(t)]
    with path.open(encoding="utf-8-sig", errors="surrogateescape") as fh:
        expected = [(i, line.rstrip("\n")) for i, line in enumerate(fh, 1) if line.strip()]
    assert got == expected
    assert [n for n, _ in got] == [1, 3, 4, 6, 7, 8, 9, 10, 11]
    res = run_task(tasks[1])  # lines 4 and 6 (not FHIR resources either): each quarantined for its own reason
    assert [(q.locator, q.reason.split(":")[0]) for q in res.quarantined] == [
        (f"{path}:4", "invalid UTF-8"), (f"{path}:6", "not a FHIR resource")]
