"""The declarative mapping of hospital extracts to OMOP (a YAML file under ``mappings/records/``).

A site describes its extracts once: which file or Excel sheet becomes which OMOP table, which column fills
which field, which vocabulary or local code table a code column uses, date formats, units. Everything is
checked here, before a single row is read, so a wrong spec fails with the spec file, line and key instead
of half-loading a database. ``docs/records.md`` documents the format; ``mappings/records/synth_site.yaml``
is the template.
"""

from __future__ import annotations

import codecs
import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from l059_omop.db import cdm_spec
from l059_omop.errors import BadInput
from l059_omop.etl.model import type_concept as default_type_concept
from l059_omop.records.codes import CodeTable, UnitTable, read_code_table, read_unit_table
from l059_omop.records.yamlmarks import load_with_lines

SPEC_VERSION = 1

TOP_KEYS = {"l059_records_mapping", "site", "description", "defaults", "patient_id", "code_tables", "units",
            "sources"}
DEFAULT_KEYS = {"encoding", "delimiter", "date_format", "type_concept_id", "chunk_rows"}
SOURCE_KEYS = {"file", "sheet", "encoding", "delimiter", "date_format", "patient_id", "key", "outputs",
               "description"}
OUTPUT_KEYS = {"table", "fields", "when", "description"}
FIELD_KEYS = {"column", "value", "ref", "format", "part", "vocabulary", "code_table", "unmapped", "range", "dose",
              "unit_column", "units", "strength_from", "default", "description", "required"}
WHEN_KEYS = {"column", "present", "in", "not_in"}
DATE_PARTS = ("year", "month", "day")
RANGE_PARTS = ("low", "high")
DOSE_PARTS = ("strength_mg", "days_supply", "quantity", "doses_per_day", "cycle_days")
# Tables the loader fills itself or that do not come from source rows.
NOT_MAPPABLE = set(cdm_spec.VOCABULARY_TABLES) | {"cdm_source", "metadata", "fact_relationship", "cohort",
                                                  "cohort_definition", "observation_period"}
# Fields filled by the loader: the row's own id and the person link.
_ALLOWED_DIRECTIVES = set("aAbBdHIjmMpSyYfzZ%")
_DIRECTIVE = re.compile(r"%(.)")


@dataclass(frozen=True)
class FieldSpec:
    """How one OMOP field is filled: from a column (converted by the field's type), a constant or a ref."""

    name: str
    line: int
    column: str | None = None
    value: Any = None
    ref: str | None = None
    formats: tuple[str, ...] = ()
    part: str | None = None
    vocabulary: str | None = None
    code_table: str | None = None
    unmapped: str = "quarantine"  # local code tables: 'quarantine' the row or write 'zero'
    range: str | None = None
    dose: str | None = None
    unit_column: str | None = None
    units: bool = False
    strength_from: str | None = None
    default: Any = None
    required: bool | None = None

    def columns(self) -> list[str]:
        return [c for c in (self.column, self.unit_column, self.strength_from) if c]


@dataclass(frozen=True)
class WhenSpec:
    """Which source rows make a row of an output (others make none: e.g. death only with a death date)."""

    column: str
    line: int
    present: bool | None = None
    values_in: tuple[str, ...] | None = None
    values_not_in: tuple[str, ...] | None = None


@dataclass(frozen=True)
class OutputSpec:
    name: str
    table: str
    line: int
    fields: dict[str, FieldSpec]
    when: WhenSpec | None = None

    @property
    def id_field(self) -> str | None:
        pk = [f.name for f in cdm_spec.tables()[self.table] if f.primary_key]
        return pk[0] if pk else None


@dataclass(frozen=True)
class SourceSpec:
    name: str
    line: int
    file: str | None
    sheet: str | None
    encoding: str
    delimiter: str
    patient_id: str | None
    key: tuple[str, ...]
    outputs: dict[str, OutputSpec]
    lines: dict[str, int] = field(default_factory=dict)  # column -> first spec line naming it

    def matches(self, path: Path) -> bool:
        return self.file is not None and fnmatch.fnmatch(path.name, self.file)

    def columns(self) -> dict[str, int]:
        """Every source column the spec reads, with the spec line naming it first."""
        return dict(self.lines)


