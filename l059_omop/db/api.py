"""Database set-up operations behind ``init-db`` and ``import-cdm``."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from l059_omop.db import bulk, cdm_spec
from l059_omop.db.engine import dialect_of, validate_identifier
from l059_omop.db.schema import CreateReport, add_constraints, create_tables, drop_foreign_keys
from l059_omop.errors import BadInput
from l059_omop.vocab import loader


@dataclass
class InitResult:
    tables: CreateReport
    vocabulary: loader.VocabReport
    constraints: CreateReport
    deferred: bool = False  # the foreign keys and indexes were not added (constraints=False)

    @property
    def changed(self) -> bool:
        return self.tables.changed or not self.vocabulary.skipped or self.constraints.changed

    def summary_lines(self) -> list[str]:
        t, v, c = self.tables, self.vocabulary, self.constraints
        kept = (f"vocabulary: {v.source} was not loaded: the database already holds a vocabulary (load a "
                "different one into a fresh database)") if v.source != "bundled" else None
        if not self.changed and not self.deferred:
            return [f"nothing to do: all {len(t.existing)} tables exist and the vocabulary is loaded"] + (
                [kept] if kept else [])
        lines = [f"tables: {len(t.created)} created, {len(t.existing)} already present"]
        if v.skipped:
            lines.append(kept or "vocabulary: already loaded, left as it is")
        else:
            detail = ", ".join(f"{k} {n:,}" for k, n in v.rows.items())
            lines.append(f"vocabulary ({v.source}): {v.total:,} rows ({detail})"
                         + (f"; {v.local_added} local L059 rows added" if v.local_added else ""))
        if c.constraints_added or c.indexes_added:
            lines.append(f"constraints: {c.constraints_added} foreign keys, {c.indexes_added} indexes added")
        if self.deferred:
            lines.append("constraints: deferred; run init-db again after loading to add the foreign keys and "
                         "indexes")
        for f in c.constraint_failures:
            lines.append(f"constraint not added: {f}")
        return lines


def init_db(engine: Engine, cdm_schema: str = "cdm", results_schema: str = "results", etl_schema: str = "etl",
            vocab_dir: Path | None = None, progress: bool = False, constraints: bool = True) -> InitResult:
    """Create every table, load the vocabulary, then add the constraints (idempotent).

    ``constraints=False``: no foreign keys or secondary indexes yet (PostgreSQL; DuckDB has none), OHDSI's
    order for a bulk ETL: load the clinical data, then call init_db again, which adds them and reports each
    one the data violates. A load into PostgreSQL then skips the per-row foreign-key checks (~13 % of a
    1M-resource FHIR load, benchmarks/README.md)."""
    tables = create_tables(engine, cdm_schema, results_schema, etl_schema)
    if vocab_dir is not None:
        vocab = loader.load_athena(engine, cdm_schema, Path(vocab_dir), progress=progress)
    else:
        vocab = loader.load_bundled(engine, cdm_schema)
    if not constraints:
        return InitResult(tables, vocab, CreateReport(), deferred=dialect_of(engine) == "postgresql")
    return InitResult(tables, vocab, add_constraints(engine, cdm_schema))


@dataclass
class ImportResult:
    rows: dict[str, int] = field(default_factory=dict)
    skipped_files: list[str] = field(default_factory=list)
    constraint_failures: list[str] = field(default_factory=list)


_DUCK = {"integer": "BIGINT", "float": "DOUBLE", "date": "DATE", "datetime": "TIMESTAMP"}


def import_cdm(engine: Engine, directory: Path, cdm_schema: str = "cdm", results_schema: str = "results",
               etl_schema: str = "etl", replace: bool = False) -> ImportResult:
    """Import a CDM exported as comma-separated CSV (one file per table, e.g. Eunomia).

    Data is loaded before any foreign key exists; constraints are added afterwards and each one the data
    violates is reported (OHDSI's split DDL), so an incomplete vocabulary shard does not block the import.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise BadInput("not a folder", file=str(directory))
    validate_identifier(cdm_schema)
    create_tables(engine, cdm_schema, results_schema, etl_schema)
    spec = cdm_spec.tables()
    result = ImportResult()
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() == ".csv")
    plan = []
    for path in files:
        table = path.stem.lower()
        if table not in spec:
            result.skipped_files.append(path.name)
            continue
        with path.open(encoding="utf-8-sig", newline="") as fh:
            header = [h.strip().lower() for h in next(csv.reader(fh), [])]
        known = {f.name: f for f in spec[table]}
        unknown = [h for h in header if h not in known]
        if unknown:
            raise BadInput(f"column(s) {', '.join(unknown)} are not in the OMOP CDM v5.4 table {table}",
                           file=str(path), record="header")
        plan.append((table, path, header, known))
    with engine.connect() as con:
        filled = {table: n for table, _, _, _ in plan if (n := bulk.count_rows(con, cdm_schema, table))}
    for table, n in filled.items():
        if not replace:
            raise BadInput(f"table {cdm_schema}.{table} already has {n} rows (use --replace)", file=str(directory))
    # Foreign keys (present after init-db, or from an earlier import) go before the load and are added again,
    # and checked, after it, as OHDSI's split DDL does: files load in any order, and rows elsewhere may
    # reference rows being replaced.
    drop_foreign_keys(engine, cdm_schema)
    if filled:
        with engine.begin() as con:
            for table in filled:
                con.execute(sa.text(f"delete from {cdm_schema}.{table}"))
    for table, path, header, known in plan:
        result.rows[table] = _copy_csv(engine, cdm_schema, table, path, header, known)
    result.constraint_failures = add_constraints(engine, cdm_schema).constraint_failures
    return result


def _copy_csv(engine: Engine, schema: str, table: str, path: Path, header: list[str], known) -> int:
    target = f"{schema}.{table}"
    if dialect_of(engine) == "duckdb":
        types = "{" + ", ".join(f"'{h}': '{_DUCK.get(known[h].datatype, 'VARCHAR')}'" for h in header) + "}"
        select = ", ".join(f"nullif(\"{h}\", '')" if _DUCK.get(known[h].datatype) is None else f'"{h}"'
                           for h in header)
        with engine.begin() as con:
            raw = con.connection.driver_connection
            before = raw.execute(f"select count(*) from {target}").fetchone()[0]
            raw.execute(f"insert into {target} ({bulk.quote_columns(header)}) select {select} from read_csv(?, header=true, "
                        f"delim=',', quote='\"', escape='\"', columns={types}, auto_detect=false)", [str(path)])
            return raw.execute(f"select count(*) from {target}").fetchone()[0] - before
    text_cols = [h for h in header if known[h].datatype.startswith("varchar")]
    force_null = f", force_null ({bulk.quote_columns(text_cols)})" if text_cols else ""
    with engine.begin() as con:
        raw = con.connection.driver_connection
        with raw.cursor() as cur, path.open("rb") as fh:
            if fh.read(3) != b"\xef\xbb\xbf":
                fh.seek(0)
            with cur.copy(f"copy {target} ({bulk.quote_columns(header)}) from stdin with (format csv, header true{force_null})") as cp:
                while block := fh.read(1 << 22):
                    cp.write(block)
            return cur.rowcount
