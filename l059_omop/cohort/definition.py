"""The L059 cohort definition as data: its parameters (every number of COHORT.md, with its default), its
rules (read from the headers of ``sql/cohorts/l059/r*.sql``), the criteria that cannot be computed, the
concept sets, and the whole OHDSI SQL script assembled from the files.

The SQL files are the single source of the logic; this module only assembles, renders and translates them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from l059_omop import __version__
from l059_omop.db.engine import validate_identifier
from l059_omop.errors import BadInput
from l059_omop.resources import mappings_path, sql_path
from l059_omop.sqlrender import render, translate_script
from l059_omop.vocab.concept_sets import ConceptSet, Selector, load_concept_sets

COHORT_NAME = "ALTER-L059: ES-SCLC, anlotinib + PD-(L)1 maintenance after chemoimmunotherapy"
SQL_FOLDER = ("cohorts", "l059")

# Every number of COHORT.md, with its default (stored with each run, exported with the definition).
DEFAULT_PARAMETERS: dict[str, object] = {
    "study_start": dt.date(2022, 1, 1),       # entry: first-ever anlotinib in the study window
    "study_end": dt.date(2024, 12, 31),
    "induction_lookback_days": 14,            # induction start: first platinum on or after ES date - 14 d
    "min_age": 18,                            # R1
    "ls_free_interval_days": 183,             # R3: last treatment ended >= 183 d before the ES date
    "lesion_lookback_days": 42,               # R4: target lesion in [ES - 42 d, index]
    "min_lesion_mm": 10,                      # R4: >= 10 mm
    "min_cycles": 4,                          # R5: 4-6 platinum cycles
    "max_cycles": 6,
    "cycle_gap_days": 14,                     # R5: a new cycle >= 14 d after the previous counted one
    "ecog_lookback_days": 42,                 # R7: latest ECOG in [index - 42 d, index]
    "max_ecog": 2,                            # R7: 0-2
    "pd1_before_days": 7,                     # R8: PD-(L)1 in [index - 7 d, index + 28 d]
    "pd1_after_days": 28,
    "era_gap_days": 30,                       # R9: exposures merged across gaps <= 30 d
    "min_anlotinib_days": 42,                 # R9: era covers >= 42 d
    "autoimmune_lookback_days": 730,          # R12: [index - 730 d, index]
    "coagulation_lab_days": 30,               # R13: INR / APTT in [index - 30 d, index]
    "max_inr": 1.5,                           # R13: INR > 1.5 excludes
    "max_aptt_ratio": 1.5,                    # R13: APTT > 1.5 x ULN excludes
    "default_aptt_uln": 40,                   # R13: ULN in seconds where range_high is absent
    "bleeding_lookback_days": 180,            # R13: coagulation / bleeding condition in [index - 180 d, index]
}
MAX_CYCLE_STEPS = 10  # r05 follows at most ten cycles


@dataclass(frozen=True)
class NotComputable:
    criterion: str
    text: str
    reason: str


NOT_COMPUTABLE: tuple[NotComputable, ...] = (
    NotComputable("incl. 7", "Life expectancy >= 3 months",
                  "not computable from records: judging it from later survival would bias the outcomes"),
    NotComputable("excl. 6", "Investigator judgement",
                  "not computable from records: investigator judgement; the registry record's text is cut off"),
)


@dataclass(frozen=True)
class Rule:
    sequence: int          # 0-based, as Circe numbers inclusion rules (bit ``sequence`` of the mask)
    code: str              # R1 ... R13
    criterion: str         # the registry criterion it implements
    name: str
    description: str       # with @parameters
    file: str

    def describe(self, params: Mapping[str, object]) -> str:
        """The description with the run's parameter values."""
        return re.sub(r"@([A-Za-z_][A-Za-z0-9_]*)",
                      lambda m: _plain(params.get(m.group(1), m.group(0))), self.description)


def _plain(v: object) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


_HEADER = re.compile(r"^--\s*(rule|criterion|name|description):\s*(.+?)\s*$", re.M)


@lru_cache(maxsize=1)
def rules() -> tuple[Rule, ...]:
    """R1-R13 in attrition order, from the headers of the rule files."""
    folder = sql_path(*SQL_FOLDER)
    out = []
    for i, path in enumerate(sorted(folder.glob("r[0-9][0-9]_*.sql"))):
        head = dict(_HEADER.findall(path.read_text(encoding="utf-8")))
        missing = {"rule", "criterion", "name", "description"} - set(head)
        if missing:
            raise BadInput(f"rule file header lacks {sorted(missing)}", file=str(path))
        out.append(Rule(i, head["rule"], head["criterion"], head["name"], head["description"], path.name))
    return tuple(out)


