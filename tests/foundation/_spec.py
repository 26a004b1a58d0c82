"""The OMOP CDM v5.4 specification read independently of l059_omop.db.cdm_spec (plain csv), so the schema
tests compare the database against the OHDSI file, not against the code that generated the schema."""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OMOP_DIR = REPO / "l059_omop" / "data" / "omop"
SHARED = REPO.parent / "shared"


@lru_cache(maxsize=1)
def field_rows() -> list[dict[str, str]]:
    with (OMOP_DIR / "OMOP_CDMv5.4_Field_Level.csv").open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def columns() -> dict[tuple[str, str], tuple[str, bool]]:
    """(table, column) -> (spec datatype lower-cased, required)."""
    return {(r["cdmTableName"].lower(), _name(r["cdmFieldName"])): (r["cdmDatatype"].lower(),
                                                                     r["isRequired"] == "Yes")
            for r in field_rows()}


def _name(field: str) -> str:
    """The spec quotes the reserved word offset as "offset"; the column is called offset."""
    return field.strip('"').lower()


def tables() -> set[str]:
    return {t for t, _ in columns()}


def primary_keys() -> set[tuple[str, str]]:
    return {(r["cdmTableName"].lower(), _name(r["cdmFieldName"])) for r in field_rows() if r["isPrimaryKey"] == "Yes"}


def foreign_keys() -> set[tuple[str, str, str, str]]:
    return {(r["cdmTableName"].lower(), _name(r["cdmFieldName"]), r["fkTableName"].lower(),
             _name(r["fkFieldName"])) for r in field_rows() if r["isForeignKey"] == "Yes"}


def secondary_indexes() -> set[tuple[str, str, str]]:
    """(index name, table, column) of the official DDL's index file, kept as data in the package."""
    with (OMOP_DIR / "OMOP_CDMv5.4_indices.csv").open(encoding="utf-8", newline="") as fh:
        return {(r["index_name"], r["table_name"], r["column_name"]) for r in csv.DictReader(fh)}


def pg_type(datatype: str) -> tuple[str, int | None]:
    """information_schema data_type and character_maximum_length the official PostgreSQL DDL gives."""
    if datatype == "integer":
        return "integer", None
    if datatype == "float":
        return "numeric", None
    if datatype == "date":
        return "date", None
    if datatype == "datetime":
        return "timestamp without time zone", None
    if datatype == "varchar(max)":
        return "text", None
    if datatype.startswith("varchar("):
        return "character varying", int(datatype[8:-1])
    raise AssertionError(f"unexpected spec datatype {datatype}")


def duckdb_type(datatype: str) -> str:
    """duckdb_columns().data_type for a spec datatype (DOUBLE for float, DESIGN §3)."""
    return {"integer": "INTEGER", "float": "DOUBLE", "date": "DATE", "datetime": "TIMESTAMP"}.get(datatype, "VARCHAR")
