"""The aggregate result format a site sends back, and the privacy scan every result file passes.

``results.zip`` holds ``manifest.json`` and CSV files with fixed columns (``FILES``); there is no column
for a person, a date or free text beyond rule, term and subgroup names. ``scan`` checks a result set (or a
zip, or a folder of pooled output) for anything person-level: unknown files or columns, dates, person ids,
and (with suppression on) counts below min_cell_count.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from l059_omop.errors import BadInput
from l059_omop.network.package import check_compatible, read_zip_members, sha256_bytes, write_zip

RESULTS_FORMAT = "l059-omop-site-results"
RESULTS_FORMAT_VERSION = 1

# file -> columns; count columns are checked against min_cell_count
FILES: dict[str, list[str]] = {
    "attrition.csv": ["rule_sequence", "rule_name", "persons_remaining", "persons_excluded", "fail_alone"],
    "counts.csv": ["item", "value"],
    "km_life_table.csv": ["endpoint", "subgroup", "time", "at_risk", "events", "censored"],
    "response.csv": ["subgroup", "category", "n"],
    "safety.csv": ["term", "n_any", "n_grade3plus"],
    "cox.csv": ["model", "endpoint", "term", "coef", "se", "n", "events"],
    "cox_covariance.csv": ["model", "endpoint", "term_row", "term_col", "value"],
    "suppressed_cells.csv": ["table", "row", "column", "reason"],
}
COUNT_COLUMNS: dict[str, list[str]] = {
    "attrition.csv": ["persons_remaining", "persons_excluded", "fail_alone"],
    "counts.csv": ["value"],
    "km_life_table.csv": ["at_risk", "events", "censored"],
    "response.csv": ["n"],
    "safety.csv": ["n_any", "n_grade3plus"],
    "cox.csv": ["n", "events"],
}
# the only manifest keys that may hold a date-time: when the run happened, and study parameters
_MANIFEST_DATE_KEYS = {"created_at"}
_DATE = re.compile(r"(?<!\d)(19|20)\d{2}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])(?!\d)")
_DATE_SLASH = re.compile(r"(?<!\d)\d{1,2}/\d{1,2}/(19|20)\d{2}(?!\d)")
_PERSON_COLUMN = re.compile(r"(^(person|subject|patient)(_id|_source_value|_key)?$|_id$|date|birth|^name$)", re.I)
_ALLOWED_ID_COLUMNS: set[str] = set()


@dataclass
class ResultSet:
    """One site's aggregate results: tables (file name -> frame) and the manifest."""

    manifest: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def site(self) -> str:
        return str(self.manifest.get("site", "?"))

    @property
    def min_cell_count(self) -> int:
        return int(self.manifest.get("min_cell_count", 1))

    def table(self, name: str) -> pd.DataFrame:
        if name in self.tables:
            return self.tables[name]
        return pd.DataFrame(columns=FILES[name])


def to_csv_bytes(df: pd.DataFrame, columns: list[str]) -> bytes:
    df = df.reindex(columns=columns)
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n", float_format="%.10g")
    return buf.getvalue().encode("utf-8")


def write_results(path: Path, results: ResultSet) -> str:
    """Write results.zip (manifest with sha256 of each file); returns the manifest's sha256."""
    files = {name: to_csv_bytes(results.table(name), cols) for name, cols in FILES.items()}
    manifest = dict(results.manifest)
    manifest["format"] = RESULTS_FORMAT
    manifest["format_version"] = RESULTS_FORMAT_VERSION
    manifest["files"] = {n: sha256_bytes(b) for n, b in sorted(files.items())}
    return sha256_bytes(write_zip(Path(path), manifest, files))


def _read_csv(data: bytes, name: str, source: str) -> pd.DataFrame:
    try:
        df = pd.read_csv(io.BytesIO(data), dtype={c: "string" for c in ("rule_name", "item", "endpoint", "subgroup",
                                                                          "category", "term", "model", "term_row",
                                                                          "term_col", "table", "row", "column",
                                                                          "reason")},
                         keep_default_na=True)
    except Exception as exc:  # noqa: BLE001 - any parse failure is bad input
        raise BadInput(f"{name} is not a readable CSV file: {exc}", file=source) from None
    if list(df.columns) != FILES[name]:
        raise BadInput(f"{name} has columns {list(df.columns)}, expected {FILES[name]}", file=source)
    return df


def read_results(path: Path) -> ResultSet:
    """Read and check a site's results.zip (format, version, checksums, columns)."""
    source = str(path)
    members = read_zip_members(Path(path), "results file")
    if "manifest.json" not in members:
        raise BadInput("not a results file: no manifest.json", file=source)
    try:
        manifest = json.loads(members.pop("manifest.json"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"manifest.json is not valid JSON: {exc}", file=source) from None
    check_compatible(manifest, source, RESULTS_FORMAT, (RESULTS_FORMAT_VERSION,))
    listed = manifest.get("files") or {}
    for name, digest in listed.items():
        if name not in members or sha256_bytes(members[name]) != digest:
            raise BadInput(f"{name} does not match the manifest's sha256: the results were changed or damaged",
                           file=source)
    extra = sorted(set(members) - set(listed))
    if extra:
        raise BadInput(f"file(s) not in the manifest: {', '.join(extra)}", file=source)
    unknown = sorted(set(members) - set(FILES))
    if unknown:
        raise BadInput(f"unknown result file(s) {', '.join(unknown)}", file=source)
    tables = {name: _read_csv(data, name, source) for name, data in members.items()}
    return ResultSet(manifest, tables)


# ---------------------------------------------------------------- privacy scan

@dataclass
class Finding:
    file: str
    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file} {self.where}: {self.problem}"


