"""R's lung data as OMOP rows in a CDM made by init-db (DuckDB and PostgreSQL), its persons in
results.cohort, through the outcome SQL and statistics: the numbers must be R survival's."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from l059_omop.cli import main
from l059_omop.outcomes import compute_outcomes
from tests.outcomes.lung_omop import COHORT_ID


@pytest.fixture(scope="module")
def out_dir(lung_engine, tmp_path_factory):
    return tmp_path_factory.mktemp("lung_out")


@pytest.fixture(scope="module")
def lung_results(lung_engine, out_dir):
    return compute_outcomes(lung_engine, out_dir, cohort_id=COHORT_ID, cox_covariates=("age", "sex"))


def _row(summary: pd.DataFrame, endpoint: str, subgroup: str) -> pd.Series:
    rows = summary[(summary["endpoint"] == endpoint) & (summary["subgroup"] == subgroup)]
    assert len(rows) == 1, (endpoint, subgroup)
    return rows.iloc[0]


def test_os_median_log(lung_results):
    """R: survfit(Surv(time, status) ~ 1, data = lung)  # n 228, events 165, median 310 (285, 363)"""
    r = _row(lung_results.survival_summary, "os", "all")
    assert (r["n"], r["events"]) == (228, 165)
    assert (r["median_days"], r["median_lower_days"], r["median_upper_days"]) == (310, 285, 363)
    assert r["ci_method"] == "log"


def test_os_at_365(lung_results):
    """R: summary(survfit(Surv(time, status) ~ 1, data = lung), times = 365)  # 0.409 (0.345, 0.486)"""
    km = lung_results.km["os"]
    r = km[km["time"] <= 365].iloc[-1]
    assert (round(r["survival"], 3), round(r["lower"], 3), round(r["upper"], 3)) == (0.409, 0.345, 0.486)
    # 12 months = 365.25 days: no event between 365 and 365.25, so the rate is the same
    assert round(_row(lung_results.survival_summary, "os", "all")["rate_12m"], 3) == 0.409


@pytest.mark.parametrize("ecog, expected", [("0", (394, 348, 574)), ("1", (306, 268, 429)), ("2", (199, 156, 288))])
def test_os_by_ecog_from_measurement(lung_results, ecog, expected):
    """R: survfit(Surv(time, status) ~ ph.ecog, data = lung)
    # ph.ecog=0 394 (348, 574); ph.ecog=1 306 (268, 429); ph.ecog=2 199 (156, 288)
    ECOG comes from the OMOP measurement (LOINC 89247-1) on the index date."""
    r = _row(lung_results.survival_summary, "os", f"ecog={ecog}")
    assert (r["median_days"], r["median_lower_days"], r["median_upper_days"]) == expected


def test_logrank_sex_from_person(lung_results):
    """R: survdiff(Surv(time, status) ~ sex, data = lung)  # Chisq = 10.3 on 1 df; sex from person.gender"""
    lr = lung_results.logrank
    r = lr[(lr["endpoint"] == "os") & (lr["subgroup"] == "sex")].iloc[0]
    assert round(r["chi2"], 1) == 10.3 and r["df"] == 1 and r["n"] == 228


def test_cox_age_sex(lung_results):
    """R: coxph(Surv(time, status) ~ age + sex, data = lung)  # coef age 0.017045, sex -0.513219
    Age comes from person birth date and the index date; sex as female (R's sex = 2) vs male."""
    cox = lung_results.cox[lung_results.cox["endpoint"] == "os"].set_index("covariate")
    assert cox.loc["age", "coef"] == pytest.approx(0.017045, abs=5e-7)
    assert cox.loc["sex_female", "coef"] == pytest.approx(-0.513219, abs=5e-7)
    assert cox.loc["age", "n"] == 228 and cox.loc["age", "events"] == 165


def test_files_written(lung_results, out_dir):
    out = out_dir
    summary = pd.read_csv(out / "survival_summary.csv")
    assert list(summary.columns) == ["endpoint", "subgroup", "n", "events", "median_days", "median_lower_days",
                                     "median_upper_days", "rate_6m", "rate_12m", "ci_method"]
    assert set(summary["endpoint"]) == {"os", "pfs"} and "all" in set(summary["subgroup"])
    for ep in ("os", "pfs"):
        km = pd.read_csv(out / f"km_{ep}.csv")
        assert list(km.columns) == ["time", "at_risk", "events", "censored", "survival", "lower", "upper"]
        assert (out / f"km_{ep}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("response.csv", "safety.csv", "cox.csv", "attrition.csv", "table1.csv", "table1.html",
                 "attrition.png", "report.html", "logrank.csv", "follow_up.csv", "numbers_at_risk.csv"):
        assert (out / name).is_file(), name
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "src=\"http" not in html and "<script" not in html


def test_min_cell_count_in_files(lung_results, out_dir):
    """ECOG 3 and unknown ECOG have one person each: '<5' in every written table, exact in the API."""
    out = out_dir
    summary = pd.read_csv(out / "survival_summary.csv", dtype=str)
    r = summary[(summary["endpoint"] == "os") & (summary["subgroup"] == "ecog=3")].iloc[0]
    assert r["n"] == "<5" and r["events"] == "<5"
    t1 = pd.read_csv(out / "table1.csv", dtype=str)
    small = t1[(t1["characteristic"] == "ECOG performance status") & (t1["level"] == "3")].iloc[0]
    assert small["n"] == "<5" and pd.isna(small["percent"])
    km = pd.read_csv(out / "km_os.csv", dtype=str)
    assert set(km["events"]) <= {"<5", "0"} | {str(i) for i in range(5, 300)}
    assert _row(lung_results.survival_summary, "os", "ecog=3")["n"] == 1


def test_cli(lung_engine, tmp_path):
    """The command line on the same database: exit 0, a one-line summary per endpoint, the files."""
    url = lung_engine.url.render_as_string(hide_password=False)
    out = tmp_path / "cli"
    res = CliRunner().invoke(main, ["--db", url, "outcomes", "--out", str(out), "--cohort-id", str(COHORT_ID),
                                    "--ci-method", "log-log", "--min-cell-count", "10"])
    assert res.exit_code == 0, res.output
    assert "OS   n=228 events=165 median 310 d (95% CI 284-361)" in res.output
    summary = pd.read_csv(out / "survival_summary.csv")
    assert set(summary["ci_method"]) == {"log-log"}


def test_cli_unknown_cohort(lung_engine, tmp_path):
    url = lung_engine.url.render_as_string(hide_password=False)
    res = CliRunner().invoke(main, ["--db", url, "outcomes", "--out", str(tmp_path / "x"), "--cohort-id", "4242"])
    assert res.exit_code == 2
    assert "cohort 4242 has no persons" in res.output


def test_data_cutoff(lung_engine, tmp_path):
    """Nothing after the cut-off counts: deaths after it are censored at it."""
    import datetime as dt

    cutoff = dt.date(2019, 6, 30)
    res = compute_outcomes(lung_engine, None, cohort_id=COHORT_ID, data_cutoff=cutoff)
    p = res.persons
    limit = (pd.Timestamp(cutoff) - p["index_date"]).dt.days
    assert (p["os_days"] <= limit).all()
    assert res.data_cutoff == cutoff
    assert len(p) == 181  # index dates 2019-01-01 .. 2019-06-30 (the cut-off day itself included)
