"""PREP / VERIFY helpers: turn tests/cohort/fixtures/patients.yaml into OMOP rows and expected results."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

FIXTURE = Path(__file__).parent / "fixtures" / "patients.yaml"
RULES = [f"R{i}" for i in range(1, 14)]
COHORT_ID = 1059


@dataclass
class Case:
    id: int
    name: str
    entered: bool
    failed: list[str]
    index: dt.date
    cohort_end: dt.date
    rows: list[dict] = field(default_factory=list)


def _date(v) -> dt.date:
    return v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v))


def load_cases(path: Path = FIXTURE) -> tuple[list[Case], dict[str, list[dict]]]:
    """The cases and the CDM rows of all of them, per table."""
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    tables: dict[str, list[dict]] = {t: [] for t in ("person", "observation_period", "death", "condition_occurrence",
                                                      "drug_exposure", "procedure_occurrence", "measurement",
                                                      "observation")}
    cases = []
    ids = {t: 0 for t in tables}

    def next_id(t: str) -> int:
        ids[t] += 1
        return ids[t]

    for c in spec["cases"]:
        pid = int(c["id"])
        index = _date(c.get("index", spec["index"]))
        op = [_date(x) for x in c.get("observation_period", spec["observation_period"])]
        person = dict(spec["person"], **c.get("person", {}))
        base = {r["tag"]: copy.deepcopy(r) for r in spec["base"]}
        for tag in c.get("drop", []):
            del base[tag]
        for tag, changes in c.get("set", {}).items():
            base[tag].update(changes)
        rows = list(base.values()) + [copy.deepcopy(r) for r in c.get("add", [])]
        tables["person"].append({"person_id": pid, "gender_concept_id": person["gender_concept_id"],
                                 "year_of_birth": person["year_of_birth"],
                                 "month_of_birth": person.get("month_of_birth"),
                                 "day_of_birth": person.get("day_of_birth"),
                                 "race_concept_id": 0, "ethnicity_concept_id": 0})
        tables["observation_period"].append({"observation_period_id": next_id("observation_period"), "person_id": pid,
                                             "observation_period_start_date": op[0],
                                             "observation_period_end_date": op[1],
                                             "period_type_concept_id": 32817})
        end = op[1]
        if "death_day" in c:
            death = index + dt.timedelta(days=int(c["death_day"]))
            tables["death"].append({"person_id": pid, "death_date": death, "death_type_concept_id": 32817})
            end = min(end, death)
        for r in rows:
            tables[r["table"]].append(_row(r, pid, index, next_id(r["table"])))
        cases.append(Case(pid, c["name"], bool(c.get("entered", True)), list(c.get("failed", [])), index,
                          _date(c.get("cohort_end", end)), rows))
    return cases, tables


def _row(r: dict, pid: int, index: dt.date, rid: int) -> dict:
    day = index + dt.timedelta(days=int(r["day"]))
    t = r["table"]
    if t == "condition_occurrence":
        return {"condition_occurrence_id": rid, "person_id": pid, "condition_concept_id": r["concept"],
                "condition_start_date": day, "condition_type_concept_id": 32817}
    if t == "drug_exposure":
        supply = r.get("days_supply")
        end = day + dt.timedelta(days=int(supply) - 1) if supply else day
        return {"drug_exposure_id": rid, "person_id": pid, "drug_concept_id": r["concept"],
                "drug_exposure_start_date": day, "drug_exposure_end_date": end, "days_supply": supply,
                "drug_type_concept_id": 32817}
    if t == "procedure_occurrence":
        end = index + dt.timedelta(days=int(r["end_day"])) if "end_day" in r else day
        return {"procedure_occurrence_id": rid, "person_id": pid, "procedure_concept_id": r["concept"],
                "procedure_date": day, "procedure_end_date": end, "procedure_type_concept_id": 32817}
    if t == "measurement":
        return {"measurement_id": rid, "person_id": pid, "measurement_concept_id": r["concept"],
                "measurement_date": day, "measurement_type_concept_id": 32817, "value_as_number": r.get("value"),
                "range_high": r.get("range_high")}
    if t == "observation":
        return {"observation_id": rid, "person_id": pid, "observation_concept_id": r["concept"],
                "observation_date": day, "observation_type_concept_id": 32817,
                "value_as_concept_id": r.get("value_concept")}
    raise ValueError(f"unknown table {t}")


def frames(tables: dict[str, list[dict]]) -> list[tuple[str, pd.DataFrame]]:
    """Tables in foreign-key order, as frames with the right dtypes."""
    out = []
    for t, rows in tables.items():
        if not rows:
            continue
        df = pd.DataFrame(rows)
        for c in df.columns:
            if c.endswith("_date"):
                df[c] = pd.to_datetime(df[c]).dt.date
            elif c in ("value_as_number", "range_high"):
                df[c] = df[c].astype("float64")
            elif df[c].dtype == object or c in ("month_of_birth", "day_of_birth", "days_supply", "value_as_concept_id"):
                df[c] = df[c].astype("Int64")
        out.append((t, df))
    return out


def expected_cohort(cases: list[Case]) -> pd.DataFrame:
    rows = [{"subject_id": c.id, "cohort_start_date": c.index, "cohort_end_date": c.cohort_end}
            for c in cases if c.entered and not c.failed]
    return pd.DataFrame(rows).sort_values("subject_id").reset_index(drop=True)


def expected_attrition(cases: list[Case]) -> list[tuple[str, int, int, int]]:
    """(rule, persons remaining, excluded, failing alone) for entry and R1-R13."""
    entered = [c for c in cases if c.entered]
    out = [("entry", len(entered), 0, 0)]
    alive = entered
    for r in RULES:
        nxt = [c for c in alive if r not in c.failed]
        out.append((r, len(nxt), len(alive) - len(nxt), sum(r in c.failed for c in entered)))
        alive = nxt
    return out
