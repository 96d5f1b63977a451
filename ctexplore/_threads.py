"""Run a function over many items on a few threads (numpy and file reads release the GIL)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["in_threads"]


def in_threads(function: Callable[[Any], Any], items: Sequence[Any]) -> None:
    """Call `function` on every item, spread over one thread per core; errors propagate."""
    workers = min(len(items), os.cpu_count() or 1, 8)
    if workers <= 1:
        for item in items:
            function(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(function, items):
            pass
