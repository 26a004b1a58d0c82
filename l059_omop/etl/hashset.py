"""Sets of 64-bit hashes of source ids: what a load remembers of the records it has seen, 8 bytes a
record, where Python strings would take 60-100 (a membership test may answer yes falsely, about once in
2**64 / n tries; each caller says what a false yes costs it)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def key_hashes(source_ids: Sequence[str]) -> np.ndarray:
    """64-bit hashes of source ids (pandas' SipHash; only ever compared within one run)."""
    return pd.util.hash_array(np.asarray(source_ids, dtype=object), categorize=False)


class HashSet:
    """A set of 64-bit hashes as a few sorted NumPy arrays (8 bytes an entry; merged as they accumulate)."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts)

    def has_any(self, values: np.ndarray) -> bool:
        return bool(self.contains(values).any())

    def contains(self, values: np.ndarray) -> np.ndarray:
        # the values sorted first: each part is then searched front to back (3x faster at a million entries)
        order = np.argsort(values, kind="stable")
        needles = values[order]
        hit = np.zeros(len(values), dtype=bool)
        for part in self._parts:
            pos = np.searchsorted(part, needles).clip(max=len(part) - 1)
            hit |= part[pos] == needles
        out = np.empty_like(hit)
        out[order] = hit
        return out

    def add(self, values: np.ndarray) -> None:
        """Parts of decreasing size, a new part merged into the last while it is at least half as large:
        O(log n) parts, and each merge a linear pass over two sorted runs (a stable sort finds them)."""
        if not len(values):
            return
        self._parts.append(np.sort(values))
        while len(self._parts) > 1 and 2 * len(self._parts[-1]) >= len(self._parts[-2]):
            last = self._parts.pop()
            self._parts[-1] = np.sort(np.concatenate((self._parts[-1], last)), kind="stable")
