"""The `Volume` type: a Hounsfield-unit array with the geometry that places it in the patient."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "Volume",
    "affine_spacing",
    "affine_tilt",
    "affine_normal",
    "slice_normal",
    "axial_affine",
    "patient_axes",
    "AIR_HU",
]

#: Hounsfield value of air (by definition of the scale); the fill for voxels outside the scan.
AIR_HU = -1000.0


def slice_normal(row_direction: ArrayLike, column_direction: ArrayLike) -> np.ndarray:
    """Unit normal of an image plane: row direction x column direction.

    The row and column directions are the two halves of (0020,0037) *Image
    Orientation (Patient)*; their cross product points the way slice positions
    increase (PS3.3 C.7.6.2.1.1 Image Position and Image Orientation).

    Parameters
    ----------
    row_direction, column_direction : (3,) array-like
        Direction of a row (first three cosines) and of a column (last three),
        in patient LPS; any length, not necessarily unit.

    Returns
    -------
    (3,) float64 ndarray

    See Also
    --------
    affine_normal : the same normal, from a `Volume` affine.

    Examples
    --------
    >>> slice_normal([1, 0, 0], [0, 1, 0])  # axial: rows along x, columns along y
    array([0., 0., 1.])
    """
    normal = np.cross(np.asarray(row_direction, dtype=np.float64), np.asarray(column_direction, dtype=np.float64))
    return normal / np.linalg.norm(normal)


def affine_normal(affine: np.ndarray) -> np.ndarray:
    """Unit slice normal of an index-to-patient affine (see `Volume.affine`).

    Column 2 of the affine steps along a row, column 1 along a column, so this
    is `slice_normal` of those two.

    See Also
    --------
    slice_normal

    Examples
    --------
    >>> affine_normal(axial_affine((2.5, 0.5, 0.5)))
    array([0., 0., 1.])
    """
    matrix = np.asarray(affine, dtype=np.float64)
    return slice_normal(matrix[:3, 2], matrix[:3, 1])


def axial_affine(
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """The affine of a plain axial scan: slices up z (to the head), rows along y, columns along x.

    This is what a scanner writes for a supine patient with (0020,0037)
    *Image Orientation (Patient)* ``1, 0, 0, 0, 1, 0``. Use it to build
    volumes for examples and tests.

    Parameters
    ----------
    spacing : (slice, row, column) mm
    origin : (x, y, z) mm
        Patient LPS position of the first voxel's centre.

    Returns
    -------
    (4, 4) float64 ndarray
        Maps ``(slice, row, col, 1)`` to patient LPS millimetres.

    See Also
    --------
    Volume

    Examples
    --------
    >>> affine = axial_affine((2.5, 0.5, 0.4), origin=(-10.0, -20.0, 30.0))
    >>> affine @ [2, 1, 1, 1]
    array([ -9.6, -19.5,  35. ,   1. ])
    """
    slice_mm, row_mm, col_mm = (float(s) for s in spacing)
    affine = np.zeros((4, 4))
    affine[:3, 0] = (0.0, 0.0, slice_mm)
    affine[:3, 1] = (0.0, row_mm, 0.0)
    affine[:3, 2] = (col_mm, 0.0, 0.0)
    affine[:3, 3] = origin
    affine[3, 3] = 1.0
    return affine


def patient_axes(affine: np.ndarray) -> tuple[int, int, int]:
    """The array axis that runs most nearly along patient x, y and z.

    Found with `nibabel.orientations.io_orientation`, which first removes any
    shear (gantry tilt), so a tilted or oblique scan maps to its nearest
    canonical layout.

    Returns
    -------
    (x_axis, y_axis, z_axis) : tuple of int
        ``result[patient_axis]`` is the array axis (0 slice, 1 row, 2 column).

    See Also
    --------
    ctexplore.reorient : permutes a volume into a named layout.

    Examples
    --------
    >>> patient_axes(axial_affine())  # columns along x, rows along y, slices along z
    (2, 1, 0)
    """
    from nibabel.orientations import io_orientation

    orientation = io_orientation(np.asarray(affine, dtype=np.float64))
    if np.isnan(orientation).any():
        raise ValueError(f"affine columns are degenerate; no patient axis for every array axis:\n{affine}")
    by_patient = [0, 0, 0]
    for array_axis, (patient_axis, _sign) in enumerate(orientation):
        by_patient[int(patient_axis)] = array_axis
    return (by_patient[0], by_patient[1], by_patient[2])


def affine_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel spacing of an index-to-patient affine.

    Parameters
    ----------
    affine : (4, 4) array-like
        Maps ``(slice, row, col, 1)`` to patient coordinates in millimetres.

    Returns
    -------
    spacing : tuple of 3 floats
        Distance between slice planes measured along the slice normal, then
        between rows, then between columns. For a gantry-tilted (sheared)
        affine the first value is ``|s| cos(tilt)``, not the length of the
        stacking vector ``s``.

    See Also
    --------
    affine_normal : the slice normal of the same affine.

    Examples
    --------
    >>> import numpy as np
    >>> affine = np.diag([5.0, 0.5, 0.5, 1.0])
    >>> affine_spacing(affine)
    (5.0, 0.5, 0.5)
    """
    matrix = np.asarray(affine, dtype=np.float64)[:3, :3]
    stack, col_step, row_step = matrix[:, 0], matrix[:, 1], matrix[:, 2]
    normal = slice_normal(row_step, col_step)
    return (
        float(abs(stack @ normal)),
        float(np.linalg.norm(col_step)),
        float(np.linalg.norm(row_step)),
    )


