"""The demo in a fresh directory with a fresh DuckDB file; its printed summary agrees with the truth file."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

N = 120


def km_median_r_rule(time: np.ndarray, event: np.ndarray) -> float | None:
    """Kaplan-Meier median computed by hand with R survival's rule (midpoint of a flat 0.5 stretch)."""
    s = 1.0
    times = np.unique(time[event == 1])
    curve = []
    for t in times:
        at_risk = np.sum(time >= t)
        d = np.sum((time == t) & (event == 1))
        s *= 1 - d / at_risk
        curve.append((t, s))
    for i, (t, s_t) in enumerate(curve):
        if abs(s_t - 0.5) < 1e-12:
            return (t + curve[i + 1][0]) / 2 if i + 1 < len(curve) else None
        if s_t < 0.5:
            return float(t)
    return None


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("fresh")
    env = {k: v for k, v in os.environ.items() if k != "L059_OMOP_DB"}
    proc = subprocess.run([sys.executable, "-m", "l059_omop.cli", "demo", "--patients", str(N), "--out", "out"],
                          cwd=work, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return work, proc.stdout


def test_demo_makes_a_fresh_database_and_report(demo_run):
    work, stdout = demo_run
    assert (work / "out" / "demo.duckdb").is_file()
    report = work / "out" / "outcomes" / "report.html"
    assert report.is_file() and report.stat().st_size > 10_000
    assert 'id="data-quality"' in report.read_text(encoding="utf-8")  # the dq section is in the report
    dq = pd.read_csv(work / "out" / "outcomes" / "dq" / "dq_results.csv")
    eras = dq[dq["table"].isin(["drug_era", "condition_era"]) | (dq["check_name"] == "measureConditionEraCompleteness")]
    assert not eras.empty and set(eras["status"]) <= {"pass", "not_applicable"}  # the demo built the eras
    assert re.search(r"data quality: \d+ of \d+ checks failed", stdout)
    assert not (work / "l059.duckdb").exists()  # the demo never touches the default database
    assert f"patients generated: {N}" in stdout


def test_demo_summary_agrees_with_truth(demo_run):
    work, stdout = demo_run
    truth = pd.read_csv(work / "out" / "fhir" / "truth.csv")
    persons = int(re.search(r"-> ([\d,]+) persons", stdout).group(1).replace(",", ""))
    assert persons == len(truth) == N
    cohort = int(re.search(r"cohort L059: ([\d,]+) persons", stdout).group(1).replace(",", ""))
    assert cohort == int(truth["cohort_member"].sum())
    members = truth[truth["cohort_member"] == 1]
    for endpoint in ("pfs", "os"):
        expected = km_median_r_rule(members[f"{endpoint}_days"].to_numpy(float),
                                    members[f"{endpoint}_event"].to_numpy(int))
        line = re.search(rf"median {endpoint.upper()}:\s+(.*)", stdout).group(1)
        if expected is None:
            assert line.startswith("not reached")
        else:
            assert int(line.split()[0]) == round(expected)
