"""Regenerate the README pictures in docs/images/ from the package's realistic phantom head.

Run: ``python docs/make_images.py`` (add ``--no-viewer`` to skip the browser screenshot)

- ``slice_grid.png``: ``plot_slice_grid`` of a phantom head series written as DICOM
  and read back with ``load_series`` (the same path a user's data takes);
- ``lesions.png``: each lesion of the realistic head with its ground-truth outline;
- ``hu_histogram.png``: ``plot_hu_histogram`` of the same volume;
- ``viewer.png``: screenshot of ``ctexplore.view`` in a real JupyterLab, taken by
  ``tests/test_viewer_browser.py`` with ``CTEXPLORE_UPDATE_IMAGES=1``.

Every PNG is checked to stay under 200 KB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import ctexplore
from ctexplore.headmodel import ImageFormation

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
MAX_BYTES = 200_000


def save(fig: plt.Figure, name: str, dpi: int) -> Path:
    path = IMAGES / name
    partial = path.with_suffix(".tmp.png")
    fig.savefig(partial, dpi=dpi, facecolor="white")
    plt.close(fig)
    os.replace(partial, path)
    return path


def lesion_gallery(volume: ctexplore.Volume, labels) -> plt.Figure:
    """Each lesion of the realistic head on the axial slice through its centre, with its truth outline."""
    import numpy as np

    from ctexplore.headmodel import LABELS, LESIONS

    fig, axes = plt.subplots(1, len(LESIONS), figsize=(2.1 * len(LESIONS), 2.6), layout="constrained")
    for ax, lesion in zip(axes, LESIONS):
        mask = labels == LABELS[lesion]
        k = int(np.argmax(mask.sum(axis=(1, 2))))  # the slice holding most of it
        preset = "bone" if lesion == "fracture" else "subdural" if "dural" in lesion else "brain"
        ax.imshow(ctexplore.window(volume.hu[k], preset=preset), cmap="gray", vmin=0, vmax=1)
        ax.contour(mask[k], levels=[0.5], colors="tab:orange", linewidths=0.8)
        ax.set_title(f"{lesion.replace(' haemorrhage', '')}\n{preset} window, slice {k + 1}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        # radiological display: the patient's right on the image's left, anterior at the top
        for text, xy in (("R", (0.03, 0.5)), ("L", (0.97, 0.5)), ("A", (0.5, 0.97)), ("P", (0.5, 0.03))):
            ax.text(*xy, text, transform=ax.transAxes, color="yellow", fontsize=7, ha="center", va="center")
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-viewer", action="store_true", help="skip the browser screenshot")
    args = parser.parse_args()
    IMAGES.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        # the realistic head (ctexplore.headmodel) with its lesions, partial volume and CT noise
        series = ctexplore.write_series(
            Path(tmp) / "phantom",
            head=ImageFormation(supersample=2, slice_samples=3),
            geometry=ctexplore.SliceGeometry(n_slices=36, matrix=256, slice_spacing=5.0),
        )
        volume = ctexplore.load_series(series.folder)
        labels = series.labels()
    written = [
        save(lesion_gallery(volume, labels), "lesions.png", 80),
        save(ctexplore.plot_slice_grid(volume, 12, columns=6, panel_size=1.9), "slice_grid.png", 80),
        save(ctexplore.plot_hu_histogram(volume, exclude_outside=True, log=True), "hu_histogram.png", 80),
    ]
    if not args.no_viewer:
        environment = dict(os.environ, CTEXPLORE_UPDATE_IMAGES="1")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                str(REPO / "tests" / "test_viewer_browser.py"),
            ],
            cwd=REPO,
            env=environment,
            check=True,
        )
        written.append(IMAGES / "viewer.png")
    for path in written:
        size = path.stat().st_size
        print(f"{path.relative_to(REPO)}: {size / 1000:.0f} KB")
        if size > MAX_BYTES:
            raise SystemExit(f"{path} is {size} bytes, over the {MAX_BYTES} byte budget")


if __name__ == "__main__":
    main()
