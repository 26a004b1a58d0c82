"""A site whose CDM lives as Parquet or CSV files, run on a local Spark session (``--db spark://local?cdm=DIR``).

Deliberately small: it registers each CDM table found in DIR (``person.parquet``, ``PERSON.csv``, or a
folder ``person/`` of Parquet parts) as an external table of a Spark database named like the CDM schema,
creates the results tables empty, and runs the very same cohort and outcome SQL that DuckDB and PostgreSQL
run, translated to Spark SQL by sqlglot. Person-level rows come back to the driver only as the analysis rows
that ``aggregate`` turns into counts, as on the other engines.

Spark's Parquet tables support no DELETE; the cohort script deletes an earlier run of the cohort before it
writes. The results tables here are created empty for each run, so those DELETEs are checked to have
nothing to delete and are then skipped; on a non-empty table the run stops.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import tempfile
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd
import sqlalchemy as sa

from l059_omop.db import cdm_spec
from l059_omop.db.engine import validate_identifier
from l059_omop.db.layout import results_metadata
from l059_omop.errors import BadInput, RuntimeFailure

log = logging.getLogger(__name__)

_SPARK_TYPES = {"integer": "BIGINT", "float": "DOUBLE", "date": "DATE", "datetime": "TIMESTAMP"}
_DELETE = re.compile(r"^\s*DELETE\s+FROM\s+([A-Za-z0-9_.`]+)", re.I)


def _sa_type(col: sa.Column) -> str:
    t = col.type
    if isinstance(t, sa.BigInteger):
        return "BIGINT"
    if isinstance(t, sa.Integer):
        return "INT"
    if isinstance(t, sa.DateTime):
        return "TIMESTAMP"
    if isinstance(t, sa.Date):
        return "DATE"
    if isinstance(t, (sa.Float, sa.Numeric)):
        return "DOUBLE"
    return "STRING"


class _Result:
    def __init__(self, df: pd.DataFrame | None):
        self._df = df
        self.returns_rows = df is not None

    def keys(self):
        return list(self._df.columns)

    def fetchall(self):
        return list(self._df.itertuples(index=False, name=None))

    def __iter__(self):
        return iter(self.fetchall())


class _Connection:
    """Just enough of a SQLAlchemy connection for the concept-set resolver (compiled SELECTs)."""

    def __init__(self, site: SparkSite):
        self.site = site

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, statement, params=None):
        from sqlalchemy.dialects import postgresql

        sql = str(statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
        return _Result(self.site.query(sql))

    def exec_driver_sql(self, sql: str):
        df = self.site.run(sql)
        return _Result(df)


class _Engine:
    """Stands in for an engine where l059-omop functions only need ``connect()`` and a dialect name."""

    class dialect:  # noqa: N801 - mirrors sqlalchemy's attribute
        name = "spark"

    def __init__(self, site: SparkSite):
        self.site = site

    def connect(self):
        return _Connection(self.site)

    begin = connect


class SparkSite:
    """A local Spark session over a CDM stored as files."""

    def __init__(self, cdm_dir: Path, master: str = "local[2]", spark=None):
        self.cdm_dir = Path(cdm_dir)
        if not self.cdm_dir.is_dir():
            raise BadInput("CDM folder for the Spark site not found", file=str(cdm_dir))
        self._own_session = spark is None
        self._tmp = None
        if spark is None:
            try:
                from pyspark.sql import SparkSession
            except ImportError:
                raise RuntimeFailure("pyspark is not installed: pip install pyspark (needs Java 17)") from None
            self._tmp = tempfile.TemporaryDirectory(prefix="l059_spark_")
            spark = (SparkSession.builder.master(master).appName("l059-omop run-package")
                     .config("spark.sql.warehouse.dir", str(Path(self._tmp.name) / "warehouse"))
                     .config("spark.ui.enabled", "false")
                     # tiny per-site data: avoid per-query overheads (shuffle partitions, code generation)
                     .config("spark.sql.shuffle.partitions", "1")
                     .config("spark.default.parallelism", "2")
                     .config("spark.sql.adaptive.enabled", "false")
                     .config("spark.sql.codegen.wholeStage", "false")
                     .config("spark.ui.showConsoleProgress", "false")
                     .config("spark.driver.extraJavaOptions", "-XX:+UseSerialGC -XX:TieredStopAtLevel=1")
                     .config("spark.sql.session.timeZone", "UTC")
                     .config("spark.driver.memory", "1g")
                     .getOrCreate())
            spark.sparkContext.setLogLevel("ERROR")
        self.spark = spark
        self.engine = _Engine(self)

    @classmethod
    def from_url(cls, url: str) -> SparkSite:
        """``spark://local?cdm=DIR[&master=local[2]]``."""
        parsed = urlparse(url)
        if parsed.scheme != "spark" or parsed.netloc != "local":
            raise BadInput(f"--db: only spark://local?cdm=DIR is supported, not {url!r}")
        q = parse_qs(parsed.query)
        if "cdm" not in q:
            raise BadInput("--db spark://local needs ?cdm=DIR: the folder of the CDM tables (Parquet or CSV)")
        return cls(Path(q["cdm"][0]), master=q.get("master", ["local[2]"])[0])

    def close(self) -> None:
        if self._own_session and self.spark is not None:
            self.spark.stop()
        self.spark = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # ------------------------------------------------------------------ SQL
    def query(self, sql: str) -> pd.DataFrame:
        return self.spark.sql(sql).toPandas()

    def run(self, sql: str) -> pd.DataFrame | None:
        """Run one statement; SELECT-like statements return a frame."""
        m = _DELETE.match(sql)
        if m:
            table = m.group(1).replace("`", "")
            where = sql[m.end():].strip().rstrip(";")
            n = self.spark.sql(f"SELECT COUNT(*) AS n FROM {table} {where}").collect()[0][0]
            if n:
                raise RuntimeFailure(f"Spark site: {table} already holds {n} rows of this cohort and Parquet "
                                     "tables cannot DELETE; use a fresh results schema")
            return None
        df = self.spark.sql(sql)
        # DDL and INSERT give a frame without columns (already executed); queries are collected
        return df.toPandas() if len(df.columns) else None

    # ------------------------------------------------------------------ set-up
    def _table_files(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for p in sorted(self.cdm_dir.iterdir()):
            name = p.name.split(".")[0].lower()
            if p.is_dir() or p.suffix.lower() in (".parquet", ".csv"):
                found[name] = p
        return found

    def register_cdm(self, cdm_schema: str) -> list[str]:
        """External tables for every CDM table found in the folder; types from the CDM v5.4 spec."""
        validate_identifier(cdm_schema)
        spec = cdm_spec.tables()
        self.spark.sql(f"CREATE DATABASE IF NOT EXISTS {cdm_schema}")
        registered = []
        for name, path in self._table_files().items():
            if name not in spec:
                continue
            self.spark.sql(f"DROP TABLE IF EXISTS {cdm_schema}.{name}")
            loc = str(path.resolve()).replace("'", "''")
            if path.suffix.lower() == ".csv":
                with path.open(encoding="utf-8-sig") as fh:
                    header = [h.strip().lower() for h in fh.readline().strip().split(",")]
                known = {f.name: f for f in spec[name]}
                cols = ", ".join(f"{h} {_SPARK_TYPES.get(known[h].datatype, 'STRING') if h in known else 'STRING'}"
                                 for h in header)
                self.spark.sql(f"CREATE TABLE {cdm_schema}.{name} ({cols}) USING csv "
                               f"OPTIONS (path '{loc}', header 'true', dateFormat 'yyyy-MM-dd')")
            else:
                self.spark.sql(f"CREATE TABLE {cdm_schema}.{name} USING parquet LOCATION '{loc}'")
            self.spark.sql(f"CACHE LAZY TABLE {cdm_schema}.{name}")  # small site data: scan files once
            registered.append(name)
        missing = [t for t in ("person", "observation_period", "concept", "concept_ancestor") if t not in registered]
        if missing:
            raise BadInput(f"Spark site: CDM folder has no {', '.join(missing)} table(s)", file=str(self.cdm_dir))
        return registered

    def create_results(self, results_schema: str) -> None:
        validate_identifier(results_schema)
        self.spark.sql(f"CREATE DATABASE IF NOT EXISTS {results_schema}")
        for table in results_metadata(results_schema).sorted_tables:
            cols = ", ".join(f"{c.name} {_sa_type(c)}" for c in table.columns)
            self.spark.sql(f"CREATE TABLE IF NOT EXISTS {results_schema}.{table.name} ({cols}) USING parquet")

    # ------------------------------------------------------------------ the study
    def build_cohort(self, analysis: dict, cdm_schema: str, results_schema: str) -> pd.DataFrame:
        from l059_omop.cohort import definition as d
        from l059_omop.cohort.build import attrition_from_masks
        from l059_omop.network import cohort_bridge

        cohort_id = int(analysis["cohort_id"])
        values = d.render_values(cdm_schema, results_schema, cohort_id=cohort_id,
                                 prefix=f"l059_{uuid.uuid4().hex[:10]}_",
                                 params=cohort_bridge.cohort_parameters(analysis))
        steps = d.translated_steps("spark", values)
        work, drop = steps[:-1], steps[-1]
        try:
            for name, stmts in work:
                for s in stmts:
                    try:
                        self.run(s)
                    except RuntimeFailure:
                        raise
                    except Exception as exc:  # noqa: BLE001 - name the step, one line
                        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                        raise RuntimeFailure(f"Spark: cohort SQL step {name} failed: {msg}") from exc
        finally:
            for s in drop[1]:
                try:
                    self.run(s)
                except Exception:  # noqa: BLE001 - never hide the original error
                    log.warning("could not drop a scratch table on Spark")
        masks = self.query(f"SELECT inclusion_rule_mask, person_count FROM {results_schema}.cohort_inclusion_result "
                           f"WHERE cohort_definition_id = {cohort_id} AND mode_id = 1")
        return attrition_from_masks(masks)

    def extract(self, analysis: dict, cdm_schema: str = "cdm", results_schema: str = "results"):
        """Register the CDM, build the cohort, and run the outcome SQL: a ``site.SiteData``."""
        from l059_omop.network import cohort_bridge
        from l059_omop.network.site import SiteData
        from l059_omop.outcomes import extract as ox
        from l059_omop.resources import read_sql
        from l059_omop.sqlrender import render, translate

        self.register_cdm(cdm_schema)
        self.create_results(results_schema)
        att = self.build_cohort(analysis, cdm_schema, results_schema)
        notes = [f"not computable from records: {n}" for n in cohort_bridge.not_computable(att)]
        final = int(att[att["rule_sequence"].notna()]["persons_remaining"].iloc[-1])
        if final == 0:
            return SiteData(cohort_bridge.site_attrition(att), pd.DataFrame(), None, "spark", notes)
        cohort_id = int(analysis["cohort_id"])
        base = {"cdm_database_schema": cdm_schema, "results_database_schema": results_schema,
                "cohort_table": "cohort", "target_cohort_id": cohort_id}

        def run_file(name: str, params: dict) -> pd.DataFrame:
            out = None
            for stmt in translate(render(read_sql("outcomes", name), params), "spark"):
                out = self.run(stmt)
            return out if out is not None else pd.DataFrame()

        cutoff = analysis.get("data_cutoff")
        if cutoff:
            cutoff = dt.date.fromisoformat(cutoff)
        else:
            value = run_file("data_cutoff.sql", {"cdm_database_schema": cdm_schema}).iloc[0, 0]
            cutoff = pd.Timestamp(value).date()
        params = dict(ox.DEFAULT_PARAMETERS)
        params.update(analysis.get("outcome_parameters") or {})
        sets = ox.outcome_concept_sets(self.engine, cdm_schema)
        full = {**base, **{f"{n}_ids": ids for n, ids in sets.items()}, **params, "data_cutoff": cutoff}
        persons = run_file("analysis_rows.sql", full)
        ae = run_file("adverse_events.sql", full)
        # the same typing the outcomes extract applies on DuckDB / PostgreSQL (term names, numeric columns)
        persons, ae = ox._typed_persons(persons), ox._typed_ae(ae)
        return SiteData(cohort_bridge.site_attrition(att), persons, ae, "spark", notes,
                        tuple(sets.get("gender_male", ())), tuple(sets.get("gender_female", ())))
