"""Helpers shared by the benchmarks: cached phantom series and peak-memory measurement."""

from __future__ import annotations

import os
from pathlib import Path

CACHE = Path(os.environ.get("CTEXPLORE_BENCH_CACHE", "/tmp/ctexplore-bench"))


def phantom_series(name: str, **kwargs) -> Path:
    """Write a phantom series once (shuffled file names) and reuse it on later runs."""
    from ctexplore.phantom import write_series

    folder = CACHE / name
    done = folder / ".complete"
    if not done.exists():
        write_series(folder, shuffle=True, **kwargs)
        done.write_text(repr(kwargs))
    return folder


def reset_peak_memory() -> int:
    """Reset this process's peak RSS (Linux clear_refs) and return the current RSS in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_bytes("VmRSS")


def peak_memory() -> int:
    """Peak RSS in bytes since the last `reset_peak_memory`."""
    return _status_bytes("VmHWM")


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")
