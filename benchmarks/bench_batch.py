"""Batch throughput: `ctexplore.preprocess` over 40 synthetic head-CT studies with 1 and 2 workers.

Each study is one axial series of 64 slices of 256 x 256 (0.9 mm pixels, 2.5 mm
slices, 8 MiB of int16), resampled to 1 mm isotropic and written as a
compressed .npz. The studies are written once (cached). Reported: the time of
the processing phase (after the header scan, which is shared), series per
second, the speed-up of 2 workers over 1, and the peak resident memory of each
worker process (Linux VmHWM, read by the worker after each series), which must
stay at the size of one study, not grow with the number of studies.

Run:  python benchmarks/bench_batch.py [--studies 40] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from _common import CACHE

MIB = 1024 * 1024
SERIES = dict(n_slices=64, matrix=256, pixel_spacing=(0.9, 0.9), slice_spacing=2.5, shuffle=True, noise=5.0)


def write_studies(count: int) -> Path:
    """CQ500-like tree of `count` studies, written once into the benchmark cache."""
    from ctexplore.phantom import write_series

    root = CACHE / f"batch-{count}"
    done = root / ".complete"
    if done.exists() and done.read_text() == repr(SERIES):
        return root
    shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    for number in range(count):
        patient = f"BENCH-{number:03d}"
        write_series(
            root / patient / "Unknown Study" / "CT HEAD",
            patient_id=patient,
            seed=number,
            series_description="CT HEAD",
            series_number=2,
            **SERIES,
        )
    done.write_text(repr(SERIES))
    print(f"wrote {count} studies in {time.perf_counter() - start:.1f} s into {root}")
    return root


def run(root: Path, workers: int) -> dict[str, float]:
    from ctexplore.batch import preprocess
    from ctexplore.pipeline import PreprocessOptions

    with tempfile.TemporaryDirectory() as output:
        start = time.perf_counter()
        summary = preprocess(
            root, output, options=PreprocessOptions(spacing=(1.0, 1.0, 1.0)), workers=workers, progress=False
        )
        total = time.perf_counter() - start
        if summary.failed or not summary.ok:
            raise RuntimeError(f"benchmark batch did not succeed: {summary}")
        output_mib = sum(p.stat().st_size for p in Path(output).rglob("*.npz")) / MIB
    peaks = sorted(summary.peak_rss_bytes.values())
    return {
        "workers": workers,
        "series": summary.ok,
        "scan_s": summary.scan_seconds,
        "process_s": summary.process_seconds,
        "total_s": total,
        "series_per_s": summary.ok / summary.process_seconds,
        "peak_rss_mib_max": peaks[-1] / MIB,
        "peak_rss_mib_first": summary.peak_rss_bytes[min(summary.peak_rss_bytes)] / MIB,
        "output_mib": output_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    root = write_studies(args.studies)
    study_mib = SERIES["n_slices"] * SERIES["matrix"] ** 2 * 2 / MIB
    print(
        f"{args.studies} studies, one series each: {SERIES['n_slices']} x {SERIES['matrix']}^2 int16 "
        f"= {study_mib:.0f} MiB per study; resampled to 1 mm float32 (~{230 * 230 * 160 * 4 / MIB:.0f} MiB)"
    )
    rows = [run(root, workers) for workers in args.workers]
    print(
        f"{'workers':>7s} {'scan s':>7s} {'process s':>10s} {'total s':>8s} {'series/s':>9s} "
        f"{'speed-up':>9s} {'worker peak RSS MiB (max)':>26s}"
    )
    base = rows[0]["series_per_s"]
    for row in rows:
        print(
            f"{row['workers']:7d} {row['scan_s']:7.1f} {row['process_s']:10.1f} {row['total_s']:8.1f} "
            f"{row['series_per_s']:9.2f} {row['series_per_s'] / base:8.2f}x {row['peak_rss_mib_max']:26.0f}"
        )
    print(
        "peak RSS is the whole worker process (Python, numpy, scipy, pydicom included); with 1 worker "
        "the series run in the calling process, so its figure includes the scan."
    )


if __name__ == "__main__":
    main()
