"""Three synthetic sites (DuckDB, PostgreSQL, DuckDB) -> aggregate results -> pooled results, compared with
the same patients put in one database; suppression; the privacy scan."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from l059_omop.cli import main
from l059_omop.network import lifetable
from l059_omop.network.pool import pool_files, pool_results
from l059_omop.network.results import COUNT_COLUMNS, read_results, scan_files, scan_path, write_results
from l059_omop.network.site import results_from

pytestmark = pytest.mark.postgres
SITES = ["site_a", "site_b", "site_c"]


def _all_person_ids(site_data) -> list[int]:
    return [int(i) for d in site_data.values() for i in d.persons["person_id"]]


@pytest.fixture(scope="module")
def unsuppressed(site_data, package, tmp_path_factory):
    root = tmp_path_factory.mktemp("nosupp")
    paths = {}
    for site in [*SITES, "union"]:
        res, _ = results_from(package, site, site_data[site], min_cell_count=1)
        paths[site] = root / f"{site}.zip"
        write_results(paths[site], res)
    return paths


@pytest.fixture(scope="module")
def suppressed(site_data, package, tmp_path_factory):
    root = tmp_path_factory.mktemp("supp")
    paths = {}
    for site in SITES:
        res, _ = results_from(package, site, site_data[site], min_cell_count=11)
        paths[site] = root / f"{site}.zip"
        write_results(paths[site], res)
    return paths


def test_sites_ran_on_their_engines(site_data):
    assert site_data["site_a"].dialect == "duckdb"
    assert site_data["site_b"].dialect == "postgresql"
    for site in SITES:
        assert len(site_data[site].persons) > 20, site
    n_union = len(site_data["union"].persons)
    assert n_union == sum(len(site_data[s].persons) for s in SITES)


def test_pooled_km_equals_km_of_union(unsuppressed, site_data):
    from l059_omop.outcomes.km import kaplan_meier as outcomes_km

    pooled = pool_results([read_results(unsuppressed[s]) for s in SITES], figures=False)
    union = read_results(unsuppressed["union"])
    assert pooled.manifest["km_exact"]
    km = pooled.tables["pooled_km.csv"]
    persons = site_data["union"].persons
    for ep in ("os", "pfs"):
        p = km[(km["endpoint"] == ep) & (km["subgroup"] == "all")].reset_index(drop=True)
        ult = union.table("km_life_table.csv")
        ult = ult[(ult["endpoint"] == ep) & (ult["subgroup"] == "all")]
        u = lifetable.kaplan_meier(ult)
        assert len(p) == len(u) > 10
        np.testing.assert_array_equal(p["time"], u["time"])
        np.testing.assert_array_equal(p[["at_risk", "events", "censored"]], u[["at_risk", "events", "censored"]])
        np.testing.assert_allclose(p["survival"], u["survival"], atol=1e-9, rtol=0)
        np.testing.assert_allclose(p["lower"], u["lower"], atol=1e-9, rtol=0)
        # and against the outcomes module's Kaplan-Meier of the union's patients (another implementation)
        ref = outcomes_km(persons[f"{ep}_days"].to_numpy(float), persons[f"{ep}_event"].to_numpy(int)).table
        ref = ref[ref["time"].isin(p["time"])]
        np.testing.assert_allclose(p.set_index("time").loc[ref["time"], "survival"], ref["survival"], atol=1e-9)
    # subgroups too (no suppression: every level published)
    for sg in ("dose=12 mg", "dose=10 mg"):
        p = km[(km["endpoint"] == "os") & (km["subgroup"] == sg)]
        sub = persons[persons["dose_value"] == float(sg.split("=")[1].split()[0])]
        ref = lifetable.kaplan_meier(lifetable.life_table(sub["os_days"], sub["os_event"]))
        np.testing.assert_allclose(p["survival"].to_numpy(), ref["survival"].to_numpy(), atol=1e-9)


def test_pooled_counts_equal_union(unsuppressed):
    pooled = pool_results([read_results(unsuppressed[s]) for s in SITES], figures=False)
    union = read_results(unsuppressed["union"])
    t = pooled.tables
    pa = t["pooled_attrition.csv"].set_index("rule_sequence")
    ua = union.table("attrition.csv").set_index("rule_sequence")
    for col in ("persons_remaining", "persons_excluded", "fail_alone"):
        assert pa[col].astype(int).tolist() == ua[col].astype(int).tolist(), col
    pc = t["pooled_counts.csv"].set_index("item")["value"]
    uc = union.table("counts.csv").set_index("item")["value"]
    for item in ("persons", "os events", "pfs events"):
        assert int(pc[item]) == int(uc[item]), item
    pr = t["pooled_response.csv"].set_index("category")["n"]
    ur = union.table("response.csv").set_index("category")["n"]
    assert {k: int(v) for k, v in pr.items()} == {k: int(v) for k, v in ur.items()}
    ps = t["pooled_safety.csv"].set_index("term")[["n_any", "n_grade3plus"]].astype(int)
    us = union.table("safety.csv").set_index("term")[["n_any", "n_grade3plus"]].astype(int)
    assert len(us) > 0
    assert ps.sort_index().to_dict("index") == us.sort_index().to_dict("index")
    assert t["pooled_attrition.csv"]["complete"].all()


def test_meta_analysis_and_outputs(unsuppressed, tmp_path):
    out = tmp_path / "pooled"
    pooled = pool_files([unsuppressed[s] for s in SITES], out)
    meta = pooled.tables["meta_analysis.csv"]
    assert set(meta["endpoint"]) == {"os", "pfs"} and (meta["k"] == 3).all()
    assert ((meta["i2"] >= 0) & (meta["i2"] < 1)).all()
    for name in ("report.html", "km_os.png", "km_pfs.png", "forest_os.png", "pooled_km.csv", "meta_analysis.csv"):
        assert (out / name).stat().st_size > 100, name
    html = (out / "report.html").read_text()
    assert "<img" in html and "data:image/png;base64," in html and "src='http" not in html


def test_suppression_nothing_small_leaves_a_site(suppressed, site_data, tmp_path):
    k = 11
    for site, path in suppressed.items():
        with zipfile.ZipFile(path) as z:
            files = {n: z.read(n) for n in z.namelist()}
        assert json.loads(files["manifest.json"])["min_cell_count"] == k
        for name, cols in COUNT_COLUMNS.items():
            df = pd.read_csv(io.BytesIO(files[name]))
            for c in cols:
                v = pd.to_numeric(df[c], errors="coerce").dropna()
                assert not ((v > 0) & (v < k)).any(), (site, name, c)
        assert not scan_files(files, k), site
        log = pd.read_csv(io.BytesIO(files["suppressed_cells.csv"]))
        assert len(log) > 0, site  # 250 patients at k=11: something is always suppressed or coarsened
    out = tmp_path / "pooled"
    pooled = pool_files(list(suppressed.values()), out)
    by_site = pd.read_csv(out / "suppressed_cells_by_site.csv")
    assert set(by_site["site"]) == set(SITES)
    assert not pooled.manifest["km_exact"]
    html = (out / "report.html").read_text()
    assert "Suppressed or withheld cells" in html and "suppressed" in html
    att = pd.read_csv(out / "pooled_attrition.csv")
    # any value some site suppressed is flagged with that site's name
    for row in att.itertuples(index=False):
        if isinstance(row.suppressed_at, str) and row.suppressed_at:
            assert not row.complete
    # attrition differences of shown values never reveal a small exclusion
    for site, path in suppressed.items():
        a = read_results(path).table("attrition.csv")
        shown = pd.to_numeric(a["persons_remaining"], errors="coerce").dropna().to_numpy()
        d = -np.diff(shown)
        assert not ((d > 0) & (d < k)).any(), site


def test_privacy_scan_finds_nothing_person_level(unsuppressed, suppressed, site_data, tmp_path):
    ids = _all_person_ids(site_data)
    assert min(ids) >= 1_000_000
    for path in [*unsuppressed.values(), *suppressed.values()]:
        assert scan_path(path, forbidden_ids=ids) == [], path
    out = tmp_path / "pooled"
    pool_files([unsuppressed[s] for s in SITES], out)
    assert scan_path(out, forbidden_ids=ids) == []
    # the scan does see person-level data when it is there
    bad = {"counts.csv": b"item,value\npersons,3\n", "km_life_table.csv":
           f"endpoint,subgroup,time,at_risk,events,censored\nos,all,2024-03-01,{ids[0]},1,0\n".encode(),
           "extra.csv": b"person_id\n1\n"}
    problems = " | ".join(str(f) for f in scan_files(bad, 5, ids))
    assert "calendar date" in problems and "person id" in problems and "not a known result file" in problems
    assert "below min_cell_count" in problems


def test_run_package_cli_on_duckdb(study_zip, site_urls, tmp_path):
    out = tmp_path / "res.zip"
    res = CliRunner().invoke(main, ["run-package", str(study_zip), "--db", site_urls["site_a"], "--site", "site_a",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "suppression on" in res.output
    r = read_results(out)
    assert r.manifest["site"] == "site_a" and r.manifest["dialect"] == "duckdb"
    res = CliRunner().invoke(main, ["pool", str(out), str(out), "--out", str(tmp_path / "p")])
    assert res.exit_code == 2 and "more than once" in res.output


def test_coarsened_pooled_km_stays_close_to_exact(unsuppressed, site_data, package):
    """Suppression (default min cell count 5) costs precision, not much: while >= 50 persons are at risk
    the pooled curve from the coarsened tables stays within 0.05 of the exact one."""
    exact = pool_results([read_results(unsuppressed[s]) for s in SITES], figures=False).tables["pooled_km.csv"]
    coarse = pool_results([results_from(package, s, site_data[s], min_cell_count=5)[0]
                           for s in SITES], figures=False).tables["pooled_km.csv"]
    for ep in ("os", "pfs"):
        e = exact[(exact["endpoint"] == ep) & (exact["subgroup"] == "all")]
        c = coarse[(coarse["endpoint"] == ep) & (coarse["subgroup"] == "all")]
        until = e.loc[e["at_risk"] >= 50, "time"].max()
        grid = np.arange(0, until)

        assert np.abs(_step(e, grid) - _step(c, grid)).max() < 0.05, ep


def _step(km: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(km["time"].to_numpy(), grid, side="right") - 1
    return np.where(idx >= 0, km["survival"].to_numpy()[np.maximum(idx, 0)], 1.0)