@dataclass
class MappingSpec:
    path: Path
    site: str
    description: str
    sources: dict[str, SourceSpec]
    code_tables: dict[str, CodeTable]
    units: UnitTable | None
    type_concept_id: int
    chunk_rows: int

    def where(self, line: int | None) -> str:
        return f"{self.path}:{line}" if line else str(self.path)


class SpecError(BadInput):
    """A mapping spec that cannot be used; the message starts with ``file:line:``."""

    def __init__(self, spec: Path | str, line: int | None, key: str, message: str) -> None:
        loc = f"{spec}:{line}" if line else str(spec)
        super().__init__(f"{loc}: {key}: {message}" if key else f"{loc}: {message}")
        self.spec, self.line, self.key = str(spec), line, key


def _key(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class _Ctx:
    def __init__(self, path: Path, lines: dict[tuple, int]) -> None:
        self.path, self.lines = path, lines

    def line(self, path: tuple) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def fail(self, path: tuple, message: str) -> SpecError:
        return SpecError(self.path, self.line(path), _key(path), message)

    def mapping(self, value: Any, path: tuple, allowed: set[str] | None = None) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping (key: value), got {type(value).__name__}")
        if allowed is not None:
            for k in value:
                if k not in allowed:
                    raise self.fail((*path, k), f"unknown key {k!r}; expected one of {', '.join(sorted(allowed))}")
        return value

    def string(self, value: Any, path: tuple) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, "expected a non-empty text")
        return value

    def strings(self, value: Any, path: tuple) -> tuple[str, ...]:
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not value:
            raise self.fail(path, "expected a text or a non-empty list of texts")
        return tuple(self.string(v, (*path, i)) for i, v in enumerate(value))


def check_date_format(fmt: str) -> str | None:
    """Why ``fmt`` is not a usable strftime date format (None when it is)."""
    stripped = fmt.replace("%%", "")
    if stripped.endswith("%"):
        return "a lone % at the end"
    directives = _DIRECTIVE.findall(stripped)
    bad = [d for d in directives if d not in _ALLOWED_DIRECTIVES]
    if bad:
        return f"unknown directive %{bad[0]} (use strftime directives such as %Y-%m-%d)"
    if not ({"Y", "y"} & set(directives)):
        return "no year (%Y or %y): write e.g. %Y-%m-%d, %Y/%m/%d, %Y年%m月%d日"
    return None


def _encoding(ctx: _Ctx, value: Any, path: tuple) -> str:
    enc = ctx.string(value, path)
    try:
        codecs.lookup(enc)
    except LookupError:
        raise ctx.fail(path, f"unknown encoding {enc!r} (e.g. utf-8, utf-8-sig, gb18030)") from None
    return enc


def _formats(ctx: _Ctx, value: Any, path: tuple) -> tuple[str, ...]:
    fmts = ctx.strings(value, path)
    for i, f in enumerate(fmts):
        why = check_date_format(f)
        if why:
            raise ctx.fail((*path, i) if isinstance(value, list) else path, f"bad date format {f!r}: {why}")
    return fmts


def _kind(table: str, name: str) -> str:
    f = next(f for f in cdm_spec.tables()[table] if f.name == name)
    t = f.datatype
    if t in ("integer", "float"):
        return "int" if t == "integer" else "float"
    if t in ("date", "datetime"):
        return t
    return "text"


