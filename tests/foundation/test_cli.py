"""init-db through the command line: idempotence, refusals before any work, one-line errors, no secrets."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from l059_omop.cli import main
from l059_omop.db.layout import etl_metadata, results_metadata
from tests.pg import throwaway_database

SECRET = "SeCrEt123"
UNREACHABLE = f"postgresql://u:{SECRET}@127.0.0.1:1/x"


def _cli(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "L059_OMOP_DB"}
    return subprocess.run([sys.executable, "-m", "l059_omop.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def _state(url: str) -> dict[str, object]:
    """Every table of the three schemas with its row count and a checksum of its sorted rows, plus the
    catalog's constraints and indexes: what 'changes nothing' is checked against."""
    engine = sa.create_engine(url)
    out: dict[str, object] = {}
    try:
        insp = sa.inspect(engine)
        with engine.connect() as con:
            for schema in ("cdm", "results", "etl"):
                for table in sorted(insp.get_table_names(schema=schema)):
                    rows = sorted(repr(tuple(r)) for r in con.execute(sa.text(f"select * from {schema}.{table}")))
                    out[f"{schema}.{table}"] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
            if engine.dialect.name == "postgresql":
                out["constraints"] = sorted(r[0] for r in con.execute(sa.text(
                    "select conname from pg_constraint c join pg_namespace n on n.oid = c.connamespace "
                    "where n.nspname in ('cdm', 'results', 'etl')")))
                out["indexes"] = sorted(r[0] for r in con.execute(sa.text(
                    "select indexname from pg_indexes where schemaname in ('cdm', 'results', 'etl')")))
    finally:
        engine.dispose()
    return out


def test_init_db_is_idempotent(db_url):
    first = _cli("--db", db_url, "init-db")
    assert first.exit_code == 0, first.output
    n_tables = 39 + len(results_metadata().tables) + len(etl_metadata().tables)
    assert f"tables: {n_tables} created, 0 already present" in first.output
    assert "vocabulary (bundled)" in first.output
    before = _state(db_url)
    assert len([k for k in before if "." in k]) == n_tables
    assert before["cdm.concept"][0] > 100
    second = _cli("--db", db_url, "init-db")
    assert second.exit_code == 0, second.output
    assert second.output.strip().startswith("nothing to do"), second.output
    assert _state(db_url) == before


@pytest.mark.postgres
def test_defer_constraints_then_init_db_adds_them(pg_url, tmp_path):
    """init-db --defer-constraints: the tables and vocabulary, no foreign key or secondary index; a FHIR load
    then goes in; init-db again adds all 176 foreign keys and 70 indexes over the loaded rows, none refused,
    and ends in the catalog a plain init-db makes."""
    import json

    first = _cli("--db", pg_url, "init-db", "--defer-constraints")
    assert first.exit_code == 0, first.output
    assert "constraints: deferred" in first.output
    deferred = _state(pg_url)
    assert not [c for c in deferred["constraints"] if c.startswith("fk_")]
    pats = tmp_path / "in" / "p.ndjson"
    pats.parent.mkdir()
    pats.write_text("\n".join(json.dumps(r) for r in (
        {"resourceType": "Patient", "id": "d1", "gender": "female", "birthDate": "1960-01-01"},
        {"resourceType": "Condition", "id": "d1-c", "subject": {"reference": "Patient/d1"},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254632001"}]},
         "onsetDateTime": "2022-01-10"})), encoding="utf-8")
    load = _cli("--db", pg_url, "load-fhir", str(pats.parent), "--workers", "1")
    assert load.exit_code == 0, load.output
    second = _cli("--db", pg_url, "init-db")
    assert second.exit_code == 0, second.output
    assert "constraints: 176 foreign keys, 70 indexes added" in second.output
    assert "constraint not added" not in second.output
    engine = sa.create_engine(pg_url)
    with engine.connect() as con:
        assert con.execute(sa.text("select count(*) from cdm.condition_occurrence")).scalar_one() == 1
    engine.dispose()
    with throwaway_database() as plain:
        assert _cli("--db", plain, "init-db").exit_code == 0
        assert _state(plain)["constraints"] == _state(pg_url)["constraints"]
        assert _state(plain)["indexes"] == _state(pg_url)["indexes"]


