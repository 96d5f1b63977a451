"""Synthetic head-CT volumes built directly as `Volume` objects (no DICOM), for plot and viewer tests.

Patient LPS millimetres: x to the patient's left, y posterior, z to the head.
Landmarks that make orientation bugs visible:

- a 70 HU bleed on the patient's *left* (x > 0) and towards the top of the head;
- a nose (soft tissue, 40 HU) at the front (y < 0);
- 5 mm slices against sub-millimetre pixels, so a missing aspect ratio squashes the picture.
"""

from __future__ import annotations

import numpy as np

from ctexplore.volume import Volume

# (centre (x, y, z) mm, semi-axes (x, y, z) mm, HU), painted in this order
_SHAPES = (
    ((0, 0, 0), (76, 96, 80), 40),  # scalp and soft tissue
    ((0, -96, -20), (10, 14, 18), 40),  # nose, anterior
    ((0, 0, 0), (71, 91, 75), 1200),  # skull
    ((0, 0, 0), (65, 85, 69), 40),  # grey matter
    ((0, 0, 0), (55, 75, 59), 30),  # white matter
    ((-10, -5, 10), (6, 22, 12), 5),  # right lateral ventricle (CSF)
    ((10, -5, 10), (6, 22, 12), 5),  # left lateral ventricle (CSF)
    ((35, -25, 30), (12, 12, 12), 70),  # acute bleed, patient left
)
BLEED_CENTRE_MM = np.array([35.0, -25.0, 30.0])


def head_affine(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    """LPS affine of an axial grid centred on the origin, slice index growing to the head."""
    slice_mm, row_mm, col_mm = spacing
    affine = np.zeros((4, 4))
    affine[:3, 0] = [0.0, 0.0, slice_mm]  # stacking: towards the head
    affine[:3, 1] = [0.0, row_mm, 0.0]  # rows: to posterior
    affine[:3, 2] = [col_mm, 0.0, 0.0]  # columns: to the patient's left
    # centre of voxel (0, 0, 0), so that the grid is centred on the origin
    affine[:3, 3] = -(affine[:3, :3] @ ((np.asarray(shape) - 1) / 2))
    affine[3, 3] = 1.0
    return affine


def paint_head(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """int16 HU of the synthetic head on the grid `affine` maps (air -1000 elsewhere)."""
    hu = np.full(shape, -1000, dtype=np.int16)
    rows, cols = np.meshgrid(np.arange(shape[1]), np.arange(shape[2]), indexing="ij")
    for k in range(shape[0]):  # one slice at a time keeps the float temporaries small
        index = np.stack([np.full(rows.shape, k), rows, cols], axis=-1).astype(np.float32)
        world = index @ affine[:3, :3].T.astype(np.float32) + affine[:3, 3].astype(np.float32)
        plane = hu[k]
        for centre, semi_axes, value in _SHAPES:
            inside = (((world - np.float32(centre)) / np.float32(semi_axes)) ** 2).sum(-1) <= 1
            plane[inside] = value
    return hu


def synthetic_head(
    shape: tuple[int, int, int] = (32, 128, 128),
    spacing: tuple[float, float, float] = (5.0, 1.6, 1.6),
    *,
    padding: bool = False,
) -> Volume:
    """A synthetic head `Volume`; with `padding`, a scanner-style circular field of view.

    Outside the field of view the voxels are flagged in ``volume.padding`` and hold
    the -1000 air fill, exactly as the loader leaves them.
    """
    affine = head_affine(shape, spacing)
    hu = paint_head(affine, shape)
    pad = None
    if padding:
        rows, cols = np.ogrid[: shape[1], : shape[2]]
        radius = min(shape[1], shape[2]) / 2
        outside = (rows - (shape[1] - 1) / 2) ** 2 + (cols - (shape[2] - 1) / 2) ** 2 > radius**2
        pad = np.broadcast_to(outside, shape).copy()
        hu[pad] = -1000
    return Volume(hu, affine, padding=pad, meta={"series_description": "synthetic head"})
