"""Render OHDSI SQL (SQL Server flavour with ``@parameters``, as SqlRender reads it) and translate it
per dialect with sqlglot.

Parameters are substituted only with validated values: identifiers (schema and table names) must match the
identifier pattern, numbers must be numbers, dates must be real dates; arbitrary text is refused, so no
user-supplied string is ever formatted into SQL.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

import sqlglot

from l059_omop.db.engine import validate_identifier
from l059_omop.errors import BadInput

DIALECTS = ("postgresql", "duckdb", "spark", "databricks", "bigquery", "snowflake", "redshift", "tsql", "oracle",
            "trino", "sql server")
_SQLGLOT_NAME = {"postgresql": "postgres", "sql server": "tsql"}
_PARAM = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)")


class Ident(str):
    """A value to substitute as an identifier (validated)."""


def _literal(name: str, value) -> str:
    if isinstance(value, Ident) or name.endswith(("_schema", "_table")):
        return validate_identifier(str(value), f"@{name}")
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise BadInput(f"@{name}: not a finite number")
        return repr(float(value))
    if isinstance(value, (dt.date, dt.datetime)):
        return f"'{value:%Y-%m-%d}'" if isinstance(value, dt.date) else f"'{value:%Y-%m-%d %H:%M:%S}'"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else list(value)
        if not items:
            return "NULL"
        return ", ".join(_literal(name + "_item", int(v)) for v in items)
    raise BadInput(f"@{name}: refusing to substitute a {type(value).__name__} into SQL (only identifiers, "
                   "numbers, dates and lists of integers)")


def render(sql: str, params: Mapping[str, object]) -> str:
    """Substitute ``@name`` parameters; an unknown parameter left in the SQL is an error."""
    values = {k: _literal(k, v) for k, v in params.items()}
    missing: set[str] = set()

    def sub(m: re.Match) -> str:
        if m.group(1) in values:
            return values[m.group(1)]
        missing.add(m.group(1))
        return m.group(0)

    out = _PARAM.sub(sub, sql)
    if missing:
        raise BadInput(f"SQL parameter(s) without a value: {', '.join('@' + m for m in sorted(missing))}")
    return out


def translate(sql: str, dialect: str, pretty: bool = True) -> list[str]:
    """Translate rendered SQL Server SQL into ``dialect``: one string per statement."""
    if dialect not in DIALECTS:
        raise BadInput(f"unknown dialect {dialect!r}; choose one of {', '.join(DIALECTS)}")
    target = _SQLGLOT_NAME.get(dialect, dialect)
    return [s for s in sqlglot.transpile(sql, read="tsql", write=target, pretty=pretty) if s.strip()]


def engine_dialect(engine_dialect_name: str) -> str:
    """SQLAlchemy dialect name -> our dialect name."""
    return {"postgresql": "postgresql", "duckdb": "duckdb"}.get(engine_dialect_name, engine_dialect_name)


# --- portable translation of whole OHDSI SQL scripts (used by the cohort; extends translate()) -------------

def _portable_fixes(tree: sqlglot.exp.Expression, dialect: str) -> sqlglot.exp.Expression:
    """Rewrites sqlglot does not do by itself, so that one OHDSI SQL source runs on every engine:

    - SQL Server ``FLOAT`` is double precision; sqlglot maps it to a 4-byte REAL on several engines.
    - ``WITH ... INSERT`` (SQL Server's order) becomes ``INSERT ... WITH ... SELECT``, the order every
      other engine accepts (Snowflake and Oracle reject a CTE before INSERT).
    - ``DATEADD(day, n, d)`` becomes ``d + n`` where date + integer is a date (PostgreSQL, DuckDB, Oracle,
      Redshift), instead of a timestamp from ``+ INTERVAL`` (PostgreSQL, DuckDB) or an invalid call (Oracle).
    """
    from sqlglot import exp

    def fix(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.DataType) and node.this in (exp.DataType.Type.FLOAT,):
            return exp.DataType.build("double")
        if (dialect in ("postgresql", "duckdb", "oracle", "redshift") and isinstance(node, exp.DateAdd)
                and (node.unit is None or node.unit.name.upper() in ("DAY", "DD", "D"))):
            return exp.paren(exp.Add(this=node.this, expression=exp.paren(node.expression, copy=False)), copy=False)
        return node

    tree = tree.transform(fix)
    if dialect not in ("tsql", "sql server"):
        with_ = tree.args.get("with") or tree.args.get("with_")
        if isinstance(tree, exp.Insert) and with_ is not None:
            key = "with" if tree.args.get("with") is not None else "with_"
            tree.set(key, None)
            select = tree.expression
            select.set(key, with_)
    return tree


def translate_script(sql: str, dialect: str, pretty: bool = True) -> list[str]:
    """Translate rendered SQL Server SQL (several statements) into ``dialect`` with the portable fixes
    above; one string per statement, comments dropped."""
    if dialect not in DIALECTS:
        raise BadInput(f"unknown dialect {dialect!r}; choose one of {', '.join(DIALECTS)}")
    target = _SQLGLOT_NAME.get(dialect, dialect)
    out = []
    for tree in sqlglot.parse(sql, read="tsql"):
        if tree is None:
            continue
        tree = _portable_fixes(tree, dialect)
        out.append(tree.sql(dialect=target, pretty=pretty, comments=False))
    return [s for s in out if s.strip()]
