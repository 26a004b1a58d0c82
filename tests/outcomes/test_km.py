"""Survival statistics against R's survival package on R's NCCTG lung data (lifelines ships a copy).

lifelines' ``status`` is 1 = dead (R's 2); ``sex`` 1 = male, 2 = female, as in R.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from lifelines.datasets import load_lung

from l059_omop.outcomes import km


@pytest.fixture(scope="module")
def lung() -> pd.DataFrame:
    return load_lung()


def test_median_log_ci(lung):
    """R: print(survfit(Surv(time, status) ~ 1, data = lung))  # median 310, 0.95LCL 285, UCL 363"""
    fit = km.kaplan_meier(lung["time"], lung["status"], ci_method="log")
    assert fit.n == 228 and fit.events == 165
    assert fit.median() == (310.0, 285.0, 363.0)


def test_survival_at_365(lung):
    """R: summary(survfit(Surv(time, status) ~ 1, data = lung), times = 365)
    # n.risk 65, survival 0.409, lower 95% CI 0.345, upper 0.486"""
    at = km.kaplan_meier(lung["time"], lung["status"]).at([365]).iloc[0]
    assert at["at_risk"] == 65
    assert round(at["survival"], 3) == 0.409
    assert round(at["lower"], 3) == 0.345
    assert round(at["upper"], 3) == 0.486


@pytest.mark.parametrize("ecog, expected", [(0, (394, 348, 574)), (1, (306, 268, 429)), (2, (199, 156, 288))])
def test_median_by_ecog(lung, ecog, expected):
    """R: survfit(Surv(time, status) ~ ph.ecog, data = lung)
    # ph.ecog=0 394 (348, 574); ph.ecog=1 306 (268, 429); ph.ecog=2 199 (156, 288)"""
    sub = lung[lung["ph.ecog"] == ecog]
    assert km.kaplan_meier(sub["time"], sub["status"]).median() == tuple(float(v) for v in expected)


def test_logrank_sex(lung):
    """R: survdiff(Surv(time, status) ~ sex, data = lung)  # Chisq = 10.3 on 1 degrees of freedom, p = 0.001"""
    res = km.logrank(lung["time"], lung["status"], lung["sex"])
    assert res.df == 1
    assert round(res.chi2, 1) == 10.3
    assert res.p_value == pytest.approx(0.00131, abs=1e-5)


def test_cox_age_sex(lung):
    """R: coxph(Surv(time, status) ~ age + sex, data = lung)  # Efron ties
    # coef age 0.017045, sex -0.513219"""
    res = km.cox(lung, "time", "status", ["age", "sex"]).set_index("covariate")
    assert res.loc["age", "coef"] == pytest.approx(0.017045, abs=5e-7)
    assert res.loc["sex", "coef"] == pytest.approx(-0.513219, abs=5e-7)


def test_log_log_matches_lifelines(lung):
    """The life-table route (used for pooled tables) reproduces lifelines' log-log band exactly."""
    from lifelines import KaplanMeierFitter

    kmf = KaplanMeierFitter().fit(lung["time"], lung["status"])
    ci = kmf.confidence_interval_survival_function_
    tab = km.kaplan_meier_from_table(km.life_table(lung["time"], lung["status"]), ci_method="log-log").table
    t = tab["time"].to_numpy()
    np.testing.assert_allclose(tab["survival"], kmf.survival_function_.iloc[:, 0].reindex(t), atol=1e-12)
    np.testing.assert_allclose(tab["lower"], ci.iloc[:, 0].reindex(t), atol=1e-12)
    np.testing.assert_allclose(tab["upper"], ci.iloc[:, 1].reindex(t), atol=1e-12)


def test_median_log_log(lung):
    """R: survfit(Surv(time, status) ~ 1, data = lung, conf.type = "log-log")  # 310 (284, 361)"""
    assert km.kaplan_meier(lung["time"], lung["status"], ci_method="log-log").median() == (310.0, 284.0, 361.0)


def test_flat_half_midpoint():
    """R: quantile(survfit(Surv(c(1, 2, 3, 4), c(1, 1, 1, 1)) ~ 1), 0.5)  # 2.5: S = 0.5 on [2, 3)"""
    fit = km.kaplan_meier([1, 2, 3, 4], [1, 1, 1, 1])
    assert fit.median()[0] == 2.5