def _invoke(*args: str):
    """In-process run; click's runner keeps stdout and stderr apart."""
    res = CliRunner().invoke(main, list(args), env={"L059_OMOP_DB": None})
    return res.exit_code, res.stdout, res.stderr


@pytest.mark.parametrize("args", [
    ["--cdm-schema", "cdm; drop table person", "init-db"],
    ["--results-schema", "results; drop table person", "init-db"],
    ["--cdm-schema", "cdm; drop table person", "import-cdm", "."],
    ["init-db", "--etl-schema", "etl; drop table person"],
])
def test_bad_schema_name_refused_before_anything_runs(tmp_path, args):
    db = tmp_path / "x.duckdb"
    code, out, err = _invoke("--db", f"duckdb:///{db}", *args)
    assert code == 2
    assert "invalid" in err and "drop table person" in err and "Traceback" not in err
    assert not db.exists(), "the database was touched"


def test_bad_schema_name_in_a_real_process(tmp_path):
    db = tmp_path / "x.duckdb"
    res = _run("--db", f"duckdb:///{db}", "--cdm-schema", "cdm; drop table person", "init-db", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr and not db.exists()


@pytest.mark.parametrize("url, words", [
    ("not a url", "not a database URL"),
    ("mysql://u@localhost/x", "unsupported database"),
    ("duckdb:////no/such/folder/x.duckdb", "does not exist"),
])
def test_bad_db_url_one_clear_line(url, words):
    code, out, err = _invoke("--db", url, "init-db")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("l059-omop: error: --db:") and words in lines[0]


def test_duckdb_file_named_like_a_schema(tmp_path):
    code, out, err = _invoke("--db", f"duckdb:///{tmp_path / 'cdm.duckdb'}", "init-db")
    assert code == 2 and "rename the file" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("verbose", [[], ["-v"], ["-vv"]])
@pytest.mark.parametrize("command", [["init-db"], ["import-cdm", "."]])
def test_password_never_shown(verbose, command):
    code, out, err = _invoke("--db", UNREACHABLE, *verbose, *command)
    assert code == 1
    assert SECRET not in out + err
    if not verbose:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("l059-omop: error: cannot connect to"), err
        assert "127.0.0.1:1" in lines[0] and out == ""
    else:
        assert "Traceback" in err  # -v shows the traceback, still without the password


@pytest.mark.parametrize("verbose", [[], ["-vv"]])
def test_password_never_shown_in_a_real_process(tmp_path, verbose):
    """The same through a real process: nothing a driver writes to the file descriptors leaks it either."""
    res = _run("--db", UNREACHABLE, *verbose, "init-db", cwd=tmp_path)
    assert res.returncode == 1
    assert SECRET not in res.stdout + res.stderr
    if not verbose:
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_url_encoded_password_never_shown():
    code, out, err = _invoke("--db", "postgresql://u:Se%2FCr%40et9@127.0.0.1:1/x", "-v", "init-db")
    assert code == 1
    for form in ("Se%2FCr%40et9", "Se/Cr@et9", "Cr%40et9", "Cr@et9"):
        assert form not in out + err


def test_password_never_shown_in_bad_url():
    code, out, err = _invoke("--db", f"postgresql://u:{SECRET}@127.0.0.1:notaport/x", "-v", "init-db")
    assert code in (1, 2)
    assert SECRET not in out + err


def test_password_from_environment_never_shown(tmp_path):
    env = {**os.environ, "L059_OMOP_DB": UNREACHABLE}
    res = subprocess.run([sys.executable, "-m", "l059_omop.cli", "-v", "init-db"], capture_output=True,
                         text=True, cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == 1
    assert SECRET not in res.stdout + res.stderr


def test_help_lists_every_command():
    res = _cli("--help")
    assert res.exit_code == 0
    for name in ("init-db", "import-cdm", "load-fhir", "build-cohort", "outcomes", "demo"):
        assert name in res.output
