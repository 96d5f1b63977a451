"""Batch throughput: `ctexplore.preprocess` over 40 synthetic head-CT studies with 1 and 2 workers.

Each study is one axial series of 64 slices of 256 x 256 (0.9 mm pixels, 2.5 mm
slices, 8 MiB of int16), resampled to 1 mm isotropic and written as a
compressed .npz. The studies are written once (cached). Reported: the time of
the processing phase (after the header scan) and of the whole call, series per
second, the speed-up of N workers over 1 (on both), how busy the workers
were (time inside series over workers x processing time), and the peak resident
memory of each worker process (Linux VmHWM, read by the worker after each
series), which must stay at the size of one study, not grow with the number of
studies. Beside it, in the same run, the plain alternative: a
``concurrent.futures.ProcessPoolExecutor`` (spawn) started after the scan,
mapping `preprocess_series` over the same series.

Each configuration runs ``--repeat`` times, interleaved, and the best time
counts (other processes on a shared machine only ever make a run slower).

Run:  python benchmarks/bench_batch.py [--studies 40] [--workers 1 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
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
    peaks = sorted(summary.worker_peak_rss_bytes.values())
    return {
        "workers": workers,
        "series": summary.ok,
        "scan_s": summary.scan_seconds,
        "process_s": summary.process_seconds,
        "total_s": total,
        "peak_rss_mib_max": peaks[-1] / MIB,
        # share of the workers' time spent inside series: what the pool loses to start-up, dispatch and the tail
        "busy": sum(row.seconds or 0.0 for row in summary.rows) / (workers * summary.process_seconds),
    }


def run_executor(root: Path, workers: int) -> dict[str, float]:
    """The plain way: scan, then a fresh ProcessPoolExecutor mapping preprocess_series over the series."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from ctexplore import scan
    from ctexplore.pipeline import PreprocessOptions, output_name, preprocess_series

    options = PreprocessOptions(spacing=(1.0, 1.0, 1.0))
    with tempfile.TemporaryDirectory() as output:
        start = time.perf_counter()
        index = scan(root)
        scanned = time.perf_counter()
        series = list(index.series)
        targets = [Path(output, output_name(s, options.suffix)) for s in series]
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            done = list(pool.map(preprocess_series, series, targets, [options] * len(series)))
        end = time.perf_counter()
    return {
        "workers": workers,
        "series": len(done),
        "scan_s": scanned - start,
        "process_s": end - scanned,
        "total_s": end - start,
        "peak_rss_mib_max": float("nan"),
        "busy": float("nan"),
    }


def _share(value: float) -> str:
    return "-" if value != value else f"{value:.0%}"  # NaN: not measured for the plain executor


def _mib(value: float) -> str:
    return "-" if value != value else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=2, help="runs of each configuration; the best counts")
    args = parser.parse_args()
    root = write_studies(args.studies)
    study_mib = SERIES["n_slices"] * SERIES["matrix"] ** 2 * 2 / MIB
    print(
        f"{args.studies} studies, one series each: {SERIES['n_slices']} x {SERIES['matrix']}^2 int16 "
        f"= {study_mib:.0f} MiB per study; resampled to 1 mm float32 (~{230 * 230 * 160 * 4 / MIB:.0f} MiB); "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    configurations = [("ctexplore.preprocess", run, w) for w in args.workers]
    configurations.append(("ProcessPoolExecutor", run_executor, max(args.workers)))
    best: dict[int, dict[str, float]] = {}
    for _ in range(args.repeat):
        for number, (_, function, workers) in enumerate(configurations):
            result = function(root, workers)
            if number not in best or result["total_s"] < best[number]["total_s"]:
                best[number] = result
    print(
        f"{'method':22s} {'workers':>7s} {'scan s':>7s} {'process s':>10s} {'total s':>8s} {'series/s':>9s} "
        f"{'speed-up process':>17s} {'speed-up total':>15s} {'workers busy':>13s} {'worker peak RSS MiB':>20s}"
    )
    base = best[0]
    for number, (name, _, workers) in enumerate(configurations):
        row = best[number]
        print(
            f"{name:22s} {workers:7d} {row['scan_s']:7.1f} {row['process_s']:10.1f} {row['total_s']:8.1f} "
            f"{row['series'] / row['process_s']:9.2f} {base['process_s'] / row['process_s']:16.2f}x "
            f"{base['total_s'] / row['total_s']:14.2f}x {_share(row['busy']):>13s} {_mib(row['peak_rss_mib_max']):>20s}"
        )
    print(
        "speed-ups are over ctexplore with 1 worker; workers busy: the time spent inside series over workers x "
        "process time (what the pool does not lose to start-up, dispatch and the tail; unlike the speed-up it "
        "holds on a machine shared with other work); peak RSS is the largest worker process "
        "(Python, numpy, scipy, pydicom included)."
    )


if __name__ == "__main__":
    main()
