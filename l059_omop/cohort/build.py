"""Run the L059 cohort on a database: render the OHDSI SQL for its dialect, run it, write the cohort, Circe's
inclusion tables, the ordered attrition and the run record; drop the run's scratch tables even on failure."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from l059_omop import __version__
from l059_omop.cohort import definition as d
from l059_omop.db import bulk, layout
from l059_omop.db.engine import validate_identifier
from l059_omop.errors import L059Error, RuntimeFailure
from l059_omop.sqlrender import engine_dialect

log = logging.getLogger(__name__)

ENTRY_NAME = "Entry: first-ever anlotinib in the study window, inside an observation period"
ATTRITION_COLUMNS = ["rule_sequence", "rule", "criterion", "rule_name", "persons_remaining", "persons_excluded",
                     "failing_alone", "note"]


def _ensure_tables(engine: Engine, results_schema: str, cohort_table: str, scratch_schema: str) -> None:
    md = layout.results_metadata(results_schema)
    if cohort_table != "cohort":
        sa.Table(cohort_table, md,
                 sa.Column("cohort_definition_id", sa.BigInteger, nullable=False),
                 sa.Column("subject_id", sa.BigInteger, nullable=False),
                 sa.Column("cohort_start_date", sa.Date, nullable=False),
                 sa.Column("cohort_end_date", sa.Date, nullable=False))
    with engine.begin() as con:
        for schema in {results_schema, scratch_schema}:
            con.execute(sa.text(f"create schema if not exists {validate_identifier(schema)}"))
        md.create_all(con, checkfirst=True)


def attrition_from_masks(masks: pd.DataFrame) -> pd.DataFrame:
    """The ordered attrition (as CohortGenerator's computeCohortAttrition: persons remaining after each rule
    in order) plus, per rule, how many entrants fail it alone, from Circe's mode-1 mask counts."""
    rules = d.rules()
    pairs = [(int(m), int(c)) for m, c in zip(masks["inclusion_rule_mask"], masks["person_count"], strict=True)]
    total = sum(c for _, c in pairs)
    rows = [{"rule_sequence": 0, "rule": "entry", "criterion": "", "rule_name": ENTRY_NAME,
             "persons_remaining": total, "persons_excluded": 0, "failing_alone": 0, "note": ""}]
    prev = total
    for r in rules:
        need = (1 << (r.sequence + 1)) - 1
        remaining = sum(c for m, c in pairs if m & need == need)
        failing = sum(c for m, c in pairs if not m & (1 << r.sequence))
        rows.append({"rule_sequence": r.sequence + 1, "rule": r.code, "criterion": r.criterion, "rule_name": r.name,
                     "persons_remaining": remaining, "persons_excluded": prev - remaining, "failing_alone": failing,
                     "note": ""})
        prev = remaining
    for nc in d.NOT_COMPUTABLE:
        rows.append({"rule_sequence": None, "rule": "-", "criterion": nc.criterion, "rule_name": nc.text,
                     "persons_remaining": None, "persons_excluded": None, "failing_alone": None,
                     "note": nc.reason})
    df = pd.DataFrame(rows, columns=ATTRITION_COLUMNS)
    for c in ("rule_sequence", "persons_remaining", "persons_excluded", "failing_alone"):
        df[c] = df[c].astype("Int64")
    return df