def affine_tilt(affine: np.ndarray) -> float:
    """Angle in degrees between the slice stacking vector and the slice normal.

    This is the gantry tilt measured from geometry; ``0.0`` for an orthogonal
    grid. (0018,1120) *Gantry/Detector Tilt* is nominal and is never used.

    See Also
    --------
    ctexplore.correct_tilt : resamples a tilted volume onto an orthogonal grid.

    Examples
    --------
    >>> import numpy as np
    >>> affine = np.eye(4)  # axial: rows step along y, columns along x
    >>> affine[:3, :3] = [[0, 0, 1], [0, 1, 0], [1, 0, 0]]
    >>> affine[:3, 0] = [0.0, np.sin(np.radians(20)), np.cos(np.radians(20))]
    >>> round(affine_tilt(affine), 6)
    20.0
    """
    matrix = np.asarray(affine, dtype=np.float64)[:3, :3]
    stack = matrix[:, 0]
    normal = slice_normal(matrix[:, 2], matrix[:, 1])
    cosine = abs(stack @ normal) / np.linalg.norm(stack)
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


@dataclass(frozen=True, eq=False)
class Volume:
    """A CT volume in Hounsfield units and where each voxel sits in the patient.

    Parameters
    ----------
    hu : (slices, rows, cols) ndarray
        Hounsfield units; int16 where that is exact, float32 otherwise.
    affine : (4, 4) ndarray
        Maps ``(slice, row, col, 1)`` to patient LPS millimetres as DICOM
        defines them (x to the patient's left, y to posterior, z to head).
        Column 0 is the stacking vector between consecutive slices, column 1
        the step between rows, column 2 the step between columns, column 3
        the centre of the first voxel.
    padding : (slices, rows, cols) bool ndarray or None
        True where the scanner stored (0028,0120) *Pixel Padding Value*
        (outside the reconstructed field of view). Those voxels hold the air
        fill value in `hu`. None when the series declares no padding.
    files : tuple of Path
        Source files in slice order (one per slice; one file for Enhanced CT).
    meta : dict
        Header values later steps need: ``series_uid``, ``study_uid``,
        ``patient_id``, ``series_description``, ``modality``,
        ``slice_positions`` (mm along the normal), ``rescale_slope``,
        ``rescale_intercept``, ``nominal_gantry_tilt`` ...

    Examples
    --------
    >>> import numpy as np
    >>> vol = Volume(np.zeros((3, 4, 5), np.int16), np.diag([2.5, 0.5, 0.5, 1.0]))
    >>> vol.shape, vol.spacing, vol.gantry_tilt
    ((3, 4, 5), (2.5, 0.5, 0.5), 0.0)
    >>> vol.index_to_world([1, 2, 2])
    array([2.5, 1. , 1. ])
    """

    hu: np.ndarray
    affine: np.ndarray
    padding: np.ndarray | None = None
    files: tuple[Path, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError(f"hu must be 3-D (slices, rows, cols), got shape {self.hu.shape}")
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {affine.shape}")
        object.__setattr__(self, "affine", affine)
        if self.padding is not None and self.padding.shape != self.hu.shape:
            raise ValueError(f"padding mask shape {self.padding.shape} differs from hu shape {self.hu.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(slices, rows, cols)``."""
        slices, rows, cols = self.hu.shape
        return (slices, rows, cols)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Millimetres along the slice normal, between rows, between columns."""
        return affine_spacing(self.affine)

    @property
    def gantry_tilt(self) -> float:
        """Tilt in degrees measured from the geometry (0.0 for an orthogonal grid)."""
        return affine_tilt(self.affine)

    @property
    def is_tilted(self) -> bool:
        """True when the grid is sheared by more than 0.01 degrees."""
        return self.gantry_tilt > 0.01

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal: row direction x column direction (patient LPS)."""
        return affine_normal(self.affine)

    def index_to_world(self, index: np.ndarray) -> np.ndarray:
        """Patient LPS millimetres of ``(..., 3)`` voxel indices ``(slice, row, col)``."""
        index = np.asarray(index, dtype=np.float64)
        return index @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_index(self, point: np.ndarray) -> np.ndarray:
        """Fractional ``(slice, row, col)`` indices of ``(..., 3)`` patient LPS points."""
        point = np.asarray(point, dtype=np.float64)
        inverse = np.linalg.inv(self.affine)
        return point @ inverse[:3, :3].T + inverse[:3, 3]

    def with_hu(self, hu: np.ndarray, affine: np.ndarray | None = None, **changes: Any) -> Volume:
        """A copy carrying a new array (and optionally a new affine); metadata kept."""
        if affine is None and hu.shape != self.hu.shape:
            raise ValueError("a new shape needs a new affine")
        padding = changes.pop("padding", self.padding if hu.shape == self.hu.shape else None)
        return replace(
            self,
            hu=hu,
            affine=self.affine if affine is None else affine,
            padding=padding,
            **changes,
        )

    def __repr__(self) -> str:
        spacing = ", ".join(f"{s:.3g}" for s in self.spacing)
        description = self.meta.get("series_description", "")
        return (
            f"Volume(shape={self.shape}, dtype={self.hu.dtype}, spacing=({spacing}) mm, "
            f"tilt={self.gantry_tilt:.2f} deg, series={description!r})"
        )
