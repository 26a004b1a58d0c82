"""Benchmark: ``l059-omop load-records`` source rows per second into DuckDB and PostgreSQL.

Input: extracts in the layout of ``mappings/records/synth_site.yaml`` (the synth records format), generated
here with DuckDB's COPY so that 1,000,000 source rows take seconds to write: one patient per 50 rows, labs
(INR / APTT / ECOG with units and reference ranges, 70% of the rows), anlotinib and chemotherapy orders with
dose text (20%), imaging responses in Chinese and English (10%). The load runs in a child process, so wall
time and peak RSS are the command's own; "memory flat" is checked by comparing peak RSS at two sizes.
Target (issue 5): >= 50,000 source rows/s into DuckDB at 1,000,000 rows (quick: 20,000 rows).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import duckdb

try:
    from benchmarks import _util
except ImportError:  # run as a script from benchmarks/
    import _util  # type: ignore[no-redef]

FULL_ROWS = 1_000_000
QUICK_ROWS = 20_000
TARGET_ROWS_PER_S = {"duckdb": 50_000}


def generate(dest: Path, rows: int) -> int:
    """Write patients/labs/drug/imaging CSV extracts with about ``rows`` data rows in all; returns the count."""
    dest.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    patients = max(1, rows // 50)
    n_labs, n_drugs = int(rows * 0.7), int(rows * 0.2)
    n_img = rows - patients - n_labs - n_drugs
    opts = "(header, delimiter ',', quote '\"')"
    con.execute(f"""copy (select 'ZY' || lpad(i::varchar, 9, '0') as 病案号, '患者' || i as 姓名,
            case when i % 2 = 0 then '男' else '女' end as 性别,
            strftime(date '1940-01-01' + (i % 15000)::int, '%Y-%m-%d') as 出生日期, '138' || lpad(i::varchar, 8, '0') as 联系电话
        from range({patients}) t(i)) to '{dest / "patients.csv"}' {opts}""")
    con.execute(f"""copy (select 'ZY' || lpad((i % {patients})::varchar, 9, '0') as 病案号,
            'JY' || (i // 3) as 检验单号,
            ['6301-6', '14979-9', '89247-1'][1 + i % 3] as 项目代码,
            ['国际标准化比值', '活化部分凝血活酶时间', 'ECOG评分'][1 + i % 3] as 项目名称,
            case i % 3 when 0 then (0.8 + (i % 9) / 10.0)::varchar when 1 then (25 + i % 20)::varchar
                 else (i % 3)::varchar end as 结果,
            ['INR', '秒', ''][1 + i % 3] as 单位,
            ['0.8-1.2', '25.0-37.0', ''][1 + i % 3] as 参考范围,
            strftime(date '2021-01-01' + (i % 700)::int, '%Y-%m-%d') as 报告日期
        from range({n_labs}) t(i)) to '{dest / "labs.csv"}' {opts}""")
    con.execute(f"""copy (select 'ZY' || lpad((i % {patients})::varchar, 9, '0') as 病案号, 'YZ' || i as 医嘱号,
            ['XL01EX-ALTN12', 'XL01EX-ALTN', 'XL01CB01-YTBG', 'XL01FF05-ATLZ'][1 + i % 4] as 药品编码,
            ['安罗替尼胶囊 12mg', '盐酸安罗替尼胶囊', '依托泊苷注射液', '阿替利珠单抗注射液'][1 + i % 4] as 药品名称,
            ['12 mg qd d1-14 q3w', '10mg 每日一次 d1-14 q3w', '100 mg/m2 ivgtt d1-3', '1200 mg ivgtt d1 q3w'][1 + i % 4]
                as 用法用量,
            ['口服', '口服', '静脉滴注', '静脉滴注'][1 + i % 4] as 给药途径,
            strftime(date '2021-01-01' + (i % 700)::int, '%Y-%m-%d') as 开始日期, '' as 结束日期
        from range({n_drugs}) t(i)) to '{dest / "drug_orders.csv"}' {opts}""")
    con.execute(f"""copy (select 'ZY' || lpad((i % {patients})::varchar, 9, '0') as 病案号, 'CT' || i as 检查号,
            strftime(date '2021-01-01' + (i % 700)::int, '%Y/%m/%d') as 检查日期,
            ['PR', '部分缓解', '疾病稳定', 'PD', '疾病进展', ''][1 + i % 6] as 疗效评价,
            case when i % 6 = 5 then (30 + i % 50)::varchar else '' end as 靶病灶直径总和,
            case when i % 6 = 5 then 'mm' else '' end as 单位
        from range({max(0, n_img)}) t(i)) to '{dest / "imaging.csv"}' {opts}""")
    con.close()
    return patients + n_labs + n_drugs + max(0, n_img)


def _case(backend: str, url: str, folder: Path, rows: int) -> dict:
    init = _util.run_child(_util.cli_args("--db", url, "-q", "init-db"))
    if init.returncode != 0:
        return {"area": "records", "case": f"load-records {backend}", "rows": rows, "error": init.stderr[-300:]}
    res = _util.run_child(_util.cli_args("--db", url, "-q", "load-records", "--mapping", "synth_site", str(folder)))
    rate = _util.rows_per_s(rows, res.seconds)
    row = {"area": "records", "case": f"load-records {backend}", "rows": rows, "seconds": round(res.seconds, 2),
           "rows_per_s": round(rate), "peak_mb": round(res.peak_mb), "exit": res.returncode}
    if backend in TARGET_ROWS_PER_S:
        row["target_rows_per_s"] = TARGET_ROWS_PER_S[backend]
        row["ok"] = res.returncode == 0 and rate >= TARGET_ROWS_PER_S[backend]
    if res.returncode != 0:
        row["error"] = res.stderr.strip().splitlines()[-1][:300] if res.stderr.strip() else ""
    return row


def run(quick: bool) -> list[dict]:
    sizes = [QUICK_ROWS] if quick else [FULL_ROWS // 5, FULL_ROWS]
    out: list[dict] = []
    tmp = Path(tempfile.mkdtemp(prefix="l059_bench_records_"))
    try:
        for n in sizes:
            folder = tmp / f"x{n}"
            rows = generate(folder, n)
            db = tmp / f"bench{n}.duckdb"
            out.append(_case("duckdb", f"duckdb:///{db}", folder, rows))
            db.unlink(missing_ok=True)
            reason = _util.pg_available()
            if reason:
                out.append({"area": "records", "case": "load-records postgresql", "rows": rows, "skipped": reason})
            else:
                with _util.pg_database() as url:
                    out.append(_case("postgresql", url, folder, rows))
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if len(sizes) > 1:
        small, big = [r for r in out if r.get("case") == "load-records duckdb" and "peak_mb" in r][:2] or [{}, {}]
        if small and big:
            out.append({"area": "records", "case": "memory flat (duckdb peak MB, 200k vs 1M rows)",
                        "rows": big.get("rows"), "peak_mb": big.get("peak_mb"),
                        "ok": big.get("peak_mb", 0) <= 1.5 * small.get("peak_mb", 1) + 100})
    return out


if __name__ == "__main__":
    import sys

    for r in run("--quick" in sys.argv):
        print(r)
