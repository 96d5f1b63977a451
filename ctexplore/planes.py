"""Which 2-D picture an axial, coronal or sagittal index shows, and where it sits in the patient.

Shared by :mod:`ctexplore.plotting` and :mod:`ctexplore.viewer`; numpy only.

Display conventions (radiological, as a reading room shows them):

- axial: patient anterior at the top, patient right on the image *left*;
- coronal: superior at the top, patient right on the image left;
- sagittal: superior at the top, anterior on the image left.

Patient directions follow DICOM's patient coordinate system (LPS: x to the
patient's left, y posterior, z towards the head; PS3.3 C.7.6.2.1.1), and an
array axis's direction is read from the affine built from (0020,0037) *Image
Orientation (Patient)*. The plane names are patient directions, not array axes: for an ordinary axial
series (``hu[slice, row, col]`` with rows stepping to posterior and columns to
the patient's left, LPS) the axial plane is ``hu[k]`` unchanged, the coronal
plane is ``hu[:, r, :]`` and the sagittal plane ``hu[:, :, c]``, both flipped
upside down when slice index grows towards the head. A coronal or sagittal
acquisition is mapped the same way from its affine.

Pitfall: ``np.diag([5.0, 0.5, 0.5, 1.0])`` as an affine stacks the slices along
patient x, i.e. it describes a *sagittal* series, and its "axial" plane is a
cut across the array. An axial series steps slices along z: column 0 of the
affine is ``(0, 0, slice_spacing)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .volume import patient_axes, slice_normal

if TYPE_CHECKING:  # pragma: no cover
    from .volume import Volume

PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")

# per plane: (patient axis of the normal, patient axis running down the image,
# sign that axis should have going down, patient axis running right, sign going right)
# patient axes are LPS: 0 = x (to the patient's left), 1 = y (posterior), 2 = z (head)
_LAYOUT = {
    "axial": (2, 1, +1, 0, +1),
    "coronal": (1, 2, -1, 0, +1),
    "sagittal": (0, 2, -1, 1, +1),
}
_AXIS_NAMES = "xyz"
# a plane normal within this angle of a patient axis is labelled with that axis
_ALIGNED_COSINE = np.cos(np.radians(1.0))


@dataclass(frozen=True)
class PlaneGeometry:
    """How one plane of a volume is cut out of the array and laid out on screen.

    Attributes
    ----------
    plane : str
        ``"axial"``, ``"coronal"`` or ``"sagittal"``.
    slice_axis, vertical_axis, horizontal_axis : int
        Array axes (0 slice, 1 row, 2 column) that the plane index steps
        along, and that run down and across the displayed image.
    flip_vertical, flip_horizontal : bool
        Whether the displayed image reverses that array axis.
    n_slices : int
        Number of planes (valid indices are ``0 .. n_slices - 1``).
    pixel_height, pixel_width : float
        Millimetres between displayed rows and between displayed columns.
    """

    plane: str
    slice_axis: int
    vertical_axis: int
    horizontal_axis: int
    flip_vertical: bool
    flip_horizontal: bool
    n_slices: int
    pixel_height: float
    pixel_width: float

    @property
    def aspect(self) -> float:
        """``pixel_height / pixel_width``: matplotlib's ``imshow(aspect=...)``."""
        return self.pixel_height / self.pixel_width


def check_plane(plane: str) -> str:
    """Return `plane` if it is one of :data:`PLANES`, else raise a ValueError."""
    if plane not in _LAYOUT:
        raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")
    return plane


