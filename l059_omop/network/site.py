"""Run a verified study package at a site: build the cohort, extract the analysis rows, aggregate, suppress,
scan, write ``results.zip``. Person-level rows exist only in memory here and never reach a result file.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from l059_omop import __version__
from l059_omop.errors import BadInput, RuntimeFailure
from l059_omop.network import cohort_bridge
from l059_omop.network.aggregate import aggregate
from l059_omop.network.package import STUDY_ID, StudyPackage, verify_package
from l059_omop.network.results import FILES, ResultSet, scan_files, to_csv_bytes, write_results
from l059_omop.network.suppress import SuppressionLog

log = logging.getLogger(__name__)
# person ids below this are not searched for in result files: they cannot be told apart from counts
MIN_SCANNED_ID = 100_000


@dataclass
class SiteData:
    """What a site's database yields for the study (person-level; stays in memory)."""

    attrition: pd.DataFrame
    persons: pd.DataFrame
    adverse_events: pd.DataFrame | None
    dialect: str
    notes: list[str]
    male_ids: tuple[int, ...] = ()
    female_ids: tuple[int, ...] = ()


def extract_sql_engine(engine, analysis: dict, cdm_schema: str, results_schema: str) -> SiteData:
    """Build the cohort and extract the analysis rows on a SQLAlchemy engine (DuckDB, PostgreSQL)."""
    from l059_omop.cohort import build_cohort
    from l059_omop.db.engine import dialect_of
    from l059_omop.outcomes.extract import extract

    cohort_id = int(analysis["cohort_id"])
    att = build_cohort(engine, cdm_schema=cdm_schema, results_schema=results_schema, cohort_id=cohort_id,
                       **cohort_bridge.cohort_parameters(analysis))
    notes = [f"not computable from records: {n}" for n in cohort_bridge.not_computable(att)]
    final = int(att[att["rule_sequence"].notna()]["persons_remaining"].iloc[-1])
    if final == 0:
        return SiteData(cohort_bridge.site_attrition(att), pd.DataFrame(), None, dialect_of(engine), notes)
    cutoff = analysis.get("data_cutoff")
    ex = extract(engine, cohort_id=cohort_id, cdm_schema=cdm_schema, results_schema=results_schema,
                 data_cutoff=dt.date.fromisoformat(cutoff) if cutoff else None,
                 parameters=analysis.get("outcome_parameters") or None)
    return SiteData(cohort_bridge.site_attrition(att), ex.persons, ex.adverse_events, dialect_of(engine), notes,
                    tuple(ex.concept_sets.get("gender_male", ())), tuple(ex.concept_sets.get("gender_female", ())))


def results_from(pkg: StudyPackage, site: str, data: SiteData, min_cell_count: int | None = None
                 ) -> tuple[ResultSet, list[int]]:
    """Aggregate and suppress; the second value is the person ids to scan the output for."""
    analysis = pkg.analysis
    k = int(analysis["min_cell_count"] if min_cell_count is None else min_cell_count)
    if k < 1:
        raise BadInput(f"min cell count must be >= 1 (1 = no suppression), not {k}")
    agg = aggregate(data.persons, data.adverse_events, data.attrition, analysis, k,
                    male_ids=data.male_ids, female_ids=data.female_ids)
    tables = dict(agg.tables)
    tables["suppressed_cells.csv"] = pd.DataFrame(agg.log.rows, columns=FILES["suppressed_cells.csv"])
    manifest = {
        "study_id": STUDY_ID,
        "site": site,
        "software": {"name": "l059-omop", "version": __version__,
                     "compatible_series": pkg.manifest["software"]["compatible_series"]},
        "package_sha256": pkg.package_sha256,
        "definition_sha256": pkg.manifest.get("definition", {}).get("definition_sha256"),
        "cohort_definition_sha256": pkg.manifest.get("definition", {}).get("cohort_definition_sha256"),
        "dialect": data.dialect,
        "min_cell_count": k,
        "suppression": "on" if k > 1 else "off",
        "km_exact": agg.km_exact,
        "data_cutoff_source": ("the package's parameters" if analysis.get("data_cutoff")
                               else "site default: latest observation_period_end_date (not reported)"),
        "parameters": analysis,
        "created_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "notes": [*data.notes, *agg.notes],
    }
    ids = []
    if not data.persons.empty and "person_id" in data.persons:
        ids = [int(i) for i in data.persons["person_id"] if int(i) >= MIN_SCANNED_ID]
    return ResultSet(manifest, tables), ids


def check_before_writing(results: ResultSet, forbidden_ids: list[int]) -> None:
    """The privacy scan on the exact bytes about to be written; any finding stops the run."""
    import json

    files = {name: to_csv_bytes(results.table(name), cols) for name, cols in FILES.items()}
    files["manifest.json"] = json.dumps(results.manifest).encode()
    findings = scan_files(files, results.min_cell_count, forbidden_ids)
    if findings:
        raise RuntimeFailure(f"privacy scan failed, nothing written: {findings[0]} "
                             f"({len(findings)} finding(s))")


def run_package(package: Path, site: str, out: Path, engine=None, spark_site=None, cdm_schema: str = "cdm",
                results_schema: str = "results", min_cell_count: int | None = None,
                expect_sha256: str | None = None) -> tuple[ResultSet, str]:
    """Verify the package, run it on ``engine`` (or a Spark site, or a factory of one), write aggregate-only
    ``out``.

    Returns the results and the sha256 of their manifest.
    """
    from l059_omop.db.engine import validate_identifier

    validate_identifier(site, "site name")
    pkg = verify_package(package, expect_sha256)
    cohort_bridge.check_definition(pkg)
    if spark_site is not None:
        if callable(spark_site):  # a factory: start Spark only once the package has passed its checks
            spark_site = spark_site()
        try:
            data = spark_site.extract(pkg.analysis, cdm_schema, results_schema)
        finally:
            spark_site.close()
    else:
        data = extract_sql_engine(engine, pkg.analysis, cdm_schema, results_schema)
    results, ids = results_from(pkg, site, data, min_cell_count)
    check_before_writing(results, ids)
    digest = write_results(out, results)
    return results, digest


def summary_lines(results: ResultSet) -> list[str]:
    counts = results.table("counts.csv")
    n = counts.loc[counts["item"] == "persons", "value"]
    log_rows = results.table("suppressed_cells.csv")
    lines = [f"site {results.site}: cohort persons {n.iloc[0] if len(n) and pd.notna(n.iloc[0]) else 'suppressed'}; "
             f"min cell count {results.min_cell_count} (suppression {results.manifest['suppression']})"]
    for name in ("attrition.csv", "km_life_table.csv", "response.csv", "safety.csv", "cox.csv"):
        lines.append(f"  {name}: {len(results.table(name))} rows")
    lines.append(f"  suppressed or withheld cells: {len(log_rows)}")
    lines += [f"  note: {n}" for n in results.manifest.get("notes", [])]
    return lines


__all__ = ["run_package", "results_from", "SiteData", "SuppressionLog"]