def validate_parameters(overrides: Mapping[str, object] | None = None) -> dict[str, object]:
    """Defaults updated with ``overrides``; unknown names and wrong types are BadInput."""
    params = dict(DEFAULT_PARAMETERS)
    for k, v in (overrides or {}).items():
        if k not in DEFAULT_PARAMETERS:
            raise BadInput(f"unknown cohort parameter {k!r}; known: {', '.join(DEFAULT_PARAMETERS)}")
        default = DEFAULT_PARAMETERS[k]
        if isinstance(default, dt.date):
            if isinstance(v, str):
                try:
                    v = dt.date.fromisoformat(v)
                except ValueError:
                    raise BadInput(f"cohort parameter {k}: not a date (YYYY-MM-DD): {v!r}") from None
            if not isinstance(v, dt.date):
                raise BadInput(f"cohort parameter {k}: not a date: {v!r}")
            v = v if type(v) is dt.date else dt.date(v.year, v.month, v.day)
        elif isinstance(default, float):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise BadInput(f"cohort parameter {k}: not a number: {v!r}")
            v = float(v)
        else:
            if isinstance(v, bool) or not isinstance(v, int) and not (isinstance(v, float) and v.is_integer()):
                raise BadInput(f"cohort parameter {k}: not a whole number: {v!r}")
            v = int(v)
            if v < 0:
                raise BadInput(f"cohort parameter {k}: must not be negative: {v}")
        params[k] = v
    if params["study_start"] > params["study_end"]:
        raise BadInput("cohort parameters: study_start is after study_end")
    if not 1 <= params["min_cycles"] <= params["max_cycles"] < MAX_CYCLE_STEPS:
        raise BadInput(f"cohort parameters: need 1 <= min_cycles <= max_cycles <= {MAX_CYCLE_STEPS - 1}")
    return params


def parameters_json(params: Mapping[str, object]) -> str:
    return json.dumps({k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in params.items()},
                      sort_keys=True)


# --- concept sets -------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def concept_sets() -> tuple[ConceptSet, ...]:
    """The cohort's concept sets; the file prefix is the codeset id the SQL uses (checked here)."""
    folder = mappings_path("concept_sets")
    sets = load_concept_sets(folder)
    files = sorted(folder.glob("*.yaml"))
    for cs, path in zip(sets, files, strict=True):
        prefix = path.name.split("_", 1)[0]
        if not prefix.isdigit() or int(prefix) != cs.id:
            raise BadInput(f"concept set files must be numbered 01_, 02_, ... in order (codeset id {cs.id})",
                           file=str(path))
    return tuple(sets)


_SAFE_TEXT = re.compile(r"^[A-Za-z0-9 ._/\-+()',&]{1,255}$")


def _sql_text(value: str) -> str:
    if not _SAFE_TEXT.match(value):
        raise BadInput(f"concept selector text not allowed in SQL: {value!r}")
    return "'" + value.replace("'", "''") + "'"


def _selector_row(cs_id: int, sel: Selector, first: bool) -> str:
    def txt(v: str | None) -> str:
        lit = "NULL" if v is None else _sql_text(v)
        return f"CAST({lit} AS VARCHAR(255))" if first else lit
    cols = [str(cs_id), txt(sel.vocabulary_id if not sel.ingredient_name else None),
            txt(sel.concept_code if not sel.ingredient_name else None),
            txt(sel.ingredient_name.lower() if sel.ingredient_name else None),
            "1" if sel.descendants else "0", "1" if sel.exclude else "0"]
    if first:
        names = ["codeset_id", "vocabulary_id", "concept_code", "ingredient_name", "descendants", "excluded"]
        cols = [f"{c} AS {n}" for c, n in zip(cols, names, strict=True)]
    return "SELECT " + ", ".join(cols)


