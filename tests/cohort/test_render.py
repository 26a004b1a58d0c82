"""The cohort SQL: one source in OHDSI SQL, rendered for every dialect (golden files), no concept ids."""

from __future__ import annotations

import re

import pytest
import sqlglot
from click.testing import CliRunner

from l059_omop.cli import main
from l059_omop.cohort import definition as d
from l059_omop.commands.render_sql import RENDER_DIALECTS
from l059_omop.errors import BadInput

from . import golden

DIALECTS = ["postgresql", "duckdb", "spark", "databricks", "bigquery", "snowflake", "redshift", "tsql", "oracle",
            "trino"]


def test_all_required_dialects_offered():
    assert set(DIALECTS) <= set(RENDER_DIALECTS)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_golden_per_dialect(dialect):
    text = d.render_cohort_sql(dialect)
    golden.check(f"sql/l059_cohort_{dialect}.sql", text)
    # it parses back in its own dialect (a translation that sqlglot itself cannot read is suspect)
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    target = {"postgresql": "postgres"}.get(dialect, dialect)
    assert len(sqlglot.parse(body, read=target)) > 30


def test_source_sql_is_ohdsi_sql_without_concept_ids():
    params: set[str] = set()
    for path in d.source_files():
        text = path.read_text(encoding="utf-8")
        code = "\n".join(line.split("--")[0] for line in text.splitlines())
        assert "#" not in code, f"{path.name}: temp tables (#x) are not allowed"
        # integer literals: rule ids, codeset ids, small constants; no concept ids (>= 5 digits)
        big = [n for n in re.findall(r"\b\d{5,}\b", code) if n != "10000"]  # 10000: yyyymmdd arithmetic
        assert not big, f"{path.name}: concept-id-like literals {big}"
        params |= set(re.findall(r"@([A-Za-z_][A-Za-z0-9_]*)", code))
    # every COHORT.md number is a parameter of the SQL
    assert set(d.DEFAULT_PARAMETERS) <= params
    # OHDSI SqlRender replaces parameters as substrings: no name may be a prefix of another
    names = sorted(params | {"target_cohort_table"})
    clashes = [(a, b) for a in names for b in names if a != b and b.startswith(a)]
    assert not clashes, clashes


def test_one_file_per_rule_in_attrition_order():
    rules = d.rules()
    assert [r.code for r in rules] == [f"R{i}" for i in range(1, 14)]
    assert [r.sequence for r in rules] == list(range(13))
    for r in rules:
        assert r.file.startswith(f"r{r.sequence + 1:02d}_")
        assert f"SELECT {r.sequence}, q.person_id" in d.sql_path(*d.SQL_FOLDER, r.file).read_text()


def test_parameters_are_validated():
    with pytest.raises(BadInput):
        d.validate_parameters({"max_inr": "1.5; drop table x"})
    with pytest.raises(BadInput):
        d.validate_parameters({"nope": 1})
    with pytest.raises(BadInput):
        d.validate_parameters({"max_cycles": 12})
    assert d.validate_parameters({"study_start": "2021-06-01"})["study_start"].isoformat() == "2021-06-01"


def test_render_sql_cli(tmp_path):
    res = CliRunner().invoke(main, ["render-sql", "--dialect", "snowflake", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "l059_cohort_snowflake.sql").read_text() == d.render_cohort_sql("snowflake")
    res = CliRunner().invoke(main, ["render-sql", "--dialect", "nosuch"])
    assert res.exit_code == 2


def test_codeset_sql_equals_python_resolution(tmp_path):
    """The SQL materialisation of the concept sets equals l059_omop.vocab.concept_sets.resolve."""
    import sqlalchemy as sa

    from l059_omop.db.api import init_db
    from l059_omop.sqlrender import render, translate_script
    from l059_omop.vocab.concept_sets import resolve

    engine = sa.create_engine(f"duckdb:///{tmp_path / 'v.duckdb'}")
    init_db(engine)
    values = d.render_values(prefix="l059_t_")
    with engine.begin() as con:
        for s in translate_script(render(d.read_step("00_scratch_tables.sql") + d.codeset_sql(), values), "duckdb"):
            con.exec_driver_sql(s)
        got: dict[int, set[int]] = {}
        for cs_id, cid in con.exec_driver_sql("select codeset_id, concept_id from results.l059_t_codeset"):
            got.setdefault(int(cs_id), set()).add(int(cid))
        for cs in d.concept_sets():
            assert got.get(cs.id, set()) == resolve(con, "cdm", cs), cs.name
    assert got[1] == {2000000001, 2000000002, 2000000003, 2000000004}
