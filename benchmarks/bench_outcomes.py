"""Benchmark: ``l059-omop outcomes`` wall time (child process: imports, SQL extracts, statistics, CSV, plots
and report.html) on cohorts of 1,000 / 10,000 / 100,000 persons in DuckDB.

Input: a CDM written here with numpy (seconds even at 100,000 persons), laid out as CONVENTIONS says:
person, observation_period, death, ECOG at index, anlotinib capsules by strength and a PD-(L)1 infusion at
index, tumour assessments every 6 weeks until progression or the end of follow-up, graded adverse events,
one results.cohort row per person and an attrition table. Target (issue 7): 100,000 persons <= 30 s
including plots (quick: 1,000 and 10,000 persons).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

try:
    from benchmarks import _util
except ImportError:  # run as a script from benchmarks/
    import _util  # type: ignore[no-redef]

SIZES_FULL = (1_000, 10_000, 100_000)
SIZES_QUICK = (1_000, 10_000)
TARGET_SECONDS = {100_000: 30.0}
CUTOFF = dt.date(2025, 6, 30)
EHR = 32817
ANLOTINIB_BY_MG = {8: 2000000002, 10: 2000000003, 12: 2000000004}
PD1 = [42629079, 1594034, 36861273, 36849791, 747052, 36848998]
AE_CONCEPTS = [432870, 261687, 253506]
RESPONSE = {"CR": 2000000020, "PR": 2000000021, "SD": 2000000022, "PD": 2000000023}


def build_cdm(engine: sa.Engine, n: int, seed: int = 7) -> None:
    """Write ``n`` cohort persons (cohort 1059) into an init-db'ed CDM."""
    from l059_omop.db.bulk import insert_frame

    rng = np.random.default_rng(seed)
    pid = np.arange(1, n + 1, dtype=np.int64)
    base = np.datetime64("2022-01-01")
    index = base + rng.integers(0, 1000, n).astype("timedelta64[D]")
    cutoff = np.datetime64(CUTOFF.isoformat())
    age = rng.integers(40, 80, n)
    index_year = index.astype("datetime64[Y]").astype(int) + 1970
    os_days = np.ceil(rng.weibull(1.2, n) * 620).astype(int)
    prog_days = np.ceil(rng.weibull(1.3, n) * 240).astype(int)
    loss = rng.random(n) < 0.1
    follow = np.where(loss, np.ceil(os_days * rng.random(n)).astype(int), os_days)
    end = np.minimum(index + follow.astype("timedelta64[D]"), cutoff)
    died = (~loss) & (index + os_days.astype("timedelta64[D]") <= cutoff)
    dose = rng.choice([12, 10, 8], n, p=[0.7, 0.2, 0.1])
    frames: dict[str, pd.DataFrame] = {}
    frames["person"] = pd.DataFrame({"person_id": pid, "gender_concept_id": rng.choice([8507, 8532], n),
                                     "year_of_birth": index_year - age, "race_concept_id": 0,
                                     "ethnicity_concept_id": 0})
    frames["observation_period"] = pd.DataFrame({
        "observation_period_id": pid, "person_id": pid,
        "observation_period_start_date": index - np.timedelta64(200, "D"), "observation_period_end_date": end,
        "period_type_concept_id": EHR})
    frames["death"] = pd.DataFrame({"person_id": pid[died], "death_date": end[died], "death_type_concept_id": EHR})
    # tumour assessments every 42 days until progression is seen or follow-up ends
    scans = np.maximum(0, (np.minimum(prog_days + 41, (end - index).astype(int)) // 42)).astype(int)
    rep = np.repeat(np.arange(n), scans)
    k = np.concatenate([np.arange(1, s + 1) for s in scans]) if scans.sum() else np.array([], dtype=int)
    scan_day = k * 42
    is_pd = scan_day >= prog_days[rep]
    value = np.where(is_pd, RESPONSE["PD"], rng.choice([RESPONSE["CR"], RESPONSE["PR"], RESPONSE["SD"]], len(rep),
                                                         p=[0.1, 0.5, 0.4]))
    frames["observation"] = pd.DataFrame({
        "observation_id": np.arange(1, len(rep) + 1), "person_id": pid[rep], "observation_concept_id": 36305408,
        "observation_date": index[rep] + scan_day.astype("timedelta64[D]"), "observation_type_concept_id": EHR,
        "value_as_concept_id": value})
    n_anl = 1 + np.minimum(os_days // 21, 8)
    rep_a = np.repeat(np.arange(n), n_anl)
    cyc = np.concatenate([np.arange(c) for c in n_anl])
    a_start = index[rep_a] + (cyc * 21).astype("timedelta64[D]")
    drug_a = pd.DataFrame({
        "drug_exposure_id": np.arange(1, len(rep_a) + 1), "person_id": pid[rep_a],
        "drug_concept_id": [ANLOTINIB_BY_MG[d] for d in dose[rep_a]], "drug_exposure_start_date": a_start,
        "drug_exposure_end_date": a_start + np.timedelta64(13, "D"), "drug_type_concept_id": EHR, "days_supply": 14})
    drug_p = pd.DataFrame({
        "drug_exposure_id": np.arange(len(rep_a) + 1, len(rep_a) + n + 1), "person_id": pid,
        "drug_concept_id": rng.choice(PD1, n), "drug_exposure_start_date": index, "drug_exposure_end_date": index,
        "drug_type_concept_id": EHR, "days_supply": 1})
    frames["drug_exposure"] = pd.concat([drug_a, drug_p], ignore_index=True)
    has_ae = rng.random(n) < 0.4
    ae_p = pid[has_ae]
    ae_day = index[has_ae] + rng.integers(1, 60, has_ae.sum()).astype("timedelta64[D]")
    frames["condition_occurrence"] = pd.DataFrame({
        "condition_occurrence_id": ae_p, "person_id": ae_p, "condition_concept_id": rng.choice(AE_CONCEPTS, len(ae_p)),
        "condition_start_date": ae_day, "condition_type_concept_id": EHR})
    ecog = pd.DataFrame({"measurement_id": pid, "person_id": pid, "measurement_concept_id": 36305384,
                         "measurement_date": index, "measurement_type_concept_id": EHR,
                         "value_as_number": rng.choice([0.0, 1.0, 2.0], n), "measurement_event_id": np.nan})
    grade = pd.DataFrame({"measurement_id": n + ae_p, "person_id": ae_p, "measurement_concept_id": 2000000045,
                          "measurement_date": ae_day, "measurement_type_concept_id": EHR,
                          "value_as_number": rng.choice([1.0, 2.0, 3.0, 4.0], len(ae_p), p=[0.4, 0.35, 0.2, 0.05]),
                          "measurement_event_id": ae_p.astype(float)})
    frames["measurement"] = pd.concat([ecog, grade], ignore_index=True)
    cohort = pd.DataFrame({"cohort_definition_id": 1059, "subject_id": pid, "cohort_start_date": index,
                           "cohort_end_date": end})
    attrition = pd.DataFrame({"cohort_definition_id": 1059, "rule_sequence": [0, 1, 2],
                              "rule_name": ["Entry", "R1 Age >= 18 at index", "R7 ECOG 0-2"],
                              "persons_remaining": [n + 300, n + 100, n], "persons_excluded": [0, 200, 100]})
    with engine.begin() as con:
        for table, df in frames.items():
            insert_frame(con, "cdm", table, df)
        insert_frame(con, "results", "cohort", cohort)
        insert_frame(con, "results", "cohort_attrition", attrition)


def _run_child_cpu(args: list[str]) -> tuple[int, float, float, float, str]:
    """(returncode, wall s, cpu s = user + system of the child, peak MB, stderr): CPU time tells the work done
    when other jobs share the machine and wall time does not."""
    with tempfile.TemporaryFile("w+") as err, open(os.devnull, "rb") as devnull:
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdin=devnull, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        err.seek(0)
        return (os.waitstatus_to_exitcode(status), wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0,
                err.read())


def run(quick: bool) -> list[dict]:
    from l059_omop.db.api import init_db

    rows = []
    for n in (SIZES_QUICK if quick else SIZES_FULL):
        tmp = Path(tempfile.mkdtemp(prefix="bench_outcomes_"))
        try:
            url = f"duckdb:///{tmp / 'l059.duckdb'}"
            engine = sa.create_engine(url)
            init_db(engine)
            build_cdm(engine, n)
            engine.dispose()
            code, wall, cpu, peak, stderr = _run_child_cpu(
                _util.cli_args("--db", url, "-q", "outcomes", "--out", str(tmp / "out")))
            target = TARGET_SECONDS.get(n)
            ok = code == 0 and (target is None or wall <= target)
            load = os.getloadavg()[0]
            note = f"cpu {cpu:.1f} s; load avg {load:.1f} on {os.cpu_count()} cpus"
            if code != 0:
                note = stderr.strip().splitlines()[-1][:120] if stderr.strip() else f"exit {code}"
            pngs = len(list((tmp / "out").glob("*.png"))) if (tmp / "out").is_dir() else 0
            rows.append({"case": f"outcomes {n:,} persons (duckdb, {pngs} plots + report)", "rows": n,
                         "seconds": wall, "rows_per_s": _util.rows_per_s(n, wall), "peak_mb": peak,
                         "target": f"<= {target:g} s" if target else "", "ok": ok, "note": note})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows
