"""Run one benchmark case in a fresh Python process and report its time and peak memory.

Each case runs in its own subprocess (no allocator state carried between
cases); the memory figure is the growth of peak resident memory (VmHWM, reset
through _common.reset_peak_memory) over what the process held once the input
array existed.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from _common import peak_memory, reset_peak_memory

MIB = 1024 * 1024


def run_case(run: Callable[[], Any], repeats: int) -> dict[str, float]:
    """Call `run` `repeats` times in this process; time each call, track peak memory growth."""
    times = []
    growth = 0
    for _ in range(repeats):
        before = reset_peak_memory()
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
        growth = max(growth, peak_memory() - before)
        del result
    return {
        "first_s": times[0],
        "median_s": statistics.median(times),
        "best_s": min(times),
        "peak_growth_mib": growth / MIB,
    }


def in_subprocess(script: str, case: str, repeats: int, extra: list[str] | None = None) -> dict[str, Any]:
    """Run ``python script --case CASE --repeats N`` and parse the JSON line it prints."""
    command = [sys.executable, script, "--case", case, "--repeats", str(repeats), *(extra or [])]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def print_table(rows: list[dict[str, Any]], input_mib: float) -> None:
    print(f"{'method':44s} {'first s':>8s} {'median s':>9s} {'best s':>7s} {'peak +MiB':>10s} {'x input':>8s}")
    for row in rows:
        print(
            f"{row['case']:44s} {row['first_s']:8.3f} {row['median_s']:9.3f} {row['best_s']:7.3f} "
            f"{row['peak_growth_mib']:10.0f} {row['peak_growth_mib'] / input_mib:8.2f}"
        )
