"""The newcomer's path in one call: synthetic FHIR -> fresh DuckDB -> load -> cohort -> outcomes -> report.

Every step is the same library function the individual commands use, so the demo also shows how to script
the tool.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from l059_omop.errors import BadInput

DB_NAME = "demo.duckdb"


@dataclass
class DemoSummary:
    out: Path
    database: Path
    patients: int
    persons_loaded: int
    records_read: int
    records_quarantined: int
    cohort_size: int
    attrition: pd.DataFrame
    survival: pd.DataFrame
    report: Path
    dq_run: int = 0
    dq_failed: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def median(self, endpoint: str) -> tuple[float | None, float | None, float | None]:
        row = self.survival[(self.survival["endpoint"] == endpoint) & (self.survival["subgroup"] == "all")]
        if row.empty:
            return (None, None, None)
        r = row.iloc[0]
        return tuple(None if pd.isna(r[c]) else float(r[c])
                     for c in ("median_days", "median_lower_days", "median_upper_days"))

    def lines(self) -> list[str]:
        def fmt(endpoint: str) -> str:
            m, lo, hi = self.median(endpoint)
            if m is None:
                return "not reached"
            months = m / 30.4375
            ci = ", ".join("NR" if x is None else f"{x:.0f}" for x in (lo, hi))
            return f"{m:.0f} days ({months:.1f} months), 95% CI ({ci})"

        out = [f"patients generated: {self.patients:,} (FHIR R4 bundles in {self.out / 'fhir'})",
               f"loaded: {self.records_read:,} FHIR resources -> {self.persons_loaded:,} persons"
               + (f"; {self.records_quarantined:,} quarantined" if self.records_quarantined else ""),
               f"cohort L059: {self.cohort_size:,} persons", "attrition:"]
        for r in self.attrition.itertuples():
            if pd.notna(getattr(r, "persons_remaining", None)):
                out.append(f"  {r.rule_name:<70} {int(r.persons_remaining):>7,}")
        out += [f"median PFS: {fmt('pfs')}", f"median OS:  {fmt('os')}",
                f"data quality: {self.dq_failed} of {self.dq_run} checks failed "
                f"(details: {self.report.parent / 'dq' / 'dq_results.csv'})",
                f"report: {self.report}", f"database: {self.database}",
                "time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())]
        return out


def run_demo(patients: int = 2000, out: Path | str = "l059-demo", seed: int = 1059,
             progress: Callable[[str], None] | None = None) -> DemoSummary:
    """Run the whole study on ``patients`` synthetic patients in a fresh DuckDB file inside ``out``."""
    import sqlalchemy as sa

    from l059_omop.cohort import build_cohort
    from l059_omop.db.api import init_db
    from l059_omop.dq import html_fragment as dq_fragment
    from l059_omop.dq import run_checks
    from l059_omop.dq import write_outputs as write_dq
    from l059_omop.eras import build_eras
    from l059_omop.etl.fhir.load import load_fhir
    from l059_omop.outcomes import compute_outcomes
    from l059_omop.synth import generate

    if patients < 1:
        raise BadInput("--patients must be at least 1", field="patients")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    db = out / DB_NAME
    for stale in (db, db.with_suffix(".duckdb.wal")):
        stale.unlink(missing_ok=True)
    say = progress or (lambda _msg: None)
    clock: dict[str, float] = {}

    def step(name: str, fn):
        say(name)
        t0 = time.perf_counter()
        result = fn()
        clock[name] = time.perf_counter() - t0
        return result

    step("synth", lambda: generate(patients, "fhir", out / "fhir", seed=seed))
    engine = sa.create_engine(f"duckdb:///{db}")
    try:
        step("init-db", lambda: init_db(engine))
        report = step("load-fhir", lambda: load_fhir(engine, [out / "fhir"]))
        attrition = step("build-cohort", lambda: build_cohort(engine))
        # eras before dq: a fresh CDM has empty drug_era/condition_era, which dq rightly flags
        step("build-eras", lambda: build_eras(engine))
        checks = step("dq", lambda: run_checks(engine))
        write_dq(checks, out / "outcomes" / "dq")
        results = step("outcomes", lambda: compute_outcomes(
            engine, out / "outcomes", extra_sections=[("Data quality", dq_fragment(checks))]))
        with engine.connect() as con:
            persons = con.execute(sa.text("select count(*) from cdm.person")).scalar_one()
            cohort = con.execute(sa.text(
                "select count(*) from results.cohort where cohort_definition_id = 1059")).scalar_one()
    finally:
        engine.dispose()
    return DemoSummary(out=out, database=db, patients=patients, persons_loaded=int(persons),
                       records_read=report.read, records_quarantined=report.quarantined, cohort_size=int(cohort),
                       attrition=attrition, survival=results.survival_summary,
                       report=out / "outcomes" / "report.html", seconds=clock,
                       dq_run=int((checks["status"] != "not_applicable").sum()),
                       dq_failed=int((checks["status"] == "fail").sum()))
