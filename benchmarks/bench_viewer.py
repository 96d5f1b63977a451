"""Viewer and histogram speed on a 256 x 512 x 512 int16 head volume.

Run: ``python benchmarks/bench_viewer.py``

- slider step: from ``slider.value = i`` until the new PNG bytes sit in the Image
  widget (what the kernel does before the message goes out), median of 100 steps;
  targets <= 30 ms. Compared with the naive way, a new matplotlib figure per step.
- plane switch on the 256 x 512 x 512 volume; target <= 100 ms.
- ``plot_hu_histogram`` end to end (counting and building the figure) against
  ``plt.hist`` on the flattened float64 copy; target <= 0.4 s.
"""

from __future__ import annotations

import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from synthetic_volumes import head_affine, paint_head  # noqa: E402

from ctexplore.plotting import plot_hu_histogram  # noqa: E402
from ctexplore.viewer import view  # noqa: E402

# browser-side wheel/key timings: tests/test_viewer_browser.py drives the same JS in JupyterLab
from ctexplore.volume import Volume  # noqa: E402

SHAPE = (256, 512, 512)
SPACING = (0.625, 0.45, 0.45)


def build_volume() -> Volume:
    """Synthetic head with 5 HU noise, so PNG compression sees CT-like texture."""
    affine = head_affine(SHAPE, SPACING)
    coarse = paint_head(head_affine((32, *SHAPE[1:]), (SPACING[0] * 8, *SPACING[1:])), (32, *SHAPE[1:]))
    hu = np.repeat(coarse, 8, axis=0)
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 5, SHAPE[1:]).astype(np.int16)
    for start in range(0, SHAPE[0], 16):
        hu[start : start + 16] += np.roll(noise, start, axis=0)
    return Volume(hu, affine, meta={"series_description": "benchmark head"})


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def bench_kernel_side(volume: Volume) -> None:
    """What the kernel does for the in-browser viewer: build it, hand the volume out once, draw the static PNG."""
    start = time.perf_counter()
    viewer = view(volume)
    built = time.perf_counter() - start
    start = time.perf_counter()
    messages = viewer._volume_messages()
    buffers = [b for _, chunk in messages[1:] for b in chunk]
    handed = time.perf_counter() - start
    copies = sum(not np.shares_memory(np.frombuffer(b, np.uint8), volume.hu) for b in buffers)
    start = time.perf_counter()
    png = viewer.static_png()
    static = time.perf_counter() - start
    print(
        f"view() on {SHAPE}: {milliseconds(built)}; volume buffers {milliseconds(handed)}"
        f" ({sum(b.nbytes for b in buffers) / 2**20:.0f} MiB, extra kernel copies: {copies});"
        f" static PNG {milliseconds(static)} ({len(png) / 1024:.0f} KiB)"
    )


def bench_histogram(volume: Volume) -> None:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        fig = plot_hu_histogram(volume)
        times.append(time.perf_counter() - start)
        plt.close(fig)
    print(f"plot_hu_histogram, median of 5:         {milliseconds(statistics.median(times))}  target <= 400 ms")
    start = time.perf_counter()
    fig = plot_hu_histogram(volume, exclude_outside=True)
    print(f"  with exclude_outside=True:            {milliseconds(time.perf_counter() - start)}")
    plt.close(fig)

    tracemalloc.start()
    start = time.perf_counter()
    fig, ax = plt.subplots()
    ax.hist(volume.hu.astype(np.float64).ravel(), bins=200)
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    plt.close(fig)
    print(f"naive: plt.hist on flattened float64:   {milliseconds(elapsed)}  (peak {peak / 2**30:.2f} GiB)")
    tracemalloc.start()
    fig = plot_hu_histogram(volume)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    plt.close(fig)
    print(f"plot_hu_histogram peak memory:          {peak / 2**20:.0f} MiB")


def main() -> None:
    start = time.perf_counter()
    volume = build_volume()
    print(f"volume {volume.shape} {volume.hu.dtype} built in {time.perf_counter() - start:.1f} s")
    bench_kernel_side(volume)
    bench_histogram(volume)


if __name__ == "__main__":
    main()
