"""The rendered Spark SQL runs on a real (local) Spark engine and gives the same cohort as DuckDB.

One Spark session for the module; the hand-built patients are small. Local Spark's default tables
(parquet) do not support DELETE (Databricks' Delta tables do): the script's DELETEs remove an earlier run of
the same cohort id, and on these fresh, empty result tables they are skipped, which the test asserts.
"""

from __future__ import annotations

import shutil

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.spark

from l059_omop.cohort import build_cohort  # noqa: E402
from l059_omop.cohort import definition as d  # noqa: E402
from l059_omop.db.api import init_db  # noqa: E402
from l059_omop.db.bulk import insert_frames  # noqa: E402

from .patients import COHORT_ID, frames, load_cases  # noqa: E402

CDM_TABLES = ["person", "observation_period", "death", "condition_occurrence", "drug_exposure",
              "procedure_occurrence", "measurement", "observation", "concept", "concept_ancestor"]
RESULT_TABLES = {
    "cohort": "cohort_definition_id BIGINT, subject_id BIGINT, cohort_start_date DATE, cohort_end_date DATE",
    "cohort_inclusion": "cohort_definition_id BIGINT, rule_sequence INT, name STRING, description STRING",
    "cohort_inclusion_result": "cohort_definition_id BIGINT, inclusion_rule_mask BIGINT, person_count BIGINT, "
                               "mode_id INT",
    "cohort_inclusion_stats": "cohort_definition_id BIGINT, rule_sequence INT, person_count BIGINT, "
                              "gain_count BIGINT, person_total BIGINT, mode_id INT",
    "cohort_summary_stats": "cohort_definition_id BIGINT, base_count BIGINT, final_count BIGINT, mode_id INT",
}


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    if shutil.which("java") is None:
        pytest.skip("no Java for Spark")
    pyspark = pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    session = (SparkSession.builder.master("local[2]").appName("l059-cohort-test")
               .config("spark.sql.warehouse.dir", str(warehouse))
               .config("spark.sql.shuffle.partitions", "1")
               .config("spark.default.parallelism", "1")
               .config("spark.sql.codegen.wholeStage", "false")  # tiny data: compiling costs more than it saves
               .config("spark.sql.adaptive.enabled", "false")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.legacy.createHiveTableByDefault", "false")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    assert pyspark.__version__
    yield session
    session.stop()


@pytest.fixture(scope="module")
def duck(tmp_path_factory):
    """The hand-built patients on DuckDB, with our cohort built there (the reference)."""
    path = tmp_path_factory.mktemp("spark-ref") / "l059_spark_ref.duckdb"
    engine = sa.create_engine(f"duckdb:///{path}")
    init_db(engine)
    _, tables = load_cases()
    insert_frames(engine, "cdm", frames(tables))
    build_cohort(engine)
    yield engine
    engine.dispose()


def _copy_to_spark(spark, engine, folder) -> None:
    """CDM tables as parquet written by DuckDB, registered as Spark tables (no row-by-row conversion)."""
    spark.sql("CREATE DATABASE IF NOT EXISTS cdm")
    spark.sql("CREATE DATABASE IF NOT EXISTS results")
    with engine.connect() as con:
        raw = con.connection.driver_connection
        for t in CDM_TABLES:
            target = folder / t
            target.mkdir()
            raw.execute(f"copy (select * from cdm.{t}) to '{target / 'part-0.parquet'}' (format parquet)")
            spark.sql(f"CREATE TABLE cdm.{t} USING parquet LOCATION '{target}'")
    for t, cols in RESULT_TABLES.items():
        spark.sql(f"CREATE TABLE results.{t} ({cols}) USING parquet")


def test_rendered_spark_sql_gives_the_same_cohort(spark, duck, tmp_path):
    _copy_to_spark(spark, duck, tmp_path)
    values = d.render_values(cohort_id=COHORT_ID, prefix="l059_spark_")
    skipped = []
    for _name, stmts in d.translated_steps("spark", values):
        for s in stmts:
            if s.lstrip().upper().startswith("DELETE FROM"):
                table = s.split()[2]
                assert spark.table(table).count() == 0, f"{table} not empty: the DELETE would matter"
                skipped.append(table)
                continue
            spark.sql(s)
    assert len(skipped) == 5
    got = sorted(tuple(r) for r in spark.sql(
        f"SELECT subject_id, cohort_start_date, cohort_end_date FROM results.cohort "
        f"WHERE cohort_definition_id = {COHORT_ID}").collect())
    with duck.connect() as con:
        want = sorted(tuple(r) for r in con.execute(sa.text(
            "select subject_id, cohort_start_date, cohort_end_date from results.cohort "
            "where cohort_definition_id = :c"), {"c": COHORT_ID}).fetchall())
        want_masks = sorted(tuple(r) for r in con.execute(sa.text(
            "select inclusion_rule_mask, person_count, mode_id from results.cohort_inclusion_result "
            "where cohort_definition_id = :c"), {"c": COHORT_ID}).fetchall())
    assert got == want and len(got) > 20
    got_masks = sorted(tuple(r) for r in spark.sql(
        "SELECT inclusion_rule_mask, person_count, mode_id FROM results.cohort_inclusion_result").collect())
    assert got_masks == want_masks
    # the scratch tables were dropped by the script's last step
    assert not [t for t in spark.catalog.listTables("results") if t.name.startswith("l059_spark_")]
