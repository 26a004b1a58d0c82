"""Run the data-quality checks against a CDM and evaluate them against DQD's thresholds.

Checks of one template are rendered one per table / field / concept and glued into ``UNION ALL``
statements, so a few dozen queries cover some two thousand checks; a statement that fails is re-run check by
check so the error lands on the check that caused it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable
from functools import lru_cache

import pandas as pd
from sqlalchemy.engine import Engine

from l059_omop.db.engine import dialect_of, redact, validate_identifier
from l059_omop.dq.spec import Check, build_checks
from l059_omop.resources import read_sql
from l059_omop.sqlrender import Ident, render, translate

log = logging.getLogger(__name__)

COLUMNS = ["check_id", "check_name", "check_level", "category", "subcategory", "context", "severity",
           "failure_level", "table", "field", "concept_id", "num_violated_rows", "num_denominator_rows",
           "pct_violated", "threshold", "status", "description", "error", "source"]

BATCH = 150
INTEGER_TYPES = ("integer", "bigint", "smallint", "int", "int4", "int8", "int2", "hugeint", "tinyint")
_IDENT_PARAMS = ("cdm_field", "fk_field", "standard_field", "after_field", "end_field")
# Checks that still mean something on a field that is entirely NULL (DQD's not-applicable rule).
_NULL_FIELD_APPLIES = {"cdmField", "cdmDatatype", "isRequired", "measureValueCompleteness"}


def _params(check: Check, index: int, schema: str) -> dict[str, object]:
    params: dict[str, object] = {"cdm_schema": schema, "cdm_table": check.table, "check_index": index}
    if check.field:
        params["cdm_field"] = Ident(check.field)
    for key, value in check.params.items():
        params[key] = Ident(value) if key in _IDENT_PARAMS else value
    return params


def _sentinel(key: str, value: object, k: int) -> object:
    """A stand-in of the same kind as ``value`` that renders to a token found nowhere else in the SQL."""
    if isinstance(value, Ident) or key.endswith(("_schema", "_table")):
        return Ident(f"zzq{k}zz")
    if isinstance(value, dt.date):
        return dt.date(1111, 1 + k // 28, 1 + k % 28)
    return [_SENTINEL_BASE + k] if isinstance(value, (list, tuple)) else _SENTINEL_BASE + k


_SENTINEL_BASE = 987650000


@lru_cache(maxsize=256)
def _translated_template(sql_file: str, dialect: str, kinds: tuple[tuple[str, str], ...]) -> tuple[str, tuple]:
    """Translate a template once per dialect (sqlglot is the slow part), with sentinels where the values go."""
    samples = {"ident": Ident("x"), "date": dt.date(2000, 1, 1), "list": [1], "number": 1}
    sentinels = {key: _sentinel(key, samples[kind], k) for k, (key, kind) in enumerate(kinds)}
    rendered = render(read_sql("dq", sql_file), sentinels)
    tokens = tuple((key, render(f"@{key}", {key: v})) for key, v in sentinels.items())
    return " ".join(translate(rendered, dialect, pretty=False)), tokens


def _kind(key: str, value: object) -> str:
    if isinstance(value, Ident) or key.endswith(("_schema", "_table")):
        return "ident"
    if isinstance(value, dt.date):
        return "date"
    return "list" if isinstance(value, (list, tuple)) else "number"


def _render(check: Check, index: int, schema: str, dialect: str) -> str:
    """The check's SQL in ``dialect``: the cached translation with the real (validated) values put back."""
    params = _params(check, index, schema)
    kinds = tuple(sorted((key, _kind(key, v)) for key, v in params.items()))
    sql, tokens = _translated_template(check.sql_file, dialect, kinds)
    # longest tokens first, so that a sentinel is never replaced inside a longer one
    for key, token in sorted(tokens, key=lambda kt: -len(kt[1])):
        sql = sql.replace(token, render(f"@{key}", {key: params[key]}))
    return sql


