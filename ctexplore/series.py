"""Find the CT series under a folder by reading DICOM headers only.

A folder is not a series: scanners and archives put several series (thin, thick,
bone kernel, localizer) side by side, and files that are not images at all next
to them. `scan` groups images by (0020,000E) *Series Instance UID*, splits a UID
whose orientation or matrix changes, marks localizers, and records every file it
could not use in ``SeriesIndex.skipped`` with the reason.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DicomError

__all__ = ["scan", "SeriesIndex", "Series", "SliceHeader", "read_header", "CT_SOP_CLASSES"]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
CT_SOP_CLASSES = {
    CT_IMAGE_STORAGE: "CT Image Storage",
    ENHANCED_CT_IMAGE_STORAGE: "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
}
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
# Below this many files the process pool costs more than it saves.
_PARALLEL_THRESHOLD = 1000
_ORIENTATION_DECIMALS = 4


@dataclass(frozen=True)
class SliceHeader:
    """What one image (one file, or one frame of an Enhanced CT file) says about itself.

    Values come straight from the header; ``None`` where the attribute is absent.
    ``pixel_offset`` is the byte offset of native (uncompressed, defined-length)
    pixel data for this frame, which lets the reader copy pixels straight into
    the output array; it is ``None`` for encapsulated or deflated data.
    """

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    series_uid: str
    study_uid: str
    patient_id: str
    series_description: str
    series_number: int | None
    modality: str
    image_type: tuple[str, ...]
    instance_number: int | None
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    rows: int
    columns: int
    slice_thickness: float | None
    rescale_slope: float | None
    rescale_intercept: float | None
    bits_allocated: int
    bits_stored: int
    high_bit: int
    pixel_representation: int
    samples_per_pixel: int
    photometric_interpretation: str
    padding_value: int | None
    padding_range_limit: int | None
    transfer_syntax_uid: str
    pixel_offset: int | None
    pixel_length: int | None
    frame: int = 0
    number_of_frames: int = 1
    nominal_gantry_tilt: float | None = None
    convolution_kernel: str = ""
    spacing_between_slices: float | None = None

    @property
    def is_localizer(self) -> bool:
        """(0008,0008) *Image Type* says LOCALIZER."""
        return "LOCALIZER" in self.image_type

    @property
    def normal(self) -> np.ndarray | None:
        """Slice normal, row direction x column direction, or None without orientation."""
        if self.orientation is None:
            return None
        row_dir = np.asarray(self.orientation[:3])
        col_dir = np.asarray(self.orientation[3:])
        normal = np.cross(row_dir, col_dir)
        return normal / np.linalg.norm(normal)


@dataclass(frozen=True, eq=False)
class Series:
    """One stack of CT images that can form a volume, with its headers in slice order.

    Attributes
    ----------
    uid : str
        (0020,000E) *Series Instance UID*.
    key : str
        Unique name within a `SeriesIndex`: the UID, with ``#2``, ``#3`` ...
        appended where one UID had to be split by orientation or matrix.
    headers : tuple of SliceHeader
        Sorted along the slice normal (not by file name or instance number).
    """

    uid: str
    key: str
    headers: tuple[SliceHeader, ...]
    split_reason: str = ""

    @property
    def files(self) -> list[Path]:
        """Source files in slice order (each once, also for multi-frame files)."""
        return list(dict.fromkeys(h.path for h in self.headers))

    @property
    def first(self) -> SliceHeader:
        return self.headers[0]

    @property
    def description(self) -> str:
        return self.first.series_description

    @property
    def modality(self) -> str:
        return self.first.modality

    @property
    def patient_id(self) -> str:
        return self.first.patient_id

    @property
    def study_uid(self) -> str:
        return self.first.study_uid

    @property
    def series_number(self) -> int | None:
        return self.first.series_number

    @property
    def n_images(self) -> int:
        """Number of slices (frames, for Enhanced CT)."""
        return len(self.headers)

    @property
    def orientation(self) -> tuple[float, ...] | None:
        """(0020,0037) *Image Orientation (Patient)*: row then column direction cosines."""
        return self.first.orientation

    @property
    def plane(self) -> str:
        """'axial', 'coronal', 'sagittal' or 'oblique', from the slice normal."""
        normal = self.first.normal
        if normal is None:
            return "unknown"
        axis = int(np.argmax(np.abs(normal)))
        if abs(normal[axis]) < 0.8:
            return "oblique"
        return ("sagittal", "coronal", "axial")[axis]

    @property
    def matrix(self) -> tuple[int, int]:
        """``(rows, columns)``."""
        return (self.first.rows, self.first.columns)

    @property
    def pixel_spacing(self) -> tuple[float, float] | None:
        return self.first.pixel_spacing

    @property
    def slice_thickness(self) -> float | None:
        """(0018,0050) *Slice Thickness*: reconstructed thickness, not the spacing."""
        return self.first.slice_thickness

    @property
    def transfer_syntax(self) -> str:
        """Name of the transfer syntax (of the first image)."""
        return _transfer_syntax_name(self.first.transfer_syntax_uid)

    @property
    def is_localizer(self) -> bool:
        """Scout image: ImageType says LOCALIZER, or a lone image beside a stack."""
        return any(h.is_localizer for h in self.headers) or self.split_reason == "localizer"

    @property
    def slice_positions(self) -> np.ndarray:
        """Position of each slice along the normal, in mm (ascending)."""
        normal = self.first.normal
        if normal is None or any(h.position is None for h in self.headers):
            return np.full(self.n_images, np.nan)
        return np.array([h.position for h in self.headers]) @ normal

    @property
    def spacing_summary(self) -> tuple[float, float, float]:
        """``(min, median, max)`` distance between consecutive slice planes in mm.

        Measured from (0020,0032) positions projected on the normal; NaN for a
        single image. (0018,0088) *Spacing Between Slices* is never used.
        """
        steps = np.diff(self.slice_positions)
        if steps.size == 0 or np.isnan(steps).any():
            return (math.nan, math.nan, math.nan)
        return (float(steps.min()), float(np.median(steps)), float(steps.max()))

    @property
    def tilt(self) -> float:
        """Gantry tilt in degrees measured between the stacking direction and the normal."""
        if self.n_images < 2 or self.first.normal is None:
            return 0.0
        positions = np.array([h.position for h in self.headers], dtype=np.float64)
        stack = positions[-1] - positions[0]
        length = np.linalg.norm(stack)
        if length == 0:
            return 0.0
        cosine = abs(stack @ self.first.normal) / length
        return float(np.degrees(np.arccos(min(1.0, cosine))))

    def summary(self) -> dict[str, Any]:
        """One row of the index table."""
        low, median, high = self.spacing_summary
        return {
            "key": self.key,
            "description": self.description,
            "modality": self.modality,
            "images": self.n_images,
            "plane": self.plane,
            "matrix": f"{self.matrix[0]}x{self.matrix[1]}",
            "spacing_mm": _format_spacing(low, median, high),
            "thickness_mm": self.slice_thickness,
            "tilt_deg": round(self.tilt, 2),
            "localizer": self.is_localizer,
            "transfer_syntax": self.transfer_syntax,
            "patient": self.patient_id,
            "folder": str(self.first.path.parent),
        }

    def __repr__(self) -> str:
        row = self.summary()
        return (
            f"Series({row['description']!r}, {row['images']} images, {row['plane']}, "
            f"{row['matrix']}, spacing {row['spacing_mm']} mm, tilt {row['tilt_deg']} deg"
            f"{', localizer' if row['localizer'] else ''})"
        )


@dataclass(eq=False)
class SeriesIndex:
    """The series found under a folder, and the files that were skipped.

    Index it by position or by series key/UID; iterate to get every `Series`.
    """

    root: Path
    series: list[Series] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.series)

    def __iter__(self) -> Iterator[Series]:
        return iter(self.series)

    def __getitem__(self, item: int | str) -> Series:
        if isinstance(item, int):
            return self.series[item]
        for series in self.series:
            if item in (series.key, series.uid):
                return series
        raise KeyError(f"no series with key or UID {item!r} under {self.root}")

    @property
    def damaged(self) -> list[tuple[Path, str]]:
        """Skipped files that are CT images but cannot be used (truncated, required attributes missing).

        Unlike a README or a dose report beside the images, each of these may be a
        slice missing from its series.
        """
        return [(path, reason) for path, reason in self.skipped if reason.startswith(_DAMAGED_CT_REASONS)]

    @property
    def volumes(self) -> list[Series]:
        """Series that can form a volume: not localizers, more than one image."""
        return [s for s in self.series if not s.is_localizer and s.n_images > 1]

    def most_common_slice_count(self, n: int = 1) -> list[tuple[int, int]]:
        """The blog's histogram: ``[(slices, how many series), ...]``, most common first.

        Counts image series (localizers left out) by their number of slices,
        not files per folder, so that a folder mixing series counts right.
        """
        return Counter(s.n_images for s in self.volumes).most_common(n)

    def table(self) -> list[dict[str, Any]]:
        """One summary dict per series (see `Series.summary`)."""
        return [s.summary() for s in self.series]

    def __repr__(self) -> str:
        columns = ["description", "images", "plane", "matrix", "spacing_mm", "tilt_deg", "localizer"]
        rows = [[str(row[c]) for c in columns] for row in self.table()]
        widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
        lines = [f"SeriesIndex({self.root}): {len(self.series)} series, {len(self.skipped)} skipped"]
        lines.append("  ".join(["#".rjust(2)] + [c.ljust(w) for c, w in zip(columns, widths)]))
        for number, row in enumerate(rows):
            lines.append("  ".join([str(number).rjust(2)] + [v.ljust(w) for v, w in zip(row, widths)]))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from html import escape

        rows = self.table()
        columns = list(rows[0]) if rows else ["description"]
        head = "".join(f"<th>{escape(c)}</th>" for c in ["#"] + columns)
        body = "".join(
            "<tr>" + f"<td>{i}</td>" + "".join(f"<td>{escape(str(r[c]))}</td>" for c in columns) + "</tr>"
            for i, r in enumerate(rows)
        )
        skipped = ""
        if self.skipped:
            items = "".join(
                f"<li><code>{escape(str(p))}</code>: {escape(reason)}</li>" for p, reason in self.skipped
            )
            skipped = f"<details><summary>{len(self.skipped)} files skipped</summary><ul>{items}</ul></details>"
        return (
            f"<p><b>{len(self.series)} series</b> under <code>{escape(str(self.root))}</code></p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{skipped}"
        )


def scan(path: str | os.PathLike[str], *, workers: int | None = None) -> SeriesIndex:
    """Index the CT series under a folder, reading headers only.

    Parameters
    ----------
    path : path-like
        A folder (searched recursively) or a single file.
    workers : int, optional
        Processes used to parse headers. Default: one per core for large
        folders, none for small ones. Threads would not help: parsing holds
        the GIL.

    Returns
    -------
    SeriesIndex
        ``index.series`` sorted by patient, study, series number; every file
        that is not a readable CT image is in ``index.skipped`` as
        ``(path, reason)``.

    Examples
    --------
    >>> import tempfile
    >>> from ctexplore.phantom import write_series
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_series(folder, n_slices=4, matrix=32, series_description="demo")
    >>> index = scan(folder)
    >>> index[0].description, index[0].n_images, index.skipped
    ('demo', 4, [])
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    files = [root] if root.is_file() else sorted(_walk_files(root))
    results = _read_headers(files, workers)
    headers: list[SliceHeader] = []
    skipped: list[tuple[Path, str]] = []
    for file, result in zip(files, results):
        if isinstance(result, str):
            skipped.append((file, result))
        else:
            headers.extend(result)
    return SeriesIndex(root=root, series=group_series(headers), skipped=skipped)


