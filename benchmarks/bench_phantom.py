"""Time the phantom writer on the benchmark series: 256 slices of 512 x 512, shuffled.

Run: python benchmarks/bench_phantom.py [--tilt 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from ctexplore.phantom import write_series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=256)
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--tilt", type=float, default=0.0)
    parser.add_argument("--noise", type=float, default=0.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        written = write_series(
            folder,
            n_slices=args.slices,
            matrix=args.matrix,
            pixel_spacing=(0.45, 0.45),
            slice_spacing=0.625,
            gantry_tilt=args.tilt,
            noise=args.noise,
            shuffle=True,
        )
        seconds = time.perf_counter() - start
        megabytes = sum(f.stat().st_size for f in written.files) / 1e6
    voxels = args.slices * args.matrix * args.matrix
    print(
        f"write_series {args.slices} x {args.matrix} x {args.matrix} (tilt {args.tilt} deg, noise {args.noise}): "
        f"{seconds:.2f} s, {voxels / seconds / 1e6:.1f} Mvoxel/s, {megabytes:.0f} MB written"
    )


if __name__ == "__main__":
    main()
