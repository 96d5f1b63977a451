"""Regenerate the README pictures in docs/images/ from the package's realistic phantom head.

Run: ``python docs/make_images.py`` (add ``--no-viewer`` to skip the browser screenshot)

- ``slice_grid.png``: ``plot_slice_grid`` of a phantom head series written as DICOM
  and read back with ``load_series`` (the same path a user's data takes);
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-viewer", action="store_true", help="skip the browser screenshot")
    args = parser.parse_args()
    IMAGES.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        # the realistic head (ctexplore.headmodel) with its lesions, partial volume and CT noise
        series = ctexplore.write_series(
            Path(tmp) / "phantom", n_slices=36, matrix=256, slice_spacing=5.0,
            image_formation=ImageFormation(supersample=2, slice_samples=3),
        )
        volume = ctexplore.load_series(series.folder)
    written = [
        save(ctexplore.plot_slice_grid(volume, 12, columns=6, panel_size=1.9), "slice_grid.png", 80),
        save(ctexplore.plot_hu_histogram(volume, exclude_outside=True, log=True), "hu_histogram.png", 80),
    ]
    if not args.no_viewer:
        environment = dict(os.environ, CTEXPLORE_UPDATE_IMAGES="1")
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             str(REPO / "tests" / "test_viewer_browser.py")],
            cwd=REPO, env=environment, check=True,
        )
        written.append(IMAGES / "viewer.png")
    for path in written:
        size = path.stat().st_size
        print(f"{path.relative_to(REPO)}: {size / 1000:.0f} KB")
        if size > MAX_BYTES:
            raise SystemExit(f"{path} is {size} bytes, over the {MAX_BYTES} byte budget")


if __name__ == "__main__":
    main()