def group_series(headers: Iterable[SliceHeader]) -> list[Series]:
    """Group image headers into series: by UID, then by orientation and matrix.

    Within each group the images are sorted along the slice normal. A lone
    image at another orientation than the rest of its UID is a localizer.
    """
    by_uid: dict[str, list[SliceHeader]] = defaultdict(list)
    for header in headers:
        by_uid[header.series_uid].append(header)
    series: list[Series] = []
    for uid, members in by_uid.items():
        groups: dict[tuple[Any, ...], list[SliceHeader]] = defaultdict(list)
        for header in members:
            groups[_geometry_key(header)].append(header)
        ordered = sorted(groups.values(), key=len, reverse=True)
        for number, group in enumerate(ordered, start=1):
            reason = ""
            if len(ordered) > 1:
                reason = "localizer" if len(group) == 1 and number > 1 else "orientation or matrix changes"
            key = uid if number == 1 else f"{uid}#{number}"
            series.append(Series(uid=uid, key=key, headers=_sort_along_normal(group), split_reason=reason))
    series.sort(key=lambda s: (s.patient_id, s.study_uid, s.series_number or 0, s.is_localizer, s.key))
    return series


def _geometry_key(header: SliceHeader) -> tuple[Any, ...]:
    orientation = (
        None
        if header.orientation is None
        else tuple(round(v, _ORIENTATION_DECIMALS) + 0.0 for v in header.orientation)
    )
    return (orientation, header.rows, header.columns, header.is_localizer)