def test_flat_half_with_censoring():
    """R: survfit(Surv(c(1, 2, 2.5, 3, 4), c(1, 1, 0, 1, 1)) ~ 1)
    # S = 0.6 after 2 ... not flat at 0.5: the median is the first time S <= 0.5 (3)"""
    fit = km.kaplan_meier([1, 2, 2.5, 3, 4], [1, 1, 0, 1, 1])
    assert fit.median()[0] == 3.0


def test_flat_half_at_curve_end():
    """R: quantile(survfit(Surv(c(1, 2, 5), c(1, 0, 0)) ~ 1), 0.5)... S = 2/3 never reaches 0.5 -> NA;
    Surv(c(1, 2, 5, 7), c(1, 1, 0, 0)): S = 0.5 from 2 to the end (7): median (2 + 7) / 2 = 4.5"""
    assert math.isnan(km.kaplan_meier([1, 2, 5], [1, 0, 0]).median()[0])
    assert km.kaplan_meier([1, 2, 5, 7], [1, 1, 0, 0]).median()[0] == 4.5


def test_ci_limits_use_the_same_rule(lung):
    """The limits are the band's own quantiles (R: lower limit from the lower band): lower <= median <= upper."""
    fit = km.kaplan_meier(lung["time"], lung["status"])
    med, lo, hi = fit.quantile(0.25)
    assert lo <= med <= hi


def test_reverse_km(lung):
    """R: survfit(Surv(time, 1 - (status - 1)) ~ 1, data = lung)  # reverse KM: median follow-up"""
    med, lo, hi = km.reverse_km_median(lung["time"], lung["status"])
    assert lo <= med <= hi
    assert med == km.kaplan_meier(lung["time"], 1 - lung["status"]).median()[0]


@pytest.mark.parametrize("k, n, lo, hi", [(0, 10, 0.0, 0.308497), (3, 10, 0.066739, 0.652453),
                                          (10, 10, 0.691503, 1.0)])
def test_clopper_pearson(k, n, lo, hi):
    """R: binom.test(3, 10)$conf.int  # 0.06673951 0.65245285"""
    got = km.clopper_pearson(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-6)


def test_life_table_counts():
    t = km.life_table([3, 1, 3, 2, 5], [1, 0, 0, 1, 1])
    assert t["time"].tolist() == [1, 2, 3, 5]
    assert t["at_risk"].tolist() == [5, 4, 3, 1]
    assert t["events"].tolist() == [0, 1, 1, 1]
    assert t["censored"].tolist() == [1, 0, 1, 0]


def test_logrank_ecog_matches_lifelines(lung):
    """R: survdiff(Surv(time, status) ~ ph.ecog, data = lung)  # Chisq = 22 on 3 degrees of freedom, p = 7e-05"""
    from lifelines.statistics import multivariate_logrank_test

    d = lung.dropna(subset=["ph.ecog"])
    ours = km.logrank(d["time"], d["status"], d["ph.ecog"])
    ref = multivariate_logrank_test(d["time"], d["ph.ecog"], d["status"])
    assert ours.df == 3 and round(ours.chi2) == 22
    assert ours.chi2 == pytest.approx(ref.test_statistic, rel=1e-10)
    assert ours.p_value == pytest.approx(ref.p_value, rel=1e-8)


def test_kaplan_meier_matches_lifelines(lung):
    """The individual-data route equals lifelines' KaplanMeierFitter (estimate and log-log band)."""
    from lifelines import KaplanMeierFitter

    kmf = KaplanMeierFitter().fit(lung["time"], lung["status"])
    tab = km.kaplan_meier(lung["time"], lung["status"], ci_method="log-log").table
    t = tab["time"].to_numpy()
    ci = kmf.confidence_interval_survival_function_
    np.testing.assert_allclose(tab["survival"], kmf.survival_function_.iloc[:, 0].reindex(t), atol=1e-12)
    np.testing.assert_allclose(tab["lower"], ci.iloc[:, 0].reindex(t), atol=1e-12)
    np.testing.assert_allclose(tab["upper"], ci.iloc[:, 1].reindex(t), atol=1e-12)
