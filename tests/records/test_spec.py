"""Broken mapping specs fail before anything is read or written, naming the spec file, line and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from l059_omop.records import SpecError, load_spec
from l059_omop.records.spec import check_date_format
from l059_omop.resources import mappings_path

TEMPLATE = mappings_path("records", "synth_site.yaml")


def _variant(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    """A copy of the template with ``old`` replaced by ``new``; (path, line of the change)."""
    text = TEMPLATE.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    shutil.copytree(TEMPLATE.parent / "synth_site", tmp_path / "synth_site")
    out = tmp_path / "site.yaml"
    out.write_text(text.replace(old, new), encoding="utf-8")
    line = text[: text.index(old)].count("\n") + 1
    return out, line


def test_template_is_valid():
    spec = load_spec(TEMPLATE)
    assert spec.site == "synth_site"
    assert {"patients", "lab_results", "drug_orders", "imaging", "adverse_events", "followup"} <= set(spec.sources)
    assert spec.code_tables["drugs"].get("安罗替尼胶囊12MG").target_concept_id == 2000000004
    assert spec.code_tables["response"].get("ＰＲ").target_concept_id == 2000000021  # full-width


@pytest.mark.parametrize("old,new,words", [
    ("value_as_number: {column: result_value, unit_column: unit}", "value_as_numbr: {column: result_value}",
     ["unknown field 'value_as_numbr'", "measurement"]),
    ("table: procedure_occurrence", "table: procedure_occurrences", ["unknown OMOP CDM v5.4 table"]),
    ('date_format: ["%Y-%m-%d", "%Y/%m/%d"', 'date_format: ["%Y-%m-%q", "%Y/%m/%d"', ["bad date format", "%q"]),
    ('date_format: ["%Y-%m-%d", "%Y/%m/%d"', 'date_format: ["YYYY-MM-DD", "%Y/%m/%d"', ["bad date format", "no year"]),
    ("condition_concept_id: {column: diag_code, code_table: diagnoses}",
     "condition_concept_id: {column: diag_code, code_table: icd}", ["unknown code table 'icd'"]),
    ("measurement_event_id: {ref: event}", "measurement_event_id: {ref: evnt}", ["'ref' names another output"]),
    ("    key: [order_id]\n", "    sheets: x\n    key: [order_id]\n", ["unknown key 'sheets'"]),
    ("  encoding: utf-8-sig ", "  encoding: gb-18030x ", ["unknown encoding"]),
    ("          birth_datetime: {column: birth_date}", "          person_source_value: {column: hospital_id}",
     ["filled by the loader", "never lands in OMOP"]),
    ("measurement_date: {column: assess_date}", "measurement_date: {column: assess_date, range: low}", ["not a number field"]),
])
def test_broken_spec_names_line(tmp_path, old, new, words):
    path, line = _variant(tmp_path, old, new)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:{line}:"), msg
    for w in words:
        assert w in msg


def test_missing_required_field(tmp_path):
    path, line = _variant(tmp_path, "          condition_start_date: {column: diag_date}\n", "")
    with pytest.raises(SpecError, match="condition_start_date") as err:
        load_spec(path)
    assert err.value.line is not None and err.value.line < line


def test_yaml_syntax_error(tmp_path):
    path, line = _variant(tmp_path, "    file: \"lab_results*.csv\"", "    file: [\"lab_results*.csv\"")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)


def test_date_format_check():
    assert check_date_format("%Y-%m-%d") is None
    assert check_date_format("%Y年%m月%d日") is None
    assert "no year" in check_date_format("%d/%m")
    assert "%Q" in check_date_format("%Y-%Q")
    assert "lone" in check_date_format("%Y-%")


def test_code_table_conflict(tmp_path):
    path, _ = _variant(tmp_path, "l059_records_mapping: 1", "l059_records_mapping: 1")
    table = tmp_path / "synth_site" / "response.csv"
    table.write_text(table.read_text(encoding="utf-8") + "ＰＲ,response text,clash,2000000023,L059\n",
                     encoding="utf-8")
    with pytest.raises(Exception, match=r"response.csv:\d+: 'ＰＲ' maps to 2000000023"):
        load_spec(path)
