"""Outcomes over the standardized model (DESIGN §7): PFS, OS, response, safety, subgroups.

- ``compute_outcomes(engine, out_dir, cohort_id=1059, ...)``: SQL extracts + statistics + files.
- ``l059_omop.outcomes.km``: survival statistics on plain arrays / life tables (no database).
- ``l059_omop.outcomes.analysis.analyse(persons, adverse_events)``: the tables from analysis rows.
"""

from l059_omop.outcomes.api import OutcomeResults, compute_outcomes, suppressed_tables
from l059_omop.outcomes.km import (
    KaplanMeier,
    clopper_pearson,
    kaplan_meier,
    kaplan_meier_from_table,
    life_table,
    logrank,
    reverse_km_median,
)

__all__ = ["KaplanMeier", "OutcomeResults", "clopper_pearson", "compute_outcomes", "kaplan_meier",
           "kaplan_meier_from_table", "life_table", "logrank", "reverse_km_median", "suppressed_tables"]
