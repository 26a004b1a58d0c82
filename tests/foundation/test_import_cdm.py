"""``import-cdm`` of OHDSI's Eunomia Synthea27Nj (CDM v5.4 as CSV) on DuckDB and PostgreSQL.

The dataset (~17 MB) lives in ../shared/eunomia beside the repository, as on CI; without it the tests skip.
"""

from __future__ import annotations

import csv
import re
import shutil

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from l059_omop.cli import main

from . import _spec

EUNOMIA = _spec.SHARED / "eunomia" / "Synthea27Nj_5.4_csv"
pytestmark = pytest.mark.skipif(not EUNOMIA.is_dir(), reason=f"Eunomia CSVs not found at {EUNOMIA}")


def csv_counts(folder) -> dict[str, int]:
    """Data rows per file, counted with Python's csv module (quoted fields may hold newlines)."""
    out = {}
    for path in sorted(folder.glob("*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as fh:
            out[path.stem.lower()] = sum(1 for _ in csv.reader(fh)) - 1
    return out


def db_counts(url: str, tables) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as con:
            return {t: con.execute(sa.text(f"select count(*) from cdm.{t}")).scalar() for t in tables}
    finally:
        engine.dispose()


def test_import_eunomia(db_url):
    expected = csv_counts(EUNOMIA)
    assert len(expected) == 39 and expected["person"] == 28 and expected["measurement"] == 10040
    res = CliRunner().invoke(main, ["--db", db_url, "import-cdm", str(EUNOMIA)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert f"imported {sum(expected.values()):,} rows into 39 tables" in res.output
    assert db_counts(db_url, expected) == expected
    failures = re.findall(r"^  fpk_\w+", res.output, flags=re.M)
    if db_url.startswith("postgresql"):
        # the shard lacks concepts its data uses: those foreign keys are reported, the rest are added
        m = re.search(r"^(\d+) constraint\(s\) the data violates:", res.output, flags=re.M)
        assert m, res.output
        assert int(m.group(1)) == len(failures)
        # as PROVENANCE.md of the dataset says: 42 of 176 (concepts 0, 8507, 8532, type concepts ... missing)
        assert len(failures) == 42, res.output
        assert "fpk_person_gender_concept_id (person.gender_concept_id -> concept.concept_id): DETAIL:  " \
               "Key (gender_concept_id)=(8507) is not present" in res.output
        engine = sa.create_engine(db_url)
        try:
            with engine.connect() as con:
                n_fk = con.execute(sa.text(
                    "select count(*) from pg_constraint c join pg_namespace n on n.oid = c.connamespace "
                    "where c.contype = 'f' and n.nspname = 'cdm'")).scalar()
        finally:
            engine.dispose()
        assert n_fk == 176 - len(failures)
    else:
        assert failures == []  # DuckDB: no foreign keys


def test_import_refuses_a_filled_table_and_replaces_on_request(db_url, tmp_path):
    small = tmp_path / "cdm"
    small.mkdir()
    for name in ("LOCATION.csv", "CARE_SITE.csv", "PROVIDER.csv", "PERSON.csv", "DEATH.csv"):
        shutil.copy(EUNOMIA / name, small / name)
    (small / "NOT_A_TABLE.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    first = CliRunner().invoke(main, ["--db", db_url, "import-cdm", str(small)], catch_exceptions=False)
    assert first.exit_code == 0 and "skipped NOT_A_TABLE.csv" in first.output, first.output
    again = CliRunner().invoke(main, ["--db", db_url, "import-cdm", str(small)])
    assert again.exit_code == 2 and "--replace" in again.output
    if db_url.startswith("postgresql"):  # death -> person holds, so a plain delete of person would fail
        assert "fpk_death_person_id" not in first.output
    replaced = CliRunner().invoke(main, ["--db", db_url, "import-cdm", "--replace", str(small)])
    assert replaced.exit_code == 0, replaced.output
    assert first.output == replaced.output
    assert db_counts(db_url, ["person", "death", "location", "care_site", "provider"]) == {
        k: v for k, v in csv_counts(small).items() if k != "not_a_table"}


def test_import_rejects_unknown_column(duckdb_url, tmp_path):
    bad = tmp_path / "cdm"
    bad.mkdir()
    (bad / "PERSON.csv").write_text("person_id,shoe_size\n1,42\n", encoding="utf-8")
    res = CliRunner().invoke(main, ["--db", duckdb_url, "import-cdm", str(bad)])
    assert res.exit_code == 2
    assert "shoe_size" in res.output and "PERSON.csv" in res.output
