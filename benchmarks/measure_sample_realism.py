"""Compare the built-in samples with a real head CT: distinct HU values in the brain range, noise SD, histograms.

Run: CTEXPLORE_TEST_DATA=/work/shared/data/ct python benchmarks/measure_sample_realism.py [--png out.png]

Both scans are measured the same way: distinct values among voxels in 0..80 HU;
noise as the median SD of 5 x 5 in-plane patches with a mean of 20..45 HU and every
voxel in -10..90 HU (brain, no CSF or bone); the histogram over -1100..1900 HU in 10 HU bins.
The sample study's thin series, and the CQ500-like sample data set's thin soft-kernel and
bone-kernel series of patient 1 (`ctexplore.sample_dataset`), are measured; the simple
geometry phantom (`phantom_hu` sampled at pixel centres) is shown too, as the before picture.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import ctexplore as ct
from ctexplore.phantom import write_series


def brain_noise_sd(hu: np.ndarray, patch: int = 5) -> float:
    """Median SD of in-plane patches of brain: mean 20..45 HU, every voxel in -10..90 HU."""
    windows = sliding_window_view(hu, (patch, patch), axis=(1, 2))[:, ::patch, ::patch]
    flat = windows.reshape(*windows.shape[:3], -1)
    # brain-like mean, no CSF, fat or bone inside; the median discards the patches that straddle edges
    mean = flat.mean(axis=-1)
    uniform = (mean > 20) & (mean < 45) & ((flat > -10) & (flat < 90)).all(axis=-1)
    return float(np.median(flat[uniform].std(axis=-1))) if uniform.any() else float("nan")


def describe(name: str, hu: np.ndarray) -> dict[str, float]:
    brain = hu[(hu >= 0) & (hu <= 80)]
    wide = hu[(hu >= -20) & (hu <= 120)]
    numbers = {
        "distinct 0..80 HU": len(np.unique(brain)),
        "distinct -20..120 HU": len(np.unique(wide)),
        "noise SD (HU)": brain_noise_sd(hu),
    }
    print(f"{name:28s} " + ", ".join(f"{k}: {v:.1f}" for k, v in numbers.items()))
    return numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--png", type=Path, default=None, help="write the side-by-side histogram here")
    args = parser.parse_args()
    volumes = {}
    with tempfile.TemporaryDirectory() as cache:
        study = ct.sample_study(cache)
        index = ct.scan(study)
        thin = next(s for s in index.series if "THIN" in (s.description or ""))
        volumes["sample thin 2.5 mm (new)"] = ct.load_series(thin).hu.astype(np.float32)
        dataset = ct.sample_dataset(Path(cache) / "dataset")
        for series in ct.scan(dataset / "CQ500-CT-1").volumes:
            if series.description in ("CT PLAIN THIN", "CT BONE"):
                kernel = series.headers[0].convolution_kernel
                volumes[f"data set {series.description} {kernel}"] = ct.load_series(series).hu.astype(np.float32)
        simple = write_series(Path(cache) / "simple", n_slices=72, slice_spacing=2.5, matrix=96)
        volumes["simple phantom (before)"] = ct.load_series(simple.folder).hu.astype(np.float32)
    data = os.environ.get("CTEXPLORE_TEST_DATA")
    if data and (Path(data) / "head-ct-ge").is_dir():
        # slice by slice, not resampled: interpolation between uneven slices would smooth the noise
        import pydicom

        files = sorted((Path(data) / "head-ct-ge").glob("*.dcm"))
        slices = [pydicom.dcmread(f) for f in files]
        hu = np.stack([s.pixel_array * float(s.RescaleSlope) + float(s.RescaleIntercept) for s in slices])
        volumes["real GE HiSpeed head CT"] = hu.astype(np.float32)
    else:
        print("CTEXPLORE_TEST_DATA/head-ct-ge not found: the real scan is left out")
    for name, hu in volumes.items():
        describe(name, hu)
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        bins = np.arange(-1100, 1901, 10)
        fig, axes = plt.subplots(1, len(volumes), figsize=(4.2 * len(volumes), 3.4), sharey=True)
        for ax, (name, hu) in zip(np.atleast_1d(axes), volumes.items()):
            inside = hu[hu > -1024]  # drop padding and the air around the head
            ax.hist(inside, bins=bins, density=True, color="0.3")
            ax.set_yscale("log")
            ax.set_title(name, fontsize=10)
            ax.set_xlabel("HU")
            for low, high, colour in (
                (-120, -60, "gold"),
                (0, 15, "tab:blue"),
                (20, 45, "tab:green"),
                (700, 1900, "tab:red"),
            ):
                ax.axvspan(low, high, color=colour, alpha=0.15)
        np.atleast_1d(axes)[0].set_ylabel("fraction of voxels per HU (log)")
        fig.suptitle("HU histograms (bands: fat, CSF, brain, bone)", fontsize=11)
        fig.tight_layout()
        fig.savefig(args.png, dpi=100)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