def _execute(engine: Engine, statements: list[tuple[str, list[str]]],
             analyze: dict[str, list[str]] | None = None,
             cleanup: tuple[str, list[str]] | None = None, run_id: str = "") -> None:
    """Run the steps in one transaction, then ``cleanup`` (the scratch drops) on the same connection, also
    when a step failed: DuckDB's temporary scratch tables exist only on the connection that made them."""
    # one snapshot for the whole build: under PostgreSQL's default READ COMMITTED each statement would read
    # the CDM as a concurrent load had just committed it, mixing states (DuckDB transactions are snapshots)
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    duck = engine.dialect.name == "duckdb"
    with engine.connect().execution_options(**options) as con:
        try:
            with con.begin():
                if duck:
                    # no statement here relies on row order (each result is a set), and an INSERT that keeps
                    # insertion order buffers its input to restore it: off for the build, restored after
                    con.exec_driver_sql("SET preserve_insertion_order = false")
                try:
                    _run_steps(con, statements, analyze)
                finally:
                    if duck:
                        try:
                            con.exec_driver_sql("RESET preserve_insertion_order")
                        except Exception:  # noqa: BLE001 - a failed step aborted the transaction
                            con.invalidate()
        finally:
            if cleanup is not None:
                try:
                    if con.invalidated:  # closed with its temporary tables; a scratch schema's are dropped
                        with engine.connect() as other, other.begin():
                            _run_steps(other, [cleanup], None)
                    else:
                        with con.begin():
                            _run_steps(con, [cleanup], None)
                except Exception:  # noqa: BLE001 - never hide the original error behind a failed clean-up
                    log.warning("could not drop the scratch tables of run %s", run_id)


def _run_steps(con: sa.Connection, statements: list[tuple[str, list[str]]],
               analyze: dict[str, list[str]] | None) -> None:
    for name, stmts in statements:
        t0 = time.perf_counter()
        pending = list((analyze or {}).get(name, []))
        for s in stmts:
            try:
                con.exec_driver_sql(s)
            except Exception as exc:  # noqa: BLE001 - report which step failed, in one line
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise RuntimeFailure(f"cohort SQL step {name} failed: {msg}") from exc
            # a table filled by this statement gets its statistics before the step's next statement reads
            # it (R5 fills its cycle table, then groups and self-joins it)
            head = " ".join(s.split()[:3]).lower()
            for table in [t for t in pending if head == f"insert into {t.lower()}"]:
                con.exec_driver_sql(f"analyze {table}")
                pending.remove(table)
        for table in pending:
            con.exec_driver_sql(f"analyze {table}")
        log.info("cohort step %s: %.2f s", name, time.perf_counter() - t0)


def _analyze_plan(dialect: str, values: dict, steps: list[tuple[str, list[str]]]) -> dict[str, list[str]]:
    """PostgreSQL plans the later steps from table statistics, and a freshly filled scratch table has none
    (autovacuum comes too late, within the transaction): ANALYZE each one after the step that fills it."""
    if dialect != "postgresql":
        return {}
    schema = values["scratch_database_schema"]
    fills = {"01_codesets": ["codeset_table"], "02_entry": ["entry_table"], "03_cohort": ["events_table", "values_table"],
             "04_index": ["qualified_table"], "r05_": ["cycle_table"], "r13_": ["inclusion_table"]}
    plan: dict[str, list[str]] = {}
    for name, _ in steps:
        for prefix, keys in fills.items():
            if name.startswith(prefix):
                plan.setdefault(name, []).extend(f"{schema}.{values[k]}" for k in keys)
    return plan


