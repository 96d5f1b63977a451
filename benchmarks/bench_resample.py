"""Resampling a 256 x 512 x 512 int16 head CT (0.625 mm slices, 0.5 mm pixels) to 1 mm isotropic.

Compares ctexplore.resample (linear, antialias=False: the same operation) with
SimpleITK's Resample on exactly the same output grid, ctexplore's default
(Gaussian anti-aliasing before sampling, as scikit-image's resize, which SimpleITK's
Resample does not do), scipy.ndimage.zoom (order 1, float32) and, once, the blog
post's cubic zoom. Each method runs in a fresh process; "peak +MiB" is the
growth of peak resident memory once the 128 MiB input exists (so it counts the
output, temporaries and, for SimpleITK, its copy of the input).

Run:  python benchmarks/bench_resample.py [--repeats 3] [--skip-blog]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
from _measure import MIB, in_subprocess, print_table, run_case

SHAPE = (256, 512, 512)
SOURCE_SPACING = (0.625, 0.5, 0.5)  # slice, row, col (mm)


def make_volume():
    from ctexplore.volume import Volume

    rng = np.random.default_rng(0)
    hu = rng.integers(-1024, 2000, SHAPE, dtype=np.int16)  # no int64 temporary
    affine = np.eye(4)
    affine[:3, :3] = np.column_stack([[0, 0, SOURCE_SPACING[0]], [0, SOURCE_SPACING[1], 0], [SOURCE_SPACING[2], 0, 0]])
    affine[:3, 3] = [-128.0, -128.0, -80.0]
    return Volume(hu, affine)


def target_grid(volume):
    """The grid ctexplore chooses (same field of view and centre), for SimpleITK to use too."""
    from ctexplore.geometry import _rescaled_grid

    return _rescaled_grid(volume.affine, volume.shape, 1.0, None)


def case_runner(case: str, volume):
    if case == "ctexplore.resample (linear, antialias=False)":
        from ctexplore.geometry import resample

        return lambda: resample(volume, spacing=1.0, antialias=False)
    if case == "ctexplore.resample (linear, anti-aliased: default)":
        from ctexplore.geometry import resample

        return lambda: resample(volume, spacing=1.0)
    if case == "ctexplore.resample (cubic, order=3, antialias=False)":
        from ctexplore.geometry import resample

        return lambda: resample(volume, spacing=1.0, order=3, antialias=False)
    if case.startswith("SimpleITK"):
        import SimpleITK as sitk

        affine, shape = target_grid(volume)

        def to_image():
            image = sitk.GetImageFromArray(volume.hu)  # index order (col, row, slice) = (x, y, z)
            image.SetSpacing(tuple(float(s) for s in SOURCE_SPACING[::-1]))
            image.SetOrigin(tuple(float(v) for v in volume.affine[:3, 3]))
            return image

        def resample_image(image):
            return sitk.Resample(
                image,
                shape[::-1],
                sitk.Transform(),
                sitk.sitkLinear,
                tuple(float(v) for v in affine[:3, 3]),
                (1.0, 1.0, 1.0),
                (1, 0, 0, 0, 1, 0, 0, 0, 1),
                -1000.0,
                sitk.sitkFloat32,
            )

        if "numpy" in case:  # numpy array in, numpy array out, like ctexplore
            return lambda: sitk.GetArrayFromImage(resample_image(to_image()))
        image = to_image()  # converted before timing and before the memory baseline
        return lambda: resample_image(image)
    if case == "scipy.ndimage.zoom (order 1, float32)":
        from scipy import ndimage

        factors = (160 / 256, 0.5, 0.5)
        return lambda: ndimage.zoom(volume.hu, factors, order=1, output=np.float32)
    if case == "blog: scipy zoom cubic (1, 0.5, 0.5)":
        from scipy import ndimage

        return lambda: ndimage.zoom(volume.hu, (1, 0.50, 0.50), mode="nearest")
    raise ValueError(case)


def compare_with_simpleitk(volume) -> float:
    from ctexplore.geometry import resample

    ours = resample(volume, spacing=1.0, antialias=False).hu  # SimpleITK does not smooth first
    theirs = case_runner("SimpleITK Resample + numpy", volume)()
    return float(np.abs(ours - theirs).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-blog", action="store_true")
    parser.add_argument("--check", action="store_true", help="only compare our output with SimpleITK's")
    args = parser.parse_args()
    if args.check:
        print(json.dumps({"max_abs_difference_vs_simpleitk": compare_with_simpleitk(make_volume())}))
        return
    if args.case:
        volume = make_volume()
        result = run_case(case_runner(args.case, volume), args.repeats)
        print(json.dumps({"case": args.case, **result}))
        return
    cases = [
        ("ctexplore.resample (linear, antialias=False)", args.repeats),
        ("ctexplore.resample (linear, anti-aliased: default)", args.repeats),
        ("SimpleITK Resample (image in, image out)", args.repeats),
        ("SimpleITK Resample + numpy", args.repeats),
        ("scipy.ndimage.zoom (order 1, float32)", args.repeats),
        ("ctexplore.resample (cubic, order=3, antialias=False)", 1),
    ]
    if not args.skip_blog:
        cases.append(("blog: scipy zoom cubic (1, 0.5, 0.5)", 1))
    input_mib = np.prod(SHAPE) * 2 / MIB
    print(f"input {SHAPE} int16 = {input_mib:.0f} MiB, target 1 mm isotropic -> (160, 256, 256) float32")
    rows = [in_subprocess(__file__, case, repeats) for case, repeats in cases]
    print_table(rows, input_mib)
    check = subprocess.run([sys.executable, __file__, "--check"], capture_output=True, text=True, check=True)
    difference = json.loads(check.stdout)["max_abs_difference_vs_simpleitk"]
    print(f"max |ctexplore - SimpleITK| on the same grid: {difference:.4f} HU")


if __name__ == "__main__":
    main()
