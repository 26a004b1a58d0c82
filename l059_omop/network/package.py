"""The study package: everything a partner site needs to run the study, with a manifest of checksums.

A package is a zip holding ``manifest.json`` and the definition files (cohort SQL in OHDSI SQL and
rendered per dialect, Circe JSON, concept-set selectors, outcome SQL and analysis settings). The manifest
names the study, the software and definition versions, the parameters and the sha256 of every other file.
``verify_package`` refuses a package whose files do not match the manifest (one changed byte is enough),
which has files the manifest does not list, or which was made by an incompatible version.

The checksums catch changes made after the package was built (by accident or by hand); they are not a
signature. Coordinators publish the package's own sha256 (``StudyPackage.package_sha256``, printed by
``package`` and ``run-package``) so that a site can compare it with what it received.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from l059_omop import __version__
from l059_omop.errors import BadInput
from l059_omop.resources import mappings_path, sql_path

PACKAGE_FORMAT = "l059-omop-study-package"
PACKAGE_FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
STUDY_ID = "ALTER-L059"
MANIFEST = "manifest.json"
MAX_MEMBER_BYTES = 50 * 1024 * 1024
MAX_TOTAL_BYTES = 200 * 1024 * 1024
# zip members get a fixed timestamp so the same definition gives the same bytes
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)

# What the site computes and how; travels in the package as settings/analysis.json.
DEFAULT_ANALYSIS: dict = {
    "cohort_id": 1059,
    "min_cell_count": 5,
    "ci_method": "log",
    "data_cutoff": None,  # None: each site's latest observation_period_end_date (never reported back)
    "endpoints": ["os", "pfs"],
    "subgroups": ["dose", "agent"],
    "landmark_days": [182.625, 365.25],
    "cox": {"endpoints": ["os", "pfs"], "covariates": ["age_per_10y", "male", "ecog_2", "dose_below_12mg"]},
}


def software_series(version: str = __version__) -> str:
    """The version series whose packages and results are interchangeable: major.minor for 0.x, else major."""
    parts = version.split(".")
    return ".".join(parts[:2]) if parts[0] == "0" else parts[0]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class StudyPackage:
    """A verified package: its manifest and its files (path -> bytes), read into memory."""

    manifest: dict
    files: dict[str, bytes]
    package_sha256: str
    source: str = ""

    @property
    def analysis(self) -> dict:
        settings = json.loads(self.files["settings/analysis.json"])
        merged = dict(DEFAULT_ANALYSIS)
        merged.update(settings)
        return merged

    def text(self, path: str) -> str:
        return self.files[path].decode("utf-8")

    def under(self, prefix: str) -> dict[str, bytes]:
        """Files whose path starts with ``prefix`` (a folder inside the package), sorted by path."""
        prefix = prefix.rstrip("/") + "/"
        return {p: b for p, b in sorted(self.files.items()) if p.startswith(prefix)}


@dataclass
class PackageContents:
    """Files to put in a package, before the manifest is written."""

    files: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, path: str, data: bytes | str) -> None:
        _check_member_name(path)
        self.files[path] = data.encode("utf-8") if isinstance(data, str) else data


def _add_tree(contents: PackageContents, root: Path, prefix: str, suffixes: tuple[str, ...]) -> int:
    if not root.is_dir():
        return 0
    n = 0
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in suffixes:
            contents.add(f"{prefix}/{p.relative_to(root).as_posix()}", p.read_bytes())
            n += 1
    return n


def _cohort_artefacts(contents: PackageContents, analysis: dict, vocab_engine=None) -> dict:
    """Rendered SQL per dialect and Circe JSON, from the cohort module when it offers them."""
    info: dict = {}
    try:
        from l059_omop import cohort  # noqa: F401 - optional until the cohort module lands
    except ImportError:
        contents.notes.append("cohort module not available: no rendered SQL or Circe JSON in the package")
        return info
    from l059_omop.network import cohort_bridge

    info.update(cohort_bridge.package_artefacts(contents, analysis, vocab_engine))
    return info


def collect_contents(analysis: dict | None = None, vocab_engine=None) -> tuple[PackageContents, dict, dict]:
    """The files of a package made from this installation, the definition facts for the manifest, and the
    complete analysis settings (with the cohort's and outcomes' parameters)."""
    analysis = {**DEFAULT_ANALYSIS, **(analysis or {})}
    contents = PackageContents()
    n_sql = _add_tree(contents, sql_path("cohorts", "l059"), "cohort/ohdsi", (".sql",))
    if not n_sql:
        contents.notes.append("no cohort SQL found under sql/cohorts/l059/")
    _add_tree(contents, mappings_path("concept_sets"), "concept_sets", (".yaml", ".yml"))
    _add_tree(contents, sql_path("outcomes"), "outcomes/sql", (".sql",))
    _add_tree(contents, sql_path("network"), "network/sql", (".sql",))
    definition = _cohort_artefacts(contents, analysis, vocab_engine)
    contents.add("settings/analysis.json", json.dumps(analysis, indent=2, sort_keys=True) + "\n")
    source = b"".join(contents.files[p] for p in sorted(contents.files)
                      if p.startswith(("cohort/ohdsi/", "concept_sets/")))
    definition.setdefault("cohort_id", analysis["cohort_id"])
    definition["definition_sha256"] = sha256_bytes(source)
    return contents, definition, analysis


def build_manifest(contents: PackageContents, definition: dict, analysis: dict,
                   created: dt.datetime | None = None) -> dict:
    return {
        "format": PACKAGE_FORMAT,
        "format_version": PACKAGE_FORMAT_VERSION,
        "study_id": STUDY_ID,
        "software": {"name": "l059-omop", "version": __version__, "compatible_series": software_series()},
        "cdm_version": "5.4",
        "definition": definition,
        "parameters": analysis,
        "created_at": (created or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "notes": contents.notes,
        "files": {p: sha256_bytes(b) for p, b in sorted(contents.files.items())},
    }


def write_zip(path: Path, manifest: dict, files: dict[str, bytes]) -> bytes:
    """Write manifest + files deterministically; return the manifest bytes."""
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    path = Path(path)
    if not path.parent.is_dir():
        raise BadInput("folder does not exist", file=str(path.parent))
    tmp = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in [(MANIFEST, manifest_bytes), *sorted(files.items())]:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    tmp.replace(path)
    return manifest_bytes


def make_package(out: Path, analysis: dict | None = None, created: dt.datetime | None = None,
                 vocab_engine=None) -> StudyPackage:
    """Build the study package from this installation's definition files and write it to ``out``.

    ``vocab_engine``: a database whose vocabulary resolves the concept sets of the Circe JSON (default: the
    bundled vocabulary)."""
    contents, definition, merged = collect_contents(analysis, vocab_engine)
    manifest = build_manifest(contents, definition, merged, created)
    manifest_bytes = write_zip(Path(out), manifest, contents.files)
    return StudyPackage(manifest, dict(contents.files), sha256_bytes(manifest_bytes), str(out))


def _check_member_name(name: str) -> None:
    p = PurePosixPath(name)
    if (not name or name.startswith("/") or "\\" in name or ".." in p.parts or ":" in name
            or any(part in ("", ".") for part in name.split("/"))):
        raise BadInput(f"unsafe file name {name!r} in package")


def read_zip_members(path: Path, what: str) -> dict[str, bytes]:
    """All members of a zip, in memory, with size limits and file-name checks (nothing is extracted)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{what} not found", file=str(path))
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadInput(f"not a {what} (not a readable zip file: {exc})", file=str(path)) from None
    out: dict[str, bytes] = {}
    total = 0
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            try:
                _check_member_name(info.filename)
            except BadInput as exc:
                raise BadInput(str(exc), file=str(path)) from None
            if info.filename in out:
                raise BadInput(f"file {info.filename} appears twice", file=str(path))
            if info.file_size > MAX_MEMBER_BYTES:
                raise BadInput(f"member {info.filename} is too large ({info.file_size} bytes)", file=str(path))
            total += info.file_size
            if total > MAX_TOTAL_BYTES:
                raise BadInput(f"{what} is too large when unpacked", file=str(path))
            try:
                data = zf.read(info)
            except (zipfile.BadZipFile, OSError) as exc:  # CRC errors: a damaged archive
                raise BadInput(f"member {info.filename} is damaged: {exc}", file=str(path)) from None
            if len(data) > MAX_MEMBER_BYTES:
                raise BadInput(f"member {info.filename} is too large", file=str(path))
            out[info.filename] = data
    return out


