"""Synthetic patients (issue 3's generator) -> import-cdm -> build-cohort equals the generator's truth:
the same persons and dates, the ordered attrition and, per rule, how many entrants fail it alone."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from l059_omop.cohort import build_cohort
from l059_omop.db.api import import_cdm

RULES = [f"R{i}" for i in range(1, 14)]
N = 700


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    synth = pytest.importorskip("l059_omop.synth")
    out = tmp_path_factory.mktemp("synth")
    synth.generate(N, "omop", out, seed=59, workers=1)
    return out


def truth_attrition(truth: pd.DataFrame) -> list[tuple[str, int, int, int]]:
    """(rule, remaining, excluded, failing alone) from truth.csv's first_failed_rule / failed_rules."""
    entered = truth[truth.entered == "1"]
    out = [("entry", len(entered), 0, 0)]
    remaining = len(entered)
    for r in RULES:
        excluded = int((entered.first_failed_rule == r).sum())
        remaining -= excluded
        alone = int(entered.failed_rules.map(lambda f, r=r: r in f.split(";")).sum())
        out.append((r, remaining, excluded, alone))
    return out


def test_synthetic_cohort_equals_truth(synth_dir, cdm_engine, tmp_path):
    truth = pd.read_csv(synth_dir / "truth.csv", dtype=str, keep_default_na=False)
    if cdm_engine.dialect.name == "duckdb":
        import_cdm(cdm_engine, synth_dir)
    else:
        # import-cdm loads files in name order, and init-db has already added PostgreSQL's foreign keys, so
        # CONDITION_OCCURRENCE.csv fails before PERSON.csv (reported); the generator writes the same rows
        # into the database directly (same seed: same truth, checked).
        from l059_omop.synth import generate

        generate(N, "omop", tmp_path, seed=59, engine=cdm_engine, workers=1)
        assert (tmp_path / "truth.csv").read_bytes() == (synth_dir / "truth.csv").read_bytes()
    attrition = build_cohort(cdm_engine)

    with cdm_engine.connect() as con:
        got = pd.read_sql_query(sa.text("select subject_id, cohort_start_date, cohort_end_date from results.cohort "
                                        "where cohort_definition_id = 1059 order by subject_id"), con)
    got = [(int(s), str(pd.Timestamp(a).date()), str(pd.Timestamp(b).date())) for s, a, b in got.itertuples(index=False)]
    members = truth[truth.cohort_member == "1"]
    want = sorted((int(p), i, e) for p, i, e in zip(members.person_id, members.index_date, members.cohort_end,
                                                     strict=True))
    assert got == want

    computed = attrition[attrition.rule_sequence.notna()]
    got_att = [(r.rule, int(r.persons_remaining), int(r.persons_excluded), int(r.failing_alone))
               for r in computed.itertuples()]
    assert got_att == truth_attrition(truth)
    # the generator exercises every rule
    assert all(alone > 0 for _, _, _, alone in got_att[1:])


# Why Circe's SQL for our JSON may select a synthetic patient differently (synth scenario tokens); every
# difference must be explained by one of these or by a limited-stage history (below).
CIRCE_EXPLAINED = {
    "R1:age17_b": "Circe's age is by birth year: 17 years by birthday, 18 by year",
    "R13:aptt_noref": "APTT without range_high is not tested by Circe's RangeHighRatio (the SQL uses ULN 40 s)",
    "R7:ecog3_then1": "Circe cannot take the latest ECOG: the earlier ECOG 3 excludes",
    "R5:split_dose": "cisplatin split over days 1-3: three distinct platinum dates per cycle for Circe",
}
LS_REASON = ("limited-stage history: its platinum falls in Circe's 365-day R5 window and Circe dates "
             "radiotherapy's end as procedure_date + 1 (R3)")


def test_circe_sql_on_synthetic_patients(synth_dir, tmp_path):
    """duckcdm's Circe SQL for our exported JSON vs our SQL on the synthetic CDM: same persons except the
    differences explained above (counted and printed)."""
    import duckdb

    from l059_omop.cohort.circe import export_circe
    from l059_omop.db.api import init_db

    from . import clients

    truth = pd.read_csv(synth_dir / "truth.csv", dtype=str, keep_default_na=False)
    path = tmp_path / "l059_synth_circe.duckdb"
    engine = sa.create_engine(f"duckdb:///{path}")
    init_db(engine)
    import_cdm(engine, synth_dir)
    build_cohort(engine)
    text = export_circe(engine).json_text
    engine.dispose()
    con = duckdb.connect(str(path))
    clients.build_drug_era(con)
    clients.run_circe(con, text, cohort_id=2)
    ours, circe = clients.cohort_persons(con, 1059), clients.cohort_persons(con, 2)
    limited = {int(r[0]) for r in con.execute(
        "select distinct person_id from cdm.measurement where measurement_concept_id = 2000000011").fetchall()}
    scenario = dict(zip(truth.person_id.astype(int), truth.scenario, strict=True))
    reasons: dict[str, int] = {}
    unexplained = []
    for p in sorted(ours ^ circe):
        tokens = [t for t in scenario[p].split(";") if t in CIRCE_EXPLAINED]
        why = CIRCE_EXPLAINED[tokens[0]] if tokens else LS_REASON if p in limited else None
        if why is None:
            unexplained.append((p, "ours only" if p in ours else "circe only", scenario[p]))
        else:
            reasons[why] = reasons.get(why, 0) + 1
    print(f"ours {len(ours)}, Circe {len(circe)}, differences {len(ours ^ circe)}: {reasons}")
    assert not unexplained, unexplained
    assert len(ours & circe) > 0.9 * len(ours)
