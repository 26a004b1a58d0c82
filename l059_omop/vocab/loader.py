"""Load a vocabulary into the CDM schema: the bundled subset, or an Athena download by the bulk path."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from l059_omop import __version__
from l059_omop.db import bulk, cdm_spec
from l059_omop.db.engine import validate_identifier
from l059_omop.errors import BadInput
from l059_omop.vocab import bundled

log = logging.getLogger(__name__)

ATHENA_TABLES = ("concept", "concept_relationship", "concept_ancestor", "drug_strength", "vocabulary", "domain",
                 "concept_class", "relationship", "concept_synonym")
_DUCK_TYPES = {"integer": "INTEGER", "float": "DOUBLE", "date": "DATE", "datetime": "TIMESTAMP"}


@dataclass
class VocabReport:
    source: str
    rows: dict[str, int] = field(default_factory=dict)
    skipped: bool = False
    local_added: int = 0

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def concept_count(engine: Engine, cdm_schema: str) -> int:
    with engine.connect() as con:
        return bulk.count_rows(con, cdm_schema, "concept")


def bundled_version() -> str:
    return f"l059-omop {__version__} bundled subset"


def load_bundled(engine: Engine, cdm_schema: str = "cdm") -> VocabReport:
    """Load the bundled vocabulary unless the concept table already holds a vocabulary (idempotent)."""
    report = VocabReport(source="bundled")
    if concept_count(engine, cdm_schema):
        report.skipped = True
        return report
    frames = bundled.bundled_vocabulary(bundled_version())
    order = ("concept", "vocabulary", "domain", "concept_class", "relationship", "concept_relationship",
             "concept_ancestor", "drug_strength")
    report.rows = bulk.insert_frames(engine, cdm_schema, [(t, frames[t]) for t in order])
    return report


def _find(directory: Path, table: str) -> Path | None:
    for name in (f"{table.upper()}.csv", f"{table}.csv", f"{table.upper()}.CSV"):
        if (directory / name).is_file():
            return directory / name
    return None


def load_athena(engine: Engine, cdm_schema: str, directory: Path, progress: bool = True) -> VocabReport:
    """Bulk-load an Athena download (tab-separated files named CONCEPT.csv ...), then the local concepts."""
    validate_identifier(cdm_schema)
    directory = Path(directory)
    if not (directory / "CONCEPT.csv").is_file() and not (directory / "concept.csv").is_file():
        raise BadInput("no CONCEPT.csv in the vocabulary folder (expected an Athena download)", file=str(directory))
    report = VocabReport(source=str(directory))
    if concept_count(engine, cdm_schema):
        report.skipped = True
        return report
    files = [(t, _find(directory, t)) for t in ATHENA_TABLES]
    files = [(t, p) for t, p in files if p is not None]
    total = sum(p.stat().st_size for _, p in files)
    bar = _progress_bar(total, progress)
    try:
        for table, path in files:
            header = path.open(encoding="utf-8").readline().rstrip("\r\n").split("\t")
            columns = [validate_identifier(c.lower(), "column name") for c in header]
            spec = {f.name: f for f in cdm_spec.tables()[table]}
            unknown = [c for c in columns if c not in spec]
            if unknown:
                raise BadInput(f"unknown column(s) {', '.join(unknown)} for table {table}", file=str(path),
                               record="header")
            types = {c: _DUCK_TYPES.get(spec[c].datatype, "VARCHAR") for c in columns}
            report.rows[table] = bulk.copy_athena_file(engine, cdm_schema, table, path, columns, types,
                                                       progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    report.local_added = add_local_concepts(engine, cdm_schema)
    return report


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc="vocabulary", leave=False)


def add_local_concepts(engine: Engine, cdm_schema: str = "cdm") -> int:
    """Add the L059 concepts (and the metadata rows they need) where the loaded vocabulary lacks them."""
    local = bundled.local_concepts()
    meta = bundled._metadata_tables(local["concept"], set(local["concept_relationship"]["relationship_id"]),
                                    bundled_version())
    keys = {"concept": ["concept_id"], "vocabulary": ["vocabulary_id"], "domain": ["domain_id"],
            "concept_class": ["concept_class_id"], "relationship": ["relationship_id"],
            "concept_relationship": ["concept_id_1", "concept_id_2", "relationship_id"],
            "concept_ancestor": ["ancestor_concept_id", "descendant_concept_id"],
            "drug_strength": ["drug_concept_id", "ingredient_concept_id"]}
    standard = local["concept"]["concept_id"]
    frames = {**local, **meta, "concept_ancestor": bundled.close_ancestry(local["concept_ancestor"], standard)}
    added = 0
    with engine.begin() as con:
        for table in ("concept", "vocabulary", "domain", "concept_class", "relationship", "concept_relationship",
                      "concept_ancestor", "drug_strength"):
            df = frames[table]
            cols = keys[table]
            if df.empty:
                continue
            t = sa.table(table, *[sa.column(c) for c in cols], schema=cdm_schema)
            # only the rows that could clash with ours: a full vocabulary has millions
            first = [v.item() if hasattr(v, "item") else v for v in pd.unique(df[cols[0]])]
            q = sa.select(*[t.c[c] for c in cols]).where(t.c[cols[0]].in_(first))
            existing = pd.DataFrame(con.execute(q).fetchall(), columns=cols).drop_duplicates()
            if not existing.empty:
                merged = df.merge(existing.astype(df[cols].dtypes.to_dict()), on=cols, how="left", indicator=True)
                df = df[(merged["_merge"] == "left_only").to_numpy()]
            added += bulk.insert_frame(con, cdm_schema, table, df)
    return added
