"""Tables outside the CDM: the OHDSI results tables and the ETL bookkeeping (DESIGN §3).

The HL7 FHIR-to-OMOP guide asks that provenance and quarantine live outside the CDM schema, so a CDM
export stays standard.
"""

from __future__ import annotations

import sqlalchemy as sa

from l059_omop.db.engine import validate_identifier


def results_metadata(schema: str = "results") -> sa.MetaData:
    """cohort as every OHDSI tool expects, Circe's inclusion statistics, and a plain attrition table."""
    validate_identifier(schema)
    md = sa.MetaData(schema=schema)
    sa.Table("cohort", md,
             sa.Column("cohort_definition_id", sa.BigInteger, nullable=False),
             sa.Column("subject_id", sa.BigInteger, nullable=False),
             sa.Column("cohort_start_date", sa.Date, nullable=False),
             sa.Column("cohort_end_date", sa.Date, nullable=False))
    sa.Table("cohort_inclusion", md,
             sa.Column("cohort_definition_id", sa.BigInteger, nullable=False),
             sa.Column("rule_sequence", sa.Integer, nullable=False),
             sa.Column("name", sa.String(255)),
             sa.Column("description", sa.String(1000)))
    sa.Table("cohort_inclusion_result", md,
             sa.Column("cohort_definition_id", sa.BigInteger, nullable=False),
             sa.Column("inclusion_rule_mask", sa.BigInteger, nullable=False),
             sa.Column("person_count", sa.BigInteger, nullable=False),
             sa.Column("mode_id", sa.Integer, nullable=False))
    sa.Table("cohort_inclusion_stats", md,
             sa.Column("cohort_definition_id", sa.BigInteger, nullable=False),
             sa.Column("rule_sequence", sa.Integer, nullable=False),
             sa.Column("person_count", sa.BigInteger, nullable=False),
             sa.Column("gain_count", sa.BigInteger, nullable=False),
             sa.Column("person_total", sa.BigInteger, nullable=False),
             sa.Column("mode_id", sa.Integer, nullable=False))
    sa.Table("cohort_summary_stats", md,
             sa.Column("cohort_definition_id", sa.BigInteger, nullable=False),
             sa.Column("base_count", sa.BigInteger, nullable=False),
             sa.Column("final_count", sa.BigInteger, nullable=False),
             sa.Column("mode_id", sa.Integer, nullable=False))
    sa.Table("cohort_censor_stats", md,
             sa.Column("cohort_definition_id", sa.BigInteger, nullable=False),
             sa.Column("lost_count", sa.BigInteger, nullable=False))
    sa.Table("cohort_attrition", md,
             sa.Column("cohort_definition_id", sa.BigInteger, nullable=False),
             sa.Column("rule_sequence", sa.Integer, nullable=False),
             sa.Column("rule_name", sa.String(255), nullable=False),
             sa.Column("persons_remaining", sa.BigInteger, nullable=False),
             sa.Column("persons_excluded", sa.BigInteger, nullable=False))
    sa.Table("cohort_run", md,
             sa.Column("cohort_definition_id", sa.BigInteger, nullable=False),
             sa.Column("run_id", sa.String(64), nullable=False),
             sa.Column("started_at", sa.DateTime, nullable=False),
             sa.Column("finished_at", sa.DateTime),
             sa.Column("software_version", sa.String(50), nullable=False),
             sa.Column("definition_sha256", sa.String(64)),
             sa.Column("parameters_json", sa.Text, nullable=False))
    return md


def etl_metadata(schema: str = "etl", dialect: str | None = None) -> sa.MetaData:
    """The ETL bookkeeping of the loaders' sink (l059_omop.etl.sink).

    source_id_map: one row per OMOP row a loader wrote (source system, record type, source id, row key ->
    table and deterministic id); source_resource: the version and content hash of each source record, so a
    reload of the same input changes nothing and a newer version replaces its rows; load_run: one row per
    load with its report; quarantine: rejected input with its locator and reason; touched_person: the
    persons whose observation period a run must recompute (emptied at the end of the run).

    On DuckDB (``dialect="duckdb"``) source_id_map and source_resource have no primary key: DuckDB keeps a
    primary key as an in-memory ART index over the five / three text columns, which cost a bulk load about
    as much CPU as the CDM rows themselves and grew its memory with the tables, and DuckDB's joins do not
    use it. The sink keeps the keys unique itself (it looks stored keys up before it writes; the frame
    path's first-load shortcut checks the run's own keys in memory) and checks at the end of a run
    (:meth:`l059_omop.etl.sink.Sink.finish`). PostgreSQL keeps the keys (its lookups use them).
    """
    validate_identifier(schema)
    md = sa.MetaData(schema=schema)
    keyed = dialect != "duckdb"
    sa.Table("source_id_map", md,
             sa.Column("source_system", sa.String(255), nullable=False),
             sa.Column("resource_type", sa.String(64), nullable=False),
             sa.Column("source_id", sa.String(255), nullable=False),
             sa.Column("row_key", sa.String(64), nullable=False),
             sa.Column("omop_table", sa.String(64), nullable=False),
             sa.Column("omop_id", sa.BigInteger, nullable=False),
             sa.Column("run_id", sa.String(64)),
             *([sa.PrimaryKeyConstraint("source_system", "resource_type", "source_id", "omop_table", "row_key")]
               if keyed else []))
    sa.Index("ix_source_id_map_omop", md.tables[f"{schema}.source_id_map"].c.omop_table,
             md.tables[f"{schema}.source_id_map"].c.omop_id).ddl_if(dialect="postgresql")
    sa.Table("source_resource", md,
             sa.Column("source_system", sa.String(255), nullable=False),
             sa.Column("resource_type", sa.String(64), nullable=False),
             sa.Column("source_id", sa.String(255), nullable=False),
             sa.Column("version_id", sa.String(64)),
             sa.Column("last_updated", sa.String(64)),
             sa.Column("content_sha256", sa.String(64), nullable=False),
             sa.Column("run_id", sa.String(64), nullable=False),
             sa.Column("locator", sa.Text),
             sa.Column("imputed", sa.Text),
             *([sa.PrimaryKeyConstraint("source_system", "resource_type", "source_id")] if keyed else []))
    sa.Table("load_run", md,
             sa.Column("run_id", sa.String(64), primary_key=True),
             sa.Column("kind", sa.String(32), nullable=False),
             sa.Column("started_at", sa.DateTime, nullable=False),
             sa.Column("finished_at", sa.DateTime),
             sa.Column("status", sa.String(32), nullable=False),
             sa.Column("software_version", sa.String(50), nullable=False),
             sa.Column("cdm_version", sa.String(20), nullable=False),
             sa.Column("vocabulary_version", sa.String(255)),
             sa.Column("source", sa.Text),
             sa.Column("counts_json", sa.Text))
    sa.Table("quarantine", md,
             sa.Column("run_id", sa.String(64), nullable=False),
             sa.Column("source_locator", sa.Text, nullable=False),
             sa.Column("resource_type", sa.String(64)),
             sa.Column("resource_id", sa.String(255)),
             sa.Column("reason", sa.Text, nullable=False),
             sa.Column("payload", sa.Text))
    sa.Table("touched_person", md,
             sa.Column("run_id", sa.String(64), nullable=False),
             sa.Column("person_id", sa.BigInteger, nullable=False))
    return md
