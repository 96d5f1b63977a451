"""Synthetic head CT written as real DICOM files: sample data for notebooks and fixtures for tests.

`write_series` images a head of `ctexplore.headmodel` (the realistic `ImageFormation`
head, or the simple `EllipsoidHead` of exact values) on a CT slice grid and writes
CT Image Storage files (PS3.3 A.3 CT Image IOD); `write_study` writes a whole
scanner-style export folder with several series, a localizer and the non-image files
a loader must skip. What a series looks like is given by small option objects:

- `SliceGeometry`: where the slices are (matrix, spacing, gantry tilt, positions);
- `Encoding` (from `ctexplore.dicomwriter`): how HU are stored (bits, rescale, syntax);
- `ExportQuirks`: the traps of real exports (padding, shuffled names, junk high bits,
  bogus spacing tags);
- `SeriesHeader`: names, numbers and UIDs.

Everything is deterministic: the same arguments give byte-identical files. This
module plans the series and joins the head model to the DICOM writer
(`ctexplore.dicomwriter`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from ._atomic import atomic_target
from .dicomwriter import (
    CT_IMAGE_STORAGE,
    ENHANCED_CT_IMAGE_STORAGE,
    MEDIA_STORAGE_DIRECTORY_STORAGE,
    NON_IMAGE_FILES,
    SECONDARY_CAPTURE_STORAGE,
    SUPPORTED_TRANSFER_SYNTAXES,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    Encoding,
    _as_vr,
    _ct_slice_dataset,
    _ds,
    _ds_value,
    _fold_into_enhanced,
    _quantize,
    _set_image_pixel_module,
    _stored_pixels,
    _uid,
    _write_dataset,
    _write_non_images,
)
from .headmodel import (
    HEAD_SEMI_AXES_MM,
    LABELS,
    EllipsoidHead,
    ImageFormation,
    head_labels,
    lesion_volumes_ml,
    phantom_hu,
)
from .volume import AIR_HU, slice_normal

__all__ = [
    "CT_IMAGE_STORAGE",
    "ENHANCED_CT_IMAGE_STORAGE",
    "MEDIA_STORAGE_DIRECTORY_STORAGE",
    "NON_IMAGE_FILES",
    "SAMPLE_BONE_IMAGE_FORMATION",
    "SAMPLE_IMAGE_FORMATION",
    "SECONDARY_CAPTURE_STORAGE",
    "SUPPORTED_TRANSFER_SYNTAXES",
    "EllipsoidHead",
    "Encoding",
    "ExportQuirks",
    "ImageFormation",
    "SeriesHeader",
    "SliceGeometry",
    "WrittenSeries",
    "default_study_series",
    "full_size_series",
    "phantom_hu",
    "write_enhanced_series",
    "write_localizer",
    "write_series",
    "write_study",
]


DEFAULT_FIELD_OF_VIEW_MM = 230.4  # a typical head-CT display field: 512 x 0.45 mm


@dataclass(frozen=True)
class SliceGeometry:
    """Where the slices of an axial series are, in patient LPS millimetres.

    Attributes
    ----------
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
    slice_thickness : float, optional
        (0018,0050) *Slice Thickness*, the width of the slice-sensitivity
        profile; default `slice_spacing`.
    gantry_tilt : float, default 0.0
        Degrees, (0018,1120) *Gantry/Detector Tilt*. Rows run along
        ``(1, 0, 0)``, columns along ``(0, cos t, -sin t)`` (CQ500's 24 degrees:
        ``[1, 0, 0, 0, 0.913545, -0.406737]``); the normal is ``(0, sin t, cos t)``
        (PS3.3 C.7.6.2.1.1).
    first_position_z : float, optional
        z (mm) of the first slice's centre; default centres the slab on the head.
    slice_positions : sequence of float, optional
        Plane positions along the normal (mm), non-decreasing; overrides
        `n_slices`, `slice_spacing` and `first_position_z`, for uneven spacing,
        gaps and duplicates.
    fov_diameter : float, optional
        Reconstruction circle in mm; default 0.92 of the smaller image side, so
        the corners lie outside it (padding, see `ExportQuirks`).

    Examples
    --------
    >>> SliceGeometry(matrix=(64, 96)).grid_shape
    (64, 96)
    """

    n_slices: int = 40
    matrix: int | tuple[int, int] = 128
    pixel_spacing: tuple[float, float] | None = None
    slice_spacing: float = 5.0
    slice_thickness: float | None = None
    gantry_tilt: float = 0.0
    first_position_z: float | None = None
    slice_positions: Sequence[float] | None = None
    fov_diameter: float | None = None

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of every slice."""
        if isinstance(self.matrix, (int, np.integer)):
            return int(self.matrix), int(self.matrix)
        return int(self.matrix[0]), int(self.matrix[1])


