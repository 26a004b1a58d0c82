"""Locate files shipped with the package (``mappings/``, ``sql/``, bundled data).

In a wheel the top-level ``mappings/`` and ``sql/`` folders are shipped as ``l059_omop/_shipped/``; in a
source checkout (editable install, tests) they are read where they stand, so there is one copy of each file.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def _root(name: str) -> Path:
    shipped = _PKG / "_shipped" / name
    if shipped.is_dir():
        return shipped
    checkout = _PKG.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"l059-omop installation is missing its {name}/ folder (looked in {shipped} and {checkout})")


def mappings_path(*parts: str) -> Path:
    """A path under ``mappings/``."""
    return _root("mappings").joinpath(*parts)


def sql_path(*parts: str) -> Path:
    """A path under ``sql/``."""
    return _root("sql").joinpath(*parts)


def data_path(*parts: str) -> Path:
    """A path under the package's bundled data (OMOP spec, vocabulary subset)."""
    return (_PKG / "data").joinpath(*parts)


def read_sql(*parts: str) -> str:
    return sql_path(*parts).read_text(encoding="utf-8")
