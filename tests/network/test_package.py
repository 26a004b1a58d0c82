"""The study package: checksums, refusal of a tampered or incompatible package, the CLI."""

from __future__ import annotations

import json
import zipfile

import pytest
from click.testing import CliRunner

from l059_omop.cli import main
from l059_omop.errors import BadInput
from l059_omop.network.package import verify_package


def _rewrite(src, dst, change):
    """Copy a zip, passing each (name, bytes) through ``change`` (None drops the member)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info.filename, data)


def _first_sql(path):
    with zipfile.ZipFile(path) as z:
        return next(n for n in sorted(z.namelist()) if n.startswith("cohort/ohdsi/") and n.endswith(".sql"))


def test_package_contents_and_manifest(study_zip):
    pkg = verify_package(study_zip)
    m = pkg.manifest
    assert m["study_id"] == "ALTER-L059" and m["format_version"] == 1
    assert m["software"]["version"] and m["definition"]["definition_sha256"]
    assert set(m["files"]) == set(pkg.files)
    names = set(pkg.files)
    assert any(n.startswith("cohort/ohdsi/r01") for n in names)
    assert any(n.startswith("concept_sets/") for n in names)
    assert "settings/analysis.json" in names
    assert any(n.startswith("cohort/rendered/") for n in names)
    assert m["parameters"]["min_cell_count"] == 5
    circe = json.loads(pkg.files["cohort/circe.json"])
    assert circe["ConceptSets"] and circe["InclusionRules"]
    assert m["definition"]["circe_sha256"]
    assert not [n for n in m["notes"] if "not rendered" in n or "Circe" in n], m["notes"]


def test_one_changed_sql_byte_is_refused(study_zip, tmp_path):
    target = _first_sql(study_zip)
    bad = tmp_path / "tampered.zip"

    def flip(name, data):
        if name == target:
            i = data.index(b"SELECT") if b"SELECT" in data else 0
            return data[:i] + bytes([data[i] ^ 0x20]) + data[i + 1:]  # one byte: 'S' -> 's'
        return data

    _rewrite(study_zip, bad, flip)
    with pytest.raises(BadInput, match=f"{target}.*changed after it was made"):
        verify_package(bad)
    res = CliRunner().invoke(main, ["run-package", str(bad), "--site", "x", "--out", str(tmp_path / "r.zip"),
                                    "--db", f"duckdb:///{tmp_path / 'x.duckdb'}"])
    assert res.exit_code == 2, res.output
    assert "changed after it was made" in res.output
    assert not (tmp_path / "r.zip").exists()


def test_edited_definition_with_recomputed_checksums_is_refused(study_zip, tmp_path):
    """Someone edits a rule and fixes the manifest's checksum: the files verify, but the definition is not
    the one this l059-omop release runs, so run-package refuses it before touching the database."""
    from l059_omop.network import cohort_bridge
    from l059_omop.network.package import sha256_bytes

    target = _first_sql(study_zip)
    with zipfile.ZipFile(study_zip) as z:
        edited = z.read(target) + b"\n-- edited\n"
        manifest = json.loads(z.read("manifest.json"))
    manifest["files"][target] = sha256_bytes(edited)
    bad = tmp_path / "edited.zip"
    _rewrite(study_zip, bad, lambda n, d: edited if n == target else json.dumps(manifest) if n == "manifest.json"
             else d)
    pkg = verify_package(bad)
    with pytest.raises(BadInput, match=f"incompatible version.*{target}"):
        cohort_bridge.check_definition(pkg)


def test_extra_or_missing_file_is_refused(study_zip, tmp_path):
    extra = tmp_path / "extra.zip"
    _rewrite(study_zip, extra, lambda n, d: d)
    with zipfile.ZipFile(extra, "a") as z:
        z.writestr("cohort/ohdsi/zz_extra.sql", "DELETE FROM cdm.person;")
    with pytest.raises(BadInput, match="not in the manifest"):
        verify_package(extra)
    missing = tmp_path / "missing.zip"
    target = _first_sql(study_zip)
    _rewrite(study_zip, missing, lambda n, d: None if n == target else d)
    with pytest.raises(BadInput, match="missing"):
        verify_package(missing)


@pytest.mark.parametrize("field,value", [("format_version", 2), ("software", {"version": "0.9.0",
                                                                              "compatible_series": "0.9"})])
def test_incompatible_version_is_refused(study_zip, tmp_path, field, value):
    bad = tmp_path / "future.zip"

    def bump(name, data):
        if name == "manifest.json":
            m = json.loads(data)
            m[field] = value
            return json.dumps(m)
        return data

    _rewrite(study_zip, bad, bump)
    with pytest.raises(BadInput, match="incompatible version"):
        verify_package(bad)


def test_expected_sha256_and_not_a_zip(study_zip, tmp_path):
    with pytest.raises(BadInput, match="not the expected"):
        verify_package(study_zip, expect_sha256="0" * 64)
    junk = tmp_path / "junk.zip"
    junk.write_text("hello")
    with pytest.raises(BadInput, match="not a readable zip"):
        verify_package(junk)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../etc/passwd", "x")
    with pytest.raises(BadInput, match="unsafe file name"):
        verify_package(evil)


def test_package_cli(tmp_path):
    out = tmp_path / "s.zip"
    res = CliRunner().invoke(main, ["package", "--out", str(out), "--min-cell-count", "11"])
    assert res.exit_code == 0, res.output
    assert "package sha256" in res.output
    assert verify_package(out).analysis["min_cell_count"] == 11