def _sort_along_normal(headers: list[SliceHeader]) -> tuple[SliceHeader, ...]:
    normal = headers[0].normal
    if normal is None or any(h.position is None for h in headers):
        return tuple(sorted(headers, key=lambda h: (h.instance_number or 0, str(h.path), h.frame)))
    projected = np.array([h.position for h in headers]) @ normal
    order = np.argsort(projected, kind="stable")
    return tuple(headers[i] for i in order)


# How the reasons for skipping a recognised but unusable CT image begin (see `SeriesIndex.damaged`).
_DAMAGED_CT_REASONS = ("CT header without", "CT image without", "(7FE0,0010) Pixel Data holds")

# ctexplore's own bookkeeping files (e.g. the sample data's completion marker).
_OWN_FILE_PREFIX = ".ctexplore-"


def _walk_files(root: Path) -> Iterator[Path]:
    for folder, _, names in os.walk(root):
        for name in names:
            if not name.startswith(_OWN_FILE_PREFIX):
                yield Path(folder, name)


def _read_headers(files: list[Path], workers: int | None) -> list[list[SliceHeader] | str]:
    if workers is None:
        workers = (os.cpu_count() or 1) if len(files) >= _PARALLEL_THRESHOLD else 1
    if workers <= 1 or len(files) < 2:
        return [read_header_or_reason(f) for f in files]
    from concurrent.futures import ProcessPoolExecutor

    chunk = max(16, len(files) // (workers * 8))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(read_header_or_reason, files, chunksize=chunk))


def read_header_or_reason(path: Path) -> list[SliceHeader] | str:
    """`read_header`, with the reason as a string where the file is not a usable CT image."""
    try:
        return read_header(path)
    except DicomError as error:
        return str(error).removeprefix(f"{path}: ")
    except OSError as error:
        return f"cannot read file: {error}"


def read_header(path: str | os.PathLike[str]) -> list[SliceHeader]:
    """Read one file's header into one `SliceHeader` per frame.

    Common single-frame little-endian files are parsed straight from their bytes
    (`ctexplore._fastheader`, several times faster); everything else goes
    through pydicom. Both give the same headers.

    Raises
    ------
    DicomError
        The file is not DICOM, not a CT image (DICOMDIR, Secondary Capture,
        dose report ...), or lacks an attribute a CT image must have. The
        message names the file and the reason.
    """
    from ._fastheader import read_fast_header

    path = Path(path)
    fast = read_fast_header(path)
    if fast is None:
        return _read_header_pydicom(path)
    _check_ct_image(path, fast.values, fast.media_storage_sop_class_uid)
    return _headers_from_dataset(path, fast.values, fast.transfer_syntax_uid, fast.pixel_offset, fast.pixel_length)


def _read_header_pydicom(path: Path) -> list[SliceHeader]:
    """`read_header` through pydicom, for every layout the fast reader declines."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if path.stat().st_size == 0:
        raise DicomError(f"{path}: empty file (0 bytes)")
    with open(path, "rb") as handle, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            try:
                dataset = pydicom.dcmread(handle, stop_before_pixels=True)
            except InvalidDicomError:
                # Old archives: no 128-byte preamble and no file meta.
                handle.seek(0)
                dataset = pydicom.dcmread(handle, stop_before_pixels=True, force=True)
            pixel_tell = handle.tell()
            meta = getattr(dataset, "file_meta", None)
            media_class = str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
            _check_ct_image(path, dataset, media_class)
            syntax = _transfer_syntax(dataset, meta)
            pixel_offset, pixel_length = _native_pixel_location(handle, pixel_tell, syntax, path)
            return _headers_from_dataset(path, dataset, syntax, pixel_offset, pixel_length)
        except DicomError:
            raise
        except Exception as error:  # pydicom raises many types on garbage, also when converting values lazily
            raise DicomError(f"{path}: not a readable DICOM file ({type(error).__name__}: {error})") from error


def _check_ct_image(path: Path, dataset: Any, media_class: str) -> None:
    """Raise unless the header (a pydicom Dataset or the fast reader's dict) is a CT image."""
    if media_class == _MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in dataset:
        raise DicomError(f"{path}: DICOMDIR (media directory), not an image")
    sop_class = str(dataset.get("SOPClassUID", media_class))
    if not sop_class and dataset.get("Modality") == "CT" and "Rows" in dataset:
        sop_class = CT_IMAGE_STORAGE  # pre-3.0 ACR-NEMA style files omit the SOP class
    if not sop_class:
        raise DicomError(f"{path}: not a DICOM image (no (0008,0016) SOP Class UID, no image attributes)")
    if sop_class not in CT_SOP_CLASSES:
        raise DicomError(f"{path}: (0008,0016) SOP Class UID {sop_class} ({_sop_name(sop_class)}) is not a CT image")


def _transfer_syntax(dataset: Any, meta: Any) -> str:
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if syntax:
        return syntax
    # No file meta: the dataset encoding pydicom detected is the best evidence.
    if not dataset.original_encoding[1]:
        return "1.2.840.10008.1.2.2"
    return "1.2.840.10008.1.2" if dataset.original_encoding[0] else "1.2.840.10008.1.2.1"


_NATIVE_SYNTAXES = {
    "1.2.840.10008.1.2": ("<", True),
    "1.2.840.10008.1.2.1": ("<", False),
    "1.2.840.10008.1.2.2": (">", False),
}


def _native_pixel_location(
    handle: Any, tell: int, syntax: str, path: Path
) -> tuple[int | None, int | None]:
    """Offset and length of native pixel data, read from the element header at `tell`.

    ``(None, None)`` for compressed or deflated data, which a decoder must read.
    """
    if syntax not in _NATIVE_SYNTAXES:
        return None, None
    endian, implicit = _NATIVE_SYNTAXES[syntax]
    handle.seek(tell)
    raw = handle.read(12)
    tag = struct.unpack(endian + "HH", raw[:4]) if len(raw) >= 4 else None
    if tag != (0x7FE0, 0x0010):
        raise DicomError(f"{path}: CT header without (7FE0,0010) Pixel Data (file truncated or image-less)")
    if implicit:
        (length,) = struct.unpack(endian + "I", raw[4:8])
        offset = tell + 8
    else:
        if len(raw) < 12:
            return None, None
        if raw[4:6] in (b"OB", b"OW", b"UN", b"OV", b"OF", b"OD", b"OL", b"UT", b"SQ", b"UC", b"UR"):
            (length,) = struct.unpack(endian + "I", raw[8:12])
            offset = tell + 12
        else:
            (length,) = struct.unpack(endian + "H", raw[6:8])
            offset = tell + 8
    if length == 0xFFFFFFFF:
        return None, None
    return offset, length


def _headers_from_dataset(
    path: Path, dataset: Any, syntax: str, pixel_offset: int | None, pixel_length: int | None
) -> list[SliceHeader]:
    def required(keyword: str, tag: str) -> Any:
        value = dataset.get(keyword)
        if value is None or value == "":
            raise DicomError(f"{path}: CT image without {tag} {_spaced(keyword)}; cannot use it as a slice")
        return value

    rows = int(required("Rows", "(0028,0010)"))
    columns = int(required("Columns", "(0028,0011)"))
    bits_allocated = int(required("BitsAllocated", "(0028,0100)"))
    bits_stored = int(dataset.get("BitsStored", bits_allocated))
    pixel_representation = int(dataset.get("PixelRepresentation", 0))
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    common = dict(
        path=path,
        sop_class_uid=str(dataset.get("SOPClassUID", "")),
        sop_instance_uid=str(dataset.get("SOPInstanceUID", "")),
        series_uid=str(required("SeriesInstanceUID", "(0020,000E)")),
        study_uid=str(dataset.get("StudyInstanceUID", "")),
        patient_id=str(dataset.get("PatientID", "")),
        series_description=str(dataset.get("SeriesDescription", "")),
        series_number=_int_or_none(dataset.get("SeriesNumber")),
        modality=str(dataset.get("Modality", "")),
        image_type=tuple(str(v).upper() for v in _as_list(dataset.get("ImageType"))),
        instance_number=_int_or_none(dataset.get("InstanceNumber")),
        rows=rows,
        columns=columns,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        high_bit=int(dataset.get("HighBit", bits_stored - 1)),
        pixel_representation=pixel_representation,
        samples_per_pixel=int(dataset.get("SamplesPerPixel", 1)),
        photometric_interpretation=str(dataset.get("PhotometricInterpretation", "MONOCHROME2")),
        padding_value=_padding(dataset.get("PixelPaddingValue"), pixel_representation, bits_allocated),
        padding_range_limit=_padding(dataset.get("PixelPaddingRangeLimit"), pixel_representation, bits_allocated),
        transfer_syntax_uid=syntax,
        number_of_frames=frames,
        nominal_gantry_tilt=_float_or_none(dataset.get("GantryDetectorTilt")),
        convolution_kernel=" ".join(str(v) for v in _as_list(dataset.get("ConvolutionKernel"))),
        spacing_between_slices=_float_or_none(dataset.get("SpacingBetweenSlices")),
    )
    frame_bytes = rows * columns * common["samples_per_pixel"] * bits_allocated // 8
    if pixel_length is not None and pixel_length < frame_bytes * frames:
        raise DicomError(
            f"{path}: (7FE0,0010) Pixel Data holds {pixel_length} bytes but {frames} frame(s) of "
            f"{rows}x{columns} at {bits_allocated} bits need {frame_bytes * frames}; the file is corrupt"
        )
    if "PerFrameFunctionalGroupsSequence" in dataset or frames > 1:
        return _enhanced_headers(path, dataset, common, pixel_offset, frame_bytes, frames)
    return [
        SliceHeader(
            **common,
            position=_triple(dataset.get("ImagePositionPatient")),
            orientation=_orientation(dataset.get("ImageOrientationPatient")),
            pixel_spacing=_pair(dataset.get("PixelSpacing")),
            slice_thickness=_float_or_none(dataset.get("SliceThickness")),
            rescale_slope=_float_or_none(dataset.get("RescaleSlope")),
            rescale_intercept=_float_or_none(dataset.get("RescaleIntercept")),
            pixel_offset=pixel_offset,
            pixel_length=frame_bytes if pixel_offset is not None else None,
        )
    ]


def _enhanced_headers(
    path: Path,
    dataset: Any,
    common: dict[str, Any],
    pixel_offset: int | None,
    frame_bytes: int,
    frames: int,
) -> list[SliceHeader]:
    """Per-frame headers of a multi-frame file from its functional groups."""
    shared = _first_item(dataset.get("SharedFunctionalGroupsSequence"))
    per_frame = list(dataset.get("PerFrameFunctionalGroupsSequence") or [])
    if per_frame and len(per_frame) != frames:
        raise DicomError(
            f"{path}: (5200,9230) Per-frame Functional Groups Sequence has {len(per_frame)} items "
            f"for (0028,0008) Number of Frames {frames}"
        )

    def lookup(frame: int, sequence: str, keyword: str) -> Any:
        for group in (per_frame[frame] if per_frame else None, shared):
            item = _first_item(group.get(sequence)) if group is not None else None
            if item is not None and keyword in item:
                return item.get(keyword)
        return dataset.get(keyword)

    headers = []
    for frame in range(frames):
        headers.append(
            SliceHeader(
                **common,
                position=_triple(lookup(frame, "PlanePositionSequence", "ImagePositionPatient")),
                orientation=_orientation(lookup(frame, "PlaneOrientationSequence", "ImageOrientationPatient")),
                pixel_spacing=_pair(lookup(frame, "PixelMeasuresSequence", "PixelSpacing")),
                slice_thickness=_float_or_none(lookup(frame, "PixelMeasuresSequence", "SliceThickness")),
                rescale_slope=_float_or_none(lookup(frame, "PixelValueTransformationSequence", "RescaleSlope")),
                rescale_intercept=_float_or_none(
                    lookup(frame, "PixelValueTransformationSequence", "RescaleIntercept")
                ),
                pixel_offset=None if pixel_offset is None else pixel_offset + frame * frame_bytes,
                pixel_length=frame_bytes if pixel_offset is not None else None,
                frame=frame,
            )
        )
    return headers


def _first_item(sequence: Any) -> Any:
    if not sequence:
        return None
    return sequence[0]


def _padding(value: Any, pixel_representation: int, bits_allocated: int) -> int | None:
    """Pixel Padding Value in the pixel data's signedness (US 63536 in a signed image is -2000)."""
    if value is None or value == "":
        return None
    if isinstance(value, bytes):  # VR ambiguous US/SS left as raw bytes by some readers
        value = int.from_bytes(value[:2], "little", signed=False)
    value = int(value)
    bits = 16 if bits_allocated <= 16 else bits_allocated
    if pixel_representation == 1 and value >= 1 << (bits - 1):
        value -= 1 << bits
    elif pixel_representation == 0 and value < 0:
        value += 1 << bits
    return value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, str)):
        value = value[0] if len(value) else None
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    values = _as_list(value)
    if len(values) != count:
        return None
    try:
        result = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None
    return result if all(math.isfinite(v) for v in result) else None


