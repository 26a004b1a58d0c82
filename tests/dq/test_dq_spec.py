"""The check plan built from DQD's CSVs and the OMOP spec, and the SQL it renders (no database)."""

from __future__ import annotations

import datetime as dt

import pytest

from l059_omop.dq.runner import _kind, _params, _render, render_direct
from l059_omop.dq.spec import EXCLUDED_TABLES, build_checks, check_types, plausible_value
from l059_omop.resources import sql_path


def test_plan_covers_dqd_check_types():
    checks = build_checks(dt.date(2026, 1, 1))
    names = {c.check_name for c in checks}
    dqd = {name for (_, name) in check_types()}
    # every DQD check type runs, except plausibleDuringLife (superseded by plausibleBeforeDeath)
    assert dqd - names == {"plausibleDuringLife"}
    assert len({c.check_id for c in checks}) == len(checks)
    assert not {c.table for c in checks} & set(EXCLUDED_TABLES)
    for c in checks:
        if c.sql_file:
            assert sql_path("dq", c.sql_file).is_file(), c.sql_file
    by_id = {c.check_id: c for c in checks}
    death = by_id["field_plausiblebeforedeath_drug_exposure_drug_exposure_start_date"]
    assert death.sql_file == "field_plausible_before_death.sql" and death.threshold == 1.0
    assert by_id["field_isforeignkey_person_gender_concept_id"].params == {"fk_table": "concept",
                                                                           "fk_field": "concept_id"}
    assert by_id["field_fkdomain_condition_occurrence_condition_concept_id"].binds == {"fk_domain": "Condition"}
    assert by_id["field_plausiblevaluehigh_person_year_of_birth"].params["plausible_value"] == 2027
    ecog = by_id["concept_plausiblevaluehigh_measurement_measurement_concept_id_36305384"]
    assert (ecog.params["plausible_value"], ecog.threshold, ecog.failure_level) == (4, 0.0, "error")


def test_plausible_values():
    today = dt.date(2026, 3, 1)
    assert plausible_value("'18500101'", today) == dt.date(1850, 1, 1)
    assert plausible_value("DATEADD(dd,1,GETDATE())", today) == dt.date(2026, 3, 2)
    assert plausible_value("YEAR(GETDATE())+1", today) == 2027
    assert plausible_value("0.0000001", today) == 1e-7
    assert plausible_value("365", today) == 365


@pytest.mark.parametrize("dialect", ["duckdb", "postgresql"])
def test_cached_translation_equals_direct(dialect):
    """Templates are translated once with sentinels; the result must equal rendering+translating each check."""
    seen = set()
    for i, c in enumerate(build_checks(dt.date(2026, 1, 1))):
        if not c.sql_file:
            continue
        key = (c.sql_file, tuple(sorted((k, _kind(k, v)) for k, v in _params(c, i, "cdm").items())))
        if key in seen:
            continue
        seen.add(key)
        assert _render(c, i, "cdm", dialect) == render_direct(c, i, "cdm", dialect), c.check_id
    assert len(seen) >= 25
