"""synth --format omop: determinism, the truth recomputed independently from the CSV files, the --db path.

The recomputation reads only the generated CSV files (DuckDB SQL + pandas) and the concept ids of
CONVENTIONS.md / COHORT.md written out here, never the generator's code tables or evaluator.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from l059_omop.cli import main
from l059_omop.db.api import import_cdm, init_db
from l059_omop.synth import generate

N = 600
SEED = 11

ANLOTINIB = (2000000001, 2000000002, 2000000003, 2000000004)
PLATINUM = (1344905, 1397599)
ETOPOSIDE = (1350504,)
PD1 = (42629079, 1594034, 36861273, 36849791, 747052, 36848998, 36854475, 36853469, 45775965, 45892628, 2000000005)
ANTIANGIO = (2000000006, 1397141)
IMMUNOSUPP = (1551099, 1550557, 1506270, 1305058, 19014878, 1777087, 19010482, 19003999, 964339, 1101898, 1119119,
              937368, 1151789)
AUTOIMMUNE = (80809, 257628, 134442, 201606, 81893, 140168, 374919, 76685, 4232076, 135215, 201254, 194992, 254443,
              438688, 443394, 4137275, 200762, 441269, 4103532)
BLEEDING = (432585, 4120613, 437312, 261687, 436093, 432870)
SCLC = (4110591, 37395648, 37395649, 37395650, 37395651, 44502159, 44502427, 44500000, 44499678, 36521732)
ES_MEAS = (2000000010, 1633987, 1635142, 36769180)
LS_MEAS = (2000000011, 1635838, 1635131, 1634191)
RT = (2000000030, 2000000031)


def _ids(t: tuple) -> str:
    return ", ".join(str(x) for x in t)


@pytest.fixture(scope="module")
def omop_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("omop")
    generate(N, "omop", out, SEED, workers=1)
    return out


@pytest.fixture(scope="module")
def truth(omop_dir) -> pd.DataFrame:
    return pd.read_csv(omop_dir / "truth.csv", dtype=str, keep_default_na=False)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_same_bytes_other_seed_other_patients(omop_dir, tmp_path):
    again = tmp_path / "again"
    generate(N, "omop", again, SEED, workers=2)  # worker processes must not change a byte
    assert _digest(again) == _digest(omop_dir)
    other = tmp_path / "other"
    generate(N, "omop", other, SEED + 1, workers=1)
    assert (other / "PERSON.csv").read_bytes() != (omop_dir / "PERSON.csv").read_bytes()
    assert (other / "truth.csv").read_bytes() != (omop_dir / "truth.csv").read_bytes()


def test_cohort_share_and_truth_shape(truth):
    share = (truth.cohort_member == "1").mean()
    assert 0.35 <= share <= 0.65
    assert list(truth.person_id.astype(int)) == list(range(1, N + 1))
    assert truth.patient_id.iloc[0] == "P0000001"
    # every rule fails for someone, alone and in combination
    fails = truth.failed_rules[truth.failed_rules != ""]
    for r in range(1, 14):
        assert fails.str.split(";").apply(lambda x, r=r: f"R{r}" in x).any(), f"R{r}"
    assert (fails.str.count(";") >= 1).any()
    assert (truth.index_date == "").any()  # no anlotinib at all
    assert ((truth.entered == "0") & (truth.index_date != "")).any()  # anlotinib outside the window
    assert (truth.os_event == "1").any() and (truth.lost_to_follow_up == "1").any()
    assert set(truth.starting_dose_mg) >= {"12", "10", "8"}


def _load(omop_dir: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for p in omop_dir.glob("*.csv"):
        if p.stem.isupper():
            con.execute(f"create view {p.stem.lower()} as select * from read_csv_auto('{p}', header=true, "
                        "all_varchar=false, sample_size=-1)")
    return con


def _recompute(omop_dir: Path) -> pd.DataFrame:
    """COHORT.md entry and R1-R13 from the OMOP CSV files."""
    con = _load(omop_dir)
    base = con.execute(f"""
        with idx as (select person_id, min(drug_exposure_start_date) as index_date from drug_exposure
                     where drug_concept_id in ({_ids(ANLOTINIB)}) group by person_id),
        dx as (select person_id, min(condition_start_date) as dx from condition_occurrence
               where condition_concept_id in ({_ids(SCLC)}) group by person_id),
        esr as (select person_id, measurement_date as d from measurement where measurement_concept_id in ({_ids(ES_MEAS)})
                union all select person_id, condition_start_date from condition_occurrence
                where condition_concept_id = 37395651),
        es as (select esr.person_id, min(d) as es from esr join dx using (person_id) where d >= dx group by esr.person_id),
        ind as (select e.person_id, min(drug_exposure_start_date) as ind from drug_exposure d join es e using (person_id)
                where drug_concept_id in ({_ids(PLATINUM)}) and drug_exposure_start_date >= es - 14 group by e.person_id)
        select p.person_id, make_date(p.year_of_birth, p.month_of_birth, p.day_of_birth) as birth, idx.index_date,
               dx.dx, es.es, ind.ind
        from person p left join idx using (person_id) left join dx using (person_id) left join es using (person_id)
             left join ind using (person_id) order by p.person_id""").df()
    base = base.set_index("person_id")
    drugs = con.execute("select person_id, drug_concept_id as c, drug_exposure_start_date as s, "
                        "drug_exposure_end_date as e from drug_exposure").df()
    meas = con.execute("select person_id, measurement_concept_id as c, measurement_date as d, value_as_number as v, "
                       "range_high as hi from measurement").df()
    obs = con.execute("select person_id, value_as_concept_id as v, observation_date as d from observation "
                      "where observation_concept_id = 36305408").df()
    cond = con.execute("select person_id, condition_concept_id as c, condition_start_date as d "
                       "from condition_occurrence").df()
    proc = con.execute("select person_id, procedure_concept_id as c, procedure_end_date as e "
                       "from procedure_occurrence").df()
    g_drugs = dict(tuple(drugs.groupby("person_id")))
    g_meas = dict(tuple(meas.groupby("person_id")))
    g_obs = dict(tuple(obs.groupby("person_id")))
    g_cond = dict(tuple(cond.groupby("person_id")))
    g_proc = dict(tuple(proc.groupby("person_id")))
    empty_d, empty_m = drugs.iloc[:0], meas.iloc[:0]
    out = []
    day = pd.Timedelta(days=1)
    for pid, b in base.iterrows():
        row = {"person_id": pid}
        idx = b.index_date
        if pd.isna(idx):
            row.update(entered=0, failed="")
            out.append(row)
            continue
        idx = pd.Timestamp(idx)
        row["entered"] = int(pd.Timestamp("2022-01-01") <= idx <= pd.Timestamp("2024-12-31"))
        d = g_drugs.get(pid, empty_d)
        m = g_meas.get(pid, empty_m)
        o = g_obs.get(pid, obs.iloc[:0])
        c = g_cond.get(pid, cond.iloc[:0])
        pr = g_proc.get(pid, proc.iloc[:0])
        es = pd.Timestamp(b.es) if not pd.isna(b.es) else None
        ind = pd.Timestamp(b.ind) if not pd.isna(b.ind) else None
        birth = pd.Timestamp(b.birth)
        h = {}
        h["R1"] = (idx.year - birth.year - ((idx.month, idx.day) < (birth.month, birth.day))) >= 18
        h["R2"] = not pd.isna(b.dx) and es is not None and pd.Timestamp(b.dx) <= idx and es <= idx
        ls = m[m.c.isin(LS_MEAS)]
        if es is None or not (ls.d < es).any():
            h["R3"] = True
        else:
            ends = list(d[d.c.isin(PLATINUM + ETOPOSIDE + PD1)].e) + list(pr[pr.c.isin(RT)].e)
            before = [x for x in ends if x < es]
            h["R3"] = not before or (es - max(before)).days >= 183
        sod = m[(m.c == 2000000025) & (m.v >= 10)]
        h["R4"] = es is not None and ((sod.d >= es - 42 * day) & (sod.d <= idx)).any()
        if ind is not None:
            win = d[(d.s >= ind) & (d.s <= idx - day)]
            plat = sorted(set(win[win.c.isin(PLATINUM)].s))
            n, last = 0, None
            for x in plat:
                if last is None or (x - last).days >= 14:
                    n, last = n + 1, x
            row["cycles"] = n
            h["R5"] = 4 <= n <= 6 and win.c.isin(ETOPOSIDE).any() and win.c.isin(PD1).any()
            h["R6"] = not ((o.v == 2000000023) & (o.d >= ind) & (o.d <= idx)).any()
        else:
            row["cycles"] = 0
            h["R5"], h["R6"] = False, True
        ec = m[(m.c == 36305384) & (m.d >= idx - 42 * day) & (m.d <= idx)].sort_values("d")
        h["R7"] = len(ec) > 0 and ec.v.iloc[-1] <= 2
        h["R8"] = (d.c.isin(PD1) & (d.s >= idx - 7 * day) & (d.s <= idx + 28 * day)).any()
        an = d[d.c.isin(ANLOTINIB)].sort_values(["s", "e"])
        end = an.e.iloc[0]
        for s, e in zip(an.s.iloc[1:], an.e.iloc[1:], strict=True):
            if s <= end + 30 * day:
                end = max(end, e)
            else:
                break
        h["R9"] = (end - idx).days + 1 >= 42
        h["R10"] = (o.v.isin([2000000020, 2000000021, 2000000022, 2000000023]) & (o.d > idx)).any()
        h["R11"] = es is None or not (d.c.isin(PD1 + ANLOTINIB + ANTIANGIO) & (d.s < es)).any()
        lo = idx - 730 * day
        h["R12"] = not ((c.c.isin(AUTOIMMUNE) & (c.d >= lo) & (c.d <= idx)).any()
                        and (d.c.isin(IMMUNOSUPP) & (d.s >= lo) & (d.s <= idx)).any())
        lab = m[(m.d >= idx - 30 * day) & (m.d <= idx)]
        bad_inr = ((lab.c == 3022217) & (lab.v > 1.5)).any()
        bad_aptt = ((lab.c == 3018677) & (lab.v > 1.5 * lab.hi.fillna(40.0))).any()
        bleed = (c.c.isin(BLEEDING) & (c.d >= idx - 180 * day) & (c.d <= idx)).any()
        h["R13"] = not (bad_inr or bad_aptt or bleed)
        row["failed"] = ";".join(f"R{i}" for i in range(1, 14) if not h[f"R{i}"]) if row["entered"] else ""
        row["member"] = int(row["entered"] == 1 and all(h.values()))
        out.append(row)
    return pd.DataFrame(out).set_index("person_id")


def test_truth_agrees_with_the_omop_rows(omop_dir, truth):
    rec = _recompute(omop_dir)
    t = truth.set_index(truth.person_id.astype(int))
    assert (rec.entered.astype(int) == t.entered.astype(int)).all()
    mism = rec.index[rec.failed.fillna("") != t.failed_rules]
    assert not len(mism), t.loc[mism[:5], ["failed_rules", "scenario"]].assign(recomputed=rec.failed[mism[:5]])
    assert (rec.member.fillna(0).astype(int) == t.cohort_member.astype(int)).all()
    has = t.index_date != ""
    assert (rec.cycles[has].astype(int) == t.platinum_cycles[has].astype(int)).all()


def test_boundaries_are_present(omop_dir, truth):
    """The boundary values of the brief appear in the rows (checked on the files)."""
    con = _load(omop_dir)
    values = set(con.execute("select distinct value_as_number from measurement where measurement_concept_id = 3022217"
                             ).df().value_as_number.round(2))
    assert {1.5, 1.51} <= values
    sod = set(con.execute("select distinct value_as_number from measurement where measurement_concept_id = 2000000025"
                          ).df().value_as_number)
    assert {9.0, 10.0} <= sod
    ecog = set(con.execute("select distinct value_as_number from measurement where measurement_concept_id = 36305384"
                           ).df().value_as_number)
    assert {2.0, 3.0} <= ecog
    cycles = set(truth.platinum_cycles[truth.index_date != ""].astype(int))
    assert {3, 4, 6, 7} <= cycles
    assert (truth.age_at_index == "18").any() and (truth.age_at_index == "17").any()


def test_outcome_columns_follow_cohort_rules(omop_dir, truth):
    con = _load(omop_dir)
    death = con.execute("select person_id, death_date from death").df().set_index("person_id")
    m = truth[truth.cohort_member == "1"].copy()
    m.index = m.person_id.astype(int)
    dead = m[m.os_event == "1"]
    for pid, r in dead.iterrows():
        assert (pd.Timestamp(death.death_date[pid]) - pd.Timestamp(r.index_date)).days == int(r.os_days)
    assert (m.pfs_days.astype(int) <= m.os_days.astype(int)).all()
    assert (m.true_pfs_days.astype(int) <= m.true_os_days.astype(int)).all()


def test_db_path_into_init_db_duckdb(omop_dir, tmp_path, duckdb_url):
    engine = sa.create_engine(duckdb_url)
    init_db(engine)
    summary = generate(N, "omop", tmp_path / "t", SEED, engine=engine, batch_patients=250, workers=1)
    with engine.connect() as con:
        for p in sorted(omop_dir.glob("*.csv")):
            if not p.stem.isupper():
                continue
            with p.open(encoding="utf-8", newline="") as fh:
                n_csv = sum(1 for _ in csv.reader(fh)) - 1
            n_db = con.execute(sa.text(f"select count(*) from cdm.{p.stem.lower()}")).scalar_one()
            assert n_db == n_csv == summary.rows[p.stem.lower()], p.name
        # same values as the CSV path
        a = con.execute(sa.text("select sum(value_as_number) from cdm.measurement")).scalar_one()
    engine.dispose()
    b = duckdb.connect().execute(f"select sum(value_as_number) from read_csv_auto('{omop_dir / 'MEASUREMENT.csv'}')"
                                 ).fetchone()[0]
    assert a == pytest.approx(b)
    assert (tmp_path / "t" / "truth.csv").read_bytes() == (omop_dir / "truth.csv").read_bytes()


def test_import_cdm_loads_the_csv_files(omop_dir, duckdb_url):
    engine = sa.create_engine(duckdb_url)
    init_db(engine)
    res = import_cdm(engine, omop_dir)
    engine.dispose()
    assert res.rows["person"] == N
    assert res.skipped_files == ["truth.csv"]


def test_cli(tmp_path):
    out = tmp_path / "cli"
    r = CliRunner().invoke(main, ["synth", "--patients", "20", "--format", "omop", "--out", str(out), "--seed", "5"])
    assert r.exit_code == 0, r.output
    assert "20 patients" in r.output
    assert (out / "PERSON.csv").exists() and (out / "truth_meta.json").exists()
    r = CliRunner().invoke(main, ["synth", "--patients", "5", "--format", "fhir", "--out", str(out),
                                  "--db", "duckdb:///x.duckdb"])
    assert r.exit_code == 2
