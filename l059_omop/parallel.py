"""Worker processes that are safe to start from a process that already has threads.

A forked child inherits a copy of every lock held by the parent's other threads (DuckDB's thread pool,
libpq, a Spark JVM under pytest) and can deadlock or crash; CI saw a forked synth worker segfault during
garbage collection and ``multiprocessing.Pool`` then wait for it forever. Here workers come from a
``forkserver`` (a clean single-threaded process; ``spawn`` where there is none), and through
``ProcessPoolExecutor``, which raises ``BrokenProcessPool`` when a worker dies instead of hanging.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any


def start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def process_pool(workers: int, initializer: Callable[..., Any] | None = None) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(start_method()),
                               initializer=initializer)


def ordered_map(executor: Executor | None, fn: Callable, items: Iterable, prefetch: int,
                inline: Callable | None = None, ready: Callable[[], bool] | None = None) -> Iterator:
    """fn over items in the pool, results in input order, at most ``prefetch`` in flight (bounded memory).

    ``inline`` / ``ready``: while ``ready()`` is false and nothing is in flight, an item is handled by
    ``inline(item)`` in this process instead (the records loader maps its first chunks itself while the
    workers start, so the writer starts at once); order is kept either way."""
    if executor is None:
        for it in items:
            yield fn(it)
        return
    window: deque = deque()
    for it in items:
        if inline is not None and not window and ready is not None and not ready():
            yield inline(it)
            continue
        window.append(executor.submit(fn, it))
        if len(window) >= prefetch:
            yield window.popleft().result()
    while window:
        yield window.popleft().result()