@dataclass(frozen=True)
class ExportQuirks:
    """Traps of real scanner exports that a correct loader must handle.

    Attributes
    ----------
    padding_value : int or None, default -2000
        Stored value for pixels outside the circular field of view, written as
        (0028,0120) *Pixel Padding Value* (PS3.3 C.7.5.1.1.2). None writes no tag
        and fills those pixels with air.
    padding_range_limit : int, optional
        Writes (0028,0121) *Pixel Padding Range Limit*; padding pixels then take
        every value between it and `padding_value`.
    padding_vr : {'SS', 'US'}, optional
        VR of the padding tags; default matches `Encoding.signed`. ``'US'`` on a
        signed image writes the two's complement (65536 - 2000 = 63536), a trap
        seen in real files.
    junk_high_bits : bool, default False
        Set the bits above (0028,0102) *High Bit* in a regular pattern of
        non-padding pixels (needs ``bits_stored < 16`` and an uncompressed
        syntax); a correct reader masks them off (PS3.5 8.1.1).
    shuffle : bool, optional
        Give file names and (0020,0013) *Instance Number* two independent
        deterministic permutations unrelated to spatial order. Default: False
        in `write_series`, True in `write_study`.
    nominal_tilt_tag : bool, default True
        Write (0018,1120) *Gantry/Detector Tilt*; False leaves the tilt to be
        found from the orientation alone.
    bogus_spacing_between_slices : float, optional
        Written verbatim as (0018,0088) *Spacing Between Slices*; pass a wrong
        value (a blog's header says 21.893 for 0.625 mm slices) to test that a
        reader ignores it.

    Examples
    --------
    >>> ExportQuirks(padding_value=None, shuffle=True).shuffle
    True
    """

    padding_value: int | None = -2000
    padding_range_limit: int | None = None
    padding_vr: str | None = None
    junk_high_bits: bool = False
    shuffle: bool | None = None
    nominal_tilt_tag: bool = True
    bogus_spacing_between_slices: float | None = None

    def check(self, encoding: Encoding) -> None:
        """Raise ValueError when these quirks cannot be written with `encoding`."""
        low, high = encoding.stored_range
        if self.junk_high_bits and (
            encoding.bits_stored == 16 or encoding.transfer_syntax not in UNCOMPRESSED_TRANSFER_SYNTAXES
        ):
            raise ValueError("junk_high_bits needs bits_stored < 16 and an uncompressed transfer syntax")
        if self.padding_vr not in (None, "SS", "US"):
            raise ValueError(f"padding_vr must be 'SS' or 'US', not {self.padding_vr!r}")
        for name, value in (("padding_value", self.padding_value), ("padding_range_limit", self.padding_range_limit)):
            if value is not None and not low <= value <= high:
                raise ValueError(
                    f"{name}={value} is outside the stored range [{low}, {high}] of "
                    f"{'signed' if encoding.signed else 'unsigned'} {encoding.bits_stored}-bit pixels; pass e.g. "
                    f"{name}={low if not encoding.signed else -2000}"
                )
        if self.padding_range_limit is not None and self.padding_value is None:
            raise ValueError("padding_range_limit needs a padding_value")