def _triple(value: Any) -> tuple[float, float, float] | None:
    return _floats(value, 3)  # type: ignore[return-value]


def _pair(value: Any) -> tuple[float, float] | None:
    return _floats(value, 2)  # type: ignore[return-value]


def _orientation(value: Any) -> tuple[float, ...] | None:
    cosines = _floats(value, 6)
    if cosines is None:
        return None
    (a1, a2, a3), (b1, b2, b3) = cosines[:3], cosines[3:]
    # Plain-Python cross product: np.cross costs more than the rest of the header.
    cross = (a2 * b3 - a3 * b2, a3 * b1 - a1 * b3, a1 * b2 - a2 * b1)
    if math.hypot(*cross) < 0.5:
        return None
    return cosines


def _spaced(keyword: str) -> str:
    out = ""
    for char in keyword:
        if char.isupper() and out and not out[-1].isupper():
            out += " "
        out += char
    return out


def _sop_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name if uid else ""
    return name if name and name != uid else "unknown SOP class"


def _transfer_syntax_name(uid: str) -> str:
    from pydicom.uid import UID

    return UID(uid).name if uid else "unknown"


def _format_spacing(low: float, median: float, high: float) -> str:
    if math.isnan(median):
        return "-"
    if high - low < 0.01:
        return f"{median:.3g}"
    return f"{low:.3g}/{median:.3g}/{high:.3g}"
