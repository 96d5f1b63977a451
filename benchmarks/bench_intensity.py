"""Normalising and windowing a 256 x 512 x 512 int16 head CT: the blog's float64 way vs ctexplore.

Each case runs in a fresh process; "peak +MiB" is the growth of peak resident
memory once the 128 MiB int16 input exists (output included: a float32 result
is 256 MiB, a uint8 result 64 MiB).

Run:  python benchmarks/bench_intensity.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _measure import MIB, in_subprocess, print_table, run_case

SHAPE = (256, 512, 512)


def blog_normalize(image, min_bound=-1000.0, max_bound=2000.0):
    """The blog post's normalisation, re-expressed: float64 temporaries, then boolean clipping."""
    image = (image - min_bound) / (max_bound - min_bound)
    image[image > 1] = 1.0
    image[image < 0] = 0.0
    return image


def case_runner(case: str, hu: np.ndarray):
    from ctexplore.intensity import normalize, window, window_stack

    runners = {
        "blog: float64 normalise": lambda: blog_normalize(hu),
        "blog: float64 normalise - per-scan mean": lambda: (lambda x: x - np.mean(x))(blog_normalize(hu)),
        "ctexplore.normalize (float32)": lambda: normalize(hu, -1000, 2000),
        "ctexplore.window brain (float32)": lambda: window(hu, preset="brain"),
        "ctexplore.window brain (uint8)": lambda: window(hu, preset="brain", dtype=np.uint8),
        "ctexplore.window_stack 3 channels (float32)": lambda: window_stack(hu),
    }
    return runners[case]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.case:
        hu = np.random.default_rng(0).integers(-1024, 3000, SHAPE, dtype=np.int16)
        print(json.dumps({"case": args.case, **run_case(case_runner(args.case, hu), args.repeats)}))
        return
    cases = [
        "blog: float64 normalise",
        "blog: float64 normalise - per-scan mean",
        "ctexplore.normalize (float32)",
        "ctexplore.window brain (float32)",
        "ctexplore.window brain (uint8)",
        "ctexplore.window_stack 3 channels (float32)",
    ]
    input_mib = np.prod(SHAPE) * 2 / MIB
    print(f"input {SHAPE} int16 = {input_mib:.0f} MiB")
    print_table([in_subprocess(__file__, case, args.repeats) for case in cases], input_mib)


if __name__ == "__main__":
    main()