def plane_geometry(volume: Volume, plane: str) -> PlaneGeometry:
    """Lay out `plane` of `volume` for display (see the module docstring).

    Parameters
    ----------
    volume : Volume
    plane : {"axial", "coronal", "sagittal"}

    Returns
    -------
    PlaneGeometry

    See Also
    --------
    slice_image : the 2-D image of one plane, laid out by this geometry.
    ctexplore.plotting.plot_slice_grid : pictures drawn with it.

    Examples
    --------
    5 mm axial slices of 0.5 mm pixels, slice index growing towards the head:

    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> axial = np.zeros((4, 4))  # slices step to the head (z), rows to posterior, columns to the left
    >>> axial[2, 0], axial[1, 1], axial[0, 2], axial[3, 3] = 5.0, 0.5, 0.5, 1.0
    >>> vol = Volume(np.zeros((40, 64, 64), np.int16), axial)
    >>> coronal = plane_geometry(vol, "coronal")
    >>> coronal.slice_axis, coronal.vertical_axis, coronal.flip_vertical, coronal.aspect
    (1, 0, True, 10.0)
    """
    normal_axis, down_axis, down_sign, right_axis, right_sign = _LAYOUT[check_plane(plane)]
    array_axis = patient_axes(volume.affine)
    vertical, horizontal = array_axis[down_axis], array_axis[right_axis]
    spacing = volume.spacing
    return PlaneGeometry(
        plane=plane,
        slice_axis=array_axis[normal_axis],
        vertical_axis=vertical,
        horizontal_axis=horizontal,
        flip_vertical=bool(volume.affine[down_axis, vertical] * down_sign < 0),
        flip_horizontal=bool(volume.affine[right_axis, horizontal] * right_sign < 0),
        n_slices=volume.shape[array_axis[normal_axis]],
        pixel_height=spacing[vertical],
        pixel_width=spacing[horizontal],
    )


def _check_index(geometry: PlaneGeometry, index: int) -> int:
    index = int(index)
    if not 0 <= index < geometry.n_slices:
        raise IndexError(f"{geometry.plane} index {index} is outside 0..{geometry.n_slices - 1}")
    return index


def slice_image(hu: np.ndarray, geometry: PlaneGeometry, index: int) -> np.ndarray:
    """The 2-D image of plane `index`, oriented for display (a view, no copy).

    Parameters
    ----------
    hu : (slices, rows, cols) ndarray
        Any per-voxel array of the volume (HU, a mask, a padding mask).
    geometry : PlaneGeometry
        From :func:`plane_geometry`.
    index : int
        Plane index, ``0 .. geometry.n_slices - 1``.

    Returns
    -------
    (height, width) ndarray
        Row 0 is the top of the picture.

    See Also
    --------
    plane_geometry : how the plane is laid out.
    voxel_index : the array index under a displayed pixel.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> hu = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    >>> axial = np.zeros((4, 4))  # slices step to the head (z), rows to posterior, columns to the left
    >>> axial[2, 0], axial[1, 1], axial[0, 2], axial[3, 3] = 5.0, 0.5, 0.5, 1.0
    >>> vol = Volume(hu, axial)
    >>> slice_image(hu, plane_geometry(vol, "coronal"), 0)  # head (slice 1) on top
    array([[12, 13, 14, 15],
           [ 0,  1,  2,  3]], dtype=int16)
    """
    index = _check_index(geometry, index)
    cut: list[int | slice] = [slice(None)] * 3
    cut[geometry.slice_axis] = index
    image = hu[tuple(cut)]
    if geometry.vertical_axis > geometry.horizontal_axis:
        image = image.T
    return image[
        slice(None, None, -1 if geometry.flip_vertical else 1),
        slice(None, None, -1 if geometry.flip_horizontal else 1),
    ]


def voxel_index(
    geometry: PlaneGeometry, shape: tuple[int, int, int], index: int, row: int, col: int
) -> tuple[int, int, int]:
    """Array index ``(slice, row, col)`` of displayed pixel (`row`, `col`) of plane `index`.

    See Also
    --------
    display_pixel : the inverse mapping.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> axial = np.zeros((4, 4))  # slices step to the head (z), rows to posterior, columns to the left
    >>> axial[2, 0], axial[1, 1], axial[0, 2], axial[3, 3] = 5.0, 0.5, 0.5, 1.0
    >>> vol = Volume(np.zeros((2, 3, 4), np.int16), axial)
    >>> voxel_index(plane_geometry(vol, "coronal"), vol.shape, 1, 0, 3)
    (1, 1, 3)
    """
    index = _check_index(geometry, index)
    height, width = shape[geometry.vertical_axis], shape[geometry.horizontal_axis]
    if not (0 <= row < height and 0 <= col < width):
        raise IndexError(f"pixel ({row}, {col}) is outside the {height} x {width} image")
    voxel = [0, 0, 0]
    voxel[geometry.slice_axis] = index
    voxel[geometry.vertical_axis] = height - 1 - row if geometry.flip_vertical else row
    voxel[geometry.horizontal_axis] = width - 1 - col if geometry.flip_horizontal else col
    return int(voxel[0]), int(voxel[1]), int(voxel[2])


