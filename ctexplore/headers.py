"""Read one DICOM file's header into the `SliceHeader` records a CT series is built from.

Common single-frame little-endian files go through the byte-level fast path
(`ctexplore._fastheader`); every other layout through pydicom. Both give the same
headers. A file that is not a usable CT image raises `DicomError` naming the
file and the reason (see PS3.3 C.7.6.2 Image Plane, C.7.6.3 Image Pixel).
"""

from __future__ import annotations

import math
import os
import re
import struct
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DicomError
from .volume import slice_normal

__all__ = ["SliceHeader", "read_header", "read_header_or_reason", "CT_SOP_CLASSES"]


CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"


CT_SOP_CLASSES = {
    CT_IMAGE_STORAGE: "CT Image Storage",
    ENHANCED_CT_IMAGE_STORAGE: "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
}


_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
# PS3.5 9.1: components of digits without leading zeros, separated by dots.
_UID_SYNTAX = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


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
    contrast_agent: str = ""  # (0018,0010) Contrast/Bolus Agent; "" when absent or empty

    @property
    def is_localizer(self) -> bool:
        """(0008,0008) *Image Type* says LOCALIZER."""
        return "LOCALIZER" in self.image_type

    @property
    def normal(self) -> np.ndarray | None:
        """Slice normal, row direction x column direction, or None without orientation."""
        if self.orientation is None:
            return None
        return slice_normal(self.orientation[:3], self.orientation[3:])


# How the reasons for skipping a recognised but unusable CT image begin (see `SeriesIndex.damaged`).
_DAMAGED_CT_REASONS = (
    "CT header without",
    "CT image without",
    "CT image with (",
    "(7FE0,0010) Pixel Data holds",
    # `_check_counts`: counts that cannot describe the file are damage, not "not an image"
    "(0028,0008) Number of Frames",
    "(0028,0010) Rows",
    "(0028,0100) Bits Allocated",
    "(0028,0101) Bits Stored",
)


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
            elscint = _ELSCINT_PIXEL_DATA in dataset
            pixel_offset, pixel_length = _native_pixel_location(handle, pixel_tell, syntax, path, elscint)
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
    if dataset.get("Modality") == "CT" and not _UID_SYNTAX.fullmatch(sop_class):
        raise DicomError(
            f"{path}: CT image with (0008,0016) SOP Class UID {sop_class[:80]!r}, which is not a valid UID "
            "(digits and dots, PS3.5 9.1); the header is damaged"
        )
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


# Elscint scanners (later Picker/Philips) put their privately compressed pixels here instead of (7FE0,0010).
_ELSCINT_PIXEL_DATA = (0x07A1, 0x100A)


def _native_pixel_location(
    handle: Any, tell: int, syntax: str, path: Path, elscint: bool = False
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
    if tag != (0x7FE0, 0x0010) and elscint:
        raise DicomError(
            f"{path}: pixels are in the private element (07A1,100A) in Elscint's proprietary compression, "
            "with no (7FE0,0010) Pixel Data; no Python decoder reads that format. Decompress the files with "
            "GDCM (`gdcmconv --raw in.dcm out.dcm`) or the vendor's tool, then scan again."
        )
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
    frames = _int_or_none(dataset.get("NumberOfFrames"))
    if frames is None:
        frames = 1  # absent (or empty) in single-frame CT Image Storage files
    elif frames < 1:
        raise DicomError(
            f"{path}: CT image with (0028,0008) Number of Frames {frames}; an image holds at least one "
            "frame (PS3.3 C.7.6.6), so the header is malformed and its pixel layout unknown. If its Pixel "
            "Data holds one frame, set Number of Frames to 1 (e.g. with pydicom) and scan again"
        )
    common: dict[str, Any] = dict(
        path=path,
        sop_class_uid=str(dataset.get("SOPClassUID", "")),
        sop_instance_uid=str(dataset.get("SOPInstanceUID", "")),
        # anonymisers may blank it; `series.group_series` then groups by study, number and geometry
        series_uid=str(dataset.get("SeriesInstanceUID") or "").strip(),
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
        contrast_agent=str(dataset.get("ContrastBolusAgent") or "").strip(),
    )
    if common["samples_per_pixel"] < 1:
        raise DicomError(
            f"{path}: CT image with (0028,0002) Samples per Pixel = {common['samples_per_pixel']}; a pixel holds "
            "at least one sample (CT: 1), so the header is damaged"
        )
    frame_bytes = rows * columns * common["samples_per_pixel"] * bits_allocated // 8
    _check_counts(path, rows, columns, bits_allocated, bits_stored, frames, frame_bytes, syntax)
    needed = frame_bytes * frames
    if pixel_length is not None and pixel_length < needed:
        raise DicomError(
            f"{path}: (7FE0,0010) Pixel Data holds {pixel_length} bytes but {frames} frame(s) of "
            f"{rows}x{columns} at {bits_allocated} bits need {needed}; the file is corrupt"
        )
    # A trailing pad byte is normal; twice the data or more means the header describes other pixels
    # (e.g. Bits Allocated 8 on 16-bit data), and reading the first part would give wrong values.
    if pixel_length is not None and pixel_length > needed + 1 and pixel_length >= 2 * needed:
        raise DicomError(
            f"{path}: (7FE0,0010) Pixel Data holds {pixel_length} bytes, {pixel_length / needed:.3g} times the "
            f"{needed} that (0028,0010) Rows {rows} x (0028,0011) Columns {columns} x (0028,0100) Bits Allocated "
            f"{bits_allocated} x (0028,0008) Number of Frames {frames} describe; the header does not match the "
            "pixels (e.g. Bits Allocated 8 on 16-bit data), so they cannot be read safely. Fix the header."
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
                rescale_intercept=_float_or_none(lookup(frame, "PixelValueTransformationSequence", "RescaleIntercept")),
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


_UNENCAPSULATED_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"})
# Each encapsulated (or deflated) frame needs at least one 8-byte item (tag + length) in the file.
_MIN_ENCODED_FRAME_BYTES = 8


def _check_counts(
    path: Path,
    rows: int,
    columns: int,
    bits_allocated: int,
    bits_stored: int,
    frames: int,
    frame_bytes: int,
    syntax: str,
) -> None:
    """Refuse header counts that cannot describe this file, before anything is allocated per frame."""
    if rows < 1 or columns < 1:
        raise DicomError(
            f"{path}: (0028,0010) Rows = {rows} / (0028,0011) Columns = {columns}: "
            "an image needs at least 1 x 1 pixels; the header is damaged"
        )
    if bits_allocated not in (8, 16, 32):
        raise DicomError(
            f"{path}: (0028,0100) Bits Allocated = {bits_allocated}; CT pixels use 8, 16 or 32; the header is damaged"
        )
    if not 1 <= bits_stored <= bits_allocated:
        raise DicomError(
            f"{path}: (0028,0101) Bits Stored = {bits_stored} must be 1..{bits_allocated} "
            "((0028,0100) Bits Allocated); the header is damaged"
        )
    size = os.path.getsize(path)
    encapsulated = syntax not in _UNENCAPSULATED_SYNTAXES
    needed = frames * (_MIN_ENCODED_FRAME_BYTES if encapsulated else frame_bytes)
    # a single frame cut short keeps its series membership and fails at load, naming the file;
    # only a multi-frame count is checked here, before one header per claimed frame is built
    if frames < 1 or (frames > 1 and needed > size):
        raise DicomError(
            f"{path}: (0028,0008) Number of Frames = {frames} needs at least {needed} bytes of pixel data, "
            f"but the file has {size} bytes; the header is damaged or the file is truncated"
        )