def check_compatible(manifest: dict, source: str, expected_format: str, supported: tuple[int, ...]) -> None:
    """Refuse a manifest of another format, an unknown format version or another software series."""
    fmt = manifest.get("format")
    if fmt != expected_format:
        raise BadInput(f"not a {expected_format} (format {fmt!r})", file=source)
    version = manifest.get("format_version")
    software = manifest.get("software") or {}
    made_by = software.get("version", "?")
    if version not in supported:
        raise BadInput(
            f"incompatible version: made by l059-omop {made_by} in {expected_format} format {version}; this is "
            f"l059-omop {__version__}, which reads format {', '.join(map(str, supported))}. Use l059-omop "
            f"{software.get('compatible_series', made_by)}.x to run it, or ask the coordinator for a package "
            f"made with {software_series()}.x", file=source)
    series = software.get("compatible_series")
    if series != software_series():
        raise BadInput(
            f"incompatible version: made by l059-omop {made_by} (series {series}); this is l059-omop "
            f"{__version__} (series {software_series()}). Install l059-omop {series}.x, or ask the "
            f"coordinator for a package made with {software_series()}.x", file=source)


def verify_package(path: Path, expect_sha256: str | None = None) -> StudyPackage:
    """Read a package and check it completely before anything runs; raise BadInput on any mismatch."""
    source = str(path)
    members = read_zip_members(Path(path), "study package")
    if MANIFEST not in members:
        raise BadInput("not a study package: no manifest.json", file=source)
    manifest_bytes = members.pop(MANIFEST)
    package_sha = sha256_bytes(manifest_bytes)
    if expect_sha256 and expect_sha256.lower() != package_sha:
        raise BadInput(f"package sha256 is {package_sha}, not the expected {expect_sha256}", file=source)
    try:
        manifest = json.loads(manifest_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"manifest.json is not valid JSON: {exc}", file=source) from None
    if not isinstance(manifest, dict):
        raise BadInput("manifest.json is not a JSON object", file=source)
    check_compatible(manifest, source, PACKAGE_FORMAT, SUPPORTED_FORMAT_VERSIONS)
    if manifest.get("study_id") != STUDY_ID:
        raise BadInput(f"package is for study {manifest.get('study_id')!r}, not {STUDY_ID}", file=source)
    listed = manifest.get("files")
    if not isinstance(listed, dict) or not listed:
        raise BadInput("manifest.json lists no files", file=source)
    for name, digest in sorted(listed.items()):
        if name not in members:
            raise BadInput(f"file {name} listed in the manifest is missing: the package is incomplete", file=source)
        actual = sha256_bytes(members[name])
        if actual != digest:
            raise BadInput(f"file {name} has sha256 {actual[:16]}... but the manifest says {str(digest)[:16]}...: "
                           "the package was changed after it was made; refusing to run it", file=source)
    extra = sorted(set(members) - set(listed))
    if extra:
        raise BadInput(f"file(s) not in the manifest: {', '.join(extra)}: the package was changed after it "
                       "was made; refusing to run it", file=source)
    if "settings/analysis.json" not in members:
        raise BadInput("package has no settings/analysis.json", file=source)
    try:
        settings = json.loads(members["settings/analysis.json"])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"settings/analysis.json is not valid JSON: {exc}", file=source) from None
    if settings != manifest.get("parameters"):
        raise BadInput("settings/analysis.json differs from the manifest's parameters", file=source)
    return StudyPackage(manifest, members, package_sha, source)


def package_summary(pkg: StudyPackage) -> list[str]:
    m = pkg.manifest
    d = m.get("definition", {})
    lines = [
        f"study {m['study_id']}, l059-omop {m['software']['version']}, package format {m['format_version']}",
        f"definition sha256 {d.get('definition_sha256', '?')}",
        f"{len(m['files'])} files; package sha256 {pkg.package_sha256}",
    ]
    lines += [f"note: {n}" for n in m.get("notes", [])]
    return lines

