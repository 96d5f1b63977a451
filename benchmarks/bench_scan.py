"""How fast `ctexplore.scan` indexes a folder: fast header reader vs pydicom, serial vs process pool.

Run: ``python benchmarks/bench_scan.py``. Writes (once, cached under
$CTEXPLORE_BENCH_CACHE or /tmp/ctexplore-bench) a 256-slice 512x512 phantom
series with shuffled file names, and a 2048-file 128x128 series for the
process-pool threshold sweep (hard links make folders of 128 ... 2048 files).
Timings are with a warm page cache, median of 5 runs.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from _common import CACHE

import ctexplore
from ctexplore import _fastheader, series

REPEATS = 5
SWEEP = (128, 256, 512, 1024, 2048)


def cached_series(name: str, **kwargs) -> Path:
    """Phantom series written once; the completion marker sits beside the folder, not in it."""
    from ctexplore.phantom import write_series

    folder = CACHE / name / "series"
    done = CACHE / name / "complete"
    if not done.exists():
        write_series(folder, shuffle=True, **kwargs)
        done.write_text(repr(kwargs))
    return folder


def linked_subset(source: Path, count: int) -> Path:
    """A folder holding hard links to the first `count` files of `source`."""
    folder = source.parent / f"first{count}"
    if not folder.exists():
        staging = source.parent / f".first{count}.tmp"
        staging.mkdir()
        for path in sorted(source.iterdir())[:count]:
            os.link(path, staging / path.name)
        os.replace(staging, folder)
    return folder


def warm(folder: Path) -> None:
    for path in folder.iterdir():
        path.read_bytes()


def median_seconds(run: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pydicom_only() -> Callable[[], None]:
    """Make the fast reader decline every file (also in forked workers); returns the undo."""
    original = _fastheader.read_fast_header
    _fastheader.read_fast_header = lambda path: None
    return lambda: setattr(_fastheader, "read_fast_header", original)


def main() -> None:
    folder = cached_series("scan-256x512", n_slices=256, matrix=512)
    warm(folder)
    files = sorted(folder.iterdir())
    count = len(files)
    index = ctexplore.scan(folder)
    assert len(index) == 1 and index[0].n_images == count and not index.skipped, index

    print(f"scan of {count} files, 512x512, shuffled names, warm cache, {os.cpu_count()} cores, median of {REPEATS}")
    print(f"{'method':52s} {'seconds':>8s} {'files/s':>8s}")
    rows = [
        ("scan(folder) default (fast reader)", lambda: ctexplore.scan(folder)),
        ("scan(folder, workers=1) fast reader", lambda: ctexplore.scan(folder, workers=1)),
        ("scan(folder, workers=2) fast reader", lambda: ctexplore.scan(folder, workers=2)),
        ("read_header per file, fast reader (no grouping)", lambda: [series.read_header(p) for p in files]),
    ]
    for name, run in rows:
        seconds = median_seconds(run)
        print(f"{name:52s} {seconds:8.3f} {count / seconds:8.0f}")
    undo = pydicom_only()
    try:
        for name, run in [
            ("scan(folder, workers=1) pydicom only", lambda: ctexplore.scan(folder, workers=1)),
            ("scan(folder, workers=2) pydicom only", lambda: ctexplore.scan(folder, workers=2)),
        ]:
            seconds = median_seconds(run)
            print(f"{name:52s} {seconds:8.3f} {count / seconds:8.0f}")
    finally:
        undo()

    print("\nprocess-pool threshold sweep (128x128 files; header cost does not depend on the matrix)")
    print(f"{'files':>6s} {'workers=1 s':>12s} {'workers=2 s':>12s} {'pool pays':>10s}")
    source = cached_series("scan-2048x128", n_slices=2048, matrix=128, slice_spacing=0.5)
    for size in SWEEP:
        subset = linked_subset(source, size)
        warm(subset)
        serial = median_seconds(lambda subset=subset: ctexplore.scan(subset, workers=1))
        pooled = median_seconds(lambda subset=subset: ctexplore.scan(subset, workers=2))
        print(f"{size:6d} {serial:12.3f} {pooled:12.3f} {'yes' if pooled < serial else 'no':>10s}")


if __name__ == "__main__":
    main()
