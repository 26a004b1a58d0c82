"""build-cohort on synthetic CDMs: 10k / 100k / 1M persons on DuckDB, 100k on PostgreSQL; growth ratio; and
Circe's SQL (duckcdm, for our exported JSON) on the same DuckDB database.

The CDMs come from ``synth --format omop``: one base of BASE synthetic patients is generated once (cached
in the temp folder), and larger CDMs are made by copying it with person and row ids shifted (person_id +
k x BASE, row ids + k x BASE x 1000, as synth numbers rows), so 1M persons take seconds to prepare instead of
hours to generate. Copies keep the base's distributions (rows per person, rule failures). Each build runs in
a child process: seconds are the build_cohort() call's wall time (imports excluded, noted), the note adds its
CPU time (user + sys of that process, so DuckDB's worker threads are included: the figure to compare on a
shared machine), peak_mb that child's peak RSS (DuckDB runs in-process; for PostgreSQL it is the client's
memory only).

Targets (issue 6): 1M persons <= 15 s on DuckDB (2 cores), growth 10x persons <= 12x time, and no slower than
duckcdm's Circe SQL for our JSON on the same database.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path

import _util

BASE = 2_000
SEED = 1059
CDM_TABLES = ["person", "observation_period", "visit_occurrence", "condition_occurrence", "drug_exposure",
              "procedure_occurrence", "measurement", "observation", "death"]
ROW_REFS = {"visit_occurrence_id", "measurement_event_id", "condition_occurrence_id", "drug_exposure_id",
            "procedure_occurrence_id", "measurement_id", "observation_id"}
CACHE = Path(os.environ.get("L059_BENCH_CACHE", Path(tempfile.gettempdir()) / "l059_bench_cohort"))


def _base() -> Path:
    """A DuckDB CDM with BASE synthetic patients (generated once)."""
    path = CACHE / f"base_{BASE}_{SEED}.duckdb"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.duckdb")
    tmp.unlink(missing_ok=True)
    code = textwrap.dedent(f"""
        import sqlalchemy as sa
        from pathlib import Path
        from l059_omop.db.api import init_db
        from l059_omop.synth import generate
        e = sa.create_engine('duckdb:///{tmp}')
        init_db(e)
        generate({BASE}, 'omop', Path('{CACHE}') / 'base_files', seed={SEED}, engine=e)
        e.dispose()
    """)
    res = _util.run_child([sys.executable, "-c", code])
    if res.returncode:
        raise RuntimeError(f"synth base failed: {res.stderr[-2000:]}")
    tmp.rename(path)
    return path


def _columns(con, table: str) -> list[str]:
    return [r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = 'cdm' and table_name = ? "
        "order by ordinal_position", [table]).fetchall()]


def _scaled(persons: int) -> Path:
    """A DuckDB CDM of ``persons`` persons: the base copied persons / BASE times, plus drug_era (for Circe)."""
    path = CACHE / f"cdm_{persons}.duckdb"
    if path.exists():
        return path
    base = _base()
    copies = persons // BASE
    tmp = path.with_suffix(".tmp.duckdb")
    tmp.unlink(missing_ok=True)
    code = textwrap.dedent(f"""
        import duckdb, sqlalchemy as sa, json
        from l059_omop.db.api import init_db
        from l059_omop.cohort.circe import drug_era_statements
        e = sa.create_engine('duckdb:///{tmp}'); init_db(e); e.dispose()
        con = duckdb.connect('{tmp}')
        con.execute("attach '{base}' as base (read_only)")
        tables = {json.dumps(CDM_TABLES)}
        refs = set({json.dumps(sorted(ROW_REFS))})
        for t in tables:
            cols = [r[0] for r in con.execute("select column_name from information_schema.columns where "
                    "table_catalog = 'base' and table_schema = 'cdm' and table_name = ? order by ordinal_position",
                    [t]).fetchall()]
            sel = []
            for c in cols:
                if c == 'person_id' or c == 'observation_period_id':
                    sel.append(f"{{c}} + k * {BASE}")
                elif c in refs:
                    sel.append(f"{{c}} + k * {BASE * 1000}")
                else:
                    sel.append(c)
            con.execute(f"insert into cdm.{{t}} ({{', '.join(cols)}}) select {{', '.join(sel)}} "
                        f"from base.cdm.{{t}}, range({copies}) r(k)")
        for s in drug_era_statements('cdm'):
            con.execute(s)
        con.execute('checkpoint')
        con.close()
    """)
    res = _util.run_child([sys.executable, "-c", code])
    if res.returncode:
        raise RuntimeError(f"scaling to {persons} failed: {res.stderr[-2000:]}")
    tmp.rename(path)
    return path


BUILD = """
import json, resource, sys, time, sqlalchemy as sa
from l059_omop.cohort import build_cohort
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
e = sa.create_engine(sys.argv[1])
t, c = time.perf_counter(), cpu()
a = build_cohort(e)
secs, cpu_secs = time.perf_counter() - t, cpu() - c
print(json.dumps({"members": int(a[a.rule_sequence.notna()].persons_remaining.iloc[-1]),
                  "entrants": int(a.persons_remaining.iloc[0]), "seconds": secs, "cpu_seconds": cpu_secs}))