def display_pixel(
    geometry: PlaneGeometry, shape: tuple[int, int, int], voxel: tuple[float, float, float]
) -> tuple[float, float]:
    """Displayed ``(row, col)`` of array index `voxel`; inverse of :func:`voxel_index`."""
    height, width = shape[geometry.vertical_axis], shape[geometry.horizontal_axis]
    row = float(voxel[geometry.vertical_axis])
    col = float(voxel[geometry.horizontal_axis])
    return (
        height - 1 - row if geometry.flip_vertical else row,
        width - 1 - col if geometry.flip_horizontal else col,
    )


def slice_positions(volume: Volume, geometry: PlaneGeometry) -> tuple[str | None, np.ndarray]:
    """Position of every plane's centre along the plane normal, in millimetres.

    Returns
    -------
    axis : {"x", "y", "z"} or None
        The patient axis (LPS: x to the patient's left, y posterior, z to the
        head) when the normal runs within 1 degree of it; None for oblique or
        gantry-tilted planes, whose positions are then measured along the
        normal itself.
    positions : (n_slices,) float64 ndarray

    See Also
    --------
    ctexplore.volume.affine_normal : the normal the positions are measured along.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> axial = np.zeros((4, 4))  # slices step to the head (z), rows to posterior, columns to the left
    >>> axial[2, 0], axial[1, 1], axial[0, 2], axial[3, 3] = 5.0, 0.5, 0.5, 1.0
    >>> axial[:3, 3] = [10.0, -20.0, -30.0]  # centre of voxel (0, 0, 0)
    >>> vol = Volume(np.zeros((3, 4, 4), np.int16), axial)
    >>> slice_positions(vol, plane_geometry(vol, "axial"))
    ('z', array([-30., -25., -20.]))
    """
    centres = np.tile((np.asarray(volume.shape, dtype=np.float64) - 1) / 2, (geometry.n_slices, 1))
    centres[:, geometry.slice_axis] = np.arange(geometry.n_slices)
    points = volume.index_to_world(centres)
    in_plane = [axis for axis in range(3) if axis != geometry.slice_axis]
    normal = slice_normal(volume.affine[:3, in_plane[0]], volume.affine[:3, in_plane[1]])
    patient_axis = int(np.argmax(np.abs(normal)))
    if abs(normal[patient_axis]) >= _ALIGNED_COSINE:
        return _AXIS_NAMES[patient_axis], points[:, patient_axis]
    if normal[patient_axis] < 0:
        normal = -normal
    return None, points @ normal


def position_label(axis: str | None, millimetres: float) -> str:
    """``"z = 35.0 mm"``, or ``"35.0 mm along normal"`` when `axis` is None.

    Examples
    --------
    >>> position_label("z", 35.0), position_label(None, -2.25)
    ('z = 35.0 mm', '-2.2 mm along normal')
    """
    if axis is None:
        return f"{millimetres:.1f} mm along normal"
    return f"{axis} = {millimetres:.1f} mm"


def window_setting(window: str | tuple[float, float]) -> tuple[float, float, str]:
    """``(center, width, label)`` of a preset name or a ``(center, width)`` pair in HU.

    The window is checked by `ctexplore.intensity.resolve_window`; this adds the label.

    See Also
    --------
    ctexplore.intensity.resolve_window : the one window check behind this.

    Examples
    --------
    >>> window_setting("brain")
    (40.0, 80.0, 'brain 40/80')
    >>> window_setting((50, 150))
    (50.0, 150.0, 'window 50/150')
    """
    from .intensity import resolve_window

    center, width = resolve_window(window)
    name = window if isinstance(window, str) else "window"
    return float(center), float(width), f"{name} {center:g}/{width:g}"
