"""Rows follow their standard concept's domain (DESIGN §5), as on the FHIR path: a lab code whose standard
concept is an Observation lands in observation, a diagnosis text mapped to a Procedure concept in
procedure_occurrence, with fields renamed by role; reloading changes nothing."""

from __future__ import annotations

import sqlalchemy as sa

from l059_omop.records import load_records
from l059_omop.records.mapper import field_translation
from l059_omop.vocab import Vocabulary

SPEC = """l059_records_mapping: 1
site: routing
patient_id: pid
defaults:
  date_format: ["%Y-%m-%d"]
code_tables:
  diag: diag.csv
sources:
  people:
    file: "people.csv"
    key: [pid]
    outputs:
      person:
        table: person
        fields:
          year_of_birth: {column: born, format: "%Y", part: year}
  labs:
    file: "labs.csv"
    key: [id]
    outputs:
      lab:
        table: measurement
        fields:
          measurement_concept_id: {column: code, vocabulary: LOINC}
          measurement_date: {column: day}
          value_as_number: {column: value}
  diagnoses:
    file: "diagnoses.csv"
    key: [id]
    outputs:
      dx:
        table: condition_occurrence
        fields:
          condition_concept_id: {column: name, code_table: diag}
          condition_start_date: {column: day}
          condition_end_date: {column: end}
"""


def _files(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC, encoding="utf-8")
    (tmp_path / "diag.csv").write_text("source_code,target_concept_id\n小细胞肺癌,4110591\n胸部放疗,2000000030\n",
                                       encoding="utf-8")
    (tmp_path / "people.csv").write_text("pid,born\nA1,1950\n", encoding="utf-8")
    (tmp_path / "labs.csv").write_text("id,pid,code,day,value\n1,A1,6301-6,2023-01-05,1.1\n"
                                       "2,A1,88040-1,2023-01-06,3\n", encoding="utf-8")
    (tmp_path / "diagnoses.csv").write_text("id,pid,name,day,end\n1,A1,小细胞肺癌,2022-12-01,\n"
                                            "2,A1,胸部放疗,2023-02-01,2023-03-01\n", encoding="utf-8")
    return tmp_path / "spec.yaml", [tmp_path / n for n in ("people.csv", "labs.csv", "diagnoses.csv")]


def test_the_concepts_used_have_the_domains_the_test_needs(rec_engine):
    v = Vocabulary(rec_engine)
    assert v.lookup("LOINC", "88040-1").domain_id == "Observation"
    assert v.lookup("LOINC", "6301-6").domain_id == "Measurement"
    with rec_engine.connect() as con:
        assert con.execute(sa.text("select domain_id from cdm.concept where concept_id = 2000000030")).scalar_one() \
            == "Procedure"


def test_rows_follow_the_standard_concepts_domain(rec_engine, tmp_path):
    spec, files = _files(tmp_path)
    rep = load_records(rec_engine, spec, files).report
    assert rep.quarantined == 0 and rep.check() == []
    assert rep.notes["rows moved by their concept's domain: measurement -> observation"] == 1
    assert rep.notes["rows moved by their concept's domain: condition_occurrence -> procedure_occurrence"] == 1
    with rec_engine.connect() as con:
        q = lambda sql: [tuple(str(v) for v in r) for r in con.execute(sa.text(sql)).all()]  # noqa: E731
        assert q("select measurement_concept_id, measurement_source_value, measurement_date, value_as_number "
                 "from cdm.measurement") == [("3022217", "6301-6", "2023-01-05", "1.1")]
        assert q("select observation_concept_id, observation_source_concept_id, observation_source_value, "
                 "observation_date, value_as_number, observation_type_concept_id from cdm.observation") == [
            ("36305408", "36305408", "88040-1", "2023-01-06", "3.0", "32817")]
        assert q("select condition_concept_id, condition_source_value, condition_start_date "
                 "from cdm.condition_occurrence") == [("4110591", "小细胞肺癌", "2022-12-01")]
        assert q("select procedure_concept_id, procedure_source_value, procedure_date, procedure_end_date, "
                 "procedure_type_concept_id from cdm.procedure_occurrence") == [
            ("2000000030", "胸部放疗", "2023-02-01", "2023-03-01", "32817")]
        assert q("select omop_table, row_key from etl.source_id_map where resource_type = 'labs' "
                 "order by omop_table") == [("measurement", "lab"), ("observation", "lab")]
        ids = q("select observation_id from cdm.observation") + q("select procedure_occurrence_id "
                                                                  "from cdm.procedure_occurrence")
    again = load_records(rec_engine, spec, files).report
    assert sum(again.rows_inserted.values()) == 0 and again.types["labs"].unchanged == 2
    with rec_engine.connect() as con:
        assert [tuple(str(v) for v in r) for r in con.execute(sa.text(
            "select observation_id from cdm.observation union all "
            "select procedure_occurrence_id from cdm.procedure_occurrence")).all()] == ids


def test_field_translation_by_role():
    t = field_translation("measurement", "observation")
    assert t["measurement_concept_id"] == "observation_concept_id"
    assert t["measurement_date"] == "observation_date"
    assert t["value_as_number"] == "value_as_number" and t["range_low"] is None
    assert t["measurement_event_id"] == "observation_event_id"
    c = field_translation("condition_occurrence", "procedure_occurrence")
    assert c["condition_start_date"] == "procedure_date" and c["condition_end_date"] == "procedure_end_date"
    assert c["condition_source_value"] == "procedure_source_value" and c["stop_reason"] is None
