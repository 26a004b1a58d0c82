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


@pytest.mark.parametrize("option", ["--cdm-schema", "--results-schema"])
def test_bad_schema_name_refused_before_anything_runs(tmp_path, option):
    db = tmp_path / "x.duckdb"
    res = _run("--db", f"duckdb:///{db}", option, "cdm; drop table person", "init-db", cwd=tmp_path)
    assert res.returncode == 2
    assert "invalid" in res.stderr and "Traceback" not in res.stderr
    assert not db.exists(), "the database was touched"


def test_bad_etl_schema_refused_before_anything_runs(tmp_path):
    db = tmp_path / "x.duckdb"
    res = _run("--db", f"duckdb:///{db}", "init-db", "--etl-schema", "etl; drop table person", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "invalid" in res.stderr and "Traceback" not in res.stderr
    assert not db.exists(), "the database was touched"


@pytest.mark.parametrize("url, words", [
    ("not a url", "not a database URL"),
    ("mysql://u@localhost/x", "unsupported database"),
    ("duckdb:////no/such/folder/x.duckdb", "does not exist"),
])
def test_bad_db_url_one_clear_line(tmp_path, url, words):
    res = _run("--db", url, "init-db", cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("l059-omop: error: --db:") and words in lines[0]


@pytest.mark.parametrize("verbose", [[], ["-v"], ["-vv"]])
@pytest.mark.parametrize("command", [["init-db"], ["import-cdm", "."]])
def test_password_never_shown(tmp_path, verbose, command):
    res = _run("--db", UNREACHABLE, *verbose, *command, cwd=tmp_path)
    assert res.returncode == 1
    assert SECRET not in res.stdout + res.stderr
    if not verbose:
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("l059-omop: error: cannot connect to"), res.stderr
        assert "127.0.0.1:1" in lines[0]


def test_password_never_shown_in_bad_url(tmp_path):
    res = _run("--db", f"postgresql://u:{SECRET}@127.0.0.1:notaport/x", "-v", "init-db", cwd=tmp_path)
    assert res.returncode in (1, 2)
    assert SECRET not in res.stdout + res.stderr


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