@dataclass(frozen=True)
class SeriesHeader:
    """Names, numbers and UIDs of a series, and its file names.

    Attributes
    ----------
    series_description : str, default "PHANTOM HEAD"
    series_number : int, default 1
    patient_id : str, default "PHANTOM-001"
    study_uid, series_uid, frame_of_reference_uid : str, optional
        Default: derived deterministically from `patient_id`, the seed and the geometry.
    image_type : sequence of str, default ("ORIGINAL", "PRIMARY", "AXIAL")
        (0008,0008) *Image Type*.
    convolution_kernel : str, default "H30s"
    file_prefix : str, optional
        Files are ``<prefix>0001.dcm`` ... Default: ``IM`` in `write_series`,
        ``S<i>_`` for the i-th series of `write_study`.

    Examples
    --------
    >>> SeriesHeader(series_description="HEAD 5mm").series_number
    1
    """

    series_description: str = "PHANTOM HEAD"
    series_number: int = 1
    patient_id: str = "PHANTOM-001"
    study_uid: str | None = None
    series_uid: str | None = None
    frame_of_reference_uid: str | None = None
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL")
    convolution_kernel: str = "H30s"
    file_prefix: str | None = None


Head = ImageFormation | EllipsoidHead


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
    description : str
    transfer_syntax : str
    meta : dict
        Header values and details: ``stored_range``, ``gantry_tilt``,
        ``patient_id``, ``series_number``, ``frame_of_reference_uid``,
        ``instance_numbers`` (per file), ``slice_thickness``.
    head : ImageFormation or EllipsoidHead
        The head that was imaged and how (`ctexplore.headmodel`).
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
    description: str = ""
    transfer_syntax: str = ExplicitVRLittleEndian
    meta: dict[str, Any] = field(default_factory=dict)
    head: Head = field(default_factory=EllipsoidHead)

    @property
    def image_formation(self) -> ImageFormation | None:
        """The realistic head's imaging, or None when the pixels sample the simple `phantom_hu`."""
        return self.head if isinstance(self.head, ImageFormation) else None

    @property
    def markers(self) -> tuple[tuple[float, float, float], ...]:
        """Marker bead centres (LPS mm) in the simple head; none in the realistic one."""
        return self.head.markers if isinstance(self.head, EllipsoidHead) else ()

    @property
    def marker_radius(self) -> float:
        radius = self.head.marker_radius if isinstance(self.head, EllipsoidHead) else None
        return 3.0 if radius is None else radius

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal: row direction x column direction (`ctexplore.volume.slice_normal`)."""
        return slice_normal(self.orientation[:3], self.orientation[3:])

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
        row_step = self.pixel_spacing[0] * self.orientation[3:]
        col_step = self.pixel_spacing[1] * self.orientation[:3]
        thickness = self.meta["slice_thickness"] * self.normal
        return self.head.image(self.pixel_centres(k), row_step, col_step, thickness)

    def labels(self) -> np.ndarray:
        """Ground-truth label of every voxel centre, ``(slices, rows, cols)`` uint8 (see `ctexplore.headmodel.LABELS`).

        Needs a series written with ``head=ImageFormation(...)`` (the realistic head).
        """
        if not isinstance(self.head, ImageFormation):
            raise ValueError("labels exist for series written with head=ImageFormation(...) (the realistic head model)")
        return head_labels(self.pixel_centres(), self.head.lesions)

    def lesion_volumes_ml(self, labels: np.ndarray | None = None) -> dict[str, float]:
        """Volume in mL of each lesion at the written grid: label voxel count x voxel volume.

        ``labels``: `labels()` when already computed (it is not recomputed).
        """
        plane_step = (
            abs(float(np.diff(self.slice_positions).mean())) if self.shape[0] > 1 else self.meta["slice_thickness"]
        )
        voxel = float(self.pixel_spacing[0] * self.pixel_spacing[1]) * plane_step
        return lesion_volumes_ml(self.labels() if labels is None else labels, voxel)

    def write_truth(self, folder: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Save the labels (``<folder>/<description>_<uid tail>_labels.npz``: ``labels``, ``affine``,
        label ``names``) and lesion volumes (``..._lesions.json``, mL), each written atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{self.description.replace(' ', '_')}_{self.series_uid[-12:]}"
        npz, report = folder / f"{stem}_labels.npz", folder / f"{stem}_lesions.json"
        labels = self.labels()
        with atomic_target(npz) as temporary:
            np.savez_compressed(
                temporary,
                labels=labels,
                affine=self.affine if self.affine is not None else np.eye(4),
                names=np.array(list(LABELS)),
            )
        volumes = {
            "series_uid": self.series_uid,
            "description": self.description,
            "volumes_ml": self.lesion_volumes_ml(labels),
        }
        with atomic_target(report) as temporary:
            temporary.write_text(json.dumps(volumes, indent=2))
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
        stored_range = self.meta["stored_range"]
        for k in range(self.shape[0]):
            hu = self._noise_free_slice(k)
            if quantized:
                slope, intercept = self.rescale_slopes[k], self.rescale_intercepts[k]
                hu = (_quantize(hu, slope, intercept, stored_range) * slope + intercept).astype(np.float32)
                if self.padding_value is not None:
                    hu[outside] = fill_value
                else:
                    hu[outside] = _quantize(np.asarray(AIR_HU), slope, intercept, stored_range) * slope + intercept
            out[k] = hu
        return out


def write_series(
    dest: str | os.PathLike[str],
    *,
    head: Head | None = None,
    geometry: SliceGeometry | None = None,
    encoding: Encoding | None = None,
    quirks: ExportQuirks | None = None,
    header: SeriesHeader | None = None,
    seed: int = 0,
    **flat_options: Any,
) -> WrittenSeries:
    """Image a head as one axial CT series, one CT Image Storage file per slice.

    Parameters
    ----------
    dest : path-like
        Folder to write into (created if needed).
    head : ImageFormation or EllipsoidHead, default EllipsoidHead()
        What is imaged, and how (`ctexplore.headmodel`): the realistic head with
        partial volume, slice profile of the slice thickness, correlated noise
        and lesions, or the simple head of exact values at the pixel centres.
    geometry : SliceGeometry, optional
        Matrix, spacing, tilt and slice positions.
    encoding : Encoding, optional
        Pixel representation, bits, rescale and transfer syntax.
    quirks : ExportQuirks, optional
        Padding, shuffled names, junk high bits, misleading tags.
    header : SeriesHeader, optional
        Description, numbers, UIDs and the file prefix.
    seed : int, default 0
        Seeds the noise, the shuffle and the derived UIDs.
    **flat_options
        The older flat keywords, each a field of one of the option objects
        (``n_slices=``, ``gantry_tilt=``, ``transfer_syntax=``, ``shuffle=``,
        ``series_description=`` ...), plus ``image_formation=`` (the
        realistic head) and ``noise=``, ``markers=``, ``marker_radius=``
        (`EllipsoidHead`). Each overrides that field of the matching object.

    Returns
    -------
    WrittenSeries
        The files in spatial order and the truth a correct loader must recover.

    See Also
    --------
    write_study : several series, a localizer and non-image files in one folder.
    write_enhanced_series : the same pixels as one multi-frame Enhanced CT file.
    ctexplore.load_series : reads the files back into a `Volume`.

    Examples
    --------
    >>> import tempfile
    >>> import pydicom
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     written = write_series(folder, geometry=SliceGeometry(n_slices=4, matrix=32, gantry_tilt=20.0),
    ...                            quirks=ExportQuirks(shuffle=True))
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

    The flat keywords of earlier versions still work:

    >>> with tempfile.TemporaryDirectory() as folder:
    ...     write_series(folder, n_slices=2, matrix=16, padding_value=None).shape
    (2, 16, 16)
    """
    head, geometry, encoding, quirks, header = _with_flat_options(
        flat_options, head, geometry or SliceGeometry(), encoding or Encoding(), quirks or ExportQuirks(), header
    )
    quirks.check(encoding)
    grid = _plan_grid(geometry)
    n_slices, (rows, cols) = len(grid.image_positions), grid.shape
    slopes, intercepts = encoding.per_slice_rescale(n_slices)
    if isinstance(head, EllipsoidHead) and head.marker_radius is None:
        # big enough that the nearest slice and a few pixels always hit the bead
        plane_step = float(np.max(np.diff(grid.planes), initial=geometry.slice_spacing))
        head = replace(head, marker_radius=max(2.0 * float(max(grid.spacing)), 0.55 * plane_step))

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    study_uid = header.study_uid or _uid("study", header.patient_id, seed)
    frame_of_reference_uid = header.frame_of_reference_uid or _uid("frame", study_uid)
    series_uid = header.series_uid or _uid(
        "series",
        study_uid,
        header.series_number,
        header.series_description,
        seed,
        rows,
        cols,
        grid.spacing.tolist(),
        grid.tilt,
        grid.image_positions.round(4).tolist(),
    )
    header = replace(header, study_uid=study_uid, series_uid=series_uid, frame_of_reference_uid=frame_of_reference_uid)
    rng = np.random.default_rng([seed, 7])
    name_order = _permutation(rng, n_slices) if quirks.shuffle else np.arange(n_slices)
    instance_order = _permutation(rng, n_slices) if quirks.shuffle else np.arange(n_slices)
    prefix = "IM" if header.file_prefix is None else header.file_prefix
    files = tuple(dest / f"{prefix}{name_order[k] + 1:04d}.dcm" for k in range(n_slices))

    in_plane = _in_plane_offsets(grid.shape, grid.spacing, grid.orientation)
    outside = _outside_fov(grid.shape, grid.spacing, grid.fov)
    padding_fill = _padding_fill(outside, quirks.padding_value, quirks.padding_range_limit)
    junk_mask = None
    if quirks.junk_high_bits:
        row_index, col_index = np.indices(grid.shape)
        junk_mask = ((row_index + 2 * col_index) % 5 == 0) & ~outside
    row_step, col_step = grid.spacing[0] * grid.orientation[3:], grid.spacing[1] * grid.orientation[:3]
    normal_step = grid.thickness * slice_normal(grid.orientation[:3], grid.orientation[3:])
    for k in range(n_slices):
        hu = head.image(
            in_plane + grid.image_positions[k], row_step, col_step, normal_step, np.random.default_rng([seed, 11, k])
        )
        pixels = _stored_pixels(hu, slopes[k], intercepts[k], encoding, outside, padding_fill, junk_mask)
        ds = _slice_dataset(grid, k, header, quirks, encoding, seed)
        ds.InstanceNumber = int(instance_order[k]) + 1
        ds.RescaleIntercept, ds.RescaleSlope = _ds(intercepts[k]), _ds(slopes[k])
        _write_dataset(files[k], ds, pixels, encoding.transfer_syntax, file_meta=encoding.file_meta)

    return WrittenSeries(
        folder=dest,
        files=files,
        series_uid=series_uid,
        study_uid=study_uid,
        affine=grid.affine,
        slice_positions=grid.planes,
        image_positions=grid.image_positions,
        orientation=grid.orientation,
        pixel_spacing=grid.spacing,
        shape=(n_slices, rows, cols),
        rescale_slopes=slopes,
        rescale_intercepts=intercepts,
        padding_value=quirks.padding_value,
        padding_range_limit=quirks.padding_range_limit,
        fov_diameter=grid.fov,
        description=header.series_description,
        transfer_syntax=encoding.transfer_syntax,
        meta={
            "stored_range": encoding.stored_range,
            "gantry_tilt": grid.tilt,
            "patient_id": header.patient_id,
            "series_number": header.series_number,
            "frame_of_reference_uid": frame_of_reference_uid,
            "instance_numbers": tuple(int(i) + 1 for i in instance_order),
            "slice_thickness": grid.thickness,
        },
        head=head,
    )


_Options = TypeVar("_Options", SliceGeometry, Encoding, ExportQuirks, SeriesHeader, EllipsoidHead)
_OPTION_CLASSES = (SliceGeometry, Encoding, ExportQuirks, SeriesHeader)
_SIMPLE_HEAD_KEYWORDS = {"noise": "noise_sd", "markers": "markers", "marker_radius": "marker_radius"}


def _override(options: _Options, flat: dict[str, Any]) -> _Options:
    names = {f.name for f in fields(options)}
    changes = {name: value for name, value in flat.items() if name in names}
    return replace(options, **changes) if changes else options


def _with_flat_options(
    flat: dict[str, Any],
    head: Head | None,
    geometry: SliceGeometry,
    encoding: Encoding,
    quirks: ExportQuirks,
    header: SeriesHeader | None,
) -> tuple[Head, SliceGeometry, Encoding, ExportQuirks, SeriesHeader]:
    """The thin adapter for the flat keywords of earlier versions: each sets one field of one option object."""
    known = {f.name for cls in _OPTION_CLASSES for f in fields(cls)} | set(_SIMPLE_HEAD_KEYWORDS) | {"image_formation"}
    unknown = sorted(set(flat) - known)
    if unknown:
        raise TypeError(f"write_series() got unexpected keyword arguments {unknown}")
    simple = {_SIMPLE_HEAD_KEYWORDS[name]: value for name, value in flat.items() if name in _SIMPLE_HEAD_KEYWORDS}
    formation = flat.get("image_formation")
    if formation is not None:
        if head is not None:
            raise TypeError("give the head once: head= or image_formation=, not both")
        head = formation
    if isinstance(head, ImageFormation):
        if simple.get("noise_sd") or simple.get("markers"):
            raise ValueError(
                "the realistic head (ImageFormation) sets its own noise and has no markers: "
                "leave noise=0 and markers=(), or image the simple head (EllipsoidHead)"
            )
    elif simple:
        head = replace(head or EllipsoidHead(), **simple)
    return (
        head or EllipsoidHead(),
        _override(geometry, flat),
        _override(encoding, flat),
        _override(quirks, flat),
        _override(header or SeriesHeader(), flat),
    )


@dataclass(frozen=True)
class _Grid:
    """A `SliceGeometry` worked out: the values written to the headers, as a reader parses them back."""

    shape: tuple[int, int]
    spacing: np.ndarray
    orientation: np.ndarray
    image_positions: np.ndarray
    slice_locations: np.ndarray
    planes: np.ndarray
    affine: np.ndarray | None
    fov: float
    thickness: float
    tilt: float


def _plan_grid(geometry: SliceGeometry) -> _Grid:
    rows, cols = geometry.grid_shape
    if rows < 1 or cols < 1:
        raise ValueError(f"matrix must be positive, got {geometry.matrix}")
    pixel_spacing = geometry.pixel_spacing or (DEFAULT_FIELD_OF_VIEW_MM / rows, DEFAULT_FIELD_OF_VIEW_MM / cols)
    spacing = np.array([_ds_value(v) for v in pixel_spacing])
    tilt = float(geometry.gantry_tilt)
    if not abs(tilt) < 60.0:
        raise ValueError(f"gantry_tilt must be between -60 and 60 degrees, got {geometry.gantry_tilt}")
    cos_tilt = np.cos(np.radians(tilt))
    if geometry.slice_positions is None:
        if geometry.n_slices < 1:
            raise ValueError(f"n_slices must be at least 1, got {geometry.n_slices}")
        table_step = geometry.slice_spacing / cos_tilt
        first_z = geometry.first_position_z
        if first_z is None:
            first_z = -0.5 * (geometry.n_slices - 1) * table_step
        centres_z = first_z + table_step * np.arange(geometry.n_slices)
    else:
        planes = np.asarray(geometry.slice_positions, dtype=np.float64)
        if planes.ndim != 1 or planes.size == 0 or np.any(np.diff(planes) < 0):
            raise ValueError("slice_positions must be a non-empty, non-decreasing 1-D sequence (mm along the normal)")
        centres_z = planes / cos_tilt
    orientation = np.array([_ds_value(v) for v in (1.0, 0.0, 0.0, 0.0, cos_tilt, -np.sin(np.radians(tilt)))])
    row_dir, col_dir = orientation[:3], orientation[3:]
    centre_offset = 0.5 * (rows - 1) * spacing[0] * col_dir + 0.5 * (cols - 1) * spacing[1] * row_dir
    image_positions = np.array([[_ds_value(v) for v in np.array([0.0, 0.0, z]) - centre_offset] for z in centres_z])
    fallback_step = np.array([0.0, 0.0, geometry.slice_spacing / cos_tilt])
    thickness = geometry.slice_thickness if geometry.slice_thickness is not None else geometry.slice_spacing
    fov = geometry.fov_diameter
    return _Grid(
        shape=(rows, cols),
        spacing=spacing,
        orientation=orientation,
        image_positions=image_positions,
        slice_locations=centres_z,
        planes=image_positions @ slice_normal(row_dir, col_dir),
        affine=_affine(image_positions, spacing, orientation, fallback_step=fallback_step),
        fov=float(fov) if fov is not None else 0.92 * min(rows * spacing[0], cols * spacing[1]),
        thickness=_ds_value(thickness),
        tilt=tilt,
    )


def _slice_dataset(
    grid: _Grid, k: int, header: SeriesHeader, quirks: ExportQuirks, encoding: Encoding, seed: int
) -> Dataset:
    """The header of slice `k` but its instance number and rescale; `header` holds the resolved UIDs."""
    series_uid = str(header.series_uid)
    ds = _ct_slice_dataset(
        patient_id=header.patient_id,
        study_uid=str(header.study_uid),
        series_uid=series_uid,
        sop_uid=_uid("sop", series_uid, k),
        frame_of_reference_uid=str(header.frame_of_reference_uid),
        seed=seed,
    )
    ds.ImageType = list(header.image_type)
    ds.SeriesDescription = header.series_description
    ds.SeriesNumber = header.series_number
    ds.ConvolutionKernel = header.convolution_kernel
    ds.SliceThickness = _ds(grid.thickness)
    if quirks.bogus_spacing_between_slices is not None:
        ds.SpacingBetweenSlices = _ds(quirks.bogus_spacing_between_slices)
    if quirks.nominal_tilt_tag:
        ds.GantryDetectorTilt = _ds(grid.tilt)
    # PS3.3 C.7.6.2 Image Plane Module
    ds.ImagePositionPatient = [_ds(v) for v in grid.image_positions[k]]
    ds.ImageOrientationPatient = [_ds(v) for v in grid.orientation]
    ds.SliceLocation = _ds(grid.slice_locations[k])
    ds.PixelSpacing = [_ds(v) for v in grid.spacing]
    rows, cols = grid.shape
    _set_image_pixel_module(ds, rows, cols, encoding.bits_stored, encoding.signed)
    if quirks.padding_value is not None:
        padding_vr = quirks.padding_vr or ("SS" if encoding.signed else "US")
        ds.add_new(0x00280120, padding_vr, _as_vr(quirks.padding_value, padding_vr))
        if quirks.padding_range_limit is not None:
            ds.add_new(0x00280121, padding_vr, _as_vr(quirks.padding_range_limit, padding_vr))
    ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "80"
    return ds


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

    See Also
    --------
    write_study : writes a localizer beside the axial series.

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
    normal = slice_normal(row_dir, col_dir)
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

SAMPLE_BONE_IMAGE_FORMATION = replace(
    SAMPLE_IMAGE_FORMATION, noise_sd=24.0, noise_correlation_mm=0.35, resolution_mm=0.5, min_resolution_px=0.5
)
"""`SAMPLE_IMAGE_FORMATION` through a sharp bone kernel (Siemens H70h, GE BONE): edges kept to half a
pixel, and four times the noise, finer grained; the trade a bone reconstruction makes."""


def default_study_series() -> list[dict[str, Any]]:
    """The series `write_study` writes by default: `write_series` keyword arguments each.

    Examples
    --------
    >>> [spec["header"].series_description for spec in default_study_series()]
    ['HEAD THIN 2.5mm', 'HEAD 5mm', 'HEAD TILT 20deg']
    """
    thin = SliceGeometry(n_slices=72, slice_spacing=2.5, matrix=96)
    thick = SliceGeometry(n_slices=36, slice_spacing=5.0, matrix=96)
    return [
        dict(
            head=SAMPLE_IMAGE_FORMATION,
            geometry=thin,
            header=SeriesHeader(series_description="HEAD THIN 2.5mm", series_number=2, file_prefix="THIN"),
        ),
        dict(
            head=SAMPLE_IMAGE_FORMATION,
            geometry=thick,
            header=SeriesHeader(series_description="HEAD 5mm", series_number=3, file_prefix="THICK"),
        ),
        dict(
            head=SAMPLE_IMAGE_FORMATION,
            geometry=replace(thick, gantry_tilt=20.0),
            header=SeriesHeader(series_description="HEAD TILT 20deg", series_number=4, file_prefix="TILT"),
        ),
    ]


def full_size_series() -> dict[str, Any]:
    """`write_series` arguments for a full-size head: 512 x 512 pixels of 0.45 mm, 0.625 mm slices.

    Examples
    --------
    >>> geometry = full_size_series()["geometry"]
    >>> geometry.matrix, geometry.slice_spacing, geometry.n_slices
    (512, 0.625, 256)
    """
    return dict(
        head=ImageFormation(supersample=2, slice_samples=1),
        geometry=SliceGeometry(n_slices=256, slice_spacing=0.625, matrix=512),
        header=SeriesHeader(series_description="HEAD 0.625mm", file_prefix="FULL"),
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
        reference UIDs are filled in; unless set, ``shuffle`` is True and
        ``file_prefix`` is ``S<i>_``.
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

    See Also
    --------
    write_series : one series.
    ctexplore.sample_study : the default study, cached.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     written = write_study(folder, series=[dict(geometry=SliceGeometry(n_slices=4, matrix=32))])
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
    for i, spec in enumerate(series if series is not None else default_study_series(), start=1):
        options = {"seed": seed * 100 + i, **spec, **common}
        header, quirks = spec.get("header"), spec.get("quirks")
        if "file_prefix" not in spec and (header is None or header.file_prefix is None):
            options["file_prefix"] = f"S{i}_"
        if "shuffle" not in spec and (quirks is None or quirks.shuffle is None):
            options["shuffle"] = True
        written.append(write_series(dest, **options))
        if truth_folder is not None and written[-1].image_formation is not None:
            written[-1].write_truth(truth_folder)
    if localizer:
        written.append(
            write_localizer(
                dest,
                patient_id=patient_id,
                study_uid=study_uid,
                frame_of_reference_uid=frame_of_reference_uid,
                seed=seed,
            )
        )
    if non_images:
        image_series = [w for w in written if w.description != "SCOUT"] or written
        _write_non_images(dest, image_series[-1], patient_id=patient_id, study_uid=study_uid, seed=seed)
    return written


def write_enhanced_series(
    dest: str | os.PathLike[str],
    *,
    head: Head | None = None,
    geometry: SliceGeometry | None = None,
    encoding: Encoding | None = None,
    quirks: ExportQuirks | None = None,
    header: SeriesHeader | None = None,
    seed: int = 0,
    **flat_options: Any,
) -> WrittenSeries:
    """Write the phantom as one multi-frame Enhanced CT Image Storage file (PS3.3 A.38).

    Takes the arguments of `write_series` (but not `shuffle`, ``file_meta=False``,
    `junk_high_bits` or `file_prefix`); each frame's position
    lives in (5200,9230) *Per-frame Functional Groups* > (0020,9113) *Plane
    Position*, with orientation, pixel measures and (when the rescale is the same
    for every frame) the pixel value transformation in (5200,9229) *Shared
    Functional Groups*.

    Returns
    -------
    WrittenSeries
        ``files`` holds the one file.

    See Also
    --------
    write_series : the same pixels as one file per slice.

    Examples
    --------
    >>> import tempfile, pydicom
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     written = write_enhanced_series(folder, geometry=SliceGeometry(n_slices=3, matrix=16))
    ...     ds = pydicom.dcmread(written.files[0])
    >>> ds.SOPClassUID.name, int(ds.NumberOfFrames), ds.pixel_array.shape
    ('Enhanced CT Image Storage', 3, (3, 16, 16))
    """
    head, geometry, encoding, quirks, header = _with_flat_options(
        flat_options, head, geometry or SliceGeometry(), encoding or Encoding(), quirks or ExportQuirks(), header
    )
    for unsupported, value in (
        ("shuffle", quirks.shuffle),
        ("junk_high_bits", quirks.junk_high_bits),
        ("file_meta=False", not encoding.file_meta),
        ("file_prefix", header.file_prefix is not None),
    ):
        if value:
            raise ValueError(f"write_enhanced_series does not support {unsupported}: it writes one ENHANCED0001.dcm")
    transfer_syntax = encoding.transfer_syntax
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    # Write the classic slices into a scratch folder outside dest, then fold them into frames:
    # one code path computes geometry and pixels for both kinds of file.
    with tempfile.TemporaryDirectory(prefix="ctexplore-enhanced-") as scratch:
        classic = write_series(
            scratch,
            head=head,
            geometry=geometry,
            encoding=replace(encoding, transfer_syntax=ExplicitVRLittleEndian),
            quirks=quirks,
            header=header,
            seed=seed,
        )
        file = dest / "ENHANCED0001.dcm"
        _fold_into_enhanced(classic.files, file, transfer_syntax)
    return replace(classic, folder=dest, files=(file,), transfer_syntax=transfer_syntax)


# --- geometry helpers ----------------------------------------------------------------


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