def render_direct(check: Check, index: int, schema: str, dialect: str) -> str:
    """The same SQL rendered and translated in one go (slow; the reference ``_render`` is tested against)."""
    return " ".join(translate(render(read_sql("dq", check.sql_file), _params(check, index, schema)), dialect,
                              pretty=False))


def _catalog(engine: Engine, schema: str) -> dict[str, dict[str, str]]:
    sql = translate(read_sql("dq", "catalog_columns.sql"), dialect_of(engine), pretty=False)[0]
    out: dict[str, dict[str, str]] = defaultdict(dict)
    with engine.connect() as con:
        for table, column, dtype in con.exec_driver_sql(sql, {"cdm_schema": schema}):
            out[table][column] = dtype
    return dict(out)


def _present_concepts(engine: Engine, schema: str, checks: Iterable[Check]) -> set[tuple[str, str, int]]:
    """(table, field, concept id) of the concept-level checks' concepts that occur in the data."""
    wanted: dict[tuple[str, str], set[int]] = defaultdict(set)
    for c in checks:
        wanted[(c.table, c.field or "")].update(c.concept_ids)
    dialect = dialect_of(engine)
    present: set[tuple[str, str, int]] = set()
    with engine.connect() as con:
        for (table, fld), ids in sorted(wanted.items()):
            sql = render(read_sql("dq", "concept_presence.sql"),
                         {"cdm_schema": schema, "cdm_table": table, "cdm_field": Ident(fld), "concept_ids": ids})
            for stmt in translate(sql, dialect, pretty=False):
                present.update((table, fld, int(r[0])) for r in con.exec_driver_sql(stmt))
    return present


def _execute(engine: Engine, sql: str, binds: dict[str, str] | None = None) -> list[tuple]:
    with engine.connect() as con:
        result = con.exec_driver_sql(sql, binds) if binds else con.exec_driver_sql(sql)
        return [tuple(r) for r in result]


def _run_sql_checks(engine: Engine, schema: str, items: list[tuple[int, Check]],
                    results: dict[int, dict]) -> None:
    dialect = dialect_of(engine)
    url = engine.url.render_as_string(hide_password=False)

    def one(index: int, check: Check) -> None:
        try:
            rows = _execute(engine, _render(check, index, schema, dialect), check.binds or None)
            results[index] = {"num_violated_rows": int(rows[0][1] or 0), "num_denominator_rows": int(rows[0][2] or 0)}
        except Exception as exc:  # noqa: BLE001 - a failing check is a result (status error), not a crash
            msg = str(getattr(exc, "orig", exc) or exc).strip().splitlines()
            results[index] = {"error": redact(msg[0] if msg else type(exc).__name__, url)}

    plain: dict[str, list[tuple[int, Check]]] = defaultdict(list)
    for index, check in items:
        if check.binds:
            one(index, check)  # text values are bound parameters: one statement each
        else:
            plain[check.sql_file].append((index, check))
    for _, group in sorted(plain.items()):
        for start in range(0, len(group), BATCH):
            batch = group[start:start + BATCH]
            sql = "\nUNION ALL\n".join(_render(c, i, schema, dialect) for i, c in batch)
            try:
                rows = _execute(engine, sql)
            except Exception:  # noqa: BLE001 - isolate the failing check(s)
                for i, c in batch:
                    one(i, c)
                continue
            for idx, violated, denominator in rows:
                results[int(idx)] = {"num_violated_rows": int(violated or 0),
                                     "num_denominator_rows": int(denominator or 0)}


def _status(check: Check, res: dict) -> tuple[str, float]:
    if "error" in res:
        return "error", 0.0
    if res.get("not_applicable"):
        return "not_applicable", 0.0
    denominator = res["num_denominator_rows"]
    if denominator == 0 and check.sql_file is not None:
        return "not_applicable", 0.0
    pct = 100.0 * res["num_violated_rows"] / denominator if denominator else 0.0
    return ("fail" if pct > check.threshold else "pass"), pct