def _field(ctx: _Ctx, table: str, name: str, raw: Any, path: tuple, default_formats: tuple[str, ...],
           code_tables: dict[str, CodeTable]) -> FieldSpec:
    line = ctx.line(path)
    if not isinstance(raw, dict):  # shorthand: `field: column_name` or a constant number
        if isinstance(raw, str):
            raw = {"column": raw}
        elif isinstance(raw, (int, float)) or raw is None:
            raw = {"value": raw}
        else:
            raise ctx.fail(path, "expected a column name, a constant or a mapping")
    ctx.mapping(raw, path, FIELD_KEYS)
    sources = [k for k in ("column", "value", "ref") if k in raw]
    if len(sources) != 1:
        raise ctx.fail(path, "give exactly one of 'column', 'value' or 'ref'")
    kind = _kind(table, name)
    spec: dict[str, Any] = {"name": name, "line": line}
    if "column" in raw:
        spec["column"] = ctx.string(raw["column"], (*path, "column"))
    if "value" in raw:
        spec["value"] = raw["value"]
        if kind in ("int", "float") and raw["value"] is not None and not isinstance(raw["value"], (int, float)):
            raise ctx.fail((*path, "value"), f"{table}.{name} is a number; got {raw['value']!r}")
    if "ref" in raw:
        spec["ref"] = ctx.string(raw["ref"], (*path, "ref"))
        if kind != "int":
            raise ctx.fail((*path, "ref"), f"'ref' gives a row id; {table}.{name} is not an id field")
    if "format" in raw:
        spec["formats"] = _formats(ctx, raw["format"], (*path, "format"))
    elif kind in ("date", "datetime") or "part" in raw:
        spec["formats"] = default_formats
    if "format" in raw and kind not in ("date", "datetime") and "part" not in raw:
        raise ctx.fail((*path, "format"), f"'format' is for dates; {table}.{name} is not a date field")
    if "part" in raw:
        if raw["part"] not in DATE_PARTS:
            raise ctx.fail((*path, "part"), f"expected one of {', '.join(DATE_PARTS)}")
        if kind != "int":
            raise ctx.fail((*path, "part"), f"{table}.{name} is not an integer field")
        spec["part"] = raw["part"]
    if "vocabulary" in raw and "code_table" in raw:
        raise ctx.fail(path, "give 'vocabulary' or 'code_table', not both")
    if "vocabulary" in raw:
        spec["vocabulary"] = ctx.string(raw["vocabulary"], (*path, "vocabulary"))
        if not name.endswith("concept_id"):
            raise ctx.fail((*path, "vocabulary"), f"a code lookup fills a *_concept_id field, not {name}")
    if "code_table" in raw:
        ct = ctx.string(raw["code_table"], (*path, "code_table"))
        if ct not in code_tables:
            known = ", ".join(sorted(code_tables)) or "none"
            raise ctx.fail((*path, "code_table"), f"unknown code table {ct!r} (declared under code_tables: {known})")
        if not name.endswith("concept_id"):
            raise ctx.fail((*path, "code_table"), f"a code table fills a *_concept_id field, not {name}")
        spec["code_table"] = ct
    if "unmapped" in raw:
        if raw["unmapped"] not in ("quarantine", "zero", 0):
            raise ctx.fail((*path, "unmapped"), "expected 'quarantine' or 'zero'")
        spec["unmapped"] = "zero" if raw["unmapped"] in ("zero", 0) else "quarantine"
    if "range" in raw:
        if raw["range"] not in RANGE_PARTS:
            raise ctx.fail((*path, "range"), f"expected one of {', '.join(RANGE_PARTS)}")
        if kind != "float":
            raise ctx.fail((*path, "range"), f"{table}.{name} is not a number field")
        spec["range"] = raw["range"]
    if "dose" in raw:
        if raw["dose"] not in DOSE_PARTS:
            raise ctx.fail((*path, "dose"), f"expected one of {', '.join(DOSE_PARTS)}")
        if kind not in ("int", "float"):
            raise ctx.fail((*path, "dose"), f"{table}.{name} is not a number field")
        spec["dose"] = raw["dose"]
    if "unit_column" in raw:
        spec["unit_column"] = ctx.string(raw["unit_column"], (*path, "unit_column"))
        if kind != "float":
            raise ctx.fail((*path, "unit_column"), f"unit conversion applies to numbers; {table}.{name} is not one")
    if "units" in raw:
        if raw["units"] is not True:
            raise ctx.fail((*path, "units"), "expected 'units: true'")
        if not name.endswith("unit_concept_id"):
            raise ctx.fail((*path, "units"), f"'units' fills a unit_concept_id field, not {name}")
        spec["units"] = True
    if "strength_from" in raw:
        spec["strength_from"] = ctx.string(raw["strength_from"], (*path, "strength_from"))
        if "code_table" not in spec and "vocabulary" not in spec:
            raise ctx.fail((*path, "strength_from"), "'strength_from' refines a code lookup: add 'code_table'")
    if "default" in raw:
        spec["default"] = raw["default"]
    if "required" in raw:
        if not isinstance(raw["required"], bool):
            raise ctx.fail((*path, "required"), "expected true or false")
        spec["required"] = raw["required"]
    if kind == "text" and any(k in spec for k in ("range", "dose", "part")):
        raise ctx.fail(path, f"{table}.{name} is a text field")
    return FieldSpec(**spec)


