"""Pure pooling math: life tables, Kaplan-Meier from summed life tables, coarsening, meta-analysis."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter

from l059_omop.network import lifetable, meta


def _sites(seed: int = 7, n_sites: int = 3):
    rng = np.random.default_rng(seed)
    out = []
    for s in range(n_sites):
        n = int(rng.integers(20, 200))
        t = np.round(rng.weibull(1.3, n) * (200 + 100 * s))  # integer days: many ties across sites
        c = np.round(rng.uniform(0, 700, n))
        out.append((np.minimum(t, c), (t <= c).astype(int)))
    return out


def test_life_table_by_hand():
    lt = lifetable.life_table([1, 2, 2, 3, 5, 5], [1, 1, 0, 0, 1, 1])
    assert lt.to_dict("list") == {"time": [1.0, 2.0, 3.0, 5.0], "at_risk": [6, 5, 3, 2],
                                  "events": [1, 1, 0, 2], "censored": [0, 1, 1, 0]}


def test_pooled_km_equals_km_of_union():
    sites = _sites()
    pooled = lifetable.kaplan_meier(lifetable.pool([lifetable.life_table(t, e) for t, e in sites]))
    t_all = np.concatenate([t for t, _ in sites])
    e_all = np.concatenate([e for _, e in sites])
    union = lifetable.life_table(t_all, e_all)
    assert pooled[lifetable.COLUMNS].equals(union)
    kmf = KaplanMeierFitter().fit(t_all, e_all)
    ref = kmf.survival_function_.iloc[:, 0]
    ref = ref[ref.index > 0] if 0 not in set(t_all) else ref
    got = pooled.set_index("time")["survival"]
    common = ref.index.intersection(got.index)
    assert len(common) == len(got)
    np.testing.assert_allclose(got.loc[common].to_numpy(), ref.loc[common].to_numpy(), atol=1e-12, rtol=0)
    # log-log CI as lifelines computes it
    km_ll = lifetable.kaplan_meier(union, ci_method="log-log")
    ci = kmf.confidence_interval_survival_function_.loc[common]
    mask = (km_ll.set_index("time").loc[common, "survival"] < 1) & (km_ll.set_index("time").loc[common, "survival"] > 0)
    np.testing.assert_allclose(km_ll.set_index("time").loc[common, "lower"][mask], ci.iloc[:, 0][mask], atol=1e-9)
    np.testing.assert_allclose(km_ll.set_index("time").loc[common, "upper"][mask], ci.iloc[:, 1][mask], atol=1e-9)


def test_median_and_r_midpoint_rule():
    # survival 1 -> 0.75 -> 0.5 (flat) -> 0.25: R gives the midpoint of 2 and 3
    km = lifetable.kaplan_meier(lifetable.life_table([1, 2, 3, 4], [1, 1, 1, 1]))
    med, _, _ = lifetable.median(km)
    assert med == 2.5
    km = lifetable.kaplan_meier(lifetable.life_table([1, 2, 3], [1, 1, 1]))
    assert lifetable.median(km)[0] == 2.0


def test_coarsen_has_no_small_cells_and_sums_match():
    t, e = _sites(seed=3, n_sites=1)[0]
    lt = lifetable.life_table(t, e)
    for k in (2, 5, 11):
        co = lifetable.coarsen(lt, k)
        assert co is not None
        for col in ("events", "censored"):
            v = co[col].to_numpy()
            assert np.all((v == 0) | (v >= k))
        assert co["events"].sum() == lt["events"].sum()
        assert co["censored"].sum() == lt["censored"].sum()
        assert co["at_risk"].iloc[0] == len(t)
        diffs = -np.diff(np.append(co["at_risk"].to_numpy(), 0))
        assert np.all((diffs == 0) | (diffs >= k))
        assert np.all(co["at_risk"] >= k)


def test_coarsen_withholds_tiny_tables():
    lt = lifetable.life_table([1, 2, 3], [1, 0, 1])
    assert lifetable.coarsen(lt, 5) is None


def test_meta_by_hand():
    r = meta.inverse_variance([0.0, 2.0], [1.0, 1.0])
    assert r.fe_log_hr == pytest.approx(1.0)
    assert r.fe_se == pytest.approx(1 / math.sqrt(2))
    assert r.q == pytest.approx(2.0)
    assert r.tau2 == pytest.approx(1.0)
    assert r.i2 == pytest.approx(0.5)
    assert r.re_log_hr == pytest.approx(1.0)
    assert r.re_se == pytest.approx(1.0)
    homog = meta.inverse_variance([0.1, 0.1, 0.1], [0.2, 0.3, 0.4])
    assert homog.tau2 == 0 and homog.i2 == 0 and homog.re_log_hr == pytest.approx(0.1)


def test_meta_matches_metafor_bcg():
    """metafor's dat.bcg, measure RR: rma(method='DL') gives -0.7141 (se 0.1787), tau² 0.3088, I² 92.12%,
    Q(12) = 152.2330; the fixed-effect model -0.4303 (se 0.0405)."""
    bcg = pd.DataFrame(
        [(4, 119, 11, 128), (6, 300, 29, 274), (3, 228, 11, 209), (62, 13536, 248, 12619),
         (33, 5036, 47, 5761), (180, 1361, 372, 1079), (8, 2537, 10, 619), (505, 87886, 499, 87892),
         (29, 7470, 45, 7232), (17, 1699, 65, 1600), (186, 50448, 141, 27197), (5, 2493, 3, 2338),
         (27, 16886, 29, 17825)], columns=["a", "b", "c", "d"])
    yi = np.log((bcg.a / (bcg.a + bcg.b)) / (bcg.c / (bcg.c + bcg.d)))
    vi = 1 / bcg.a - 1 / (bcg.a + bcg.b) + 1 / bcg.c - 1 / (bcg.c + bcg.d)
    r = meta.inverse_variance(yi, vi)
    assert r.re_log_hr == pytest.approx(-0.7141, abs=5e-5)
    assert r.re_se == pytest.approx(0.1787, abs=5e-5)
    assert r.tau2 == pytest.approx(0.3088, abs=5e-5)
    assert r.i2 == pytest.approx(0.9212, abs=5e-5)
    assert r.q == pytest.approx(152.2330, abs=5e-4)
    assert r.fe_log_hr == pytest.approx(-0.4303, abs=5e-5)
    assert r.fe_se == pytest.approx(0.0405, abs=5e-5)


def test_median_ci_is_ordered():
    t, e = _sites(seed=5, n_sites=1)[0]
    km = lifetable.kaplan_meier(lifetable.life_table(t, e))
    med, lo, hi = lifetable.median(km)
    assert lo <= med <= hi