def build_cohort(engine: Engine, cdm_schema: str = "cdm", results_schema: str = "results", cohort_id: int = 1059,
                 cohort_table: str = "cohort", vocabulary_schema: str | None = None,
                 scratch_schema: str | None = None, **params) -> pd.DataFrame:
    """Build the L059 cohort (COHORT.md) and return its attrition.

    Writes ``results.<cohort_table>`` (replacing an earlier run of ``cohort_id``), Circe's
    ``cohort_inclusion`` / ``cohort_inclusion_result`` (modes 0 and 1) / ``cohort_inclusion_stats`` /
    ``cohort_summary_stats``, the ordered ``cohort_attrition`` and a ``cohort_run`` row with the parameters
    and versions. ``params`` override COHORT.md's numbers (names: ``definition.DEFAULT_PARAMETERS``).
    The returned frame has one row for entry, one per rule (persons remaining, excluded, failing that rule
    alone) and one per registry criterion that cannot be computed (with the reason in ``note``).
    """
    values = d.render_values(cdm_schema, results_schema, vocabulary_schema, scratch_schema, cohort_id, cohort_table,
                             prefix=f"l059_{uuid.uuid4().hex[:10]}_", params=params)
    run_params = {k: values[k] for k in d.DEFAULT_PARAMETERS}
    run_id = values["codeset_table"][len("l059_"):-len("_codeset")]
    dialect = engine_dialect(engine.dialect.name)
    started = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    _ensure_tables(engine, results_schema, cohort_table, values["scratch_database_schema"])
    steps = d.translated_steps(dialect, values)
    if dialect == "duckdb" and scratch_schema is None:
        steps = d.duckdb_temporary_scratch(steps, values)
    work, drop = steps[:-1], steps[-1]
    t0 = time.perf_counter()
    try:
        _execute(engine, work, _analyze_plan(dialect, values, work), cleanup=drop, run_id=run_id)
    except L059Error:
        raise
    except Exception as exc:  # noqa: BLE001
        raise RuntimeFailure(f"cohort build failed: {str(exc).strip().splitlines()[0]}") from exc
    log.info("cohort %s built in %.2f s", cohort_id, time.perf_counter() - t0)
    rs = results_schema
    with engine.begin() as con:
        masks = pd.read_sql_query(
            sa.text(f"select inclusion_rule_mask, person_count from {rs}.cohort_inclusion_result "
                    "where cohort_definition_id = :c and mode_id = 1"), con, params={"c": cohort_id})
        attrition = attrition_from_masks(masks)
        computed = attrition[attrition["rule_sequence"].notna()]
        con.execute(sa.text(f"delete from {rs}.cohort_attrition where cohort_definition_id = :c"), {"c": cohort_id})
        bulk.insert_frame(con, rs, "cohort_attrition", pd.DataFrame({
            "cohort_definition_id": cohort_id,
            "rule_sequence": computed["rule_sequence"].astype("int64"),
            "rule_name": [f"{r} {n}" if r != "entry" else n for r, n in zip(computed["rule"], computed["rule_name"], strict=True)],
            "persons_remaining": computed["persons_remaining"].astype("int64"),
            "persons_excluded": computed["persons_excluded"].astype("int64")}))
        con.execute(sa.text(f"delete from {rs}.cohort_run where cohort_definition_id = :c"), {"c": cohort_id})
        con.execute(sa.text(
            f"insert into {rs}.cohort_run (cohort_definition_id, run_id, started_at, finished_at, software_version, "
            "definition_sha256, parameters_json) values (:c, :r, :s, :f, :v, :h, :p)"),
            {"c": cohort_id, "r": run_id, "s": started, "f": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
             "v": f"l059-omop {__version__}", "h": d.definition_sha256(), "p": d.parameters_json(run_params)})
    attrition.attrs["cohort_id"] = cohort_id
    attrition.attrs["run_id"] = run_id
    attrition.attrs["parameters"] = run_params
    return attrition


def format_attrition(attrition: pd.DataFrame) -> list[str]:
    """Lines for the CLI: the ordered attrition, each rule alone, and the criteria not computed."""
    computed = attrition[attrition["rule_sequence"].notna()]
    lines = [f"{'rule':<6} {'criterion':<18} {'remaining':>9} {'excluded':>8} {'fail alone':>10}  name"]
    for row in computed.itertuples(index=False):
        lines.append(f"{row.rule:<6} {row.criterion[:18]:<18} {row.persons_remaining:>9,} {row.persons_excluded:>8,} "
                     f"{row.failing_alone:>10,}  {row.rule_name}")
    lines.append("not computable from records (not applied):")
    for row in attrition[attrition["rule_sequence"].isna()].itertuples(index=False):
        lines.append(f"  {row.criterion}: {row.rule_name} - {row.note}")
    return lines
