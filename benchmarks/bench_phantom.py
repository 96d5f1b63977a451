"""Time the phantom writer: the sample study, the sample data set, and a full-size series (simple or realistic head).

Run: python benchmarks/bench_phantom.py                 # sample study + 256 x 512 x 512 simple series
     python benchmarks/bench_phantom.py --realistic     # the full-size series from the realistic head
     python benchmarks/bench_phantom.py --slices 32     # a shorter full-size series

The sample study (`write_study()`: thin, thick, tilted series of the realistic head,
localizer, non-image files, ground truth) and the CQ500-like sample data set
(`ctexplore.sample_dataset()`: three patients, seven series, ground truth) are what tests
and notebooks write first, so their times are the ones to keep within a few seconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ctexplore.datasets import sample_dataset
from ctexplore.headmodel import ImageFormation
from ctexplore.phantom import write_series, write_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=256)
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--tilt", type=float, default=0.0)
    parser.add_argument("--noise", type=float, default=0.0, help="Gaussian noise SD of the simple head")
    parser.add_argument("--realistic", action="store_true", help="image the realistic head (2x2 supersampling)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        written = write_study(Path(folder) / "study", truth_folder=Path(folder) / "truth")
        seconds = time.perf_counter() - start
        print(f"write_study() default sample, {len(written)} series with ground truth: {seconds:.2f} s")

        start = time.perf_counter()
        root = sample_dataset(Path(folder) / "dataset")
        seconds = time.perf_counter() - start
        n_series = sum(1 for _ in root.glob("*/Unknown Study/*"))
        print(f"sample_dataset() 3 patients, {n_series} series with ground truth: {seconds:.2f} s")

        start = time.perf_counter()
        options = dict(
            n_slices=args.slices,
            matrix=args.matrix,
            pixel_spacing=(0.45, 0.45),
            slice_spacing=0.625,
            gantry_tilt=args.tilt,
            shuffle=True,
        )
        if args.realistic:
            options["image_formation"] = ImageFormation(supersample=2, slice_samples=1)
        else:
            options["noise"] = args.noise
        written = write_series(Path(folder) / "full", **options)
        seconds = time.perf_counter() - start
        megabytes = sum(f.stat().st_size for f in written.files) / 1e6
    voxels = args.slices * args.matrix * args.matrix
    kind = "realistic head" if args.realistic else f"simple head, noise {args.noise}"
    print(
        f"write_series {args.slices} x {args.matrix} x {args.matrix} ({kind}, tilt {args.tilt} deg): "
        f"{seconds:.2f} s, {voxels / seconds / 1e6:.1f} Mvoxel/s, {megabytes:.0f} MB written"
    )


if __name__ == "__main__":
    main()
