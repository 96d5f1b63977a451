"""Viewer (kernel side) and histogram speed on the realistic full-size head: 256 x 512 x 512 int16.

Run: ``python benchmarks/bench_viewer.py`` (the first run writes the series, about a minute, into
``$CTEXPLORE_BENCH_CACHE``; later runs load it)

- ``view()``: building the widget, handing the volume out as binary buffers (and
  whether the kernel copies it), drawing the static PNG saved for readers without a
  kernel. What the page then does (wheel, keys, drag, click) is measured in a real
  JupyterLab by ``bench_viewer_browser.py``, which uses the same volume.
- ``plot_hu_histogram`` end to end (counting and building the figure) against
  ``plt.hist`` on the flattened float64 copy; target <= 0.4 s.

The volume is `ctexplore.phantom.full_size_series` (0.45 mm pixels, 0.625 mm slices,
partial volume, CT-like noise, scanner padding, lesions) written as DICOM and read
back with `ctexplore.load_series`, so the viewer sees what it sees on a scan.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import phantom_series  # noqa: E402

from ctexplore.plotting import plot_hu_histogram  # noqa: E402
from ctexplore.viewer import view  # noqa: E402
from ctexplore.volume import Volume  # noqa: E402


def build_volume() -> Volume:
    """The realistic full-size head (`ctexplore.phantom.full_size_series`), written once, loaded each time."""
    from ctexplore import load_series
    from ctexplore.phantom import full_size_series

    return load_series(phantom_series("viewer-full-size-realistic", **full_size_series()))


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def bench_kernel_side(volume: Volume) -> None:
    """What the kernel does for the in-browser viewer: build it, hand the volume out once, draw the static PNG."""
    start = time.perf_counter()
    viewer = view(volume)
    built = time.perf_counter() - start
    start = time.perf_counter()
    messages = list(viewer._volume_messages())
    buffers = [b for _, chunk in messages[1:] for b in chunk]
    handed = time.perf_counter() - start
    sources = [a for a in (volume.hu, volume.padding) if a is not None]  # the padding goes out as uint8 views
    copied = [b for b in buffers if not any(np.shares_memory(np.frombuffer(b, np.uint8), a) for a in sources)]
    largest = max((b.nbytes for b in copied), default=0)
    start = time.perf_counter()
    png = viewer.static_png()
    static = time.perf_counter() - start
    print(
        f"view() on {volume.shape}: {milliseconds(built)}; volume buffers {milliseconds(handed)}"
        f" ({sum(b.nbytes for b in buffers) / 2**20:.0f} MiB; {len(copied)} not views of the volume, each made as"
        f" it is sent, largest {largest / 2**20:.0f} MiB);"
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
