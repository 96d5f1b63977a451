"""Brain mask and hyperdense regions: ctexplore beside a naive full-resolution scipy pipeline.

Two inputs: a full-size phantom head (256 x 512 x 512 int16, 0.625 mm slices,
0.49 mm pixels, 6 HU noise, written once as DICOM to the bench cache) and the
real GE head CT of the shared data (``$CTEXPLORE_TEST_DATA/head-ct-ge``, tilted,
uneven slices resampled on load: 135 x 512 x 512). The naive baseline is what
one writes by hand: at full resolution, bone = HU > 250, fill each axial bone
ring, keep the largest soft-tissue component; then label every 50-90 HU voxel
in it and drop regions under 0.1 mL. Each case runs in a fresh process; time
and peak memory growth are measured after the volume is loaded.

``--validate`` also prints the accuracy table against the realistic head
phantom's ground truth (`ctexplore.headmodel`): brain mask Dice, and per
lesion type the Dice and volume error of `hyperdense_regions`, plus the
false-positive volume farther than 10 mm from every lesion, and the regions
found on the normal GE scan.

Run:  python benchmarks/bench_brain.py [--repeats 3] [--validate]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
from _common import CACHE, phantom_series
from _measure import MIB, in_subprocess, print_table, run_case

CASES = (
    "ctexplore.brain_mask",
    "naive brain mask (full-res fill + label)",
    "ctexplore.hyperdense_regions",
    "naive hyperdense (full-res threshold + label)",
)
BONE_HU = 250.0
SOFT_HU = (-30.0, 120.0)


def load(which: str):
    import ctexplore as ct

    if which == "phantom":
        folder = phantom_series(
            "brain-256x512-noise",
            n_slices=256,
            matrix=512,
            pixel_spacing=(0.48828125, 0.48828125),
            slice_spacing=0.625,
            noise=6.0,
        )
        return ct.load_series(folder)
    folder = Path(os.environ.get("CTEXPLORE_TEST_DATA", "../shared/data/ct")) / "head-ct-ge"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ct.load_series(folder, on_uneven="resample")


def naive_brain_mask(hu: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    bone = hu > BONE_HU
    plane = np.zeros((3, 3, 3), bool)
    plane[1] = ndimage.generate_binary_structure(2, 1)
    enclosed = ndimage.binary_fill_holes(bone, plane) & ~bone
    soft = enclosed & (hu > SOFT_HU[0]) & (hu < SOFT_HU[1])
    labels, count = ndimage.label(soft)
    if count == 0:
        return soft
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def naive_hyperdense(hu: np.ndarray, mask: np.ndarray, voxel_ml: float) -> np.ndarray:
    from scipy import ndimage

    labels, _ = ndimage.label(mask & (hu >= 50) & (hu <= 90))
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes * voxel_ml >= 0.1
    return keep[labels]


def runner(case: str, volume):
    import ctexplore as ct

    if case == "ctexplore.brain_mask":
        return lambda: ct.brain_mask(volume)
    if case.startswith("naive brain"):
        return lambda: naive_brain_mask(volume.hu)
    mask = ct.brain_mask(volume)  # both highlight cases get the same mask, made before the baseline
    if case == "ctexplore.hyperdense_regions":
        return lambda: ct.hyperdense_regions(volume, mask=mask)
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    return lambda: naive_hyperdense(volume.hu, mask, voxel_ml)


def validate() -> None:
    from scipy import ndimage

    import ctexplore as ct
    from ctexplore.headmodel import LABELS, LESIONS, ImageFormation
    from ctexplore.phantom import write_series

    bleeds = [name for name in LESIONS if name != "fracture"]
    intracranial = ["csf", "grey matter", "white matter", "deep grey nuclei", "falx", "venous sinus", "calcification"]
    dice = lambda a, b: 2 * (a & b).sum() / max(1, a.sum() + b.sum())  # noqa: E731
    for matrix, step in ((160, 2.5), (192, 2.0)):
        folder = CACHE / f"brain-realistic-{matrix}"
        truth_file = CACHE / f"brain-realistic-{matrix}-labels.npy"
        if not truth_file.exists():
            written = write_series(
                folder,
                slice_positions=list(np.arange(-10.0, 66.0, step)),
                matrix=matrix,
                slice_spacing=step,
                image_formation=ImageFormation(supersample=2, slice_samples=3),
                seed=5,
            )
            np.save(truth_file, written.labels())
        truth = np.load(truth_file)
        volume = ct.load_series(folder)
        voxel_ml = float(np.prod(volume.spacing)) / 1000.0
        mask = ct.brain_mask(volume)
        found = ct.hyperdense_regions(volume, mask=mask)
        lesion = np.zeros(truth.shape, np.int8)
        for k, name in enumerate(bleeds, 1):
            lesion[truth == LABELS[name]] = k
        distance, nearest = ndimage.distance_transform_edt(lesion == 0, sampling=volume.spacing, return_indices=True)
        zone = np.where(distance <= 10.0, lesion[tuple(nearest)], 0)
        brain_truth = np.isin(truth, [LABELS[n] for n in intracranial + bleeds])
        print(
            f"\nrealistic phantom {volume.shape} at {volume.spacing[0]:.2f} x {volume.spacing[1]:.2f} mm: "
            f"brain_mask Dice {dice(mask, brain_truth):.3f}; {len(found)} regions, {found.volume_ml:.2f} mL"
        )
        print(f"  {'lesion':30s} {'truth mL':>8s} {'found mL':>8s} {'error':>6s} {'Dice':>5s}")
        for k, name in enumerate(bleeds, 1):
            true, detected = lesion == k, found.mask & (zone == k)
            true_ml, found_ml = true.sum() * voxel_ml, detected.sum() * voxel_ml
            print(
                f"  {name:30s} {true_ml:8.2f} {found_ml:8.2f} {(found_ml - true_ml) / true_ml:+6.0%} "
                f"{dice(detected, true):5.2f}"
            )
        print(
            f"  false positives farther than 10 mm from every lesion: "
            f"{(found.mask & (zone == 0)).sum() * voxel_ml:.2f} mL"
        )
    ge = load("ge")
    found = ct.hyperdense_regions(ge)
    largest = ", ".join(f"{row['volume_ml']:.2f}" for row in found.table[:5])
    print(f"\nnormal GE head CT: {len(found)} regions, {found.volume_ml:.2f} mL (largest {largest} mL)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--case")
    parser.add_argument("--input", default="phantom", choices=("phantom", "ge"))
    parser.add_argument("--validate", action="store_true", help="also print the accuracy table against truth")
    args = parser.parse_args()
    if args.case:
        volume = load(args.input)
        result = run_case(runner(args.case, volume), args.repeats)
        print(json.dumps({"case": args.case, **result, "input_mib": volume.hu.nbytes / MIB}))
        return
    for which in ("phantom", "ge"):
        rows = [in_subprocess(__file__, case, args.repeats, ["--input", which]) for case in CASES]
        volume = load(which)
        print(f"\n{which}: {volume.shape} {volume.hu.dtype}, spacing {tuple(round(s, 3) for s in volume.spacing)} mm")
        print_table(rows, rows[0]["input_mib"])
        if which == "phantom":
            naive = naive_brain_mask(volume.hu)
            ours = __import__("ctexplore").brain_mask(volume)
            dice = lambda a, b: 2 * (a & b).sum() / max(1, a.sum() + b.sum())  # noqa: E731
            # The phantom's eyes cut its skull shell: in those planes the naive fill leaks out, which
            # cuts the intracranial space in two, and the naive largest piece drops all below the orbits.
            planes = naive.any(axis=(1, 2))
            lost = ours[~planes].sum() * float(np.prod(volume.spacing)) / 1000.0
            print(
                f"brain_mask vs the naive full-resolution mask: Dice {dice(naive, ours):.3f}; "
                f"{dice(naive[planes], ours[planes]):.3f} in the {planes.sum()} planes where the naive mask is not "
                f"empty (naive loses {(~planes & ours.any(axis=(1, 2))).sum()} planes, {lost:.0f} mL, below the "
                "orbits, where the phantom's eyes open its skull)"
            )
    if args.validate:
        validate()


if __name__ == "__main__":
    sys.exit(main())
