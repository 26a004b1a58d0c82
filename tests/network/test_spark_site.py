"""Site C on a local Spark session (CDM as Parquet files): the same cohort and analysis rows as on DuckDB,
and the three sites on three engines pool to the Kaplan-Meier and counts of the union database."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from l059_omop.network import lifetable
from l059_omop.network.pool import pool_results
from l059_omop.network.results import read_results, scan_path
from l059_omop.network.site import results_from, run_package

pytestmark = [pytest.mark.spark, pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def spark_site_c(site_urls, study_zip, tmp_path_factory):
    """Run the package for site C on Spark, over Parquet files exported from site C's CDM."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        if os.environ.get("L059_REQUIRE_SPARK") == "1":
            pytest.fail("pyspark is not installed (L059_REQUIRE_SPARK=1)")
        pytest.skip("pyspark is not installed")
    import duckdb

    from l059_omop.network.spark_site import SparkSite

    root = tmp_path_factory.mktemp("spark")
    parquet = root / "cdm"
    parquet.mkdir()
    con = duckdb.connect(site_urls["site_c"].removeprefix("duckdb:///"), read_only=True)
    tables = [r[0] for r in con.execute("select table_name from information_schema.tables "
                                        "where table_schema = 'cdm'").fetchall()]
    for t in tables:
        if con.execute(f"select count(*) from cdm.{t}").fetchone()[0]:
            con.execute(f"copy cdm.{t} to '{parquet / (t + '.parquet')}' (format parquet)")
    con.close()

    captured = {}

    class Recording(SparkSite):
        def extract(self, analysis, cdm_schema="cdm", results_schema="results"):
            captured["data"] = super().extract(analysis, cdm_schema, results_schema)
            return captured["data"]

    out = root / "site_c_spark.zip"
    run_package(study_zip, "site_c", out, spark_site=lambda: Recording(parquet), min_cell_count=1)
    return out, captured["data"]


def test_spark_gives_the_same_cohort_and_rows_as_duckdb(spark_site_c, site_data):
    _, spark = spark_site_c
    duck = site_data["site_c"]
    assert spark.dialect == "spark"
    pd.testing.assert_frame_equal(spark.attrition.reset_index(drop=True), duck.attrition.reset_index(drop=True),
                                  check_dtype=False)
    cols = ["person_id", "os_days", "os_event", "pfs_days", "pfs_event", "best_response_rank", "ecog", "dose_value",
            "pd1_agent"]
    a = spark.persons[cols].sort_values("person_id").reset_index(drop=True)
    b = duck.persons[cols].sort_values("person_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    key = ["person_id", "term"]
    pd.testing.assert_frame_equal(spark.adverse_events.sort_values(key)[[*key, "worst_grade"]].reset_index(drop=True),
                                  duck.adverse_events.sort_values(key)[[*key, "worst_grade"]].reset_index(drop=True),
                                  check_dtype=False)


def test_three_engines_pool_to_the_union(spark_site_c, site_data, package, tmp_path):
    path_c, spark = spark_site_c
    results = [results_from(package, s, site_data[s], min_cell_count=1)[0] for s in ("site_a", "site_b")]
    results.append(read_results(path_c))
    assert [r.manifest["dialect"] for r in results] == ["duckdb", "postgresql", "spark"]
    pooled = pool_results(results, figures=False)
    union, _ = results_from(package, "union", site_data["union"], min_cell_count=1)
    km = pooled.tables["pooled_km.csv"]
    for ep in ("os", "pfs"):
        p = km[(km["endpoint"] == ep) & (km["subgroup"] == "all")]
        u = union.table("km_life_table.csv")
        u = lifetable.kaplan_meier(u[(u["endpoint"] == ep) & (u["subgroup"] == "all")])
        np.testing.assert_array_equal(p["time"].to_numpy(), u["time"].to_numpy())
        np.testing.assert_allclose(p["survival"].to_numpy(), u["survival"].to_numpy(), atol=1e-9, rtol=0)
    pc = pooled.tables["pooled_counts.csv"].set_index("item")["value"]
    uc = union.table("counts.csv").set_index("item")["value"]
    assert int(pc["persons"]) == int(uc["persons"]) and int(pc["os events"]) == int(uc["os events"])
    ids = [int(i) for d in site_data.values() for i in d.persons["person_id"]]
    assert scan_path(path_c, forbidden_ids=ids) == []
