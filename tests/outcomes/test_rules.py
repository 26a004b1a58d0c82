"""Hand-built patients, one outcome rule of COHORT.md each, through the outcome SQL on DuckDB and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd
import pytest

from l059_omop.db.bulk import insert_frame
from l059_omop.outcomes import compute_outcomes
from l059_omop.outcomes.extract import extract

COHORT = 7
INDEX = dt.date(2023, 1, 10)
OBS_START, OBS_END = dt.date(2022, 6, 1), dt.date(2024, 6, 30)
EHR = 32817
ASSESS, ECOG, GRADE = 36305408, 36305384, 2000000045
CR, PR, SD, PD, NE = 2000000020, 2000000021, 2000000022, 2000000023, 2000000024
ANL_10MG, ANL_INGREDIENT = 2000000003, 2000000001
ATEZOLIZUMAB, TORIPALIMAB = 42629079, 747052
THROMBOCYTOPENIA, HEMOPTYSIS = 432870, 261687
CARBOPLATIN = 1344905


def day(n: int) -> dt.date:
    return INDEX + dt.timedelta(days=n)


class Rows:
    def __init__(self) -> None:
        self.t: dict[str, list[dict]] = {}
        self.ids = 0

    def add(self, table: str, **row) -> int:
        self.ids += 1
        self.t.setdefault(table, []).append(row)
        return self.ids

    def person(self, pid: int, female: bool = False, deaths: dt.date | None = None, entries=(INDEX,)) -> None:
        self.add("person", person_id=pid, gender_concept_id=8532 if female else 8507, year_of_birth=1960,
                 race_concept_id=0, ethnicity_concept_id=0)
        self.add("observation_period", observation_period_id=pid, person_id=pid,
                 observation_period_start_date=OBS_START, observation_period_end_date=deaths or OBS_END,
                 period_type_concept_id=EHR)
        if deaths:
            self.add("death", person_id=pid, death_date=deaths, death_type_concept_id=EHR)
        for start in entries:
            self.t.setdefault("cohort", []).append({"cohort_definition_id": COHORT, "subject_id": pid,
                                                    "cohort_start_date": start,
                                                    "cohort_end_date": deaths or OBS_END})

    def assess(self, pid: int, n: int, value: int) -> None:
        i = self.add("observation", person_id=pid, observation_concept_id=ASSESS, observation_date=day(n),
                     observation_type_concept_id=EHR, value_as_concept_id=value)
        self.t["observation"][-1]["observation_id"] = i

    def meas(self, pid: int, concept: int, n: int, value: float, event_id: int | None = None) -> None:
        i = self.add("measurement", person_id=pid, measurement_concept_id=concept, measurement_date=day(n),
                     measurement_type_concept_id=EHR, value_as_number=value, measurement_event_id=event_id)
        self.t["measurement"][-1]["measurement_id"] = i

    def drug(self, pid: int, concept: int, start: int, end: int) -> None:
        i = self.add("drug_exposure", person_id=pid, drug_concept_id=concept, drug_exposure_start_date=day(start),
                     drug_exposure_end_date=day(end), drug_type_concept_id=EHR)
        self.t["drug_exposure"][-1]["drug_exposure_id"] = i

    def condition(self, pid: int, concept: int, n: int, source: str = "") -> int:
        i = self.add("condition_occurrence", person_id=pid, condition_concept_id=concept, condition_start_date=day(n),
                     condition_type_concept_id=EHR, condition_source_value=source or None)
        self.t["condition_occurrence"][-1]["condition_occurrence_id"] = i
        return i

    def load(self, engine) -> None:
        with engine.begin() as con:
            for table, rows in self.t.items():
                schema = "results" if table == "cohort" else "cdm"
                df = pd.DataFrame(rows)
                for col in df.columns:
                    if col.endswith("_id"):
                        df[col] = df[col].astype("Int64")
                insert_frame(con, schema, table, df)


@pytest.fixture(scope="module")
def engine(module_cdm_engine):
    r = Rows()
    # 1: PR, PR, PD at 126, a CR after PD (ignored); death at 300
    r.person(1, deaths=day(300))
    for n, v in ((42, PR), (84, PR), (126, PD), (168, CR)):
        r.assess(1, n, v)
    # 2: SD before day 42 counts as NE; PD at 60 -> best response PD
    r.person(2)
    r.assess(2, 30, SD)
    r.assess(2, 60, PD)
    # 3: SD, SD, no progression, alive: PFS censored at the last assessment
    r.person(3, female=True)
    r.assess(3, 50, SD)
    r.assess(3, 100, SD)
    # 4: death at day 20 without any assessment: a PFS event (death)
    r.person(4, deaths=day(20))
    # 5: nothing after index: PFS censored at 0, OS at the end of observation
    r.person(5)
    # 6: two cohort entries: the first is time zero
    r.person(6, entries=(INDEX, day(200)))
    r.assess(6, 100, PD)
    # 7: 10 mg anlotinib to day 60, atezolizumab 5 days before index, ECOG 1 (and an older ECOG 2),
    #    adverse events: graded thrombocytopenia (3) on day 20, unmapped hand-foot skin reaction (2) on day 10,
    #    hemoptysis graded on day 95 (after last dose + 30: out), a condition without a grade (not an AE)
    r.person(7)
    r.drug(7, ANL_10MG, 0, 13)
    r.drug(7, ANL_10MG, 21, 60)
    r.drug(7, ATEZOLIZUMAB, -5, -5)
    r.meas(7, ECOG, -10, 1)
    r.meas(7, ECOG, -50, 2)
    c = r.condition(7, THROMBOCYTOPENIA, 20)
    r.meas(7, GRADE, 20, 3, c)
    c = r.condition(7, 0, 10, "Hand-foot skin reaction")
    r.meas(7, GRADE, 10, 2, c)
    c = r.condition(7, HEMOPTYSIS, 95)
    r.meas(7, GRADE, 95, 4, c)
    r.condition(7, HEMOPTYSIS, 30)
    # 8: anlotinib by ingredient only (dose unknown); toripalimab 35 days after index (outside +28); ECOG 0
    r.person(8, female=True)
    r.drug(8, ANL_INGREDIENT, 0, 13)
    r.drug(8, TORIPALIMAB, 35, 35)
    r.meas(8, ECOG, 0, 0)
    # 9: NE only
    r.person(9)
    r.assess(9, 45, NE)
    # 10: SD at 50, carboplatin (next therapy) at 70, PR at 90: the PR belongs to the next line -> SD;
    #     anlotinib restarted at 60 is the maintenance regimen, not a next therapy
    r.person(10)
    r.drug(10, ANL_10MG, 0, 40)
    r.drug(10, ANL_10MG, 60, 65)
    r.assess(10, 50, SD)
    r.drug(10, CARBOPLATIN, 70, 70)
    r.assess(10, 90, PR)
    # 11: as 10 without a next therapy: the PR counts
    r.person(11)
    r.drug(11, ANL_10MG, 0, 40)
    r.assess(11, 50, SD)
    r.assess(11, 90, PR)
    r.load(module_cdm_engine)
    return module_cdm_engine


@pytest.fixture(scope="module")
def rows(engine) -> pd.DataFrame:
    return extract(engine, COHORT).persons.set_index("person_id")


def test_progression_first_then_death(rows):
    r = rows.loc[1]
    assert (r["pfs_days"], r["pfs_event"], r["pfs_event_type"]) == (126, 1, "progression")
    assert (r["os_days"], r["os_event"]) == (300, 1)
    assert r["best_response_rank"] == 2  # PR; the CR after PD does not count


def test_early_sd_is_ne(rows):
    assert rows.loc[2, "best_response_rank"] == 4  # SD at day 30 -> NE; then PD
    assert (rows.loc[2, "pfs_days"], rows.loc[2, "pfs_event"]) == (60, 1)


def test_censored_at_last_assessment(rows):
    r = rows.loc[3]
    assert (r["pfs_days"], r["pfs_event"]) == (100, 0)
    assert (r["os_days"], r["os_event"]) == ((OBS_END - INDEX).days, 0)
    assert r["best_response_rank"] == 3


def test_death_without_assessment(rows):
    r = rows.loc[4]
    assert (r["pfs_days"], r["pfs_event"], r["pfs_event_type"]) == (20, 1, "death")
    assert pd.isna(r["best_response_rank"])


def test_nothing_after_index(rows):
    r = rows.loc[5]
    assert (r["pfs_days"], r["pfs_event"], r["n_assessments"]) == (0, 0, 0)
    assert (r["os_days"], r["os_event"]) == ((OBS_END - INDEX).days, 0)


def test_first_entry_is_time_zero(rows):
    assert rows.index.is_unique
    assert rows.loc[6, "index_date"] == pd.Timestamp(INDEX)
    assert rows.loc[6, "pfs_days"] == 100


def test_dose_agent_ecog(rows):
    assert (rows.loc[7, "dose_value"], rows.loc[7, "dose_unit"]) == (10, "mg")
    assert rows.loc[7, "pd1_agent"] == "atezolizumab"
    assert rows.loc[7, "ecog"] == 1
    assert pd.isna(rows.loc[8, "dose_value"])
    assert pd.isna(rows.loc[8, "pd1_agent"])
    assert rows.loc[8, "ecog"] == 0
    assert pd.isna(rows.loc[1, "ecog"])


def test_ne_only(rows):
    assert rows.loc[9, "best_response_rank"] == 5
    assert (rows.loc[9, "pfs_days"], rows.loc[9, "pfs_event"]) == (45, 0)


def test_response_window_ends_at_next_therapy(rows):
    assert rows.loc[10, "best_response_rank"] == 3  # the PR after carboplatin is the next line's
    assert rows.loc[11, "best_response_rank"] == 2


def test_adverse_events_window_and_terms(engine):
    ae = extract(engine, COHORT).adverse_events
    got = {(r.person_id, r.term, r.worst_grade) for r in ae.itertuples()}
    assert got == {(7, "Thrombocytopenic disorder", 3.0), (7, "unmapped: Hand-foot skin reaction", 2.0)}


def test_data_cutoff(engine):
    """Cut-off 2023-06-30 (day 171): person 1's death (day 300) no longer counts; OS censored at the cut-off."""
    cutoff = dt.date(2023, 6, 30)
    p = extract(engine, COHORT, data_cutoff=cutoff).persons.set_index("person_id")
    assert (p.loc[1, "os_days"], p.loc[1, "os_event"]) == (171, 0)
    assert (p.loc[1, "pfs_days"], p.loc[1, "pfs_event"]) == (126, 1)
    assert (p.loc[3, "os_days"], p.loc[3, "pfs_days"]) == (171, 100)


