"""Benchmark: loading an Athena-shaped vocabulary with ``init-db --vocab`` into DuckDB and PostgreSQL.

Sizes (issue 2): 1,000,000 concepts, 5,000,000 relationships, 10,000,000 ancestor rows (quick: 1/20).
The files are generated with DuckDB's COPY (tab-separated, unquoted, dates YYYYMMDD, as Athena ships them),
so generation takes seconds; the load runs ``l059-omop init-db --vocab`` in a child process whose wall time
(table creation, bulk load, local L059 concepts, constraints and indexes: the whole command) and peak RSS
are reported.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import duckdb

try:
    from benchmarks import _util
except ImportError:  # run as a script from benchmarks/
    import _util  # type: ignore[no-redef]

FULL = {"concept": 1_000_000, "concept_relationship": 5_000_000, "concept_ancestor": 10_000_000}
TARGET_ROWS_PER_S = {"duckdb": 1_000_000, "postgresql": 200_000}
TARGET_PEAK_MB = 1024

DOMAINS = ["Condition", "Drug", "Measurement", "Observation", "Procedure", "Device", "Unit", "Meas Value",
           "Gender", "Race", "Visit", "Type Concept", "Metadata", "Spec Anatomic Site"]
VOCABS = ["SNOMED", "LOINC", "RxNorm", "RxNorm Extension", "ICD10CM", "ICD10", "ICDO3", "UCUM", "ATC", "CPT4",
          "HCPCS", "NDC", "Gender", "Race", "Visit", "Type Concept", "None"]
CLASSES = ["Clinical Finding", "Ingredient", "Clinical Drug", "Lab Test", "Procedure", "Unit", "Answer",
           "4-char billing code", "ICDO Condition", "Device", "Observable Entity", "Gender", "Race", "Visit"]
RELATIONSHIPS = [("Maps to", "Mapped from", 0, 0), ("Mapped from", "Maps to", 0, 0), ("Is a", "Subsumes", 1, 1),
                 ("Subsumes", "Is a", 1, 1), ("Has ingredient", "Ingredient of", 0, 1),
                 ("Ingredient of", "Has ingredient", 0, 1)]


def _sql_list(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def generate(dest: Path, n_concept: int, n_rel: int, n_anc: int) -> dict[str, int]:
    """Write Athena-layout files into ``dest``; returns rows per table."""
    dest.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("set preserve_insertion_order = false")
    opts = "(delimiter '\t', header, quote '', escape '')"
    d, v, c = _sql_list(DOMAINS), _sql_list(VOCABS), _sql_list(CLASSES)
    rels = _sql_list([r[0] for r in RELATIONSHIPS])
    # concept 0 exists (as in Athena): the metadata tables' *_concept_id point at it
    con.execute(f"""copy (select i as concept_id,
            case when i % 100000 = 7 then 'Concept "' || i || '" C:\\path' else 'Concept ' || i end as concept_name,
            {d}[1 + i % {len(DOMAINS)}] as domain_id, {v}[1 + i % {len(VOCABS)}] as vocabulary_id,
            {c}[1 + i % {len(CLASSES)}] as concept_class_id,
            case when i % 3 = 0 then '' when i % 3 = 1 then 'S' else 'C' end as standard_concept,
            'C' || i as concept_code, '19700101' as valid_start_date, '20991231' as valid_end_date,
            case when i % 50 = 0 then 'D' else '' end as invalid_reason
        from range({n_concept}) t(i)) to '{dest / "CONCEPT.csv"}' {opts}""")
    con.execute(f"""copy (select i % {n_concept} as concept_id_1, (i * 7919 + 13) % {n_concept} as concept_id_2,
            {rels}[1 + (i // {n_concept}) % {len(RELATIONSHIPS)}] as relationship_id,
            '19700101' as valid_start_date, '20991231' as valid_end_date, '' as invalid_reason
        from range({n_rel}) t(i)) to '{dest / "CONCEPT_RELATIONSHIP.csv"}' {opts}""")
    con.execute(f"""copy (select i % {n_concept} as ancestor_concept_id,
            (i * 104729 + 7) % {n_concept} as descendant_concept_id,
            1 + i % 3 as min_levels_of_separation, 1 + i % 3 + i % 2 as max_levels_of_separation
        from range({n_anc}) t(i)) to '{dest / "CONCEPT_ANCESTOR.csv"}' {opts}""")
    small = {
        "VOCABULARY.csv": ["vocabulary_id\tvocabulary_name\tvocabulary_reference\tvocabulary_version\t"
                           "vocabulary_concept_id", *[f"{x}\t{x}\tgenerated\tbench\t0" for x in VOCABS]],
        "DOMAIN.csv": ["domain_id\tdomain_name\tdomain_concept_id", *[f"{x}\t{x}\t0" for x in DOMAINS]],
        "CONCEPT_CLASS.csv": ["concept_class_id\tconcept_class_name\tconcept_class_concept_id",
                              *[f"{x}\t{x}\t0" for x in CLASSES]],
        "RELATIONSHIP.csv": ["relationship_id\trelationship_name\tis_hierarchical\tdefines_ancestry\t"
                             "reverse_relationship_id\trelationship_concept_id",
                             *[f"{a}\t{a}\t{h}\t{g}\t{b}\t0" for a, b, h, g in RELATIONSHIPS]],
    }
    for name, lines in small.items():
        (dest / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    con.close()
    return {"concept": n_concept, "concept_relationship": n_rel, "concept_ancestor": n_anc,
            "vocabulary": len(VOCABS), "domain": len(DOMAINS), "concept_class": len(CLASSES),
            "relationship": len(RELATIONSHIPS)}


def _load(url: str, vocab_dir: Path) -> _util.ChildResult:
    res = _util.run_child(_util.cli_args("--db", url, "-q", "init-db", "--vocab", str(vocab_dir)))
    if res.returncode != 0:
        raise RuntimeError(f"init-db --vocab failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
    return res


def run(quick: bool = False, repeat: int | None = None) -> list[dict]:
    """One row per database: the median of ``repeat`` loads (default 3; 1 in quick mode)."""
    scale = 20 if quick else 1
    repeat = repeat or int(os.environ.get("L059_BENCH_REPEAT", "1" if quick else "3"))
    sizes = {k: n // scale for k, n in FULL.items()}
    tmp = Path(tempfile.mkdtemp(prefix="l059_bench_vocab_"))
    rows_out: list[dict] = []
    try:
        with _util.timer() as gen:
            counts = generate(tmp / "athena", sizes["concept"], sizes["concept_relationship"],
                              sizes["concept_ancestor"])
        total = sum(counts.values())
        rows_out.append({"case": "vocab: generate Athena files", "rows": total, "seconds": gen["seconds"],
                         "rows_per_s": _util.rows_per_s(total, gen["seconds"]), "peak_mb": None,
                         "target": "", "ok": None})
        for db in ("duckdb", "postgresql"):
            if db == "postgresql" and (reason := _util.pg_available()):
                rows_out.append({"case": "vocab: init-db --vocab postgresql", "rows": total, "seconds": None,
                                 "rows_per_s": None, "peak_mb": None, "target": "", "ok": None,
                                 "note": f"skipped: {reason}"})
                continue
            runs: list[_util.ChildResult] = []
            load_before = os.getloadavg()[0]
            for i in range(repeat):
                if db == "duckdb":
                    path = tmp / f"bench_{i}.duckdb"
                    runs.append(_load(f"duckdb:///{path}", tmp / "athena"))
                    path.unlink(missing_ok=True)
                else:
                    with _util.pg_database() as url:
                        runs.append(_load(url, tmp / "athena"))
            secs = _util.median([r.seconds for r in runs])
            peak = max(r.peak_mb for r in runs)
            rate = _util.rows_per_s(total, secs)
            target = TARGET_ROWS_PER_S[db]
            rows_out.append({"case": f"vocab: init-db --vocab {db}", "rows": total, "seconds": secs,
                             "rows_per_s": rate, "peak_mb": peak,
                             "target": f">= {target:,.0f} rows/s, < {TARGET_PEAK_MB} MB"
                             + (" (full size only)" if quick else ""),
                             # quick sizes are dominated by start-up and table creation: no verdict
                             "ok": None if quick else rate >= target and peak < TARGET_PEAK_MB,
                             "note": f"median of {len(runs)}: " + ", ".join(f"{r.seconds:.1f}s" for r in runs)
                             + f"; client cpu {_util.median([r.cpu_seconds for r in runs]):.1f}s"
                             + f"; load avg {load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus"})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows_out
