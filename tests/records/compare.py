"""Compare the OMOP facts two loads wrote for the same synthetic patients, table by table.

Rows are keyed by the synth ``patient_id`` (found through each database's person_source_value: the
patient_id itself for the FHIR and omop paths, the hospital-id pseudonym for the records path) and compared
as multisets of clinical columns; ids, type concepts and source values legitimately differ between paths.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from l059_omop.records.mapper import pseudonym

CLINICAL = {
    "person": "gender_concept_id, year_of_birth, month_of_birth, day_of_birth",
    "condition_occurrence": "condition_concept_id, condition_start_date",
    "drug_exposure": "drug_concept_id, drug_exposure_start_date, drug_exposure_end_date, days_supply",
    "measurement": "measurement_concept_id, measurement_date, value_as_number, value_as_concept_id, "
                   "unit_concept_id, range_low, range_high",
    "observation": "observation_concept_id, observation_date, value_as_concept_id",
    "procedure_occurrence": "procedure_concept_id, procedure_date, procedure_end_date",
    "visit_occurrence": "visit_concept_id, visit_start_date, visit_end_date",
    "death": "death_date",
    "observation_period": "observation_period_start_date, observation_period_end_date",
}


def truth_ids(folder: Path) -> dict[str, str]:
    """hospital_id -> patient_id from truth.csv."""
    with (folder / "truth.csv").open(encoding="utf-8", newline="") as fh:
        return {r["hospital_id"]: r["patient_id"] for r in csv.DictReader(fh)}


def _norm(v):
    if v is None:
        return None
    if isinstance(v, float):
        return round(v, 6)
    if hasattr(v, "isoformat"):
        return v.isoformat()[:10]
    try:
        return round(float(v), 6) if not isinstance(v, (int, str)) else v
    except (TypeError, ValueError):
        return v


def facts(engine, person_key: dict[str, str]) -> dict[str, Counter]:
    """table -> Counter of (patient_id, clinical values...) ; person_key maps person_source_value -> patient_id."""
    out: dict[str, Counter] = {}
    with engine.connect() as con:
        pid = {int(p): person_key.get(s) for p, s in con.execute(sa.text(
            "select person_id, person_source_value from cdm.person"))}
        for table, cols in CLINICAL.items():
            rows = con.execute(sa.text(f"select person_id, {cols} from cdm.{table}")).fetchall()
            out[table] = Counter((pid.get(int(r[0])), *(_norm(v) for v in r[1:])) for r in rows)
    return out


def records_keys(folder: Path, key: bytes) -> dict[str, str]:
    return {pseudonym(h, key): p for h, p in truth_ids(folder).items()}


def diff(a: dict[str, Counter], b: dict[str, Counter]) -> dict[str, tuple[Counter, Counter]]:
    """table -> (only in a, only in b), for the tables that differ."""
    out = {}
    for t in CLINICAL:
        only_a, only_b = a[t] - b[t], b[t] - a[t]
        if only_a or only_b:
            out[t] = (only_a, only_b)
    return out