def run_checks(engine: Engine, cdm_schema: str = "cdm", checks: list[Check] | None = None,
               today: dt.date | None = None) -> pd.DataFrame:
    """Run the data-quality checks over the CDM in ``cdm_schema`` (vocabulary in the same schema).

    Returns one row per check (see ``COLUMNS``): ``pct_violated`` is a percentage compared with DQD's
    ``threshold`` (also a percentage); ``status`` is pass, fail (over the threshold), error (the SQL failed;
    ``error`` says why) or not_applicable (empty table, missing table or field, field entirely NULL,
    concept absent from the data).
    """
    validate_identifier(cdm_schema)
    checks = build_checks(today) if checks is None else checks
    catalog = _catalog(engine, cdm_schema)
    results: dict[int, dict] = {}

    def exists(table: str, fld: str | None) -> bool:
        return table in catalog and (fld is None or fld in catalog[table])

    runnable: list[tuple[int, Check]] = []
    concept_checks = [c for c in checks if c.concept_ids and all(exists(t, f) for t, f in c.requires)]
    present = _present_concepts(engine, cdm_schema, concept_checks) if concept_checks else set()
    for index, c in enumerate(checks):
        if c.check_name == "cdmTable":
            results[index] = {"num_violated_rows": 0 if exists(c.table, None) else 1, "num_denominator_rows": 1}
        elif c.check_name == "cdmField":
            results[index] = {"num_violated_rows": 0 if exists(c.table, c.field) else 1, "num_denominator_rows": 1}
        elif c.check_name == "cdmDatatype":
            if not exists(c.table, c.field):
                results[index] = {"not_applicable": True}
            else:
                ok = catalog[c.table][c.field].split("(")[0].strip() in INTEGER_TYPES
                results[index] = {"num_violated_rows": 0 if ok else 1, "num_denominator_rows": 1}
        elif not all(exists(t, f) for t, f in c.requires) or not exists(c.table, c.field):
            results[index] = {"not_applicable": True}
        elif c.concept_ids and not any((c.table, c.field, i) in present for i in c.concept_ids):
            if c.check_name != "plausibleGenderUseDescendants":  # descendants may occur without the ancestor
                results[index] = {"not_applicable": True}
            else:
                runnable.append((index, c))
        else:
            runnable.append((index, c))
    log.info("dq: %d checks, %d to run in SQL", len(checks), len(runnable))
    _run_sql_checks(engine, cdm_schema, runnable, results)

    all_null = {(c.table, c.field) for i, c in enumerate(checks)
                if c.check_name == "measureValueCompleteness" and results.get(i, {}).get("num_denominator_rows")
                and results[i]["num_violated_rows"] == results[i]["num_denominator_rows"]}
    rows = []
    for index, c in enumerate(checks):
        res = results.get(index, {"error": "not run"})
        if (c.check_level == "FIELD" and c.check_name not in _NULL_FIELD_APPLIES
                and (c.table, c.field) in all_null and "error" not in res):
            res = {**res, "not_applicable": True}
        status, pct = _status(c, res)
        rows.append({
            "check_id": c.check_id, "check_name": c.check_name, "check_level": c.check_level,
            "category": c.category, "subcategory": c.subcategory, "context": c.context, "severity": c.severity,
            "failure_level": c.failure_level, "table": c.table, "field": c.field or "",
            "concept_id": ",".join(str(i) for i in c.concept_ids),
            "num_violated_rows": res.get("num_violated_rows"), "num_denominator_rows": res.get("num_denominator_rows"),
            "pct_violated": round(pct, 4), "threshold": c.threshold, "status": status,
            "description": c.description, "error": res.get("error", ""), "source": c.source,
        })
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("num_violated_rows", "num_denominator_rows"):
        df[col] = df[col].astype("Int64")
    return df
