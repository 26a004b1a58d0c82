"""Errors that the CLI turns into one readable line and an exit code (DESIGN §2)."""

from __future__ import annotations


class L059Error(Exception):
    """Base class: a failure with a message fit for an end user."""

    exit_code = 1


class BadInput(L059Error):
    """Bad usage or bad input (exit code 2): a file, record or field the user can fix."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, record: str | None = None,
                 field: str | None = None) -> None:
        where = ", ".join(f"{k} {v}" for k, v in (("file", file), ("record", record), ("field", field)) if v)
        super().__init__(f"{where}: {message}" if where else message)
        self.file, self.record, self.field = file, record, field


class RuntimeFailure(L059Error):
    """The work could not be done (exit code 1): database unreachable, a query failed, ..."""

    exit_code = 1
