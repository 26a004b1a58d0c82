"""Small-cell suppression on hand-made numbers and a hand-made cohort (no database)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from l059_omop.network.aggregate import RESPONSE_SUMS, aggregate, analysis_frame
from l059_omop.network.results import FILES, scan_files, to_csv_bytes
from l059_omop.network.suppress import attrition, partition


def _revealed_small(cells: dict, sums: dict, shown: dict, k: int) -> bool:
    """Brute force: can a suppressed cell or a sum of suppressed cells below k be derived from the shown
    values? (Every assignment of the suppressed cells consistent with the shown values is enumerated.)"""
    hidden = [c for c in cells if shown[c] is None]
    if not hidden:
        return False
    ranges = [range(0, sum(cells.values()) + 1)] * len(hidden)
    solutions = []
    for values in itertools.product(*ranges):
        trial = {**{c: shown[c] for c in cells if shown[c] is not None}, **dict(zip(hidden, values, strict=True))}
        if all(shown[s] is None or sum(trial[m] for m in members) == shown[s] for s, members in sums.items()):
            solutions.append(values)
    for i in range(len(hidden)):
        vals = {v[i] for v in solutions}
        if len(vals) == 1 and 0 < next(iter(vals)) < k:
            return True
    return False


def test_partition_small_cells_complement_and_sums():
    cells = {"CR": 2, "PR": 12, "SD": 9, "PD": 20, "NE": 0, "not_assessed": 0}
    shown, reasons = partition(cells, RESPONSE_SUMS, 5)
    assert shown["CR"] is None and reasons["CR"].startswith("count below")
    assert shown["SD"] is None and reasons["SD"].startswith("complementary")  # the smallest other cell
    assert shown["ORR"] is None  # CR+PR would isolate CR
    assert shown["DCR"] == 23 and shown["N"] == 43  # contains all suppressed cells: reveals only CR+SD = 11
    assert not _revealed_small(cells, RESPONSE_SUMS, shown, 5)


def test_partition_brute_force_never_reveals():
    rng = np.random.default_rng(3)
    small = {"a": ["x", "y"], "n": ["x", "y", "z"]}
    for _ in range(200):
        cells = dict(zip("xyz", (int(v) for v in rng.integers(0, 12, 3)), strict=True))
        shown, _ = partition(cells, small, 5)
        for c, v in cells.items():
            assert shown[c] is None or not (0 < v < 5)
        assert not _revealed_small(cells, small, shown, 5), cells


def test_attrition_mask():
    assert attrition([100, 98, 60, 57, 40], 5) == [True, False, True, False, True]
    assert attrition([10, 8], 5) == [False, True]
    assert attrition([100, 100, 3], 5) == [True, True, False]


SEX = {"male_ids": (8507,), "female_ids": (8532,)}  # Gender M / F in the bundled vocabulary


def _cohort(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "person_id": np.arange(n) + 5_000_000, "index_date": pd.Timestamp("2023-01-01"),
        "year_of_birth": rng.integers(1940, 1980, n), "gender_concept_id": rng.choice([8507, 8532], n),
        "os_days": rng.integers(10, 900, n), "os_event": rng.integers(0, 2, n),
        "pfs_days": rng.integers(10, 400, n), "pfs_event": rng.integers(0, 2, n),
        "best_response_rank": rng.choice([1, 2, 3, 4, 5, np.nan], n, p=[0.02, 0.4, 0.3, 0.2, 0.05, 0.03]),
        "ecog": rng.choice([0, 1, 2], n), "dose_value": rng.choice([12, 10, 8, np.nan], n, p=[0.6, 0.25, 0.1, 0.05]),
        "pd1_agent": rng.choice(["durvalumab", "atezolizumab", "serplulimab"], n)})


def test_aggregate_with_suppression_passes_the_scan():
    persons = _cohort(300)
    ae = pd.DataFrame({"person_id": persons["person_id"][:40], "term": ["rare"] * 3 + ["common"] * 37,
                       "worst_grade": [3.0] * 3 + [1.0, 3.0] * 18 + [2.0]})
    att = pd.DataFrame({"rule_sequence": [0, 1, 2], "rule_name": ["entry", "R1", "R2"],
                        "persons_remaining": [340, 337, 300], "persons_excluded": [0, 3, 37]})
    settings = {"endpoints": ["os", "pfs"], "subgroups": ["dose", "agent"],
                "cox": {"endpoints": ["os"], "covariates": ["age_per_10y", "male", "ecog_2", "dose_below_12mg"]}}
    for k in (5, 11):
        agg = aggregate(persons, ae, att, settings, k, **SEX)
        files = {name: to_csv_bytes(agg.tables.get(name, pd.DataFrame(columns=cols)), cols)
                 for name, cols in FILES.items() if name != "suppressed_cells.csv"}
        assert scan_files(files, k, persons["person_id"]) == []
        assert agg.tables["attrition.csv"]["persons_remaining"].isna().sum() == 1  # 337 hidden (3 excluded)
        safety = agg.tables["safety.csv"].set_index("term")
        assert pd.isna(safety.loc["rare", "n_any"])
        assert len(agg.log.rows) > 0
    exact = aggregate(persons, ae, att, settings, 1, **SEX)
    assert exact.km_exact and not exact.log.rows
    assert set(exact.tables["km_life_table.csv"]["subgroup"]) >= {"all", "dose=12 mg", "agent=durvalumab"}


def test_cox_complete_cases_do_not_reveal_a_small_number_missing():
    persons = _cohort(200)
    persons.loc[:2, "ecog"] = np.nan  # 3 persons without ECOG: N - n = 3
    settings = {"endpoints": ["os"], "subgroups": [], "cox": {"endpoints": ["os"], "covariates": ["ecog_2", "male"]}}
    cox = aggregate(persons, None, None, settings, 5, **SEX).tables["cox.csv"]
    assert len(cox) == 2 and cox["n"].isna().all() and cox["coef"].notna().all()
    assert aggregate(persons, None, None, settings, 1, **SEX).tables["cox.csv"]["n"].eq(197).all()


def test_sex_comes_from_the_site_gender_concept_sets():
    p = analysis_frame(pd.DataFrame({"gender_concept_id": [8507, 8532, 0, None]}), **SEX)
    assert p["male"].iloc[:2].tolist() == [1.0, 0.0]
    assert p["male"].iloc[2:].isna().all()  # unknown sex is missing, not "female"
    assert analysis_frame(pd.DataFrame({"gender_concept_id": [8507]}))["male"].isna().all()  # no sets: unknown