"""

CIRCE = """
import json, resource, sys, time, duckdb, sqlalchemy as sa
from duckcdm.circe import build_cohort_query
from duckcdm.sqlrender import render, translate, split_sql
from l059_omop.cohort.circe import export_circe
e = sa.create_engine('duckdb:///' + sys.argv[1])
text = export_circe(e).json_text
e.dispose()
sql = translate(render(build_cohort_query(text, cohort_id=2, cdm_schema='cdm', target_table='results.cohort',
                                          result_schema='results', vocabulary_schema='cdm', generate_stats=True)),
                'duckdb')
con = duckdb.connect(sys.argv[1])
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t, c = time.perf_counter(), cpu()
for s in split_sql(sql):
    if s.strip():
        con.execute(s)
secs, cpu_secs = time.perf_counter() - t, cpu() - c
n = con.execute('select count(*) from results.cohort where cohort_definition_id = 2').fetchone()[0]
print(json.dumps({"seconds": secs, "cpu_seconds": cpu_secs, "members": n}))
"""


def _build(url: str) -> tuple[_util.ChildResult, dict]:
    res = _util.run_child([sys.executable, "-c", BUILD, url])
    if res.returncode:
        raise RuntimeError(f"build-cohort failed on {url.split('@')[-1]}: {res.stderr[-2000:]}")
    return res, json.loads(res.stdout.strip().splitlines()[-1])


def _pg_copy(duck_path: Path, url: str) -> None:
    """The DuckDB CDM's tables into a fresh init-db'ed PostgreSQL database (COPY, person first)."""
    import duckdb
    import sqlalchemy as sa

    from l059_omop.db.api import init_db

    engine = sa.create_engine(url)
    init_db(engine)
    src = duckdb.connect(str(duck_path), read_only=True)
    with engine.begin() as con:
        raw = con.connection.driver_connection
        for t in CDM_TABLES + ["drug_era"]:
            cols = [r[0] for r in src.execute(
                "select column_name from information_schema.columns where table_schema = 'cdm' and table_name = ? "
                "order by ordinal_position", [t]).fetchall()]
            with tempfile.NamedTemporaryFile(suffix=".csv") as f:
                src.execute(f"copy (select {', '.join(cols)} from cdm.{t}) to '{f.name}' (header false)")
                with raw.cursor() as cur, open(f.name, "rb") as fh:
                    with cur.copy(f"copy cdm.{t} ({', '.join(cols)}) from stdin with (format csv)") as cp:
                        while block := fh.read(1 << 22):
                            cp.write(block)
        raw.execute("analyze")
    src.close()
    engine.dispose()


def run(quick: bool = False) -> list[dict]:
    sizes = [10_000] if quick else [10_000, 100_000, 1_000_000]
    rows: list[dict] = []
    times: dict[int, float] = {}
    cpu_times: dict[int, float] = {}
    for n in sizes:
        path = _scaled(n)
        res, out = _build(f"duckdb:///{path}")
        secs = out["seconds"]
        times[n] = secs
        cpu_times[n] = out["cpu_seconds"]
        circe = _util.run_child([sys.executable, "-c", CIRCE, str(path)])
        note = (f"{out['entrants']:,} entrants, {out['members']:,} members; build_cohort() call {secs:.1f} s wall, "
                f"{out['cpu_seconds']:.1f} s CPU (user+sys, DuckDB's threads included; child process with imports "
                f"{res.seconds:.1f} s)")
        ok_circe = True
        if circe.returncode == 0:
            c = json.loads(circe.stdout.strip().splitlines()[-1])
            ratio = secs / c["seconds"] if c["seconds"] else float("nan")
            cpu_ratio = out["cpu_seconds"] / c["cpu_seconds"] if c["cpu_seconds"] else float("nan")
            ok_circe = ratio <= 1.0 or n < 1_000_000
            note += (f"; duckcdm Circe SQL {c['seconds']:.1f} s wall / {c['cpu_seconds']:.1f} s CPU "
                     f"({c['members']:,} members), ours/Circe = {ratio:.2f} wall, {cpu_ratio:.2f} CPU "
                     "(Circe time excludes its Python SQL generation)")
        else:
            note += f"; duckcdm Circe SQL failed: {circe.stderr.strip().splitlines()[-1][:200]}"
        rows.append({"case": f"duckdb {n:,} persons", "rows": n, "seconds": secs,
                     "rows_per_s": _util.rows_per_s(n, secs), "peak_mb": res.peak_mb,
                     "target": "1M <= 15 s" if n == 1_000_000 else "(1M <= 15 s)",
                     "ok": (secs <= 15.0 if n == 1_000_000 else True) and ok_circe, "note": note})
    for small, big in zip(sizes, sizes[1:], strict=False):
        growth = times[big] / times[small]
        cpu_growth = cpu_times[big] / cpu_times[small]
        rows.append({"case": f"duckdb growth {small:,} -> {big:,}", "rows": big, "seconds": None,
                     "target": f"<= {1.2 * big / small:.0f}x", "ok": growth <= 1.2 * big / small,
                     "note": f"{growth:.1f}x wall time, {cpu_growth:.1f}x CPU time for {big // small}x persons"})
    if not quick:
        reason = _util.pg_available()
        if reason:
            rows.append({"case": "postgresql 100,000 persons", "ok": True, "note": f"skipped: {reason}"})
        else:
            try:  # a PostgreSQL failure must not lose the DuckDB rows measured above
                with _util.pg_database("l059_bench_cohort") as url:
                    _pg_copy(_scaled(100_000), url)
                    res, out = _build(url)
                    rows.append({"case": "postgresql 100,000 persons", "rows": 100_000, "seconds": out["seconds"],
                                 "rows_per_s": _util.rows_per_s(100_000, out["seconds"]), "peak_mb": res.peak_mb,
                                 "target": "", "ok": True,
                                 "note": f"{out['members']:,} members; peak_mb is the client's; "
                                         "CPU time is the server's work, not measured here"})
            except Exception as exc:  # noqa: BLE001 - reported as a failed row
                rows.append({"case": "postgresql 100,000 persons", "ok": False,
                             "note": f"failed: {str(exc).strip().splitlines()[-1][:300]}"})
    return rows


if __name__ == "__main__":
    from run import format_table

    print(format_table([{"area": "cohort", **r} for r in run("--quick" in sys.argv)]))
