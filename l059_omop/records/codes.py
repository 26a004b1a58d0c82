"""Local code tables (source_to_concept_map-style CSV) and unit tables of a site mapping.

Hospital extracts name drugs, responses and sexes in local codes and words (安罗替尼胶囊 12mg, 部分缓解, 男);
the site lists them once in a CSV beside its spec, never in code. Matching ignores case, width (full-width
ＰＲ = PR) and whitespace, so "安罗替尼胶囊 12mg" and "安罗替尼胶囊12MG" are one entry.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from l059_omop.errors import BadInput

_WS = re.compile(r"\s+")

CODE_COLUMNS = ("source_code", "source_concept_id", "source_vocabulary_id", "source_code_description",
                "target_concept_id", "target_vocabulary_id", "valid_start_date", "valid_end_date", "invalid_reason")
UNIT_COLUMNS = ("source_unit", "ucum_code", "factor", "note")


def normalize(text: str) -> str:
    """The matching key of a source code or text: NFKC, case-folded, without whitespace."""
    return _WS.sub("", unicodedata.normalize("NFKC", text)).casefold()


@dataclass(frozen=True)
class CodeEntry:
    source_code: str
    target_concept_id: int
    source_concept_id: int
    line: int


@dataclass
class CodeTable:
    name: str
    path: Path
    entries: dict[str, CodeEntry] = field(default_factory=dict)

    def get(self, text: str) -> CodeEntry | None:
        return self.entries.get(normalize(text))

    def target_ids(self) -> set[int]:
        return {e.target_concept_id for e in self.entries.values()} | {
            e.source_concept_id for e in self.entries.values() if e.source_concept_id}


@dataclass(frozen=True)
class UnitEntry:
    source_unit: str
    ucum_code: str
    factor: float
    line: int


@dataclass
class UnitTable:
    path: Path
    entries: dict[str, UnitEntry] = field(default_factory=dict)

    def get(self, text: str) -> UnitEntry | None:
        return self.entries.get(normalize(text))


def _int(value: str, path: Path, line: int, column: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise BadInput(f"{path}:{line}: column {column}: expected a concept id, got {value!r}") from None


def _rows(path: Path, required: tuple[str, ...], known: tuple[str, ...]):
    try:
        fh = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc}") from None
    with fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        for col in required:
            if col not in header:
                raise BadInput(f"{path}:1: missing column {col!r} (columns: {', '.join(header)})")
        for col in header:
            if col not in known:
                raise BadInput(f"{path}:1: unknown column {col!r}; expected {', '.join(known)}")
        try:
            for row in reader:
                yield reader.line_num, row
        except UnicodeDecodeError as exc:
            raise BadInput(f"{path}: not UTF-8 ({exc.reason})") from None


def read_code_table(path: Path, name: str) -> CodeTable:
    """Read a source_to_concept_map-style CSV (UTF-8): source_code -> target_concept_id, one per code."""
    table = CodeTable(name, path)
    for line, row in _rows(path, ("source_code", "target_concept_id"), CODE_COLUMNS):
        if (row.get("invalid_reason") or "").strip():
            continue
        code = (row["source_code"] or "").strip()
        if not code:
            raise BadInput(f"{path}:{line}: empty source_code")
        target = _int(row["target_concept_id"] or "", path, line, "target_concept_id")
        source = _int(row.get("source_concept_id") or "0", path, line, "source_concept_id")
        key = normalize(code)
        prev = table.entries.get(key)
        if prev and prev.target_concept_id != target:
            raise BadInput(f"{path}:{line}: {code!r} maps to {target} here and to {prev.target_concept_id} "
                           f"on line {prev.line} (codes match ignoring case, width and spaces)")
        table.entries.setdefault(key, CodeEntry(code, target, source, line))
    return table


def read_unit_table(path: Path) -> UnitTable:
    """Read a unit table (UTF-8 CSV): source_unit -> UCUM code and the factor into that unit."""
    table = UnitTable(path)
    for line, row in _rows(path, ("source_unit", "ucum_code"), UNIT_COLUMNS):
        unit = (row["source_unit"] or "").strip()
        ucum = (row["ucum_code"] or "").strip()
        if not ucum:
            raise BadInput(f"{path}:{line}: empty ucum_code")
        try:
            factor = float(row.get("factor") or 1)
        except ValueError:
            raise BadInput(f"{path}:{line}: column factor: expected a number, got {row.get('factor')!r}") from None
        key = normalize(unit)
        prev = table.entries.get(key)
        if prev and (prev.ucum_code, prev.factor) != (ucum, factor):
            raise BadInput(f"{path}:{line}: unit {unit!r} is already defined on line {prev.line}")
        table.entries.setdefault(key, UnitEntry(unit, ucum, factor, line))
    return table
