"""R's NCCTG ``lung`` data (as shipped by lifelines) turned into OMOP rows: person (sex, birth date giving the
recorded age at index), observation_period, death, ECOG as a measurement (CONVENTIONS), and one results.cohort
row per person. Time zero = cohort_start_date; the survival time ends the observation period."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from lifelines.datasets import load_lung
from sqlalchemy.engine import Engine

from l059_omop.db.bulk import insert_frame

COHORT_ID = 1059
FIRST_INDEX = dt.date(2019, 1, 1)
ECOG_CONCEPT = 36305384  # LOINC 89247-1, CONVENTIONS: ECOG performance status
EHR = 32817


def lung() -> pd.DataFrame:
    """lifelines' copy of R's lung: status 1 = dead (R: 2), sex 1 = male, 2 = female."""
    d = load_lung().reset_index(drop=True)
    d["person_id"] = np.arange(1, len(d) + 1)
    return d


def load_lung_cohort(engine: Engine, cohort_id: int = COHORT_ID, cdm_schema: str = "cdm",
                     results_schema: str = "results") -> pd.DataFrame:
    d = lung()
    index = [FIRST_INDEX + dt.timedelta(days=int(i)) for i in range(len(d))]
    end = [ix + dt.timedelta(days=int(t)) for ix, t in zip(index, d["time"], strict=True)]
    person = pd.DataFrame({
        "person_id": d["person_id"],
        "gender_concept_id": np.where(d["sex"] == 1, 8507, 8532),
        "year_of_birth": [ix.year - int(a) for ix, a in zip(index, d["age"], strict=True)],
        "month_of_birth": [ix.month for ix in index],
        "day_of_birth": [ix.day for ix in index],
        "race_concept_id": 0,
        "ethnicity_concept_id": 0,
    })
    obs = pd.DataFrame({
        "observation_period_id": d["person_id"],
        "person_id": d["person_id"],
        "observation_period_start_date": [ix - dt.timedelta(days=30) for ix in index],
        "observation_period_end_date": end,
        "period_type_concept_id": EHR,
    })
    dead = d["status"] == 1
    death = pd.DataFrame({
        "person_id": d.loc[dead, "person_id"],
        "death_date": [e for e, s in zip(end, dead, strict=True) if s],
        "death_type_concept_id": EHR,
    })
    has_ecog = d["ph.ecog"].notna()
    meas = pd.DataFrame({
        "measurement_id": d.loc[has_ecog, "person_id"],
        "person_id": d.loc[has_ecog, "person_id"],
        "measurement_concept_id": ECOG_CONCEPT,
        "measurement_date": [ix for ix, h in zip(index, has_ecog, strict=True) if h],
        "measurement_type_concept_id": EHR,
        "value_as_number": d.loc[has_ecog, "ph.ecog"].astype(float),
    })
    cohort = pd.DataFrame({
        "cohort_definition_id": cohort_id,
        "subject_id": d["person_id"],
        "cohort_start_date": index,
        "cohort_end_date": end,
    })
    with engine.begin() as con:
        insert_frame(con, cdm_schema, "person", person)
        insert_frame(con, cdm_schema, "observation_period", obs)
        insert_frame(con, cdm_schema, "death", death)
        insert_frame(con, cdm_schema, "measurement", meas)
        insert_frame(con, results_schema, "cohort", cohort)
    return d