def _when(ctx: _Ctx, raw: Any, path: tuple) -> WhenSpec:
    ctx.mapping(raw, path, WHEN_KEYS)
    if "column" not in raw:
        raise ctx.fail(path, "'when' needs a 'column'")
    col = ctx.string(raw["column"], (*path, "column"))
    present = raw.get("present")
    if present is not None and not isinstance(present, bool):
        raise ctx.fail((*path, "present"), "expected true or false")
    vin = tuple(str(v) for v in ctx.strings([str(x) for x in raw["in"]] if isinstance(raw.get("in"), list)
                                            else raw["in"], (*path, "in"))) if "in" in raw else None
    vnot = tuple(str(v) for v in ctx.strings([str(x) for x in raw["not_in"]] if isinstance(raw.get("not_in"), list)
                                             else raw["not_in"], (*path, "not_in"))) if "not_in" in raw else None
    if present is None and vin is None and vnot is None:
        raise ctx.fail(path, "'when' needs 'present', 'in' or 'not_in'")
    return WhenSpec(col, ctx.line(path) or 0, present, vin, vnot)


# Fields the loader always fills: the row id, the person link, and type concepts (default: the
# 'default' of mappings/type_concepts.csv, EHR).
def auto_fields(table: str) -> set[str]:
    names = {f.name for f in cdm_spec.tables()[table]}
    out = {f.name for f in cdm_spec.tables()[table] if f.primary_key}
    if "person_id" in names:
        out.add("person_id")
    out |= {n for n in names if n.endswith("_type_concept_id")}
    if table == "drug_exposure":
        out.add("drug_exposure_end_date")  # start + days_supply - 1, else the start date
    return out


def _output(ctx: _Ctx, name: str, raw: Any, path: tuple, default_formats: tuple[str, ...],
            code_tables: dict[str, CodeTable]) -> OutputSpec:
    ctx.mapping(raw, path, OUTPUT_KEYS)
    if "table" not in raw:
        raise ctx.fail(path, "an output needs 'table' (an OMOP CDM table, e.g. measurement)")
    table = ctx.string(raw["table"], (*path, "table")).lower()
    tables = cdm_spec.tables()
    if table not in tables:
        raise ctx.fail((*path, "table"), f"unknown OMOP CDM v5.4 table {table!r}")
    if table in NOT_MAPPABLE:
        raise ctx.fail((*path, "table"), f"{table} is not filled from source rows (the loader derives "
                                         "observation_period; vocabulary tables come from init-db)")
    fields_raw = ctx.mapping(raw.get("fields", {}), (*path, "fields"))
    known = {f.name for f in tables[table]}
    fields: dict[str, FieldSpec] = {}
    pk = {f.name for f in tables[table] if f.primary_key}
    for fname, fraw in fields_raw.items():
        fpath = (*path, "fields", fname)
        if fname not in known:
            close = [k for k in known if k.split("_")[0] == str(fname).split("_")[0]][:4]
            hint = f" (did you mean {', '.join(sorted(close))}?)" if close else ""
            raise ctx.fail(fpath, f"unknown field {fname!r} of OMOP table {table}{hint}")
        if fname in pk or fname == "person_id" or (table == "person" and fname == "person_source_value"):
            raise ctx.fail(fpath, f"{fname} is filled by the loader (deterministic ids; the person by a pseudonym "
                                  "of patient_id, so the hospital id never lands in OMOP)")
        fields[fname] = _field(ctx, table, fname, fraw, fpath, default_formats, code_tables)
    missing = [f.name for f in tables[table] if f.required and f.name not in fields
               and f.name not in auto_fields(table) and not f.name.endswith("_concept_id")]
    if missing:
        raise ctx.fail((*path, "fields"), f"required field(s) of {table} not mapped: {', '.join(missing)}")
    when = _when(ctx, raw["when"], (*path, "when")) if "when" in raw else None
    return OutputSpec(name, table, ctx.line(path) or 0, fields, when)


