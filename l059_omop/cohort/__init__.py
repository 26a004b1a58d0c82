"""The L059 cohort (COHORT.md): OHDSI SQL rule by rule, run on DuckDB / PostgreSQL, rendered for other
engines, and exported as OHDSI Circe JSON."""

from __future__ import annotations

from l059_omop.cohort.build import attrition_from_masks, build_cohort, format_attrition
from l059_omop.cohort.definition import (
    DEFAULT_PARAMETERS,
    NOT_COMPUTABLE,
    concept_sets,
    render_cohort_sql,
    rules,
)

__all__ = ["build_cohort", "attrition_from_masks", "format_attrition", "DEFAULT_PARAMETERS", "NOT_COMPUTABLE",
           "concept_sets", "render_cohort_sql", "rules", "export_circe"]


def __getattr__(name: str):
    if name == "export_circe":
        from l059_omop.cohort.circe import export_circe

        return export_circe
    raise AttributeError(name)
