"""What the network study takes from the cohort and outcomes modules, in one place.

The package carries the cohort definition (OHDSI SQL source files, the whole script rendered per dialect,
Circe JSON, concept-set selectors) and the outcome SQL. ``run-package`` executes the definition only when
the installed l059-omop holds the very same definition files (byte for byte): the package pins what runs,
the installed software runs it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

from l059_omop.errors import BadInput
from l059_omop.resources import mappings_path, sql_path

log = logging.getLogger(__name__)

RENDER_DIALECTS = ("postgresql", "duckdb", "spark", "databricks", "bigquery", "snowflake", "redshift", "tsql",
                   "oracle", "trino")


# rendered scripts per (definition sha256, dialect): sqlglot takes seconds per dialect
_RENDERED: dict[tuple[str, str], str] = {}
_CIRCE: dict[tuple[str, str], object] = {}


def _jsonable(params: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v) for k, v in params.items()}


def _circe(vocab_engine):
    """Circe JSON with concept sets resolved against ``vocab_engine``'s vocabulary, or, without one, against
    the bundled vocabulary in a throw-away DuckDB database."""
    from l059_omop.cohort import export_circe

    if vocab_engine is not None:
        return export_circe(vocab_engine)
    from l059_omop.cohort import definition as d

    key = (d.definition_sha256(), "circe-bundled")
    if key in _CIRCE:
        return _CIRCE[key]
    import tempfile

    from l059_omop.db.api import init_db
    from l059_omop.db.engine import connect

    with tempfile.TemporaryDirectory(prefix="l059_pkg_") as tmp:
        engine = connect(f"duckdb:///{Path(tmp) / 'vocab.duckdb'}")
        try:
            init_db(engine)
            _CIRCE[key] = export_circe(engine)
            return _CIRCE[key]
        finally:
            engine.dispose()


def package_artefacts(contents, analysis: dict, vocab_engine=None) -> dict:
    """Add rendered SQL, the whole OHDSI script and Circe JSON to ``contents``; return definition facts."""
    from l059_omop.cohort import definition as d

    info: dict = {"cohort_name": d.COHORT_NAME, "cohort_definition_sha256": d.definition_sha256()}
    analysis.setdefault("cohort_parameters", _jsonable(dict(d.DEFAULT_PARAMETERS)))
    try:
        from l059_omop.outcomes.extract import DEFAULT_PARAMETERS as OUTCOME_PARAMETERS

        analysis.setdefault("outcome_parameters", dict(OUTCOME_PARAMETERS))
    except ImportError:
        contents.notes.append("outcomes module not available: outcome parameters not recorded")
    params = {k: v for k, v in d.DEFAULT_PARAMETERS.items()}
    try:
        contents.add("cohort/ohdsi_script.sql", d.ohdsi_sql(rendered=False))
    except Exception as exc:  # noqa: BLE001 - a part in progress must not stop the package
        contents.notes.append(f"OHDSI script not assembled: {exc}")
    for dialect in RENDER_DIALECTS:
        try:
            key = (info["cohort_definition_sha256"], dialect)
            if key not in _RENDERED:
                _RENDERED[key] = d.render_cohort_sql(dialect, params=params)
            contents.add(f"cohort/rendered/{dialect}.sql", _RENDERED[key])
        except Exception as exc:  # noqa: BLE001
            contents.notes.append(f"cohort SQL not rendered for {dialect}: {str(exc).splitlines()[0][:200]}")
    try:
        circe = _circe(vocab_engine)
        contents.add("cohort/circe.json", circe.json_text)
        contents.add("cohort/circe.meta.json", json.dumps(circe.sidecar, indent=2, sort_keys=True) + "\n")
        info["circe_sha256"] = circe.sha256
    except Exception as exc:  # noqa: BLE001
        contents.notes.append(f"Circe JSON not included: {str(exc).splitlines()[0][:200] if str(exc) else exc!r}")
    return info


def check_definition(pkg) -> None:
    """Refuse to run a package whose definition files differ from the installed ones."""
    from l059_omop.cohort import definition as d

    installed = d.definition_sha256()
    wanted = pkg.manifest.get("definition", {}).get("cohort_definition_sha256")
    differ = []
    for prefix, root in (("cohort/ohdsi/", sql_path("cohorts", "l059")), ("concept_sets/", mappings_path("concept_sets")),
                         ("outcomes/sql/", sql_path("outcomes"))):
        shipped = {p[len(prefix):]: b for p, b in pkg.files.items() if p.startswith(prefix)}
        local = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
                 if p.is_file() and p.suffix in (".sql", ".yaml", ".yml")} if root.is_dir() else {}
        for name in sorted(set(shipped) | set(local)):
            if shipped.get(name) != local.get(name):
                differ.append(prefix + name)
    if differ or (wanted and wanted != installed):
        shown = ", ".join(differ[:5]) + (" ..." if len(differ) > 5 else "")
        raise BadInput(f"incompatible version: the package's definition differs from the one installed here "
                       f"({shown or 'definition sha256'}); install the l059-omop release the package was made "
                       f"with ({pkg.manifest['software']['version']})", file=pkg.source)


def cohort_parameters(analysis: dict) -> dict:
    """The package's cohort parameters, typed as the cohort module expects (dates back to dates)."""
    from l059_omop.cohort import definition as d

    out = {}
    for k, v in (analysis.get("cohort_parameters") or {}).items():
        default = d.DEFAULT_PARAMETERS.get(k)
        if isinstance(default, dt.date) and isinstance(v, str):
            v = dt.date.fromisoformat(v)
        out[k] = v
    return out


def site_attrition(att) -> object:
    """build_cohort's attrition -> the rows the results carry (computed rules only)."""
    import pandas as pd

    computed = att[att["rule_sequence"].notna()].copy()
    names = [f"{r} {n}" if r not in ("entry", "-") else str(n) for r, n in zip(computed["rule"], computed["rule_name"], strict=False)]
    return pd.DataFrame({
        "rule_sequence": computed["rule_sequence"].astype("int64").to_numpy(),
        "rule_name": names,
        "persons_remaining": computed["persons_remaining"].astype("int64").to_numpy(),
        "persons_excluded": computed["persons_excluded"].astype("int64").to_numpy(),
        "fail_alone": computed["failing_alone"].astype("Int64").to_numpy() if "failing_alone" in computed else None,
    })


def not_computable(att) -> list[str]:
    rows = att[att["rule_sequence"].isna()]
    return [f"{r.criterion}: {r.rule_name} ({r.note})" for r in rows.itertuples(index=False)]
