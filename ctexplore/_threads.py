"""Run a function over many items on a few threads (numpy and file reads release the GIL)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["in_threads", "limit_threads", "thread_limit"]

# Most threads one `in_threads` call uses; more rarely help a read bound by one disk.
_MOST_THREADS = 8
_limit: int | None = None


def limit_threads(count: int | None) -> None:
    """Cap the threads of every later `in_threads` call in this process (None: one per core).

    A batch worker sets its share of the cores, so that N worker processes do
    not each start one thread per core and fight over them.
    """
    global _limit
    if count is not None and count < 1:
        raise ValueError(f"thread limit must be at least 1, got {count}")
    _limit = count


def thread_limit() -> int:
    """Threads an `in_threads` call may use in this process."""
    return min(_limit or os.cpu_count() or 1, _MOST_THREADS)


def in_threads(function: Callable[[Any], Any], items: Sequence[Any]) -> None:
    """Call `function` on every item, spread over one thread per core (or `limit_threads`); errors propagate."""
    workers = min(len(items), thread_limit())
    if workers <= 1:
        for item in items:
            function(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(function, items):
            pass