def codeset_sql() -> str:
    """One INSERT that materialises every concept set into the run's codeset table from the loaded
    vocabulary: the selectors (vocabulary and code, or ingredient name; never concept ids) as a constant
    table, joined once to concept and concept_ancestor. One flat statement, because engines with a
    per-statement or per-branch cost (Spark) pay for each."""
    rows = []
    for cs in concept_sets():
        for sel in cs.items:
            rows.append(_selector_row(cs.id, sel, not rows))
    selectors = "\n  UNION ALL ".join(rows)
    return f"""INSERT INTO @scratch_database_schema.@codeset_table (codeset_id, concept_id)
WITH selector AS (
  {selectors}
), matched AS (
  SELECT s.codeset_id, s.descendants, s.excluded, c.concept_id
  FROM selector s
  JOIN @vocabulary_database_schema.concept c ON c.vocabulary_id = s.vocabulary_id AND c.concept_code = s.concept_code
  UNION ALL
  SELECT s.codeset_id, s.descendants, s.excluded, c.concept_id
  FROM selector s
  JOIN @vocabulary_database_schema.concept c ON LOWER(c.concept_name) = s.ingredient_name
    AND c.concept_class_id = 'Ingredient' AND c.domain_id = 'Drug'
), expanded AS (
  SELECT codeset_id, excluded, concept_id FROM matched
  UNION ALL
  SELECT m.codeset_id, m.excluded, ca.descendant_concept_id
  FROM matched m
  JOIN @vocabulary_database_schema.concept_ancestor ca ON ca.ancestor_concept_id = m.concept_id
  WHERE m.descendants = 1
)
SELECT DISTINCT i.codeset_id, i.concept_id
FROM expanded i
LEFT JOIN expanded x ON x.codeset_id = i.codeset_id AND x.concept_id = i.concept_id AND x.excluded = 1
WHERE i.excluded = 0 AND x.concept_id IS NULL;
"""


def inclusion_names_sql(params: Mapping[str, object]) -> str:
    """cohort_inclusion rows (rule names) for this cohort id, replacing earlier ones."""
    rows = []
    for r in rules():
        rows.append(f"SELECT @target_cohort_id AS cohort_definition_id, {r.sequence} AS rule_sequence, "
                    f"{_sql_literal(r.code + ' ' + r.name)} AS name, {_sql_literal(r.describe(params))} AS description")
    return ("DELETE FROM @results_database_schema.cohort_inclusion WHERE cohort_definition_id = @target_cohort_id;\n"
            "INSERT INTO @results_database_schema.cohort_inclusion (cohort_definition_id, rule_sequence, name, description)\n"
            + "\nUNION ALL\n".join(rows) + ";\n")


def _sql_literal(text: str) -> str:
    if "@" in text or "\\" in text:
        raise BadInput(f"text not allowed in a SQL literal: {text!r}")
    return "'" + text.replace("'", "''") + "'"


# --- the script ---------------------------------------------------------------------------------------------

SCRATCH_TABLES = ("codeset", "entry", "events", "values", "qualified", "inclusion", "cycle", "mask")


def scratch_names(prefix: str) -> dict[str, str]:
    return {f"{t}_table": validate_identifier(f"{prefix}{t}", "scratch table name") for t in SCRATCH_TABLES}


@dataclass(frozen=True)
class Step:
    name: str   # file name (or generated part)
    sql: str    # OHDSI SQL (SQL Server flavour with @parameters)


def read_step(name: str) -> str:
    return sql_path(*SQL_FOLDER, name).read_text(encoding="utf-8")


def steps(params: Mapping[str, object] | None = None) -> list[Step]:
    """The build in order, as OHDSI SQL; the last step drops the scratch tables."""
    params = validate_parameters(params)
    out = [Step("00_scratch_tables.sql", read_step("00_scratch_tables.sql")),
           Step("01_codesets (generated from mappings/concept_sets)", codeset_sql()),
           Step("02_entry_events.sql", read_step("02_entry_events.sql")),
           Step("03_cohort_events.sql", read_step("03_cohort_events.sql")),
           Step("04_index_dates.sql", read_step("04_index_dates.sql"))]
    out += [Step(r.file, read_step(r.file)) for r in rules()]
    out += [Step("80_inclusion_masks.sql", read_step("80_inclusion_masks.sql")),
            Step("85_inclusion_names (generated from the rule headers)", inclusion_names_sql(params)),
            Step("90_cohort_rows.sql", read_step("90_cohort_rows.sql")),
            Step("91_inclusion_stats.sql", read_step("91_inclusion_stats.sql")),
            Step("99_drop_scratch_tables.sql", read_step("99_drop_scratch_tables.sql"))]
    return out


def definition_sha256() -> str:
    """Hash of everything that defines the cohort: the SQL files and the concept-set files."""
    h = hashlib.sha256()
    for path in sorted(sql_path(*SQL_FOLDER).glob("*.sql")) + sorted(mappings_path("concept_sets").glob("*.yaml")):
        h.update(path.name.encode())
        h.update(path.read_bytes().replace(b"\r\n", b"\n"))
    return h.hexdigest()


