"""Create the OMOP CDM v5.4 schema from the specification, on DuckDB and PostgreSQL.

Following OHDSI's split DDL, tables are created first and foreign keys added after data is loaded, so a
bulk load is never slowed or blocked by constraint order; on PostgreSQL each failing constraint is reported
instead of aborting. DuckDB gets no foreign keys (it rejects ALTER TABLE ... ADD FOREIGN KEY) and DOUBLE for
NUMERIC (its default DECIMAL(18,3) truncates values).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from l059_omop.db import cdm_spec, layout
from l059_omop.db.engine import dialect_of, validate_identifier
from l059_omop.errors import BadInput

log = logging.getLogger(__name__)


def _sa_type(f: cdm_spec.Field, dialect: str) -> sa.types.TypeEngine:
    t = f.datatype
    if t == "integer":
        return sa.Integer()
    if t == "float":
        return sa.Double() if dialect == "duckdb" else sa.Numeric()
    if t == "date":
        return sa.Date()
    if t == "datetime":
        return sa.DateTime()
    if t == "varchar(max)":
        return sa.Text()
    if t.startswith("varchar("):
        return sa.String(f.varchar_length)
    raise ValueError(f"unknown CDM datatype {t!r} for {f.table}.{f.name}")


def cdm_metadata(cdm_schema: str, dialect: str) -> sa.MetaData:
    """SQLAlchemy tables for the 39 CDM tables (primary keys, no foreign keys: those come after loading)."""
    validate_identifier(cdm_schema)
    md = sa.MetaData(schema=cdm_schema)
    for table, fs in cdm_spec.tables().items():
        cols = [sa.Column(f.name, _sa_type(f, dialect), nullable=not f.required, primary_key=f.primary_key,
                          autoincrement=False) for f in fs]
        sa.Table(table, md, *cols)
    return md


@dataclass
class CreateReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    constraints_added: int = 0
    constraint_failures: list[str] = field(default_factory=list)
    indexes_added: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.constraints_added or self.indexes_added)


def _ensure_schema(con: Connection, schema: str) -> None:
    validate_identifier(schema)
    con.execute(sa.schema.CreateSchema(schema, if_not_exists=True))


def check_duckdb_catalog(engine: Engine, schemas) -> None:
    """Refuse a DuckDB file named like one of the schemas: DuckDB names the catalog after the file, and a
    catalog ``cdm`` next to a schema ``cdm`` makes every ``cdm.table`` reference ambiguous."""
    with engine.connect() as con:
        catalog = con.execute(sa.text("select current_database()")).scalar()
    clash = [s for s in schemas if s.lower() == str(catalog).lower()]
    if clash:
        raise BadInput(f"--db: the DuckDB file {catalog}.duckdb has the name of the schema {clash[0]!r}, which "
                       "makes table names ambiguous in DuckDB; rename the file (e.g. l059.duckdb)")


def create_tables(engine: Engine, cdm_schema: str = "cdm", results_schema: str = "results",
                  etl_schema: str = "etl") -> CreateReport:
    """Create every CDM, results and etl table that does not exist yet (idempotent)."""
    dialect = dialect_of(engine)
    report = CreateReport()
    if dialect == "duckdb":
        check_duckdb_catalog(engine, (cdm_schema, results_schema, etl_schema))
    mds = [cdm_metadata(cdm_schema, dialect), layout.results_metadata(results_schema),
           layout.etl_metadata(etl_schema, dialect)]
    with engine.begin() as con:
        for md in mds:
            _ensure_schema(con, md.schema)
            existing = set(sa.inspect(con).get_table_names(schema=md.schema))
            for t in md.sorted_tables:
                (report.existing if t.name in existing else report.created).append(f"{md.schema}.{t.name}")
            md.create_all(con, checkfirst=True)
    return report


def foreign_keys() -> list[tuple[str, str, str, str]]:
    """(table, column, referenced table, referenced column) for the 176 foreign keys of the specification."""
    return [(f.table, f.name, f.fk_table, f.fk_field) for f in cdm_spec.fields() if f.fk_table]


def _fk_name(table: str, column: str) -> str:
    return f"fpk_{table}_{column}"[:63]


def drop_foreign_keys(engine: Engine, cdm_schema: str = "cdm") -> int:
    """Drop the foreign keys of the CDM schema (PostgreSQL), e.g. before replacing data that other rows
    reference; ``add_constraints`` adds them again afterwards. Returns how many were dropped."""
    validate_identifier(cdm_schema)
    if dialect_of(engine) != "postgresql":
        return 0
    q = sa.text("select c.conname, cl.relname from pg_constraint c join pg_class cl on cl.oid = c.conrelid "
                "join pg_namespace n on n.oid = cl.relnamespace where c.contype = 'f' and n.nspname = :s")
    with engine.begin() as con:
        rows = con.execute(q, {"s": cdm_schema}).all()
        for name, table in rows:
            quoted = '"' + name.replace('"', '""') + '"'
            con.execute(sa.text(f'alter table {cdm_schema}."{table}" drop constraint {quoted}'))
    return len(rows)


def _existing_constraints(con: Connection, schema: str) -> set[str]:
    q = sa.text("select constraint_name from information_schema.table_constraints where table_schema = :s")
    return {r[0] for r in con.execute(q, {"s": schema})}


def _existing_indexes(con: Connection, schema: str) -> set[str]:
    q = sa.text("select indexname from pg_indexes where schemaname = :s")
    return {r[0] for r in con.execute(q, {"s": schema})}


def add_constraints(engine: Engine, cdm_schema: str = "cdm") -> CreateReport:
    """Add the foreign keys and secondary indexes of the official DDL after loading (PostgreSQL only).

    Each foreign key is added in its own transaction, so one the data violates is reported and the rest
    still land, as happens when a partial vocabulary shard (e.g. Eunomia's) is loaded.
    """
    validate_identifier(cdm_schema)
    report = CreateReport()
    dialect = dialect_of(engine)
    md = cdm_metadata(cdm_schema, dialect)
    if dialect == "postgresql":
        with engine.connect() as con:
            have = _existing_constraints(con, cdm_schema)
        for table, column, ref_table, ref_column in foreign_keys():
            name = _fk_name(table, column)
            if name in have:
                continue
            fk = sa.ForeignKeyConstraint([md.tables[f"{cdm_schema}.{table}"].c[column]],
                                         [md.tables[f"{cdm_schema}.{ref_table}"].c[ref_column]], name=name)
            md.tables[f"{cdm_schema}.{table}"].append_constraint(fk)
            try:
                with engine.begin() as con:
                    con.execute(sa.schema.AddConstraint(fk))
                report.constraints_added += 1
            except sa.exc.DBAPIError as exc:
                detail = str(exc.orig).splitlines()[1] if len(str(exc.orig).splitlines()) > 1 else str(exc.orig)
                report.constraint_failures.append(f"{name} ({table}.{column} -> {ref_table}.{ref_column}): "
                                                  f"{detail.strip()}")
        with engine.connect() as con:
            have_idx = _existing_indexes(con, cdm_schema)
    else:
        return report  # DuckDB: columnar scans need no secondary indexes, and ART indexes slow bulk loads
    for ix in cdm_spec.indexes():
        if ix.name in have_idx:
            continue
        idx = sa.Index(ix.name, md.tables[f"{cdm_schema}.{ix.table}"].c[ix.column])
        with engine.begin() as con:
            idx.create(con)
        report.indexes_added += 1
    return report