def _scan_text_cells(name: str, rows: list[list[str]], header: list[str], forbidden_ids: set[str]
                     ) -> list[Finding]:
    out = []
    for i, row in enumerate(rows, start=2):
        for col, cell in zip(header, row, strict=False):
            if _DATE.search(cell) or _DATE_SLASH.search(cell):
                out.append(Finding(name, f"line {i} column {col}", "looks like a calendar date"))
            if forbidden_ids:
                for token in re.findall(r"\d+", cell):
                    if token in forbidden_ids:
                        out.append(Finding(name, f"line {i} column {col}", "contains a person id"))
    return out


def _scan_json(obj, path: str, name: str, forbidden_ids: set[str]) -> list[Finding]:
    out: list[Finding] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if _PERSON_COLUMN.search(str(k)) and k not in {"cohort_id", "study_id", "package_sha256",
                                                            "definition_sha256", "data_cutoff"}:
                if isinstance(v, (list, dict)) and v:
                    out.append(Finding(name, f"{path}.{k}", "person-level key holds a collection"))
            if k in _MANIFEST_DATE_KEYS and path == "$":
                continue
            if path.startswith("$.parameters") or k == "parameters":
                continue  # study parameters come from the package, not from the site's persons
            out += _scan_json(v, f"{path}.{k}", name, forbidden_ids)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _scan_json(v, f"{path}[{i}]", name, forbidden_ids)
    elif isinstance(obj, str):
        if _DATE.search(obj) or _DATE_SLASH.search(obj):
            out.append(Finding(name, path, "looks like a calendar date"))
        if forbidden_ids and any(t in forbidden_ids for t in re.findall(r"\d+", obj)):
            out.append(Finding(name, path, "contains a person id"))
    elif isinstance(obj, int) and forbidden_ids and str(obj) in forbidden_ids:
        out.append(Finding(name, path, "contains a person id"))
    return out


def scan_files(files: dict[str, bytes], min_cell_count: int = 1, forbidden_ids: Iterable[int] = (),
               allowed_extra: Iterable[str] = ()) -> list[Finding]:
    """Scan result files (name -> bytes) for anything person-level.

    Checks: only known files; each CSV has exactly its declared columns (none naming a person, date or
    birth); no cell or manifest value looks like a calendar date (outside the run's own time stamp and the
    study parameters); no person id among ``forbidden_ids`` appears as a number anywhere; and, when
    min_cell_count > 1, no published count lies in 1..min_cell_count - 1. ``allowed_extra`` names further
    files (pooled plots and report) that are scanned as text.
    """
    ids = {str(int(i)) for i in forbidden_ids}
    findings: list[Finding] = []
    extra = set(allowed_extra)
    for name, data in sorted(files.items()):
        base = name.rsplit("/", 1)[-1]
        if base == "manifest.json" or name.endswith(".json"):
            try:
                obj = json.loads(data)
            except (UnicodeDecodeError, json.JSONDecodeError):
                findings.append(Finding(name, "", "not valid JSON"))
                continue
            findings += _scan_json(obj, "$", name, ids)
            continue
        if base.endswith(".png"):
            continue  # images are rendered from the published tables only
        if base not in FILES and name not in extra and base not in extra:
            findings.append(Finding(name, "", "not a known result file"))
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            findings.append(Finding(name, "", "not UTF-8 text"))
            continue
        if base.endswith(".csv"):
            rows = list(csv.reader(io.StringIO(text)))
            header = rows[0] if rows else []
            if base in FILES and header != FILES[base]:
                findings.append(Finding(name, "header", f"columns {header} are not the declared {FILES[base]}"))
            for col in header:
                if _PERSON_COLUMN.search(col) and col not in _ALLOWED_ID_COLUMNS:
                    findings.append(Finding(name, f"column {col}", "column name suggests person-level data"))
            findings += _scan_text_cells(name, rows[1:], header, ids)
            if min_cell_count > 1 and base in COUNT_COLUMNS:
                findings += _small_counts(name, rows, COUNT_COLUMNS[base], min_cell_count)
        else:
            for i, line in enumerate(text.splitlines(), start=1):
                if _DATE.search(line) or _DATE_SLASH.search(line):
                    findings.append(Finding(name, f"line {i}", "looks like a calendar date"))
                if ids and any(t in ids for t in re.findall(r"\d+", line)):
                    findings.append(Finding(name, f"line {i}", "contains a person id"))
    return findings


def _small_counts(name: str, rows: list[list[str]], columns: list[str], k: int) -> list[Finding]:
    out = []
    header = rows[0]
    idx = [header.index(c) for c in columns if c in header]
    for i, row in enumerate(rows[1:], start=2):
        for j in idx:
            cell = row[j] if j < len(row) else ""
            if cell == "":
                continue
            try:
                v = float(cell)
            except ValueError:
                out.append(Finding(name, f"line {i} column {header[j]}", "count is not a number"))
                continue
            if 0 < v < k:
                out.append(Finding(name, f"line {i} column {header[j]}", f"count below min_cell_count {k}"))
    return out


def scan_path(path: Path, min_cell_count: int | None = None, forbidden_ids: Iterable[int] = ()) -> list[Finding]:
    """Scan a results.zip or a folder (pooled output) file by file."""
    path = Path(path)
    if path.is_dir():
        files = {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
        extra = [n for n in files if n.endswith((".html", ".csv", ".md", ".txt"))]
    else:
        files = read_zip_members(path, "results file")
        extra = []
    if min_cell_count is None:
        min_cell_count = 1
        if "manifest.json" in files:
            try:
                min_cell_count = int(json.loads(files["manifest.json"]).get("min_cell_count", 1))
            except (ValueError, json.JSONDecodeError, AttributeError):
                pass
    return scan_files(files, min_cell_count, forbidden_ids, extra)
