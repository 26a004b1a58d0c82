"""``init-db --vocab DIR`` with a small Athena download (tab-separated, unquoted, YYYYMMDD dates)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys

import sqlalchemy as sa
from click.testing import CliRunner

from l059_omop.cli import main
from l059_omop.vocab import Vocabulary

from ._spec import REPO

NASTY = 'Tumour "NOS" of C:\\lung\\upper lobe; it\'s 5% <b>'

FILES = {
    "CONCEPT.csv": [
        "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\tconcept_code\t"
        "valid_start_date\tvalid_end_date\tinvalid_reason",
        "0\tNo matching concept\tMetadata\tNone\tUndefined\t\tNo matching concept\t19700101\t20991231\t",
        "8576\tmilligram\tUnit\tUCUM\tUnit\tS\tmg\t19700101\t20991231\t",
        "3022217\tINR in Platelet poor plasma by Coagulation assay\tMeasurement\tLOINC\tLab Test\tS\t6301-6\t"
        "19700101\t20991231\t",
        f"4112752\t{NASTY}\tCondition\tSNOMED\tClinical Finding\tS\t254632001\t20020131\t20991231\t",
        "44502427\tSmall cell carcinoma, NOS, of upper lobe, lung\tCondition\tICDO3\tICDO Condition\t\t"
        "8041/3-C34.1\t20150918\t20991231\t",
        "1234567\tOld code\tCondition\tICD10CM\t4-char billing code\t\tC34.1\t20000101\t20181231\tU",
    ],
    "CONCEPT_RELATIONSHIP.csv": [
        "concept_id_1\tconcept_id_2\trelationship_id\tvalid_start_date\tvalid_end_date\tinvalid_reason",
        "44502427\t4112752\tMaps to\t20150918\t20991231\t",
        "4112752\t44502427\tMapped from\t20150918\t20991231\t",
        "3022217\t3022217\tMaps to\t19700101\t20991231\t",
        "4112752\t4112752\tMaps to\t19700101\t20991231\t",
        "1234567\t4112752\tMaps to\t20000101\t20181231\tD",
    ],
    "CONCEPT_ANCESTOR.csv": [
        "ancestor_concept_id\tdescendant_concept_id\tmin_levels_of_separation\tmax_levels_of_separation",
        "3022217\t3022217\t0\t0",
        "4112752\t4112752\t0\t0",
        "8576\t8576\t0\t0",
    ],
    "VOCABULARY.csv": [
        "vocabulary_id\tvocabulary_name\tvocabulary_reference\tvocabulary_version\tvocabulary_concept_id",
        *[f"{v}\t{v}\tOMOP generated\tv5.0 01-JAN-26\t0" for v in ("None", "UCUM", "LOINC", "SNOMED", "ICDO3",
                                                                 "ICD10CM")],
    ],
    "DOMAIN.csv": ["domain_id\tdomain_name\tdomain_concept_id",
                   *[f"{d}\t{d}\t0" for d in ("Metadata", "Unit", "Measurement", "Condition")]],
    "CONCEPT_CLASS.csv": ["concept_class_id\tconcept_class_name\tconcept_class_concept_id",
                          *[f"{c}\t{c}\t0" for c in ("Undefined", "Unit", "Lab Test", "Clinical Finding",
                                                    "ICDO Condition", "4-char billing code")]],
    "RELATIONSHIP.csv": [
        "relationship_id\trelationship_name\tis_hierarchical\tdefines_ancestry\treverse_relationship_id\t"
        "relationship_concept_id",
        "Maps to\tNon-standard to Standard map (OMOP)\t0\t0\tMapped from\t0",
        "Mapped from\tStandard to Non-standard map (OMOP)\t0\t0\tMaps to\t0",
    ],
    "CONCEPT_SYNONYM.csv": ["concept_id\tconcept_synonym_name\tlanguage_concept_id",
                            f"4112752\t{NASTY} (synonym)\t0"],
    "DRUG_STRENGTH.csv": [
        "drug_concept_id\tingredient_concept_id\tamount_value\tamount_unit_concept_id\tnumerator_value\t"
        "numerator_unit_concept_id\tdenominator_value\tdenominator_unit_concept_id\tbox_size\tvalid_start_date\t"
        "valid_end_date\tinvalid_reason",
    ],
}


def write_athena(folder):
    folder.mkdir()
    for name, lines in FILES.items():
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_init_db_with_athena_folder(db_url, tmp_path):
    athena = write_athena(tmp_path / "athena")
    res = CliRunner().invoke(main, ["--db", db_url, "init-db", "--vocab", str(athena)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "concept 6" in res.output and "local L059 rows added" in res.output
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as con:
            name, start, std = con.execute(sa.text(
                "select concept_name, valid_start_date, standard_concept from cdm.concept "
                "where concept_id = 4112752")).one()
            assert name == NASTY
            assert start == dt.date(2002, 1, 31)
            assert std == "S"
            assert con.execute(sa.text("select standard_concept, invalid_reason from cdm.concept "
                                       "where concept_id = 44502427")).one() == (None, None)
            assert con.execute(sa.text("select concept_synonym_name from cdm.concept_synonym")).scalar() \
                == NASTY + " (synonym)"
            counts = {t: con.execute(sa.text(f"select count(*) from cdm.{t} where {c} < 2000000000")).scalar()
                      for t, c in (("concept", "concept_id"), ("concept_relationship", "concept_id_1"),
                                   ("concept_ancestor", "descendant_concept_id"))}
            assert counts == {"concept": 6, "concept_relationship": 5, "concept_ancestor": 3}
            # the local L059 concepts on top, with their strength and ancestry
            assert con.execute(sa.text("select count(*) from cdm.concept where vocabulary_id = 'L059'")).scalar() \
                == 17
            assert con.execute(sa.text("select amount_value from cdm.drug_strength "
                                       "where drug_concept_id = 2000000004")).scalar() == 12
            assert con.execute(sa.text(
                "select count(*) from cdm.concept_ancestor where ancestor_concept_id = 2000000001 "
                "and descendant_concept_id = 2000000004")).scalar() == 1
            assert con.execute(sa.text("select vocabulary_version from cdm.vocabulary "
                                       "where vocabulary_id = 'LOINC'")).scalar() == "v5.0 01-JAN-26"
            if engine.dialect.name == "postgresql":  # the download is consistent: every foreign key was added
                assert con.execute(sa.text(
                    "select count(*) from pg_constraint c join pg_namespace n on n.oid = c.connamespace "
                    "where c.contype = 'f' and n.nspname = 'cdm'")).scalar() == 176
        v = Vocabulary(engine)
        assert v.lookup("ICDO3", "8041/3-C34.1").standard_concept_id == 4112752
        assert v.lookup("LOINC", "6301-6").standard_concept_id == 3022217
        assert v.lookup("ICD10CM", "C34.1").standard_concept_id == 0  # its only Maps to is invalid
        assert v.lookup("L059", "ANLOTINIB-12MG").standard_concept_id == 2000000004
    finally:
        engine.dispose()
    again = CliRunner().invoke(main, ["--db", db_url, "init-db", "--vocab", str(athena)], catch_exceptions=False)
    assert again.exit_code == 0 and again.output.startswith("nothing to do"), again.output


def test_vocab_folder_on_a_database_with_a_vocabulary(tmp_path, duckdb_url):
    """A vocabulary is never replaced in place, and the user is told the folder was not loaded."""
    athena = write_athena(tmp_path / "athena")
    assert CliRunner().invoke(main, ["--db", duckdb_url, "-q", "init-db"]).exit_code == 0
    res = CliRunner().invoke(main, ["--db", duckdb_url, "init-db", "--vocab", str(athena)], catch_exceptions=False)
    assert res.exit_code == 0
    assert f"{athena} was not loaded" in res.output


def test_vocab_folder_without_concept_file(tmp_path, duckdb_url):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(main, ["--db", duckdb_url, "init-db", "--vocab", str(empty)])
    assert res.exit_code == 2
    assert "no CONCEPT.csv" in res.output


def test_vocab_file_with_unknown_column(tmp_path, duckdb_url):
    athena = write_athena(tmp_path / "athena")
    (athena / "DOMAIN.csv").write_text("domain_id\tdomain_colour\tdomain_concept_id\nX\tred\t0\n", encoding="utf-8")
    res = CliRunner().invoke(main, ["--db", duckdb_url, "init-db", "--vocab", str(athena)])
    assert res.exit_code == 2
    assert "domain_colour" in res.output and "DOMAIN.csv" in res.output


def test_benchmark_vocabulary_loads(tmp_path, duckdb_url):
    """The benchmark's generated download (benchmarks/bench_vocab.py) at a tiny size loads completely."""
    spec = importlib.util.spec_from_file_location("bench_vocab_under_test", REPO / "benchmarks" / "bench_vocab.py")
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    counts = module.generate(tmp_path / "athena", 1000, 5000, 10000)
    res = CliRunner().invoke(main, ["--db", duckdb_url, "init-db", "--vocab", str(tmp_path / "athena")],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    engine = sa.create_engine(duckdb_url)
    try:
        with engine.connect() as con:
            for table, n in counts.items():
                got = con.execute(sa.text(f"select count(*) from cdm.{table}")).scalar()
                assert got >= n, table
            assert con.execute(sa.text("select concept_name from cdm.concept where concept_id = 7")).scalar() \
                == 'Concept "7" C:\\path'
    finally:
        engine.dispose()
