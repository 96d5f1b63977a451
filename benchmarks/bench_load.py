"""Load a 256-slice 512x512 series (shuffled file names): ctexplore vs SimpleITK vs the blog's way.

Each loader runs in its own process; imports and one warm-up load of a small series happen
before the clock starts; runs alternate between loaders. Also times `import ctexplore` and
`ctexplore.scan` (files per second, warm cache).

    python benchmarks/bench_load.py [--slices 256] [--matrix 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import peak_memory, phantom_series, reset_peak_memory  # noqa: E402

LOADERS = ("ctexplore", "simpleitk", "blog")


def load_ctexplore(folder: str):
    import ctexplore

    return ctexplore.load_series(folder).hu


def load_simpleitk(folder: str):
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
    return sitk.GetArrayFromImage(reader.Execute())


def load_blog(folder: str):
    """The blog's pipeline: files in name order, pixel_array, float64, a per-slice loop."""
    import numpy as np
    import pydicom

    names = sorted(os.listdir(folder))
    slices = [pydicom.dcmread(os.path.join(folder, n)) for n in names if n.endswith(".dcm")]
    image = np.stack([s.pixel_array for s in slices]).astype(np.float64)
    image[image == -2000] = 0
    for number, dataset in enumerate(slices):
        slope, intercept = float(dataset.RescaleSlope), float(dataset.RescaleIntercept)
        if slope != 1:
            image[number] = slope * image[number]
        image[number] += intercept
    return image


def worker(loader: str, folder: str, warmup: str) -> None:
    function = {"ctexplore": load_ctexplore, "simpleitk": load_simpleitk, "blog": load_blog}[loader]
    function(warmup)
    baseline = reset_peak_memory()
    start = time.perf_counter()
    array = function(folder)
    seconds = time.perf_counter() - start
    result = {
        "seconds": seconds,
        "peak_added": peak_memory() - baseline,
        "output": array.nbytes,
        "dtype": str(array.dtype),
    }
    if loader == "ctexplore":
        import ctexplore

        times = []
        for _ in range(5):
            start = time.perf_counter()
            index = ctexplore.scan(folder)
            times.append(time.perf_counter() - start)
        result["scan_files_per_s"] = index[0].n_images / statistics.median(times)
    print(json.dumps(result))


def import_time(statement: str = "import ctexplore") -> float:
    """Median wall time of an import statement measured inside fresh interpreters."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    runs = [
        float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
        for _ in range(7)
    ]
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=256)
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loaders", nargs="+", default=list(LOADERS), choices=LOADERS)
    parser.add_argument("--worker", choices=LOADERS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.folder, args.warmup)
        return
    spacing = 250.0 / args.matrix
    folder = phantom_series(
        f"load-{args.slices}x{args.matrix}",
        n_slices=args.slices,
        matrix=args.matrix,
        pixel_spacing=(spacing, spacing),
        slice_spacing=0.625,
        padding_value=-2000,
    )
    warmup = phantom_series("load-warmup", n_slices=8, matrix=64)
    results: dict[str, list[dict]] = {name: [] for name in args.loaders}
    for _ in range(args.repeats):
        for name in args.loaders:
            command = [sys.executable, __file__, "--worker", name, "--folder", str(folder), "--warmup", str(warmup)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[name].append(json.loads(output.strip().splitlines()[-1]))
    print(f"series: {args.slices} x {args.matrix}x{args.matrix}, shuffled names, {folder}")
    medians = {}
    for name, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        medians[name] = seconds
        peak = statistics.median(r["peak_added"] for r in runs)
        output = runs[0]["output"]
        print(
            f"{name:10s} load {seconds:6.3f} s (median of {len(runs)})  output {runs[0]['dtype']:7s} "
            f"{output / 2**20:6.0f} MiB  peak added {peak / 2**20:6.0f} MiB = {peak / output:.2f}x output"
        )
    if "ctexplore" in medians:
        for other in ("simpleitk", "blog"):
            if other in medians:
                print(f"ctexplore is {medians[other] / medians['ctexplore']:.1f}x faster than {other}")
        scans = [r["scan_files_per_s"] for r in results["ctexplore"]]
        print(f"scan: {statistics.median(scans):.0f} files/s (warm cache, median)")
    print(f"import ctexplore: {import_time():.3f} s")
    print(
        f"import ctexplore + first touch of load_series (numpy, reader): "
        f"{import_time('import ctexplore; ctexplore.load_series'):.3f} s"
    )


if __name__ == "__main__":
    main()
