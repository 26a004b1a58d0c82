"""The OMOP CDM v5.4 specification (OHDSI CommonDataModel field-level CSV) as Python objects.

The schema is generated from this file, never hand-written, so a check against the same file can prove the
database matches the standard.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache

from l059_omop.resources import data_path

CDM_VERSION = "5.4"


@dataclass(frozen=True)
class Field:
    table: str
    name: str
    required: bool
    datatype: str  # normalised: integer, float, date, datetime, varchar(n), varchar(max)
    primary_key: bool
    fk_table: str | None
    fk_field: str | None

    @property
    def varchar_length(self) -> int | None:
        if self.datatype.startswith("varchar(") and self.datatype != "varchar(max)":
            return int(self.datatype[8:-1])
        return None


@dataclass(frozen=True)
class Index:
    name: str
    table: str
    column: str


@lru_cache(maxsize=1)
def fields() -> tuple[Field, ...]:
    out = []
    with data_path("omop", "OMOP_CDMv5.4_Field_Level.csv").open(encoding="utf-8-sig", newline="") as fh:
        for row in csv.DictReader(fh):
            fk = row["isForeignKey"] == "Yes"
            out.append(Field(
                table=row["cdmTableName"].lower(),
                # the spec writes the reserved word offset as "offset" (SQL quoting, not part of the name)
                name=row["cdmFieldName"].strip('"').lower(),
                required=row["isRequired"] == "Yes",
                datatype=row["cdmDatatype"].lower(),
                primary_key=row["isPrimaryKey"] == "Yes",
                fk_table=row["fkTableName"].lower() if fk else None,
                fk_field=row["fkFieldName"].lower() if fk else None,
            ))
    return tuple(out)


@lru_cache(maxsize=1)
def tables() -> dict[str, tuple[Field, ...]]:
    """Table name -> its fields in specification order."""
    out: dict[str, list[Field]] = {}
    for f in fields():
        out.setdefault(f.table, []).append(f)
    return {t: tuple(fs) for t, fs in out.items()}


@lru_cache(maxsize=1)
def indexes() -> tuple[Index, ...]:
    with data_path("omop", "OMOP_CDMv5.4_indices.csv").open(encoding="utf-8", newline="") as fh:
        return tuple(Index(r["index_name"], r["table_name"], r["column_name"]) for r in csv.DictReader(fh))


VOCABULARY_TABLES = ("concept", "vocabulary", "domain", "concept_class", "concept_relationship", "relationship",
                     "concept_synonym", "concept_ancestor", "source_to_concept_map", "drug_strength")