def _source(ctx: _Ctx, name: str, raw: Any, path: tuple, defaults: dict, patient_default: str | None,
            code_tables: dict[str, CodeTable]) -> SourceSpec:
    ctx.mapping(raw, path, SOURCE_KEYS)
    if ("file" in raw) == ("sheet" in raw) and "file" not in raw:
        raise ctx.fail(path, "a source needs 'file' (a file name pattern, e.g. labs*.csv) and/or 'sheet'")
    file = ctx.string(raw["file"], (*path, "file")) if "file" in raw else None
    sheet = ctx.string(str(raw["sheet"]), (*path, "sheet")) if "sheet" in raw else None
    encoding = _encoding(ctx, raw["encoding"], (*path, "encoding")) if "encoding" in raw else defaults["encoding"]
    delimiter = ctx.string(raw.get("delimiter", defaults["delimiter"]), (*path, "delimiter"))
    if len(delimiter) != 1 and delimiter != "\\t":
        raise ctx.fail((*path, "delimiter"), "expected one character")
    delimiter = "\t" if delimiter == "\\t" else delimiter
    formats = _formats(ctx, raw["date_format"], (*path, "date_format")) if "date_format" in raw \
        else defaults["date_format"]
    patient = raw.get("patient_id", patient_default)
    if patient is not None:
        patient = ctx.string(patient, (*path, "patient_id"))
    key = ctx.strings(raw["key"], (*path, "key")) if "key" in raw else ()
    outs_raw = ctx.mapping(raw.get("outputs"), (*path, "outputs"))
    if not outs_raw:
        raise ctx.fail((*path, "outputs"), "a source needs at least one output")
    outputs = {str(k): _output(ctx, str(k), v, (*path, "outputs", k), formats, code_tables)
               for k, v in outs_raw.items()}
    lines: dict[str, int] = {}

    def note(col: str | None, p: tuple) -> None:
        if col and col not in lines:
            lines[col] = ctx.line(p) or 0

    for i, k in enumerate(key):
        note(k, (*path, "key", i) if isinstance(raw["key"], list) else (*path, "key"))
    needs_person = False
    for oname, out in outputs.items():
        if "person_id" in {f.name for f in cdm_spec.tables()[out.table]}:
            needs_person = True
        if out.when:
            note(out.when.column, (*path, "outputs", oname, "when", "column"))
        for fname, f in out.fields.items():
            fp = (*path, "outputs", oname, "fields", fname)
            note(f.column, (*fp, "column") if (*fp, "column") in ctx.lines else fp)
            note(f.unit_column, (*fp, "unit_column"))
            note(f.strength_from, (*fp, "strength_from"))
            if f.ref is not None:
                if f.ref not in outputs or f.ref == oname:
                    raise ctx.fail((*fp, "ref"), f"'ref' names another output of this source; got {f.ref!r}")
                if outputs[f.ref].id_field is None:
                    raise ctx.fail((*fp, "ref"), f"output {f.ref!r} has no row id")
    if needs_person:
        if patient is None:
            raise ctx.fail(path, "rows of this source belong to a patient: give 'patient_id' (the column of the "
                                 "hospital patient id), here or at the top of the spec")
        note(patient, (*path, "patient_id") if "patient_id" in raw else ("patient_id",))
    return SourceSpec(name, ctx.line(path) or 0, file, sheet, encoding, delimiter, patient, key, outputs, lines)


