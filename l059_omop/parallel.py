"""Worker processes that are safe to start from a process that already has threads.

A forked child inherits a copy of every lock held by the parent's other threads (DuckDB's thread pool,
libpq, a Spark JVM under pytest) and can deadlock or crash; CI saw a forked synth worker segfault during
garbage collection and ``multiprocessing.Pool`` then wait for it forever. Here workers come from a
``forkserver`` (a clean single-threaded process; ``spawn`` where there is none), and through
``ProcessPoolExecutor``, which raises ``BrokenProcessPool`` when a worker dies instead of hanging.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def process_pool(workers: int, initializer: Callable[..., Any] | None = None) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(start_method()),
                               initializer=initializer)
