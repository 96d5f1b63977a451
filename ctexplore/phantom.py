"""Synthetic head CT written as real DICOM files: sample data for notebooks and fixtures for tests.

`phantom_hu` is an analytic head (scalp, skull, grey and white matter, ventricles,
a hyperdense bleed) defined at any patient point, so the truth behind every
written voxel is known exactly. `write_series` samples it on a CT slice grid
(optionally gantry-tilted, shuffled, padded, rescaled per slice, compressed) and
writes CT Image Storage files; `write_study` writes a whole scanner-style export
folder with several series, a localizer and the non-image files a loader must skip.
Everything is deterministic: the same arguments give byte-identical files.

The realistic head and its ground truth live in `ctexplore.headmodel`, the DICOM
encoding and atomic file writing in `ctexplore.dicomwriter`; this module plans the
series (geometry, quirks) and joins the two.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from .dicomwriter import (
    CT_IMAGE_STORAGE,
    ENHANCED_CT_IMAGE_STORAGE,
    MEDIA_STORAGE_DIRECTORY_STORAGE,
    NON_IMAGE_FILES,
    SECONDARY_CAPTURE_STORAGE,
    SUPPORTED_TRANSFER_SYNTAXES,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    _as_vr,
    _ct_slice_dataset,
    _ds,
    _ds_value,
    _set_image_pixel_module,
    _stored_range,
    _uid,
    _write_dataset,
    _write_non_images,
)
from .headmodel import (
    ImageFormation,
    correlated_noise,
    form_image,
    head_labels,
    lesion_volumes_ml,
)

__all__ = [
    "CT_IMAGE_STORAGE",
    "ENHANCED_CT_IMAGE_STORAGE",
    "MEDIA_STORAGE_DIRECTORY_STORAGE",
    "NON_IMAGE_FILES",
    "SAMPLE_IMAGE_FORMATION",
    "SECONDARY_CAPTURE_STORAGE",
    "SUPPORTED_TRANSFER_SYNTAXES",
    "WrittenSeries",
    "default_study_series",
    "full_size_series",
    "phantom_hu",
    "write_enhanced_series",
    "write_localizer",
    "write_series",
    "write_study",
]


AIR_HU = -1000.0
DEFAULT_FIELD_OF_VIEW_MM = 230.4  # a typical head-CT display field: 512 x 0.45 mm
MARKER_PEAK_HU = 3000.0
MARKER_EDGE_HU = 2000.0

# The head: an ellipsoid centred at the origin of patient LPS (x left, y posterior, z head).
HEAD_SEMI_AXES_MM = (72.0, 92.0, 85.0)
_SCALP_MM = 4.0
_SKULL_MM = 7.0
_CORTEX_MM = 3.0
_SCALP_HU = 40.0
_GREY_HU = 38.0
_WHITE_HU = 26.0
_CSF_HU = 5.0
_BLEED_HU = 70.0
_EYE_HU = 12.0
_PINEAL_HU = 150.0
_SKULL_TABLE_HU = 1500.0  # dense outer and inner tables
_SKULL_DIPLOE_HU = 1000.0  # spongy middle layer

# (centre xyz mm, semi-axes xyz mm, HU), painted in this order over the layered head.
# Right is -x in LPS, anterior is -y: the bleed is right frontal.
_INCLUSIONS: tuple[tuple[tuple[float, float, float], tuple[float, float, float], float], ...] = (
    ((-11.0, 2.0, 18.0), (6.0, 26.0, 11.0), _CSF_HU),  # right lateral ventricle
    ((11.0, 2.0, 18.0), (6.0, 26.0, 11.0), _CSF_HU),  # left lateral ventricle
    ((-33.0, -66.0, -34.0), (11.0, 11.0, 11.0), _EYE_HU),  # right eye
    ((33.0, -66.0, -34.0), (11.0, 11.0, 11.0), _EYE_HU),  # left eye
    ((-30.0, -42.0, 32.0), (10.0, 13.0, 9.0), _BLEED_HU),  # right frontal haemorrhage
    ((0.0, 22.0, 10.0), (2.5, 2.5, 2.5), _PINEAL_HU),  # calcified pineal gland
)


def phantom_hu(
    points: np.ndarray,
    *,
    markers: Iterable[Sequence[float]] = (),
    marker_radius: float = 3.0,
) -> np.ndarray:
    """Hounsfield units of the analytic head phantom at patient points.

    The head is an ellipsoid (semi-axes 72, 92, 85 mm along x, y, z) centred at
    the origin of patient LPS coordinates, made of shells of constant thickness
    measured along rays from the centre: scalp 40 HU (4 mm), skull 1000-1500 HU
    (7 mm: dense tables, lighter diploe), cortical grey matter 38 HU (3 mm), and
    white matter 26 HU inside. Two CSF ventricles (5 HU), two eyes, a calcified
    pineal gland (150 HU) and a right frontal haemorrhage (70 HU) sit inside.
    Outside the head is air, -1000 HU. This is the noise-free truth.

    Parameters
    ----------
    points : (..., 3) array-like
        Patient LPS coordinates in millimetres.
    markers : iterable of (x, y, z), optional
        Centres of very dense beads (2000 HU at the rim rising to 3000 HU at the
        centre), so that the brightest voxel of a sampled volume is the one
        closest to the marker.
    marker_radius : float, default 3.0
        Radius of each bead in millimetres.

    Returns
    -------
    hu : (...) float32 ndarray

    Examples
    --------
    >>> import numpy as np
    >>> phantom_hu(np.array([[0.0, 0.0, 200.0],  # above the head: air
    ...                      [0.0, 0.0, 84.0],   # scalp at the vertex
    ...                      [0.0, 0.0, 0.0],    # deep white matter
    ...                      [-30.0, -42.0, 32.0]]))  # inside the bleed
    array([-1000.,    40.,    26.,    70.], dtype=float32)

    A marker bead is brightest at its centre:

    >>> phantom_hu(np.array([[10.0, 0.0, 0.0], [11.5, 0.0, 0.0]]), markers=[(10, 0, 0)])
    array([3000., 2750.], dtype=float32)
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-1:] != (3,):
        raise ValueError(f"points must have shape (..., 3), got {points.shape}")
    shape = points.shape[:-1]
    x, y, z = (np.ascontiguousarray(points[..., axis]).ravel() for axis in range(3))
    a, b, c = HEAD_SEMI_AXES_MM
    normalised_radius = np.sqrt((x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2)
    distance = np.sqrt(x * x + y * y + z * z)
    # Depth below the skin along the ray from the head centre: the surface point on that
    # ray is p / normalised_radius, so depth = |p| (1 / r - 1); infinite at the centre.
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = distance * (1.0 / normalised_radius - 1.0)
    depth[normalised_radius == 0] = np.inf

    scalp_end = _SCALP_MM
    skull_end = scalp_end + _SKULL_MM
    cortex_end = skull_end + _CORTEX_MM
    hu = np.full(x.shape, _WHITE_HU)
    hu[depth < cortex_end] = _GREY_HU
    skull = (depth >= scalp_end) & (depth < skull_end)
    skull_fraction = (depth[skull] - scalp_end) / _SKULL_MM
    hu[skull] = _SKULL_TABLE_HU - (_SKULL_TABLE_HU - _SKULL_DIPLOE_HU) * np.sin(np.pi * skull_fraction)
    hu[depth < scalp_end] = _SCALP_HU
    hu[normalised_radius > 1.0] = AIR_HU

    if x.size:
        low = np.array([x.min(), y.min(), z.min()])
        high = np.array([x.max(), y.max(), z.max()])
    for centre, semi_axes, value in _INCLUSIONS:
        if _box_overlaps(low, high, centre, semi_axes):
            hu[_in_ellipsoid(x, y, z, centre, semi_axes)] = value

    radius = float(marker_radius)
    for marker in markers:
        if not _box_overlaps(low, high, marker, (radius, radius, radius)):
            continue
        squared = (x - marker[0]) ** 2 + (y - marker[1]) ** 2 + (z - marker[2]) ** 2
        bead = squared <= radius * radius
        hu[bead] = MARKER_PEAK_HU - (MARKER_PEAK_HU - MARKER_EDGE_HU) * squared[bead] / (radius * radius)
    return hu.astype(np.float32).reshape(shape)


def _box_overlaps(low: np.ndarray, high: np.ndarray, centre: Sequence[float], semi_axes: Sequence[float]) -> bool:
    """Whether the bounding box of the points can meet the ellipsoid's bounding box."""
    centre, semi_axes = np.asarray(centre, dtype=np.float64), np.asarray(semi_axes, dtype=np.float64)
    return bool(np.all(low <= centre + semi_axes) and np.all(high >= centre - semi_axes))


def _in_ellipsoid(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, centre: Sequence[float], semi_axes: Sequence[float]
) -> np.ndarray:
    (cx, cy, cz), (a, b, c) = centre, semi_axes
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 + ((z - cz) / c) ** 2 <= 1.0


@dataclass(frozen=True, eq=False)
class WrittenSeries:
    """What `write_series` wrote, and the truth a correct loader must recover.

    Attributes
    ----------
    folder : Path
    files : tuple of Path
        One file per slice, in spatial order (ascending along the slice normal),
        whatever their names and (0020,0013) *Instance Number*.
    series_uid, study_uid : str
    affine : (4, 4) ndarray or None
        Maps ``(slice, row, col, 1)`` to patient LPS mm exactly as `Volume.affine`
        does (sheared when tilted); None when the slice positions are uneven.
    slice_positions : (slices,) ndarray
        Position of each slice plane along the normal, mm (``normal . IPP``).
    image_positions : (slices, 3) ndarray
        (0020,0032) *Image Position (Patient)* of each slice, as written.
    orientation : (6,) ndarray
        (0020,0037) *Image Orientation (Patient)*, as written.
    pixel_spacing : (2,) ndarray
        (0028,0030) *Pixel Spacing*: between rows, between columns.
    shape : tuple of int
        ``(slices, rows, cols)``.
    rescale_slopes, rescale_intercepts : (slices,) ndarray
    padding_value : int or None
        Stored value marking pixels outside the field of view (None: none written).
    padding_range_limit : int or None
    fov_diameter : float
        Diameter in mm of the reconstructed circle; pixels outside are padding.
    markers : tuple of (x, y, z)
    marker_radius : float
    description : str
    transfer_syntax : str
    image_formation : ImageFormation or None
        How the realistic head model (`ctexplore.headmodel`) was imaged; None
        when the pixels sample the simple `phantom_hu` at pixel centres.
    """

    folder: Path
    files: tuple[Path, ...]
    series_uid: str
    study_uid: str
    affine: np.ndarray | None
    slice_positions: np.ndarray
    image_positions: np.ndarray
    orientation: np.ndarray
    pixel_spacing: np.ndarray
    shape: tuple[int, int, int]
    rescale_slopes: np.ndarray
    rescale_intercepts: np.ndarray
    padding_value: int | None = None
    padding_range_limit: int | None = None
    fov_diameter: float = np.inf
    markers: tuple[tuple[float, float, float], ...] = ()
    marker_radius: float = 3.0
    description: str = ""
    transfer_syntax: str = ExplicitVRLittleEndian
    meta: dict[str, Any] = field(default_factory=dict)
    image_formation: ImageFormation | None = None

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal: row direction x column direction."""
        return np.cross(self.orientation[:3], self.orientation[3:])

    def pixel_centres(self, slice_index: int | None = None) -> np.ndarray:
        """Patient LPS mm of every pixel centre: ``(slices, rows, cols, 3)``, or one slice's ``(rows, cols, 3)``."""
        in_plane = _in_plane_offsets(self.shape[1:], self.pixel_spacing, self.orientation)
        if slice_index is not None:
            return in_plane + self.image_positions[slice_index]
        return in_plane[None] + self.image_positions[:, None, None, :]

    def expected_padding(self) -> np.ndarray | None:
        """Where the files hold padding, ``(slices, rows, cols)`` bool; None without a padding tag."""
        if self.padding_value is None:
            return None
        outside = _outside_fov(self.shape[1:], self.pixel_spacing, self.fov_diameter)
        return np.broadcast_to(outside, self.shape)

    def _noise_free_slice(self, k: int) -> np.ndarray:
        centres = self.pixel_centres(k)
        if self.image_formation is None:
            return phantom_hu(centres, markers=self.markers, marker_radius=self.marker_radius)
        row_step = self.pixel_spacing[0] * self.orientation[3:]
        col_step = self.pixel_spacing[1] * self.orientation[:3]
        thickness = self.meta["slice_thickness"] * self.normal
        return form_image(centres, row_step, col_step, thickness, self.image_formation)

    def labels(self) -> np.ndarray:
        """Ground-truth label of every voxel centre, ``(slices, rows, cols)`` uint8 (see `ctexplore.headmodel.LABELS`).

        Needs a series written with an `image_formation` (the realistic head).
        """
        if self.image_formation is None:
            raise ValueError("labels exist for series written with image_formation= (the realistic head model)")
        return head_labels(self.pixel_centres(), self.image_formation.lesions)

    def lesion_volumes_ml(self) -> dict[str, float]:
        """Volume in mL of each lesion at the written grid: label voxel count x voxel volume."""
        plane_step = (
            abs(float(np.diff(self.slice_positions).mean())) if self.shape[0] > 1 else self.meta["slice_thickness"]
        )
        voxel = float(self.pixel_spacing[0] * self.pixel_spacing[1]) * plane_step
        return lesion_volumes_ml(self.labels(), voxel)

    def write_truth(self, folder: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Save the labels (``<folder>/<series uid>_labels.npz``: ``labels``, ``affine``, label ``names``)
        and lesion volumes (``..._lesions.json``, mL), each written atomically."""
        import json

        from .headmodel import LABELS

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"{self.description.replace(' ', '_')}_{self.series_uid[-12:]}"
        npz, report = stem.with_name(stem.name + "_labels.npz"), stem.with_name(stem.name + "_lesions.json")
        temporary = npz.with_name(f".{npz.name}.{uuid.uuid4().hex}.tmp")
        with open(temporary, "wb") as handle:
            np.savez_compressed(
                handle,
                labels=self.labels(),
                affine=self.affine if self.affine is not None else np.eye(4),
                names=np.array(list(LABELS)),
            )
        os.replace(temporary, npz)
        temporary = report.with_name(f".{report.name}.{uuid.uuid4().hex}.tmp")
        temporary.write_text(
            json.dumps(
                {
                    "series_uid": self.series_uid,
                    "description": self.description,
                    "volumes_ml": self.lesion_volumes_ml(),
                },
                indent=2,
            )
        )
        os.replace(temporary, report)
        return npz, report

    def expected_hu(self, *, quantized: bool = False, fill_value: float = AIR_HU) -> np.ndarray:
        """The noise-free truth of the written grid, recomputed on demand.

        Parameters
        ----------
        quantized : bool, default False
            False: `phantom_hu` at the pixel centres (float32). True: what a correct
            reader returns for a noise-free series: each slice's values rounded
            to its stored integers, clipped to the stored range and rescaled,
            with `fill_value` where padding is (float32).
        fill_value : float, default -1000
            HU of padding voxels when `quantized`.
        """
        out = np.empty(self.shape, dtype=np.float32)
        outside = _outside_fov(self.shape[1:], self.pixel_spacing, self.fov_diameter)
        low, high = self.meta["stored_range"]
        for k in range(self.shape[0]):
            hu = self._noise_free_slice(k)
            if quantized:
                slope, intercept = self.rescale_slopes[k], self.rescale_intercepts[k]
                stored = np.clip(np.rint((hu - intercept) / slope), low, high)
                hu = (stored * slope + intercept).astype(np.float32)
                if self.padding_value is not None:
                    hu[outside] = fill_value
                else:
                    hu[outside] = np.clip(np.rint((AIR_HU - intercept) / slope), low, high) * slope + intercept
            out[k] = hu
        return out


def write_series(
    dest: str | os.PathLike[str],
    *,
    n_slices: int = 40,
    matrix: int | tuple[int, int] = 128,
    pixel_spacing: tuple[float, float] | None = None,
    slice_spacing: float = 5.0,
    gantry_tilt: float = 0.0,
    first_position_z: float | None = None,
    slice_positions: Sequence[float] | None = None,
    padding_value: int | None = -2000,
    padding_range_limit: int | None = None,
    padding_vr: str | None = None,
    fov_diameter: float | None = None,
    signed: bool = True,
    bits_stored: int = 16,
    junk_high_bits: bool = False,
    rescale_slope: float | Sequence[float] = 1.0,
    rescale_intercept: float | Sequence[float] = -1024.0,
    transfer_syntax: str = ExplicitVRLittleEndian,
    file_meta: bool = True,
    shuffle: bool = False,
    noise: float = 0.0,
    markers: Iterable[Sequence[float]] = (),
    marker_radius: float | None = None,
    series_description: str = "PHANTOM HEAD",
    series_number: int = 1,
    patient_id: str = "PHANTOM-001",
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    seed: int = 0,
    file_prefix: str = "IM",
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    nominal_tilt_tag: bool = True,
    slice_thickness: float | None = None,
    bogus_spacing_between_slices: float | None = None,
    convolution_kernel: str = "H30s",
    image_formation: ImageFormation | None = None,
) -> WrittenSeries:
    """Write the phantom as one axial CT series, one CT Image Storage file per slice.

    Parameters
    ----------
    dest : path-like
        Folder to write into (created if needed). Files are ``<prefix>0001.dcm`` ...
    n_slices : int, default 40
    matrix : int or (rows, cols), default 128
    pixel_spacing : (float, float), optional
        (0028,0030) *Pixel Spacing*: between rows, between columns (mm).
        Default: a 230.4 mm field of view whatever the matrix (1.8 mm at 128,
        0.45 mm at 512), so the whole head is always in the picture.
    slice_spacing : float, default 5.0
        Distance between slice *planes* measured along the slice normal (mm).
        With a gantry tilt ``t`` the table moves ``slice_spacing / cos(t)``
        between slices, so (0020,0032) *Image Position (Patient)* steps by
        ``(0, 0, slice_spacing / cos(t))``.
    gantry_tilt : float, default 0.0
        Degrees. Rows run along ``(1, 0, 0)``, columns along
        ``(0, cos t, -sin t)`` (CQ500's 24 degrees: ``[1, 0, 0, 0, 0.913545,
        -0.406737]``); the normal is ``(0, sin t, cos t)``.
    first_position_z : float, optional
        z (mm) of the first slice's centre; default centres the slab on the head.
    slice_positions : sequence of float, optional
        Plane positions along the normal (mm), non-decreasing; overrides
        `n_slices`, `slice_spacing` and `first_position_z`, for uneven spacing,
        gaps and duplicates.
    padding_value : int or None, default -2000
        Stored value for pixels outside the circular field of view, written as
        (0028,0120) *Pixel Padding Value*. None writes no tag and fills those
        pixels with air.
    padding_range_limit : int, optional
        Writes (0028,0121) *Pixel Padding Range Limit*; padding pixels then take
        every value between it and `padding_value`.
    padding_vr : {'SS', 'US'}, optional
        VR of the padding tags; default matches `signed`. ``'US'`` on a signed
        image writes the two's complement (65536 - 2000 = 63536), a trap seen in
        real files.
    fov_diameter : float, optional
        Reconstruction circle in mm; default 0.92 of the smaller image side, so
        the corners are padding.
    signed : bool, default True
        (0028,0103) *Pixel Representation* 1 (int16) or 0 (uint16).
    bits_stored : int, default 16
        (0028,0101) *Bits Stored*; values are clipped to its range.
    junk_high_bits : bool, default False
        Set the bits above (0028,0102) *High Bit* in a regular pattern of
        non-padding pixels (needs ``bits_stored < 16`` and an uncompressed
        syntax); a correct reader masks them off.
    rescale_slope, rescale_intercept : float or sequence of float
        One value, or one per slice in spatial order; written in every file.
    transfer_syntax : str, default Explicit VR Little Endian
        Any of `SUPPORTED_TRANSFER_SYNTAXES`; compressed ones are lossless.
    file_meta : bool, default True
        False writes an old-archive file: no preamble, no file meta, implicit VR
        little endian (requires that `transfer_syntax`).
    shuffle : bool, default False
        Give file names and (0020,0013) *Instance Number* two independent
        deterministic permutations unrelated to spatial order.
    noise : float, default 0.0
        Standard deviation (HU) of seeded Gaussian noise added to the pixels.
    markers : iterable of (x, y, z)
        Dense beads placed in the phantom at these LPS points (see `phantom_hu`).
    marker_radius : float, optional
        Default: large enough that a slice and a few pixels always hit the bead.
    series_description, series_number, patient_id : header values
    study_uid, series_uid, frame_of_reference_uid : str, optional
        Default: derived deterministically from `patient_id`, `seed` and the geometry.
    seed : int, default 0
        Seeds the noise, the shuffle and the derived UIDs.
    file_prefix : str, default "IM"
    image_type : sequence of str
    nominal_tilt_tag : bool, default True
        Write (0018,1120) *Gantry/Detector Tilt*.
    slice_thickness : float, optional
        (0018,0050) *Slice Thickness*; default `slice_spacing`.
    bogus_spacing_between_slices : float, optional
        Written verbatim as (0018,0088) *Spacing Between Slices*; pass a wrong
        value (the blog's header says 21.893 for 0.625 mm slices) to test that
        a reader ignores it.
    convolution_kernel : str, default "H30s"
    image_formation : ImageFormation, optional
        Image the realistic head of `ctexplore.headmodel` (partial volume, slice
        profile of `slice_thickness`, correlated noise, lesions) instead of
        sampling `phantom_hu` at the pixel centres. Then `noise` and `markers`
        must be left at their defaults.

    Returns
    -------
    WrittenSeries

    Examples
    --------
    >>> import tempfile
    >>> import pydicom
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     written = write_series(folder, n_slices=4, matrix=32, slice_spacing=5.0,
    ...                            gantry_tilt=20.0, shuffle=True)
    ...     ds = pydicom.dcmread(written.files[0])
    ...     [f.name for f in written.files] != sorted(f.name for f in written.files)
    True
    >>> [round(v, 6) for v in ds.ImageOrientationPatient]
    [1.0, 0.0, 0.0, 0.0, 0.939693, -0.34202]
    >>> written.affine[:3, 0].round(4)  # the table moves 5 / cos(20 deg) between slices
    array([0.    , 0.    , 5.3209])
    >>> np.diff(written.slice_positions).round(6)  # planes are 5 mm apart along the normal
    array([5., 5., 5.])

    Pixels outside the reconstruction circle hold the padding value, not air:

    >>> int(ds.pixel_array[0, 0]), int(ds.PixelPaddingValue)
    (-2000, -2000)
    """
    transfer_syntax = UID(transfer_syntax)
    if transfer_syntax not in SUPPORTED_TRANSFER_SYNTAXES:
        raise ValueError(
            f"transfer_syntax {transfer_syntax} ({transfer_syntax.name}) is not supported; "
            f"use one of {', '.join(ts.name for ts in SUPPORTED_TRANSFER_SYNTAXES)}"
        )
    if not file_meta and transfer_syntax != ImplicitVRLittleEndian:
        raise ValueError("file_meta=False writes old-archive files: use transfer_syntax=ImplicitVRLittleEndian")
    if not 8 <= bits_stored <= 16:
        raise ValueError(f"bits_stored must be 8..16 (Bits Allocated is 16), got {bits_stored}")
    if junk_high_bits and (bits_stored == 16 or transfer_syntax not in UNCOMPRESSED_TRANSFER_SYNTAXES):
        raise ValueError("junk_high_bits needs bits_stored < 16 and an uncompressed transfer syntax")
    rows, cols = (matrix, matrix) if np.isscalar(matrix) else (int(matrix[0]), int(matrix[1]))
    if pixel_spacing is None:
        pixel_spacing = (DEFAULT_FIELD_OF_VIEW_MM / rows, DEFAULT_FIELD_OF_VIEW_MM / cols)
    if rows < 1 or cols < 1:
        raise ValueError(f"matrix must be positive, got {matrix}")
    spacing = np.array([_ds_value(v) for v in pixel_spacing])
    tilt = float(gantry_tilt)
    if not abs(tilt) < 60.0:
        raise ValueError(f"gantry_tilt must be between -60 and 60 degrees, got {gantry_tilt}")
    cos_tilt = np.cos(np.radians(tilt))

    if slice_positions is None:
        if n_slices < 1:
            raise ValueError(f"n_slices must be at least 1, got {n_slices}")
        table_step = slice_spacing / cos_tilt
        if first_position_z is None:
            first_position_z = -0.5 * (n_slices - 1) * table_step
        centres_z = first_position_z + table_step * np.arange(n_slices)
    else:
        planes = np.asarray(slice_positions, dtype=np.float64)
        if planes.ndim != 1 or planes.size == 0 or np.any(np.diff(planes) < 0):
            raise ValueError("slice_positions must be a non-empty, non-decreasing 1-D sequence (mm along the normal)")
        centres_z = planes / cos_tilt
        n_slices = planes.size
    low, high = _stored_range(signed, bits_stored)
    slopes = _per_slice(rescale_slope, n_slices, "rescale_slope")
    intercepts = _per_slice(rescale_intercept, n_slices, "rescale_intercept")
    if np.any(slopes == 0):
        raise ValueError("rescale_slope must not be zero")
    padding_vr = padding_vr or ("SS" if signed else "US")
    if padding_vr not in ("SS", "US"):
        raise ValueError(f"padding_vr must be 'SS' or 'US', not {padding_vr!r}")
    for name, value in (("padding_value", padding_value), ("padding_range_limit", padding_range_limit)):
        if value is not None and not low <= value <= high:
            raise ValueError(
                f"{name}={value} is outside the stored range [{low}, {high}] of "
                f"{'signed' if signed else 'unsigned'} {bits_stored}-bit pixels; pass e.g. "
                f"{name}={low if not signed else -2000}"
            )
    if padding_range_limit is not None and padding_value is None:
        raise ValueError("padding_range_limit needs a padding_value")

    orientation = np.array(
        [_ds_value(v) for v in (1.0, 0.0, 0.0, 0.0, np.cos(np.radians(tilt)), -np.sin(np.radians(tilt)))]
    )
    row_dir, col_dir = orientation[:3], orientation[3:]
    centre_offset = 0.5 * (rows - 1) * spacing[0] * col_dir + 0.5 * (cols - 1) * spacing[1] * row_dir
    image_positions = np.array([[_ds_value(v) for v in np.array([0.0, 0.0, z]) - centre_offset] for z in centres_z])
    normal = np.cross(row_dir, col_dir)
    planes_written = image_positions @ normal
    affine = _affine(
        image_positions, spacing, orientation, fallback_step=np.array([0.0, 0.0, slice_spacing / cos_tilt])
    )

    fov = float(fov_diameter) if fov_diameter is not None else 0.92 * min(rows * spacing[0], cols * spacing[1])
    markers = tuple(tuple(float(v) for v in m) for m in markers)
    if marker_radius is None:
        in_plane_step = float(max(spacing))
        plane_step = float(np.max(np.diff(planes_written), initial=slice_spacing))
        marker_radius = max(2.0 * in_plane_step, 0.55 * plane_step)

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or _uid("study", patient_id, seed)
    frame_of_reference_uid = frame_of_reference_uid or _uid("frame", study_uid)
    series_uid = series_uid or _uid(
        "series",
        study_uid,
        series_number,
        series_description,
        seed,
        rows,
        cols,
        spacing.tolist(),
        tilt,
        image_positions.round(4).tolist(),
    )
    rng = np.random.default_rng([seed, 7])
    name_order = _permutation(rng, n_slices) if shuffle else np.arange(n_slices)
    instance_order = _permutation(rng, n_slices) if shuffle else np.arange(n_slices)
    files = tuple(dest / f"{file_prefix}{name_order[k] + 1:04d}.dcm" for k in range(n_slices))

    in_plane = _in_plane_offsets((rows, cols), spacing, orientation)
    outside = _outside_fov((rows, cols), spacing, fov)
    padding_fill = _padding_fill(outside, padding_value, padding_range_limit)
    junk_mask = None
    if junk_high_bits:
        row_index, col_index = np.indices((rows, cols))
        junk_mask = ((row_index + 2 * col_index) % 5 == 0) & ~outside
    dtype = np.dtype(np.int16 if signed else np.uint16)

    if image_formation is not None and (noise or markers):
        raise ValueError("image_formation sets the noise and has no markers: leave noise=0 and markers=()")
    thickness = float(_ds_value(slice_thickness if slice_thickness is not None else slice_spacing))
    for k in range(n_slices):
        if image_formation is not None:
            hu = form_image(
                in_plane + image_positions[k],
                spacing[0] * col_dir,
                spacing[1] * row_dir,
                thickness * normal,
                image_formation,
            )
            if image_formation.noise_sd > 0:
                hu += correlated_noise(
                    hu.shape,
                    image_formation.noise_sd,
                    image_formation.noise_correlation_mm / float(min(spacing)),
                    np.random.default_rng([seed, 11, k]),
                )
        else:
            hu = phantom_hu(in_plane + image_positions[k], markers=markers, marker_radius=marker_radius)
        if noise > 0:
            hu = hu + np.random.default_rng([seed, 11, k]).normal(0.0, noise, hu.shape).astype(np.float32)
        stored = np.clip(np.rint((hu - intercepts[k]) / slopes[k]), low, high)
        if padding_value is None:
            stored[outside] = np.clip(np.rint((AIR_HU - intercepts[k]) / slopes[k]), low, high)
        else:
            stored[outside] = padding_fill
        pixels = stored.astype(np.int32)
        if junk_mask is not None:
            pixels[junk_mask] ^= (0xFFFF >> bits_stored) << bits_stored
        pixels = (pixels & 0xFFFF).astype(np.uint16).view(dtype)

        ds = _ct_slice_dataset(
            patient_id=patient_id,
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=_uid("sop", series_uid, k),
            frame_of_reference_uid=frame_of_reference_uid,
            seed=seed,
        )
        ds.ImageType = list(image_type)
        ds.SeriesDescription = series_description
        ds.SeriesNumber = series_number
        ds.InstanceNumber = int(instance_order[k]) + 1
        ds.ConvolutionKernel = convolution_kernel
        ds.SliceThickness = _ds(slice_thickness if slice_thickness is not None else slice_spacing)
        if bogus_spacing_between_slices is not None:
            ds.SpacingBetweenSlices = _ds(bogus_spacing_between_slices)
        if nominal_tilt_tag:
            ds.GantryDetectorTilt = _ds(tilt)
        ds.ImagePositionPatient = [_ds(v) for v in image_positions[k]]
        ds.ImageOrientationPatient = [_ds(v) for v in orientation]
        ds.SliceLocation = _ds(centres_z[k])
        ds.PixelSpacing = [_ds(v) for v in spacing]
        _set_image_pixel_module(ds, rows, cols, bits_stored, signed)
        if padding_value is not None:
            ds.add_new(0x00280120, padding_vr, _as_vr(padding_value, padding_vr))
            if padding_range_limit is not None:
                ds.add_new(0x00280121, padding_vr, _as_vr(padding_range_limit, padding_vr))
        ds.RescaleIntercept = _ds(intercepts[k])
        ds.RescaleSlope = _ds(slopes[k])
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "80"
        _write_dataset(files[k], ds, pixels, transfer_syntax, file_meta=file_meta)

    return WrittenSeries(
        folder=dest,
        files=files,
        series_uid=series_uid,
        study_uid=study_uid,
        affine=affine,
        slice_positions=planes_written,
        image_positions=image_positions,
        orientation=orientation,
        pixel_spacing=spacing,
        shape=(n_slices, rows, cols),
        rescale_slopes=slopes,
        rescale_intercepts=intercepts,
        padding_value=padding_value,
        padding_range_limit=padding_range_limit,
        fov_diameter=fov,
        markers=markers,
        marker_radius=float(marker_radius),
        description=series_description,
        transfer_syntax=transfer_syntax,
        meta={
            "stored_range": (low, high),
            "gantry_tilt": tilt,
            "patient_id": patient_id,
            "series_number": series_number,
            "frame_of_reference_uid": frame_of_reference_uid,
            "instance_numbers": tuple(int(i) + 1 for i in instance_order),
            "slice_thickness": thickness,
        },
        image_formation=image_formation,
    )


def write_localizer(
    dest: str | os.PathLike[str],
    *,
    patient_id: str = "PHANTOM-001",
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    seed: int = 0,
    plane: str = "coronal",
    matrix: int = 128,
    pixel_spacing: float = 2.0,
    series_number: int = 1,
    series_description: str = "SCOUT",
    file_prefix: str = "SCOUT",
) -> WrittenSeries:
    """Write a one-image scout (localizer) of the phantom, as scanners do before the scan.

    The image is a projection through the head (mean attenuation along the
    beam), at coronal or sagittal orientation, with (0008,0008) *Image Type*
    ``ORIGINAL\\PRIMARY\\LOCALIZER`` and its own series UID. A loader must set it
    aside rather than stack it with the axial slices.

    Parameters
    ----------
    dest : path-like
    patient_id, study_uid, frame_of_reference_uid, seed : as in `write_series`
    plane : {'coronal', 'sagittal'}
    matrix : int, default 128
    pixel_spacing : float, default 2.0
    series_number, series_description, file_prefix : header values and file name

    Returns
    -------
    WrittenSeries
        With a single file; `slice_positions` holds the plane position.

    Examples
    --------
    >>> import tempfile, pydicom
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     scout = write_localizer(folder, matrix=32, pixel_spacing=8.0)
    ...     ds = pydicom.dcmread(scout.files[0])
    >>> list(ds.ImageType), [round(v) for v in ds.ImageOrientationPatient]
    (['ORIGINAL', 'PRIMARY', 'LOCALIZER'], [1, 0, 0, 0, 0, -1])
    """
    if plane == "coronal":
        orientation = np.array([1.0, 0.0, 0.0, 0.0, 0.0, -1.0])
    elif plane == "sagittal":
        orientation = np.array([0.0, 1.0, 0.0, 0.0, 0.0, -1.0])
    else:
        raise ValueError(f"plane must be 'coronal' or 'sagittal', not {plane!r}")
    spacing = np.array([_ds_value(pixel_spacing)] * 2)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    centre_offset = 0.5 * (matrix - 1) * spacing[0] * (col_dir + row_dir)
    position = np.array([_ds_value(v) for v in -centre_offset])
    in_plane = _in_plane_offsets((matrix, matrix), spacing, orientation) + position
    beam = np.arange(-100.0, 100.5, 1.0)  # 1 mm steps: coarser ones alias the thin skull into rings
    # only rays through the head's outline meet anything but air
    hits_head = ((in_plane / HEAD_SEMI_AXES_MM) ** 2).sum(axis=-1) <= 1.0
    samples = phantom_hu(in_plane[hits_head][:, None, :] + beam[:, None] * normal)
    # attenuation relative to water, averaged along the beam: a projection radiograph
    attenuation = np.zeros((matrix, matrix))
    attenuation[hits_head] = np.clip(samples - AIR_HU, 0, None).mean(axis=1) / 1000.0
    pixels = np.rint(np.clip(attenuation * 2000.0, 0, 4095)).astype(np.uint16)

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or _uid("study", patient_id, seed)
    frame_of_reference_uid = frame_of_reference_uid or _uid("frame", study_uid)
    series_uid = _uid("localizer", study_uid, plane, seed, matrix, float(spacing[0]))
    file = dest / f"{file_prefix}0001.dcm"
    ds = _ct_slice_dataset(
        patient_id=patient_id,
        study_uid=study_uid,
        series_uid=series_uid,
        sop_uid=_uid("sop", series_uid, 0),
        frame_of_reference_uid=frame_of_reference_uid,
        seed=seed,
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.SeriesDescription = series_description
    ds.SeriesNumber = series_number
    ds.InstanceNumber = 1
    ds.ConvolutionKernel = "T20s"
    ds.SliceThickness = "1"
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.ImageOrientationPatient = [_ds(v) for v in orientation]
    ds.PixelSpacing = [_ds(v) for v in spacing]
    _set_image_pixel_module(ds, matrix, matrix, 12, signed=False)
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"  # unspecified: a scout holds no Hounsfield units
    ds.WindowCenter = "1000"
    ds.WindowWidth = "2000"
    _write_dataset(file, ds, pixels, ExplicitVRLittleEndian)
    return WrittenSeries(
        folder=dest,
        files=(file,),
        series_uid=series_uid,
        study_uid=study_uid,
        affine=_affine(position[None], spacing, orientation, fallback_step=normal),
        slice_positions=np.array([position @ normal]),
        image_positions=position[None],
        orientation=orientation,
        pixel_spacing=spacing,
        shape=(1, matrix, matrix),
        rescale_slopes=np.ones(1),
        rescale_intercepts=np.zeros(1),
        description=series_description,
        meta={
            "stored_range": (0, 4095),
            "patient_id": patient_id,
            "series_number": series_number,
            "frame_of_reference_uid": frame_of_reference_uid,
        },
    )


SAMPLE_IMAGE_FORMATION = ImageFormation(supersample=2, slice_samples=3)
"""How the sample study images the realistic head: coarse enough to write in seconds."""


def default_study_series() -> list[dict[str, Any]]:
    """The series `write_study` writes by default: `write_series` keyword arguments each."""
    realistic = SAMPLE_IMAGE_FORMATION
    return [
        dict(
            series_description="HEAD THIN 2.5mm",
            series_number=2,
            n_slices=72,
            slice_spacing=2.5,
            matrix=96,
            file_prefix="THIN",
            image_formation=realistic,
        ),
        dict(
            series_description="HEAD 5mm",
            series_number=3,
            n_slices=36,
            slice_spacing=5.0,
            matrix=96,
            file_prefix="THICK",
            image_formation=realistic,
        ),
        dict(
            series_description="HEAD TILT 20deg",
            series_number=4,
            n_slices=36,
            slice_spacing=5.0,
            gantry_tilt=20.0,
            matrix=96,
            file_prefix="TILT",
            image_formation=realistic,
        ),
    ]


def full_size_series() -> dict[str, Any]:
    """`write_series` arguments for a full-size head: 512 x 512 pixels of 0.45 mm, 0.625 mm slices.

    Examples
    --------
    >>> options = full_size_series()
    >>> options["matrix"], options["slice_spacing"], options["n_slices"]
    (512, 0.625, 256)
    """
    return dict(
        series_description="HEAD 0.625mm",
        n_slices=256,
        slice_spacing=0.625,
        matrix=512,
        file_prefix="FULL",
        image_formation=ImageFormation(supersample=2, slice_samples=1),
    )


def write_study(
    dest: str | os.PathLike[str],
    *,
    patient_id: str = "PHANTOM-001",
    seed: int = 0,
    series: Sequence[dict[str, Any]] | None = None,
    localizer: bool = True,
    non_images: bool = True,
    truth_folder: str | os.PathLike[str] | None = None,
) -> list[WrittenSeries]:
    """Write several series of one patient and study into one folder, as a scanner export.

    By default: a thin axial series (2.5 mm), a thick one (5 mm), a series with
    20 degrees of gantry tilt, all with shuffled file names and instance
    numbers (distinct prefixes ``THIN``, ``THICK``, ``TILT``), plus a coronal
    localizer (``SCOUT0001.dcm``).

    Parameters
    ----------
    dest : path-like
        The folder, created if needed.
    patient_id : str, default "PHANTOM-001"
    seed : int, default 0
        Seeds UIDs and noise; series ``i`` uses ``seed * 100 + i``.
    series : sequence of dict, optional
        `write_series` keyword arguments, one dict per series, instead of
        `default_study_series()`. ``patient_id``, the study and frame of
        reference UIDs are filled in; ``shuffle`` defaults to True and
        ``file_prefix`` to ``S<i>_``.
    localizer : bool, default True
    non_images : bool, default True
        Also write what real folders hold and a loader must skip (`NON_IMAGE_FILES`):
        a zero-byte ``EMPTY.dcm``, a ``README.txt``, a Secondary Capture "exam
        summary" ``SUMMARY.dcm`` that shares the series UID of the last image
        series, and a ``DICOMDIR`` (Media Storage Directory Storage).
    truth_folder : path-like, optional
        Save each realistic series' ground truth here (`WrittenSeries.write_truth`):
        labels as npz and lesion volumes as JSON. Keep it outside `dest`, so a
        scan of the study sees only what a scanner writes.

    Returns
    -------
    list of WrittenSeries
        The image series in the order written, then the localizer.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     written = write_study(folder, series=[dict(n_slices=4, matrix=32)])
    ...     names = sorted(p.name for p in Path(folder).iterdir())
    >>> [w.description for w in written]
    ['PHANTOM HEAD', 'SCOUT']
    >>> names
    ['DICOMDIR', 'EMPTY.dcm', 'README.txt', 'S1_0001.dcm', 'S1_0002.dcm', 'S1_0003.dcm', 'S1_0004.dcm', 'SCOUT0001.dcm', 'SUMMARY.dcm']
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    study_uid = _uid("study", patient_id, seed)
    frame_of_reference_uid = _uid("frame", study_uid)
    common = dict(patient_id=patient_id, study_uid=study_uid, frame_of_reference_uid=frame_of_reference_uid)
    written = []
    for i, kwargs in enumerate(series if series is not None else default_study_series(), start=1):
        options = {"shuffle": True, "file_prefix": f"S{i}_", "seed": seed * 100 + i, **kwargs, **common}
        written.append(write_series(dest, **options))
        if truth_folder is not None and written[-1].image_formation is not None:
            written[-1].write_truth(truth_folder)
    if localizer:
        written.append(write_localizer(dest, seed=seed, **common))
    if non_images:
        image_series = [w for w in written if w.description != "SCOUT"] or written
        _write_non_images(dest, image_series[-1], patient_id=patient_id, study_uid=study_uid, seed=seed)
    return written


def write_enhanced_series(dest: str | os.PathLike[str], **kwargs: Any) -> WrittenSeries:
    """Write the phantom as one multi-frame Enhanced CT Image Storage file.

    Takes the geometry and pixel keyword arguments of `write_series` (not
    `shuffle`, `file_meta`, `junk_high_bits`, `file_prefix`); each frame's position
    lives in (5200,9230) *Per-frame Functional Groups* > (0020,9113) *Plane
    Position*, with orientation, pixel measures and (when the rescale is the same
    for every frame) the pixel value transformation in (5200,9229) *Shared
    Functional Groups*.

    Returns
    -------
    WrittenSeries
        ``files`` holds the one file.

    Examples
    --------
    >>> import tempfile, pydicom
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     written = write_enhanced_series(folder, n_slices=3, matrix=16, noise=0.0)
    ...     ds = pydicom.dcmread(written.files[0])
    >>> ds.SOPClassUID.name, int(ds.NumberOfFrames), ds.pixel_array.shape
    ('Enhanced CT Image Storage', 3, (3, 16, 16))
    """
    for unsupported in ("shuffle", "file_meta", "junk_high_bits", "file_prefix"):
        if kwargs.get(unsupported):
            raise ValueError(f"write_enhanced_series does not support {unsupported}")
    dest = Path(dest)
    transfer_syntax = UID(kwargs.pop("transfer_syntax", ExplicitVRLittleEndian))
    # Write the classic slices into a scratch folder inside dest, then fold them into frames:
    # one code path computes geometry and pixels for both kinds of file.
    scratch = dest / f".enhanced-scratch-{uuid.uuid4().hex}"
    try:
        classic = write_series(scratch, shuffle=False, transfer_syntax=ExplicitVRLittleEndian, **kwargs)
        enhanced = _fold_into_enhanced(classic, dest, transfer_syntax)
    finally:
        for file in scratch.glob("*"):
            file.unlink()
        if scratch.exists():
            scratch.rmdir()
    return enhanced


def _fold_into_enhanced(classic: WrittenSeries, dest: Path, transfer_syntax: str) -> WrittenSeries:
    from pydicom import dcmread

    slices = [dcmread(f) for f in classic.files]
    first = slices[0]
    pixels = np.stack([s.pixel_array for s in slices])
    ds = _ct_slice_dataset(
        patient_id=str(first.PatientID),
        study_uid=classic.study_uid,
        series_uid=classic.series_uid,
        sop_uid=_uid("enhanced-sop", classic.series_uid),
        frame_of_reference_uid=str(first.FrameOfReferenceUID),
        seed=0,
    )
    ds.SOPClassUID = ENHANCED_CT_IMAGE_STORAGE
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.SeriesDescription = classic.description
    ds.SeriesNumber = first.SeriesNumber
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(slices)
    ds.ContentQualification = "PRODUCT"
    ds.AcquisitionDateTime = "20240101120000"
    _set_image_pixel_module(
        ds, pixels.shape[1], pixels.shape[2], int(first.BitsStored), signed=bool(first.PixelRepresentation)
    )
    for keyword in ("PixelPaddingValue", "PixelPaddingRangeLimit"):
        if keyword in first:
            element = first[keyword]
            ds.add_new(element.tag, element.VR, element.value)

    shared = Dataset()
    orientation = Dataset()
    orientation.ImageOrientationPatient = first.ImageOrientationPatient
    shared.PlaneOrientationSequence = DicomSequence([orientation])
    measures = Dataset()
    measures.PixelSpacing = first.PixelSpacing
    measures.SliceThickness = first.SliceThickness
    shared.PixelMeasuresSequence = DicomSequence([measures])
    same_rescale = len({(s.RescaleSlope, s.RescaleIntercept) for s in slices}) == 1
    if same_rescale:
        shared.PixelValueTransformationSequence = DicomSequence([_rescale_item(first)])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

    per_frame = []
    for k, s in enumerate(slices):
        frame = Dataset()
        position = Dataset()
        position.ImagePositionPatient = s.ImagePositionPatient
        frame.PlanePositionSequence = DicomSequence([position])
        content = Dataset()
        content.InStackPositionNumber = k + 1
        content.StackID = "1"
        content.DimensionIndexValues = [1, k + 1]
        frame.FrameContentSequence = DicomSequence([content])
        if not same_rescale:
            frame.PixelValueTransformationSequence = DicomSequence([_rescale_item(s)])
        per_frame.append(frame)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)

    file = dest / "ENHANCED0001.dcm"
    _write_dataset(file, ds, pixels, transfer_syntax)
    return WrittenSeries(
        **{
            **{name: getattr(classic, name) for name in classic.__dataclass_fields__},
            "folder": dest,
            "files": (file,),
            "transfer_syntax": transfer_syntax,
        }
    )


def _rescale_item(source: Dataset) -> Dataset:
    item = Dataset()
    item.RescaleIntercept = source.RescaleIntercept
    item.RescaleSlope = source.RescaleSlope
    item.RescaleType = "HU"
    return item


# --- geometry helpers ----------------------------------------------------------------


def _per_slice(value: float | Sequence[float], n_slices: int, name: str) -> np.ndarray:
    values = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if values.size == 1:
        values = np.full(n_slices, values[0])
    if values.shape != (n_slices,):
        raise ValueError(f"{name} needs one value or {n_slices} (one per slice), got {values.size}")
    # the header holds Decimal Strings: the truth is what a reader parses back
    return np.array([_ds_value(v) for v in values])


def _permutation(rng: np.random.Generator, n: int) -> np.ndarray:
    """A permutation that is neither the identity nor its reverse when n allows it."""
    forbidden = [np.arange(n), np.arange(n)[::-1]] if n > 3 else [np.arange(n)]
    while True:
        order = rng.permutation(n)
        if n < 2 or not any(np.array_equal(order, f) for f in forbidden):
            return order


def _in_plane_offsets(shape: tuple[int, int], spacing: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    """``(rows, cols, 3)`` offsets of the pixel centres from the first pixel, mm."""
    rows, cols = shape
    row_dir, col_dir = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    down = np.arange(rows)[:, None, None] * (spacing[0] * col_dir)
    across = np.arange(cols)[None, :, None] * (spacing[1] * row_dir)
    return down + across


def _outside_fov(shape: tuple[int, int], spacing: np.ndarray, diameter: float) -> np.ndarray:
    rows, cols = shape
    down = (np.arange(rows) - 0.5 * (rows - 1)) * spacing[0]
    across = (np.arange(cols) - 0.5 * (cols - 1)) * spacing[1]
    return down[:, None] ** 2 + across[None, :] ** 2 > (0.5 * diameter) ** 2


def _padding_fill(outside: np.ndarray, value: int | None, limit: int | None) -> np.ndarray | int | None:
    if value is None or limit is None:
        return value
    low, high = sorted((value, limit))
    row_index, col_index = np.nonzero(outside)
    # every value of the declared range occurs, so a reader that only tests equality fails
    return low + (row_index + col_index) % (high - low + 1)


def _affine(
    positions: np.ndarray, spacing: np.ndarray, orientation: np.ndarray, *, fallback_step: np.ndarray
) -> np.ndarray | None:
    steps = np.diff(positions, axis=0)
    if len(positions) > 1:
        if not np.allclose(steps, steps[0], rtol=0, atol=1e-4) or np.linalg.norm(steps[0]) == 0:
            return None
        step = positions[-1] - positions[0]
        step = step / (len(positions) - 1)
    else:
        step = fallback_step
    affine = np.eye(4)
    affine[:3, 0] = step
    affine[:3, 1] = spacing[0] * orientation[3:]
    affine[:3, 2] = spacing[1] * orientation[:3]
    affine[:3, 3] = positions[0]
    return affine