def render_values(cdm_schema: str = "cdm", results_schema: str = "results", vocabulary_schema: str | None = None,
                  scratch_schema: str | None = None, cohort_id: int = 1059, cohort_table: str = "cohort",
                  prefix: str = "l059_", params: Mapping[str, object] | None = None) -> dict[str, object]:
    """Every @parameter of the script with its value."""
    if isinstance(cohort_id, bool) or not isinstance(cohort_id, int) or cohort_id < 0:
        raise BadInput(f"cohort id must be a non-negative whole number, not {cohort_id!r}")
    values: dict[str, object] = dict(validate_parameters(params))
    values.update(cdm_database_schema=validate_identifier(cdm_schema),
                  vocabulary_database_schema=validate_identifier(vocabulary_schema or cdm_schema),
                  results_database_schema=validate_identifier(results_schema),
                  scratch_database_schema=validate_identifier(scratch_schema or results_schema),
                  target_cohort_table=validate_identifier(cohort_table, "cohort table name"),
                  target_cohort_id=cohort_id)
    values.update(scratch_names(prefix))
    return values


def ohdsi_sql(values: Mapping[str, object] | None = None, rendered: bool = True) -> str:
    """The whole script as one OHDSI SQL text (SQL Server flavour), rendered with ``values`` or, with
    ``rendered=False``, with its @parameters left in (for SqlRender)."""
    params = {k: v for k, v in (values or {}).items() if k in DEFAULT_PARAMETERS}
    text = "\n".join(f"-- {s.name}\n{s.sql.rstrip()}\n" for s in steps(params))
    return render(text, values or render_values()) if rendered else text


def translated_steps(dialect: str, values: Mapping[str, object]) -> list[tuple[str, list[str]]]:
    """(step name, statements) for ``dialect``."""
    params = {k: v for k, v in values.items() if k in DEFAULT_PARAMETERS}
    return [(s.name, translate_script(render(s.sql, values), dialect)) for s in steps(params)]


def duckdb_temporary_scratch(steps: list[tuple[str, list[str]]],
                             values: Mapping[str, object]) -> list[tuple[str, list[str]]]:
    """The DuckDB statements with the run's scratch tables as TEMP tables of the build's connection.

    A DuckDB table in the database file is compressed and written out as it fills: the 56 million event
    rows of a 1M-person CDM cost more to store than every rule costs to read them. Temporary tables stay in
    memory (spilling to DuckDB's temp directory past its memory limit), vanish with the connection even when
    the process is killed, and are still written and read in the build's one transaction. Only the table
    references change (``schema.l059_<run>_x`` -> ``temp.main.l059_<run>_x``); the OHDSI SQL is the same.
    """
    schema = values["scratch_database_schema"]
    names = [str(values[f"{t}_table"]) for t in SCRATCH_TABLES]
    create = re.compile(rf"\bCREATE TABLE {schema}\.({'|'.join(names)})\b")
    ref = re.compile(rf"\b{schema}\.({'|'.join(names)})\b")
    out = []
    for name, stmts in steps:
        done = [ref.sub(r"temp.main.\1", create.sub(r"CREATE TEMPORARY TABLE \1", s)) for s in stmts]
        left = [s for s in done if ref.search(s)]
        if left:  # a reference the rewrite missed would write a persistent table: refuse rather than mix
            raise RuntimeError(f"cohort step {name}: scratch table reference not rewritten: {left[0][:200]}")
        out.append((name, done))
    return out


def render_cohort_sql(dialect: str, cdm_schema: str = "cdm", results_schema: str = "results",
                      vocabulary_schema: str | None = None, scratch_schema: str | None = None,
                      cohort_id: int = 1059, cohort_table: str = "cohort", prefix: str = "l059_",
                      params: Mapping[str, object] | None = None) -> str:
    """The complete cohort script for one dialect, as text (what ``render-sql`` writes)."""
    values = render_values(cdm_schema, results_schema, vocabulary_schema, scratch_schema, cohort_id, cohort_table,
                           prefix, params)
    lines = [f"-- {COHORT_NAME}",
             f"-- l059-omop {__version__}; dialect {dialect}; definition sha256 {definition_sha256()}",
             f"-- parameters: {parameters_json(validate_parameters(params))}", ""]
    for name, stmts in translated_steps(dialect, values):
        lines.append(f"-- {name}")
        lines.extend(s.rstrip() + ";" for s in stmts)
        lines.append("")
    return "\n".join(lines)


def source_files() -> list[Path]:
    return sorted(sql_path(*SQL_FOLDER).glob("*.sql"))
