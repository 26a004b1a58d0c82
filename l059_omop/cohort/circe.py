"""The L059 cohort as OHDSI Circe JSON (what ATLAS imports and exports).

Keys are Java Circe's, case-sensitive (circe-be's model classes; Jackson silently drops a misspelt key).
Concept sets are resolved against the loaded vocabulary from the same selectors the SQL uses. Circe's own
constructs are used where they fit; what Circe cannot say exactly is approximated and listed in
``APPROXIMATIONS`` (and in the JSON's sidecar and the ATLAS description).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from l059_omop import __version__
from l059_omop.cohort import definition as d
from l059_omop.db.engine import validate_identifier
from l059_omop.vocab.concept_sets import Selector

CIRCE_TARGET = "circe-be 1.11 (ATLAS 2.x), cdmVersionRange >=5.0.0"
RECENT_YEAR_DAYS = 365  # stands in for "since induction start" where Circe cannot anchor at the ES date

APPROXIMATIONS: dict[str, str] = {
    "R1": "Circe's age is calendar year of index minus year of birth; the SQL uses the full birth date where known.",
    "R2": "exact (ES record on or before index with an SCLC diagnosis on or before that record).",
    "R3": "the ES date is the first extensive-stage measurement (or condition) ever, not the first after the "
          "SCLC diagnosis; 'limited stage before ES' and 'treatment ending 1-182 days before ES' are nested "
          "under that first ES record. Circe dates a procedure's end as procedure_date + 1 day (it ignores "
          "procedure_end_date), so a radiotherapy course counts by its start.",
    "R4": "target lesion >= 10 mm on or before index with an ES record no later than 42 days after it (ES record "
          "not limited to the first after the SCLC diagnosis).",
    "R5": f"Circe counts distinct platinum administration dates (4-6) in the {RECENT_YEAR_DAYS} days before index, "
          "not cycles spaced >= 14 days from induction start (ES date - 14 days); etoposide and PD-(L)1 in the "
          "same window.",
    "R6": f"no PD assessment in the {RECENT_YEAR_DAYS} days up to index instead of from induction start.",
    "R7": "Circe cannot pick the latest ECOG: requires an ECOG 0-2 and no ECOG 3-4 in [index - 42 d, index].",
    "R8": "exact.",
    "R9": "Circe reads the CDM's drug_era table (ingredient level, 30-day persistence) instead of building the "
          "era from drug_exposure: era starting on the index date with length (end - start) >= 41 days.",
    "R10": "exact.",
    "R11": "PD-(L)1 agent, anlotinib, apatinib or bevacizumab before the first ES record ever (not the first "
           "after the SCLC diagnosis).",
    "R12": "exact.",
    "R13": "APTT is tested with RangeHighRatio > 1.5 (value / range_high): records without range_high are not "
           "tested (the SQL uses 40 s as the default ULN).",
    "end": "cohort end = end of observation period, censored at death (Circe's CensoringCriteria).",
    "windows": "Correlated criteria ignore the observation period (IgnoreObservationPeriod), as the SQL does.",
}


# --- building blocks ------------------------------------------------------------------------------------------

def _endpoint(days: int | None, coeff: int) -> dict:
    return {"Coeff": coeff} if days is None else {"Days": days, "Coeff": coeff}


def window(start: int | None, end: int | None, use_event_end: bool = False) -> dict:
    """Days relative to index (negative = before); None = unbounded."""
    def ep(v: int | None, side: int) -> dict:
        if v is None:
            return _endpoint(None, side)
        return _endpoint(abs(v), -1 if v < 0 else 1)
    out = {"Start": ep(start, -1), "End": ep(end, 1), "UseEventEnd": use_event_end}
    return out


def occurrence(kind: str, count: int, distinct_start_dates: bool = False) -> dict:
    out = {"Type": {"exactly": 0, "at_most": 1, "at_least": 2}[kind], "Count": count}
    if distinct_start_dates:
        out.update({"IsDistinct": True, "CountColumn": "START_DATE"})
    return out


def correlated(criteria: dict, start_window: dict, occ: dict, end_window: dict | None = None) -> dict:
    out = {"Criteria": criteria, "StartWindow": start_window}
    if end_window is not None:
        out["EndWindow"] = end_window
    out.update({"RestrictVisit": False, "IgnoreObservationPeriod": True, "Occurrence": occ})
    return out


def group(kind: str, criteria: list[dict] | None = None, demographics: list[dict] | None = None,
          groups: list[dict] | None = None) -> dict:
    return {"Type": kind, "CriteriaList": criteria or [], "DemographicCriteriaList": demographics or [],
            "Groups": groups or []}


def nr(op: str, value: float | int, extent: float | int | None = None) -> dict:
    out = {"Value": value, "Op": op}
    if extent is not None:
        out["Extent"] = extent
    return out


# --- concept sets ---------------------------------------------------------------------------------------------

_CONCEPT_COLS = ("concept_id", "concept_name", "standard_concept", "invalid_reason", "concept_code", "domain_id",
                 "vocabulary_id", "concept_class_id")


def _concept_json(row: Mapping) -> dict:
    std = row["standard_concept"]
    inv = row["invalid_reason"]
    return {"CONCEPT_ID": int(row["concept_id"]), "CONCEPT_NAME": row["concept_name"],
            "STANDARD_CONCEPT": std or "N",
            "STANDARD_CONCEPT_CAPTION": {"S": "Standard", "C": "Classification"}.get(std or "", "Non-Standard"),
            "INVALID_REASON": inv or "V",
            "INVALID_REASON_CAPTION": {"D": "Invalid", "U": "Invalid"}.get(inv or "", "Valid"),
            "CONCEPT_CODE": row["concept_code"], "DOMAIN_ID": row["domain_id"],
            "VOCABULARY_ID": row["vocabulary_id"], "CONCEPT_CLASS_ID": row["concept_class_id"]}


def _selector_concepts(con, schema: str, sel: Selector) -> list[dict]:
    cols = ", ".join(_CONCEPT_COLS)
    if sel.ingredient_name:
        q = sa.text(f"select {cols} from {schema}.concept where lower(concept_name) = :n "
                    "and concept_class_id = 'Ingredient' and domain_id = 'Drug' order by concept_id")
        rows = con.execute(q, {"n": sel.ingredient_name.lower()}).mappings().all()
    else:
        q = sa.text(f"select {cols} from {schema}.concept where vocabulary_id = :v and concept_code = :c "
                    "order by concept_id")
        rows = con.execute(q, {"v": sel.vocabulary_id, "c": sel.concept_code}).mappings().all()
    return [dict(r) for r in rows]


def resolve_concept_sets(engine: Engine, vocabulary_schema: str = "cdm") -> tuple[list[dict], list[str]]:
    """Circe ConceptSets from the selectors, and the selectors the loaded vocabulary does not have."""
    validate_identifier(vocabulary_schema)
    out, unresolved = [], []
    with engine.connect() as con:
        for cs in d.concept_sets():
            items, seen = [], set()
            for sel in cs.items:
                found = _selector_concepts(con, vocabulary_schema, sel)
                if not found:
                    unresolved.append(f"{cs.name}: {_selector_text(sel)}")
                for row in found:
                    key = (int(row["concept_id"]), sel.exclude)
                    if key in seen:
                        continue
                    seen.add(key)
                    items.append({"concept": _concept_json(row), "isExcluded": sel.exclude,
                                  "includeDescendants": sel.descendants, "includeMapped": False})
            out.append({"id": cs.id, "name": cs.name, "expression": {"items": items}})
    return out, unresolved


def _selector_text(sel: Selector) -> str:
    return f"ingredient named {sel.ingredient_name}" if sel.ingredient_name else f"{sel.vocabulary_id} {sel.concept_code}"


def _value_concepts(concept_sets: list[dict], set_id: int) -> list[dict]:
    cs = next(c for c in concept_sets if c["id"] == set_id)
    return [i["concept"] for i in cs["expression"]["items"] if not i["isExcluded"]]


# --- the expression -------------------------------------------------------------------------------------------

CS = {cs_name: i for i, cs_name in enumerate(
    ["", "anlotinib", "sclc", "es", "ls", "platinum", "etoposide", "pd1", "rt", "other_aa", "immunosuppressive",
     "autoimmune", "coagulation", "inr", "aptt", "ecog", "sod", "assessment", "evaluable", "pd"])}
ALL_TIME = window(None, None)
UP_TO_INDEX = window(None, 0)


def _es_anchor(nested: dict) -> list[dict]:
    """The first ES record ever (measurement, or condition) as a nested anchor with ``nested`` criteria."""
    return [{"Measurement": {"CodesetId": CS["es"], "First": True, "CorrelatedCriteria": nested}},
            {"ConditionOccurrence": {"CodesetId": CS["es"], "First": True, "CorrelatedCriteria": nested}}]


def _treatments(start: int, end: int) -> list[dict]:
    """Anticancer treatments whose end date lies in [start, end] days of the anchor."""
    end_w = window(start, end, use_event_end=True)
    crit = [{"DrugExposure": {"CodesetId": CS[k]}} for k in ("platinum", "etoposide", "pd1")]
    crit.append({"ProcedureOccurrence": {"CodesetId": CS["rt"]}})
    return [correlated(c, ALL_TIME, occurrence("at_least", 1), end_w) for c in crit]


def expression(concept_sets: list[dict], p: Mapping[str, object]) -> dict:
    """The Circe CohortExpression for parameters ``p`` (DEFAULT_PARAMETERS with overrides)."""
    rules = {r.code: r for r in d.rules()}
    at_least_1 = occurrence("at_least", 1)
    none = occurrence("exactly", 0)
    lookback = RECENT_YEAR_DAYS

    sclc_before_anchor = group("ALL", [correlated({"ConditionOccurrence": {"CodesetId": CS["sclc"]}}, UP_TO_INDEX,
                                                  at_least_1)])
    r2 = group("ALL", [correlated({"ConditionOccurrence": {"CodesetId": CS["sclc"]}}, UP_TO_INDEX, at_least_1)],
               groups=[group("ANY", [correlated(c, UP_TO_INDEX, at_least_1) for c in _es_anchor(sclc_before_anchor)])])
    ls_then_recent = group("ALL", [correlated({"Measurement": {"CodesetId": CS["ls"]}}, window(None, -1), at_least_1)],
                           groups=[group("ANY", _treatments(-(int(p["ls_free_interval_days"]) - 1), -1))])
    r3 = group("ALL", [correlated(c, ALL_TIME, none) for c in _es_anchor(ls_then_recent)])
    es_soon_after = group("ANY", [correlated({k: {"CodesetId": CS["es"]}}, window(None, int(p["lesion_lookback_days"])),
                                             at_least_1) for k in ("Measurement", "ConditionOccurrence")])
    r4 = group("ALL", [correlated({"Measurement": {"CodesetId": CS["sod"], "ValueAsNumber": nr("gte", p["min_lesion_mm"]),
                                                   "CorrelatedCriteria": es_soon_after}}, UP_TO_INDEX, at_least_1)])
    recent = window(-lookback, -1)
    r5 = group("ALL", [
        correlated({"DrugExposure": {"CodesetId": CS["platinum"]}}, recent,
                   occurrence("at_least", int(p["min_cycles"]), distinct_start_dates=True)),
        correlated({"DrugExposure": {"CodesetId": CS["platinum"]}}, recent,
                   occurrence("at_most", int(p["max_cycles"]), distinct_start_dates=True)),
        correlated({"DrugExposure": {"CodesetId": CS["etoposide"]}}, recent, at_least_1),
        correlated({"DrugExposure": {"CodesetId": CS["pd1"]}}, recent, at_least_1)])
    r6 = group("ALL", [correlated({"Observation": {"CodesetId": CS["assessment"],
                                                   "ValueAsConcept": _value_concepts(concept_sets, CS["pd"])}},
                                  window(-lookback, 0), none)])
    ecog_w = window(-int(p["ecog_lookback_days"]), 0)
    r7 = group("ALL", [
        correlated({"Measurement": {"CodesetId": CS["ecog"], "ValueAsNumber": nr("bt", 0, p["max_ecog"])}}, ecog_w,
                   at_least_1),
        correlated({"Measurement": {"CodesetId": CS["ecog"], "ValueAsNumber": nr("gt", p["max_ecog"])}}, ecog_w, none)])
    r8 = group("ALL", [correlated({"DrugExposure": {"CodesetId": CS["pd1"]}},
                                  window(-int(p["pd1_before_days"]), int(p["pd1_after_days"])), at_least_1)])
    r9 = group("ALL", [correlated({"DrugEra": {"CodesetId": CS["anlotinib"],
                                               "EraLength": nr("gte", int(p["min_anlotinib_days"]) - 1)}},
                                  window(0, 0), at_least_1)])
    r10 = group("ALL", [correlated({"Observation": {"CodesetId": CS["assessment"],
                                                    "ValueAsConcept": _value_concepts(concept_sets, CS["evaluable"])}},
                                   window(1, None), at_least_1)])
    prior = group("ANY", [correlated({"DrugExposure": {"CodesetId": CS[k]}}, window(None, -1), at_least_1)
                          for k in ("pd1", "anlotinib", "other_aa")])
    r11 = group("ALL", [correlated(c, ALL_TIME, none) for c in _es_anchor(prior)])
    ai_w = window(-int(p["autoimmune_lookback_days"]), 0)
    r12 = group("ANY", [correlated({"ConditionOccurrence": {"CodesetId": CS["autoimmune"]}}, ai_w, none),
                        correlated({"DrugExposure": {"CodesetId": CS["immunosuppressive"]}}, ai_w, none)])
    lab_w = window(-int(p["coagulation_lab_days"]), 0)
    r13 = group("ALL", [
        correlated({"Measurement": {"CodesetId": CS["inr"], "ValueAsNumber": nr("gt", p["max_inr"])}}, lab_w, none),
        correlated({"Measurement": {"CodesetId": CS["aptt"], "RangeHighRatio": nr("gt", p["max_aptt_ratio"])}}, lab_w,
                   none),
        correlated({"ConditionOccurrence": {"CodesetId": CS["coagulation"]}},
                   window(-int(p["bleeding_lookback_days"]), 0), none)])
    r1 = group("ALL", demographics=[{"Age": nr("gte", p["min_age"])}])
    exprs = {"R1": r1, "R2": r2, "R3": r3, "R4": r4, "R5": r5, "R6": r6, "R7": r7, "R8": r8, "R9": r9, "R10": r10,
             "R11": r11, "R12": r12, "R13": r13}
    inclusion = [{"name": f"{code} {rules[code].name}",
                  "description": f"{rules[code].describe(p)} Circe: {APPROXIMATIONS[code]}",
                  "expression": exprs[code]} for code in exprs]
    start, end = p["study_start"], p["study_end"]
    return {
        "cdmVersionRange": ">=5.0.0",
        "PrimaryCriteria": {
            "CriteriaList": [{"DrugExposure": {"CodesetId": CS["anlotinib"], "First": True,
                                               "OccurrenceStartDate": {"Value": f"{start:%Y-%m-%d}", "Op": "bt",
                                                                       "Extent": f"{end:%Y-%m-%d}"}}}],
            "ObservationWindow": {"PriorDays": 0, "PostDays": 0},
            "PrimaryCriteriaLimit": {"Type": "First"}},
        "ConceptSets": concept_sets,
        "QualifiedLimit": {"Type": "First"},
        "ExpressionLimit": {"Type": "First"},
        "InclusionRules": inclusion,
        "CensoringCriteria": [{"Death": {}}],
        "CollapseSettings": {"CollapseType": "ERA", "EraPad": 0},
        "CensorWindow": {},
    }


def drug_era_statements(cdm_schema: str = "cdm", dialect: str = "duckdb") -> list[str]:
    """The statements that rebuild ``drug_era`` (OHDSI's era logic, ingredient level, 30-day persistence:
    the same merge rule as R9). Circe's DrugEra criteria read that table: run them before Circe's SQL for the
    exported JSON. One builder for the whole project: ``l059_omop.eras``."""
    from l059_omop.eras import era_statements

    return era_statements("drug_era", dialect, cdm_schema)


def build_drug_era(engine: Engine, cdm_schema: str = "cdm") -> None:
    from l059_omop.eras import build_eras

    build_eras(engine, cdm_schema, tables=("drug_era",))


@dataclass
class CirceExport:
    json_text: str
    sha256: str
    sidecar: dict

    def write(self, path: Path) -> list[Path]:
        """FILE, FILE.sha256 (sha256sum format) and the sidecar <stem>.meta.json next to it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.json_text, encoding="utf-8")
        sha = path.with_name(path.name + ".sha256")
        sha.write_text(f"{self.sha256}  {path.name}\n", encoding="utf-8")
        meta = path.with_name(path.name.removesuffix(".json") + ".meta.json")
        meta.write_text(json.dumps(self.sidecar, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return [path, sha, meta]


def _vocabulary_version(engine: Engine, schema: str) -> str | None:
    try:
        with engine.connect() as con:
            row = con.execute(sa.text(f"select vocabulary_version from {schema}.vocabulary "
                                      "where vocabulary_id = 'None'")).fetchone()
        return row[0] if row else None
    except Exception:  # noqa: BLE001 - the vocabulary table is optional for an export
        return None


def export_circe(engine: Engine, cdm_schema: str = "cdm", vocabulary_schema: str | None = None,
                 **params) -> CirceExport:
    """The cohort as deterministic Circe JSON (2-space indent, fixed key order, UTF-8, final newline) with
    its sha256 and a sidecar (name, description, versions, parameters, approximations)."""
    p = d.validate_parameters(params)
    vocab_schema = vocabulary_schema or cdm_schema
    concept_sets, unresolved = resolve_concept_sets(engine, vocab_schema)
    expr = expression(concept_sets, p)
    text = json.dumps(expr, indent=2, ensure_ascii=False) + "\n"
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    description = (f"{d.COHORT_NAME}. Rules R1-R13 of COHORT.md; the SQL of l059-omop is the reference. "
                   "Not computable from records: " + "; ".join(f"{n.criterion} ({n.text}): {n.reason}"
                                                                for n in d.NOT_COMPUTABLE)
                   + ". Circe approximations: " + " ".join(f"{k}: {v}" for k, v in APPROXIMATIONS.items()))
    sidecar = {
        "name": d.COHORT_NAME,
        "description": description,
        "format": "OHDSI Circe cohort expression (JSON, Java circe-be keys)",
        "circe_target": CIRCE_TARGET,
        "json_sha256": sha,
        "versions": {"l059_omop": __version__, "definition_sha256": d.definition_sha256(),
                     "vocabulary": _vocabulary_version(engine, vocab_schema)},
        "parameters": json.loads(d.parameters_json(p)),
        "approximations": APPROXIMATIONS,
        "not_computable": [{"criterion": n.criterion, "text": n.text, "reason": n.reason} for n in d.NOT_COMPUTABLE],
        "unresolved_selectors": unresolved,
    }
    return CirceExport(text, sha, sidecar)
