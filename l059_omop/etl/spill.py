"""A list that stays small in memory: the units a load holds back until the end of its input (a reference
not loaded yet) can be most of the input when it comes in an unhelpful order (every Observation before any
Patient), so past a limit they go to a temporary file and come back from it in order."""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Generic, TypeVar

T = TypeVar("T")

SPILL_LIMIT = 50_000  # items kept in memory (~1-2 KB a FHIR unit)
SPILL_CHUNK = 5_000   # items a pickle written to the file


class SpillList(Generic[T]):
    """Append-only, iterated in append order; the first ``limit`` items in memory, the rest pickled in chunks
    of ``chunk`` to an anonymous temporary file (removed by the system when closed, even on a crash)."""

    def __init__(self, items: Iterable[T] = (), *, limit: int | None = None, chunk: int | None = None) -> None:
        self.limit = SPILL_LIMIT if limit is None else limit
        self.chunk = SPILL_CHUNK if chunk is None else chunk
        self._head: list[T] = []
        self._pending: list[T] = []
        self._file: IO[bytes] | None = None
        self._n = 0
        self.spilled = 0  # items written to the file
        self.extend(items)

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    def append(self, item: T) -> None:
        self._n += 1
        if self._file is None and len(self._head) < self.limit:
            self._head.append(item)
            return
        self._pending.append(item)
        if len(self._pending) >= self.chunk:
            self._flush()

    def extend(self, items: Iterable[T]) -> None:
        for item in items:
            self.append(item)

    def _flush(self) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="l059-spill-")
        pickle.dump(self._pending, self._file, protocol=pickle.HIGHEST_PROTOCOL)
        self.spilled += len(self._pending)
        self._pending = []

    def __iter__(self) -> Iterator[T]:
        yield from self._head
        if self._file is not None:
            self._file.flush()
            end = self._file.tell()
            self._file.seek(0)
            try:
                while self._file.tell() < end:
                    yield from pickle.load(self._file)
            finally:
                self._file.seek(end)
        yield from self._pending

    def chunks(self, size: int) -> Iterator[list[T]]:
        """The items in lists of ``size`` (the last shorter)."""
        out: list[T] = []
        for item in self:
            out.append(item)
            if len(out) >= size:
                yield out
                out = []
        if out:
            yield out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._head, self._pending, self._n = [], [], 0
