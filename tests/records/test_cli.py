"""``l059-omop load-records``: exit codes and one-line errors naming the spec line."""

from __future__ import annotations

from click.testing import CliRunner

from l059_omop.cli import main
from tests.records import extracts
from tests.records.test_load import spec_copy


def test_cli_exit_codes(tmp_path):
    db = f"duckdb:///{tmp_path / 'cli.duckdb'}"
    runner = CliRunner()
    assert runner.invoke(main, ["--db", db, "-q", "init-db"]).exit_code == 0
    good = extracts.write(tmp_path / "good")
    r = runner.invoke(main, ["--db", db, "load-records", "--mapping", "synth_site", str(good)])
    assert r.exit_code == 0, r.output
    assert "read 29, mapped 29, quarantined 0, skipped 0" in r.output
    bad = extracts.write(tmp_path / "bad", broken=True)
    r = runner.invoke(main, ["--db", db, "load-records", "--mapping", "synth_site", str(bad)])
    assert r.exit_code == 3 and "quarantined 4" in r.output
    spec = spec_copy(tmp_path, lambda t: t.replace("value_as_number: {column: score}", "value_as_numbr: {column: score}"))
    r = runner.invoke(main, ["--db", db, "load-records", "--mapping", str(spec), str(good)])
    assert r.exit_code == 2
    assert f"error: {spec}:" in r.output and "unknown field 'value_as_numbr'" in r.output


def test_load_into_a_database_without_init_db_says_so(tmp_path):
    """Exit 2 and a one-line hint, not a database catalog error with exit 1, for both loaders."""
    db = f"duckdb:///{tmp_path / 'empty.duckdb'}"
    runner = CliRunner()
    good = extracts.write(tmp_path / "good")
    for args in (["load-records", "--mapping", "synth_site", str(good)], ["load-fhir", str(tmp_path)]):
        r = runner.invoke(main, ["--db", db, *args])
        assert r.exit_code == 2, r.output
        assert "no table etl.load_run in this database: run init-db first" in r.output