def load_spec(path: str | Path) -> MappingSpec:
    """Read and validate a mapping spec; raise :class:`SpecError` naming file, line and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"mapping spec {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read mapping spec {path}: {exc}") from None
    try:
        data, lines = load_with_lines(text, str(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SpecError(path, mark.line + 1 if mark else None, "", f"not valid YAML: {getattr(exc, 'problem', exc)}") \
            from None
    ctx = _Ctx(path, lines)
    ctx.mapping(data, (), TOP_KEYS)
    version = data.get("l059_records_mapping")
    if version != SPEC_VERSION:
        raise ctx.fail(("l059_records_mapping",), f"expected 'l059_records_mapping: {SPEC_VERSION}' (the spec format "
                                                  f"version), got {version!r}")
    site = ctx.string(data.get("site"), ("site",))
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", site):
        raise ctx.fail(("site",), "use letters, digits, '_', '.', '-' (it names the source system in etl tables)")
    dflt_raw = ctx.mapping(data.get("defaults", {}), ("defaults",), DEFAULT_KEYS)
    defaults = {
        "encoding": _encoding(ctx, dflt_raw["encoding"], ("defaults", "encoding")) if "encoding" in dflt_raw
        else "utf-8-sig",
        "delimiter": dflt_raw.get("delimiter", ","),
        "date_format": _formats(ctx, dflt_raw["date_format"], ("defaults", "date_format"))
        if "date_format" in dflt_raw else ("%Y-%m-%d",),
    }
    type_concept = dflt_raw["type_concept_id"] if "type_concept_id" in dflt_raw else default_type_concept()
    if not isinstance(type_concept, int):
        raise ctx.fail(("defaults", "type_concept_id"), "expected a concept id")
    chunk_rows = dflt_raw.get("chunk_rows", 50_000)
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ctx.fail(("defaults", "chunk_rows"), "expected a positive integer")
    code_tables: dict[str, CodeTable] = {}
    for name, rel in ctx.mapping(data.get("code_tables", {}), ("code_tables",)).items():
        p = ("code_tables", name)
        file = path.parent / ctx.string(rel, p)
        if not file.is_file():
            raise ctx.fail(p, f"code table file {file} not found")
        code_tables[str(name)] = read_code_table(file, str(name))
    units = None
    if "units" in data:
        file = path.parent / ctx.string(data["units"], ("units",))
        if not file.is_file():
            raise ctx.fail(("units",), f"unit table file {file} not found")
        units = read_unit_table(file)
    patient = ctx.string(data["patient_id"], ("patient_id",)) if "patient_id" in data else None
    srcs_raw = ctx.mapping(data.get("sources"), ("sources",))
    if not srcs_raw:
        raise ctx.fail(("sources",), "no sources")
    sources = {str(k): _source(ctx, str(k), v, ("sources", k), defaults, patient, code_tables)
               for k, v in srcs_raw.items()}
    for s in sources.values():
        for o in s.outputs.values():
            for f in o.fields.values():
                if f.units and units is None:
                    raise ctx.fail(("units",), "fields use 'units: true' but the spec has no 'units' table")
    return MappingSpec(path, site, str(data.get("description") or ""), sources, code_tables, units,
                       type_concept, chunk_rows)


def check_header(spec: MappingSpec, source: SourceSpec, header: list[str], file: str) -> None:
    """Fail (naming the spec line) when the spec reads a column the file does not have."""
    have = set(header)
    for col, line in source.columns().items():
        if col not in have:
            shown = ", ".join(header[:12]) + (" ..." if len(header) > 12 else "")
            raise SpecError(spec.path, line, f"sources.{source.name}",
                            f"column {col!r} is not in {file} (its columns: {shown})")
