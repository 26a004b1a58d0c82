"""Engines from URLs, identifier validation and credential redaction.

Schema names are the only identifiers users supply; they are checked against a strict pattern before any
SQL runs, because identifiers cannot be bound as parameters.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from l059_omop.errors import BadInput, RuntimeFailure

DEFAULT_URL = "duckdb:///l059.duckdb"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SUPPORTED = {"duckdb": "duckdb", "postgresql": "postgresql"}


def validate_identifier(name: str, what: str = "schema name") -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise BadInput (exit 2)."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise BadInput(f"invalid {what} {name!r}: use letters, digits and underscores, starting with a letter")
    return name


def redact(text: str, url: str | None = None) -> str:
    """Remove any password (from ``url`` or of the form scheme://user:pw@host) from ``text``."""
    if url:
        try:
            pw = make_url(url).password
        except Exception:  # noqa: BLE001 - an unparsable URL may still carry a password
            pw = None
        if pw:
            text = text.replace(str(pw), "***")
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)


def resolve_url(url: str | None) -> str:
    return url or os.environ.get("L059_OMOP_DB") or DEFAULT_URL


def connect(url: str | None = None, **kwargs) -> Engine:
    """An engine for a DuckDB file or PostgreSQL URL; errors say what is wrong without the password."""
    url = resolve_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise BadInput(f"--db: not a database URL: {redact(url)!s} (e.g. duckdb:///l059.duckdb or "
                       "postgresql+psycopg://user@host:5432/db)") from None
    backend = parsed.get_backend_name()
    if backend not in _SUPPORTED:
        raise BadInput(f"--db: unsupported database {backend!r}; use duckdb:/// or postgresql+psycopg://")
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend == "duckdb" and parsed.database not in (None, "", ":memory:"):
        parent = Path(parsed.database).expanduser().resolve().parent
        if not parent.is_dir():
            raise BadInput(f"--db: folder {parent} of the DuckDB file does not exist")
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except NoSuchModuleError as exc:
        raise BadInput(f"--db: no driver for {parsed.drivername}: {exc}") from None
    return engine


def check_connection(engine: Engine) -> None:
    """Fail with one clean line (no password) when the database cannot be reached."""
    try:
        with engine.connect() as con:
            con.execute(sa.text("select 1"))
    except Exception as exc:  # noqa: BLE001 - driver errors vary; all become one line
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RuntimeFailure(f"cannot connect to {redact(engine.url.render_as_string(hide_password=True))}: "
                             f"{redact(msg, engine.url.render_as_string(hide_password=False))}") from None


def dialect_of(engine: Engine) -> str:
    """'duckdb' or 'postgresql'."""
    return engine.dialect.name