def test_tables(engine, tmp_path):
    res = compute_outcomes(engine, tmp_path, cohort_id=COHORT, min_cell_count=5)
    resp = res.response.set_index("measure")
    assert resp.loc["PR", "n"] == 2 and resp.loc["PD", "n"] == 2 and resp.loc["SD", "n"] == 2
    assert resp.loc["NE", "n"] == 1 and resp.loc["not assessed", "n"] == 4
    assert resp.loc["ORR (CR+PR)", "n"] == 2 and resp.loc["DCR (CR+PR+SD)", "n"] == 4
    assert resp.loc["ORR (CR+PR)", "upper_pct"] == pytest.approx(100 * 0.5177559, abs=1e-4)  # R: binom.test(2, 11)$conf.int
    safety = res.safety.set_index("term")
    assert safety.loc["any adverse event", "any_grade_n"] == 1
    assert safety.loc["Thrombocytopenic disorder", "grade3plus_n"] == 1
    written = pd.read_csv(tmp_path / "response.csv", dtype=str).set_index("measure")
    assert written.loc["PR", "n"] == "<5" and pd.isna(written.loc["PR", "percent"])
    assert written.loc["not assessed", "n"] == "<5"
    assert written.loc["NE", "denominator"] == "11"
    s = pd.read_csv(tmp_path / "safety.csv", dtype=str)
    assert set(s["any_grade_n"]) == {"<5"}


@pytest.mark.parametrize("name", ["analysis_rows.sql", "adverse_events.sql", "data_cutoff.sql", "attrition.sql",
                                  "cohort_count.sql"])
def test_sql_translates_for_every_dialect(name):
    """The extracts are OHDSI SQL: they render and translate for every dialect the cohort SQL supports."""
    from l059_omop.resources import read_sql
    from l059_omop.sqlrender import DIALECTS, render, translate

    sql = read_sql("outcomes", name)
    params = {p: (dt.date(2024, 12, 31) if p == "data_cutoff" else "x" if p.endswith(("_schema", "_table"))
                  else [1, 2] if p.endswith("_ids") else 42) for p in set(re.findall(r"@(\w+)", sql))}
    rendered = render(sql, params)
    for dialect in DIALECTS:
        assert translate(rendered, dialect), dialect
