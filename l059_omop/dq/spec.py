"""Which data-quality checks run on which table, field and concept, from OHDSI DQD's CSVs (plus the L059
additions in the same layout), restricted to the OMOP CDM v5.4 specification this project implements.

Every name that ends up in SQL comes from these packaged files and is checked against the specification
(``l059_omop.db.cdm_spec``) and the identifier pattern; nothing comes from user text.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from dataclasses import dataclass, field
from functools import lru_cache

from l059_omop.db import cdm_spec
from l059_omop.db.engine import validate_identifier
from l059_omop.errors import RuntimeFailure
from l059_omop.resources import data_path

# DQD's default ``tablesToExclude``: the vocabulary tables are checked by their publisher, not the ETL.
EXCLUDED_TABLES = ("concept", "vocabulary", "concept_ancestor", "concept_relationship", "concept_class",
                   "concept_synonym", "relationship", "domain")

# DQD 2.x replaced plausibleDuringLife by plausibleBeforeDeath (same fields plus more, with a 60-day
# allowance); running both would report every late event twice.
SUPERSEDED = {"plausibleDuringLife": "plausibleBeforeDeath"}

GENDER_CONCEPTS = {"male": 8507, "female": 8532}

# Failure levels for ``--fail-on``: DQD severities fatal and convention are errors, characterization a warning.
FAILURE_LEVEL = {"fatal": "error", "convention": "error", "characterization": "warning"}

_DQD = "OMOP_CDMv5.4_{}.csv"
_L059 = "L059_{}.csv"


@dataclass(frozen=True)
class CheckType:
    level: str
    name: str
    description: str
    context: str
    category: str
    subcategory: str
    sql_file: str
    severity: str


@dataclass
class Check:
    """One check instance: a check type applied to a table (field, concept)."""

    check_name: str
    check_level: str
    table: str
    field: str | None
    threshold: float
    sql_file: str | None  # template under sql/dq/; None for catalog checks (cdmTable, cdmField, cdmDatatype)
    params: dict[str, object] = field(default_factory=dict)  # values for sqlrender.render (validated)
    binds: dict[str, str] = field(default_factory=dict)  # text values bound at execution
    concept_ids: tuple[int, ...] = ()
    description: str = ""
    category: str = ""
    subcategory: str = ""
    context: str = ""
    severity: str = ""
    source: str = "DQD"
    requires: tuple[tuple[str, str | None], ...] = ()  # (table, field) that must exist in the database

    @property
    def failure_level(self) -> str:
        return FAILURE_LEVEL.get(self.severity, "error")

    @property
    def check_id(self) -> str:
        parts = [self.check_level.lower(), self.check_name.lower(), self.table]
        if self.field:
            parts.append(self.field)
        if self.concept_ids:
            parts.append("_".join(str(c) for c in self.concept_ids))
        if "unit_concept_id" in self.params and not self.params.get("any_unit"):
            parts.append(str(self.params["unit_concept_id"]))
        return "_".join(parts)


def _read(name: str) -> list[dict[str, str]]:
    with data_path("dqd", name).open(encoding="utf-8-sig", newline="") as fh:
        return [{k.strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(fh)]


@lru_cache(maxsize=1)
def check_types() -> dict[tuple[str, str], CheckType]:
    """(level, check name) -> its description, Kahn category, SQL file and severity."""
    out: dict[tuple[str, str], CheckType] = {}
    for name in (_DQD.format("Check_Descriptions"), _L059.format("Check_Descriptions")):
        for r in _read(name):
            ct = CheckType(r["checkLevel"].upper(), r["checkName"], " ".join(r["checkDescription"].split()),
                           r["kahnContext"], r["kahnCategory"], r["kahnSubcategory"], r["sqlFile"], r["severity"])
            out[(ct.level, ct.name)] = ct
    return out


def _threshold(value: str) -> float:
    return float(value) if value else 0.0


def _number(value: str) -> int | float:
    f = float(value)
    return int(f) if f.is_integer() and "." not in value else f


_DATE_LIT = re.compile(r"^'(\d{8})'$")


def plausible_value(text: str, today: dt.date | None = None) -> int | float | dt.date:
    """A DQD plausible bound (a number, a 'YYYYMMDD' date or one of DQD's T-SQL expressions of today)."""
    today = today or dt.date.today()
    t = text.replace(" ", "").upper()
    if m := _DATE_LIT.match(t):
        return dt.datetime.strptime(m.group(1), "%Y%m%d").date()
    if t == "DATEADD(DD,1,GETDATE())":
        return today + dt.timedelta(days=1)
    if t == "YEAR(GETDATE())+1":
        return today.year + 1
    try:
        return _number(text)
    except ValueError:
        raise RuntimeFailure(f"unsupported DQD plausible value {text!r}") from None


def _describe(ct: CheckType, **subs: str) -> str:
    text = ct.description
    for key, value in sorted(subs.items(), key=lambda kv: -len(kv[0])):
        text = text.replace("@" + key, value)
    return text


def _ids(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.split(r"[,\s]+", text) if x)


def _spec_field(table: str, name: str) -> cdm_spec.Field | None:
    for f in cdm_spec.tables().get(table, ()):
        if f.name == name:
            return f
    return None


def build_checks(today: dt.date | None = None) -> list[Check]:
    """Every check this project runs, in a stable order (table level, field level, concept level)."""
    types = check_types()
    spec_tables = cdm_spec.tables()
    in_scope = [t for t in spec_tables if t not in EXCLUDED_TABLES]
    checks: list[Check] = []

    def add(level: str, name: str, table: str, fld: str | None, threshold: float, subs: dict[str, str],
            source: str = "DQD", severity: str | None = None, **kw) -> None:
        ct = types[(level, name)]
        sql_file = kw.pop("sql_file_override", None) or (ct.sql_file if kw.pop("use_sql", True) else None)
        validate_identifier(table, "table name")
        if fld:
            validate_identifier(fld, "field name")
        checks.append(Check(
            check_name=name, check_level=level, table=table, field=fld, threshold=threshold,
            sql_file=sql_file,
            description=_describe(ct, cdmTableName=table, cdmFieldName=fld or "", **subs),
            category=ct.category, subcategory=ct.subcategory, context=ct.context,
            severity=severity or ct.severity, source=source, **kw))

    # ---- table level
    table_rows = {r["cdmTableName"].lower(): r for r in _read(_DQD.format("Table_Level"))}
    for table in in_scope:
        r = table_rows.get(table, {})
        add("TABLE", "cdmTable", table, None, 0.0, {}, use_sql=False)
        if r.get("measurePersonCompleteness") == "Yes":
            add("TABLE", "measurePersonCompleteness", table, None,
                _threshold(r.get("measurePersonCompletenessThreshold", "")), {},
                params={}, requires=((table, "person_id"), ("person", "person_id")))
        if r.get("measureConditionEraCompleteness") == "Yes":
            add("TABLE", "measureConditionEraCompleteness", table, None,
                _threshold(r.get("measureConditionEraCompletenessThreshold", "")), {},
                requires=(("condition_occurrence", "person_id"), ("condition_era", "person_id")))
        if r.get("measureObservationPeriodOverlap") == "Yes":
            add("TABLE", "measureObservationPeriodOverlap", table, None,
                _threshold(r.get("measureObservationPeriodOverlapThreshold", "")), {},
                requires=(("observation_period", "observation_period_id"),))

    # ---- field level
    rows = [r for r in _read(_DQD.format("Field_Level"))
            if r["cdmTableName"].lower() in in_scope
            and _spec_field(r["cdmTableName"].lower(), r["cdmFieldName"].lower())]
    extra = {(r["cdmTableName"].lower(), r["cdmFieldName"].lower()): r for r in _read(_L059.format("Field_Level"))}
    for r in rows:
        table, fld = r["cdmTableName"].lower(), r["cdmFieldName"].lower()
        own = ((table, fld),)

        def thr(name: str, row: dict[str, str] = r) -> float:
            return _threshold(row.get(name + "Threshold", ""))

        add("FIELD", "cdmField", table, fld, 0.0, {}, use_sql=False)
        if r["isRequired"] == "Yes":
            add("FIELD", "isRequired", table, fld, thr("isRequired"), {}, requires=own)
        if r["cdmDatatype"].lower() == "integer":
            add("FIELD", "cdmDatatype", table, fld, thr("cdmDatatype"), {}, use_sql=False)
        length = _spec_field(table, fld).varchar_length
        if length:
            add("FIELD", "cdmFieldLength", table, fld, 0.0, {"cdmDatatype": f"varchar({length})"}, source="L059",
                params={"max_length": length}, requires=own)
        if r["isPrimaryKey"] == "Yes":
            add("FIELD", "isPrimaryKey", table, fld, thr("isPrimaryKey"), {}, requires=own)
        if r["isForeignKey"] == "Yes":
            fk_table, fk_field = r["fkTableName"].lower(), r["fkFieldName"].lower()
            if _spec_field(fk_table, fk_field):
                add("FIELD", "isForeignKey", table, fld, thr("isForeignKey"),
                    {"fkTableName": fk_table, "fkFieldName": fk_field},
                    params={"fk_table": fk_table, "fk_field": fk_field},
                    requires=own + ((fk_table, fk_field),))
            if r["fkDomain"]:
                add("FIELD", "fkDomain", table, fld, thr("fkDomain"), {"fkDomain": r["fkDomain"]},
                    binds={"fk_domain": r["fkDomain"]}, requires=own + (("concept", "domain_id"),))
            if r["fkClass"]:
                add("FIELD", "fkClass", table, fld, thr("fkClass"), {"fkClass": r["fkClass"]},
                    binds={"fk_class": r["fkClass"]}, requires=own + (("concept", "concept_class_id"),))
        if r["isStandardValidConcept"] == "Yes":
            add("FIELD", "isStandardValidConcept", table, fld, thr("isStandardValidConcept"), {},
                requires=own + (("concept", "standard_concept"),))
        if r["measureValueCompleteness"] == "Yes":
            add("FIELD", "measureValueCompleteness", table, fld, thr("measureValueCompleteness"), {}, requires=own)
        for name in ("standardConceptRecordCompleteness", "sourceConceptRecordCompleteness"):
            if r[name] == "Yes":
                add("FIELD", name, table, fld, thr(name), {}, requires=own)
        if r["sourceValueCompleteness"] == "Yes" and r["standardConceptFieldName"]:
            std = r["standardConceptFieldName"].lower()
            if _spec_field(table, std):
                add("FIELD", "sourceValueCompleteness", table, fld, thr("sourceValueCompleteness"),
                    {"standardConceptFieldName": std}, params={"standard_field": std},
                    requires=own + ((table, std),))
        for name in ("plausibleValueLow", "plausibleValueHigh"):
            if r[name]:
                add("FIELD", name, table, fld, thr(name), {name: r[name]},
                    params={"plausible_value": plausible_value(r[name], today)}, requires=own)
        if r["plausibleTemporalAfter"] == "Yes":
            after_table = r["plausibleTemporalAfterTableName"].lower()
            after_field = r["plausibleTemporalAfterFieldName"].lower()
            subs = {"plausibleTemporalAfterTableName": after_table, "plausibleTemporalAfterFieldName": after_field}
            if after_table == table and _spec_field(table, after_field):
                add("FIELD", "plausibleTemporalAfter", table, fld, thr("plausibleTemporalAfter"), subs,
                    params={"after_field": after_field}, requires=own + ((table, after_field),))
            elif (after_table, after_field) == ("person", "birth_datetime") and _spec_field(table, "person_id"):
                add("FIELD", "plausibleTemporalAfter", table, fld, thr("plausibleTemporalAfter"), subs,
                    sql_file_override="field_plausible_after_birth.sql",
                    requires=own + ((table, "person_id"), ("person", "birth_datetime")))
        if r["plausibleStartBeforeEnd"] == "Yes":
            end = r["plausibleStartBeforeEndFieldName"].lower()
            if _spec_field(table, end) and end != fld:
                add("FIELD", "plausibleStartBeforeEnd", table, fld, thr("plausibleStartBeforeEnd"),
                    {"plausibleStartBeforeEndFieldName": end}, params={"end_field": end},
                    requires=own + ((table, end),))
        for name, needs in (("plausibleAfterBirth", ("person", "birth_datetime")),
                            ("plausibleBeforeDeath", ("death", "death_date"))):
            if r[name] == "Yes" and _spec_field(table, "person_id"):
                add("FIELD", name, table, fld, thr(name), {}, requires=own + ((table, "person_id"), needs))
        if r["withinVisitDates"] == "Yes" and _spec_field(table, "visit_occurrence_id"):
            add("FIELD", "withinVisitDates", table, fld, thr("withinVisitDates"), {},
                requires=own + ((table, "visit_occurrence_id"), ("visit_occurrence", "visit_end_date")))
        x = extra.get((table, fld))
        if x and x.get("plausibleDuringObservation") == "Yes" and _spec_field(table, "person_id"):
            add("FIELD", "plausibleDuringObservation", table, fld, thr("plausibleDuringObservation", x), {},
                source="L059", requires=own + ((table, "person_id"), ("observation_period", "person_id")))

    # ---- concept level
    concept_rows = [(r, "DQD") for r in _read(_DQD.format("Concept_Level"))]
    concept_rows += [(r, "L059") for r in _read(_L059.format("Concept_Level"))]
    for r, source in concept_rows:
        table, fld = r["cdmTableName"].lower(), r["cdmFieldName"].lower()
        if table not in in_scope or not _spec_field(table, fld):
            continue
        ids = _ids(r["conceptId"])
        own = ((table, fld), (table, "person_id"))
        subs = {"conceptId": ", ".join(map(str, ids)), "conceptName": r["conceptName"]}

        def cthr(name: str, row: dict[str, str] = r) -> float:
            return _threshold(row.get(name + "Threshold", ""))

        if r.get("plausibleGender"):
            add("CONCEPT", "plausibleGender", table, fld, cthr("plausibleGender"),
                {**subs, "plausibleGender": r["plausibleGender"]}, source=source, concept_ids=ids,
                params={"concept_id": ids[0], "gender_concept_id": GENDER_CONCEPTS[r["plausibleGender"].lower()]},
                requires=own + (("person", "gender_concept_id"),))
        if r.get("plausibleGenderUseDescendants"):
            add("CONCEPT", "plausibleGenderUseDescendants", table, fld, cthr("plausibleGenderUseDescendants"),
                {**subs, "plausibleGenderUseDescendants": r["plausibleGenderUseDescendants"]}, source=source,
                concept_ids=ids, params={"concept_ids": list(ids), "gender_concept_id":
                                         GENDER_CONCEPTS[r["plausibleGenderUseDescendants"].lower()]},
                requires=own + (("person", "gender_concept_id"), ("concept_ancestor", "descendant_concept_id")))
        if r.get("plausibleUnitConceptIds") and table == "measurement":
            units = _ids(r["plausibleUnitConceptIds"])
            add("CONCEPT", "plausibleUnitConceptIds", table, fld, cthr("plausibleUnitConceptIds"),
                {**subs, "plausibleUnitConceptIds": ", ".join(map(str, units))}, source=source, concept_ids=ids,
                params={"concept_id": ids[0], "unit_concept_ids": list(units)},
                requires=own + ((table, "unit_concept_id"), (table, "value_as_number")))
        for name in ("plausibleValueLow", "plausibleValueHigh"):
            if r.get(name) and _spec_field(table, "value_as_number"):
                unit = r.get("unitConceptId", "")
                add("CONCEPT", name, table, fld, cthr(name),
                    {**subs, name: r[name], "unitConceptId": unit}, source=source, concept_ids=ids,
                    severity=r.get("severity") or None,
                    params={"concept_id": ids[0], "plausible_value": _number(r[name]),
                            "any_unit": 0 if unit else 1, "unit_concept_id": int(unit) if unit else 0},
                    requires=own + ((table, "value_as_number"), (table, "unit_concept_id")))
    return checks
