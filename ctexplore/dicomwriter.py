"""Writing CT DICOM files: deterministic UIDs, Decimal Strings, pixel encoding, atomic file writes.

The DICOM half of the phantom: `ctexplore.phantom` decides what a series holds (geometry,
quirks, pixels from `ctexplore.headmodel`); this module turns that into bytes on disk.
`Encoding` says how HU become stored values (PS3.3 C.7.6.3 Image Pixel Module; the
inverse of the C.11.1 Modality LUT, HU = stored x slope + intercept) and which transfer
syntax (PS3.5 Section 10) holds them. Every file goes through
`ctexplore._atomic.atomic_target`, so a crash or a second writer never leaves a
half-written file under the real name.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)
from pydicom.valuerep import format_number_as_ds

from ._atomic import atomic_target
from .volume import AIR_HU

if TYPE_CHECKING:
    from .phantom import WrittenSeries

__all__ = [
    "CT_IMAGE_STORAGE",
    "ENHANCED_CT_IMAGE_STORAGE",
    "Encoding",
    "MEDIA_STORAGE_DIRECTORY_STORAGE",
    "NON_IMAGE_FILES",
    "SECONDARY_CAPTURE_STORAGE",
    "SUPPORTED_TRANSFER_SYNTAXES",
    "UNCOMPRESSED_TRANSFER_SYNTAXES",
]

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
ENHANCED_CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2.1")
SECONDARY_CAPTURE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7")
MEDIA_STORAGE_DIRECTORY_STORAGE = UID("1.2.840.10008.1.3.10")

UNCOMPRESSED_TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
)
# Preferred encoder per compressed syntax (fast, and fixed so output bytes do not depend
# on which optional plugins happen to be installed first).
_ENCODER_PLUGINS = {RLELossless: "pylibjpeg", JPEGLSLossless: "pyjpegls", JPEG2000Lossless: "pylibjpeg"}
SUPPORTED_TRANSFER_SYNTAXES = UNCOMPRESSED_TRANSFER_SYNTAXES + tuple(_ENCODER_PLUGINS)

# Files `write_study(non_images=True)` adds beside the images; a scanner must skip them all.
NON_IMAGE_FILES = ("EMPTY.dcm", "README.txt", "SUMMARY.dcm", "DICOMDIR")


@dataclass(frozen=True)
class Encoding:
    """How a series stores its Hounsfield units: pixel representation, bit depth, rescale, transfer syntax.

    Attributes
    ----------
    transfer_syntax : str, default Explicit VR Little Endian
        Any of `SUPPORTED_TRANSFER_SYNTAXES`; the compressed ones are lossless.
    signed : bool, default True
        (0028,0103) *Pixel Representation* 1 (int16) or 0 (uint16).
    bits_stored : int, default 16
        (0028,0101) *Bits Stored* (8..16; *Bits Allocated* is 16); values are
        clipped to its range.
    rescale_slope, rescale_intercept : float or sequence of float
        (0028,1053) *Rescale Slope* and (0028,1052) *Rescale Intercept*: one
        value, or one per slice in spatial order (a real export quirk: the
        reader must rescale each slice with its own pair, PS3.3 C.11.1.1.2).
    file_meta : bool, default True
        False writes an old-archive file: no preamble, no file meta (PS3.10
        7.1), implicit VR little endian (requires that `transfer_syntax`).

    See Also
    --------
    ctexplore.hounsfield : reads the stored values back into HU.

    Examples
    --------
    >>> Encoding(signed=False, bits_stored=12).stored_range
    (0, 4095)
    >>> Encoding(bits_stored=20)
    Traceback (most recent call last):
    ...
    ValueError: bits_stored must be 8..16 (Bits Allocated is 16), got 20
    """

    transfer_syntax: str = ExplicitVRLittleEndian
    signed: bool = True
    bits_stored: int = 16
    rescale_slope: float | Sequence[float] = 1.0
    rescale_intercept: float | Sequence[float] = -1024.0
    file_meta: bool = True

    def __post_init__(self) -> None:
        syntax = UID(self.transfer_syntax)
        if syntax not in SUPPORTED_TRANSFER_SYNTAXES:
            raise ValueError(
                f"transfer_syntax {syntax} ({syntax.name}) is not supported; "
                f"use one of {', '.join(ts.name for ts in SUPPORTED_TRANSFER_SYNTAXES)}"
            )
        object.__setattr__(self, "transfer_syntax", syntax)
        if not self.file_meta and syntax != ImplicitVRLittleEndian:
            raise ValueError("file_meta=False writes old-archive files: use transfer_syntax=ImplicitVRLittleEndian")
        if not 8 <= self.bits_stored <= 16:
            raise ValueError(f"bits_stored must be 8..16 (Bits Allocated is 16), got {self.bits_stored}")

    @property
    def stored_range(self) -> tuple[int, int]:
        """Lowest and highest stored value the pixel representation and bit depth allow."""
        return _stored_range(self.signed, self.bits_stored)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.int16 if self.signed else np.uint16)

    def per_slice_rescale(self, n_slices: int) -> tuple[np.ndarray, np.ndarray]:
        """Slopes and intercepts of each slice, as a reader parses them back from the Decimal Strings."""
        slopes = _per_slice(self.rescale_slope, n_slices, "rescale_slope")
        if np.any(slopes == 0):
            raise ValueError("rescale_slope must not be zero: (0028,1053) Rescale Slope 0 maps every pixel to one HU")
        return slopes, _per_slice(self.rescale_intercept, n_slices, "rescale_intercept")


def _per_slice(value: float | Sequence[float], n_slices: int, name: str) -> np.ndarray:
    values = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if values.size == 1:
        values = np.full(n_slices, values[0])
    if values.shape != (n_slices,):
        raise ValueError(f"{name} needs one value or {n_slices} (one per slice), got {values.size}")
    # the header holds Decimal Strings: the truth is what a reader parses back
    return np.array([_ds_value(v) for v in values])


def _quantize(hu: np.ndarray, slope: float, intercept: float, stored_range: tuple[int, int]) -> np.ndarray:
    """Stored values for `hu`: the Modality LUT inverted, rounded and clipped to the stored range."""
    low, high = stored_range
    return np.clip(np.rint((hu - intercept) / slope), low, high)


def _stored_pixels(
    hu: np.ndarray,
    slope: float,
    intercept: float,
    encoding: Encoding,
    outside: np.ndarray,
    padding: np.ndarray | int | None,
    junk_mask: np.ndarray | None,
) -> np.ndarray:
    """One slice's pixel array as stored: quantized HU, `padding` (None: air) `outside` the field of view,
    and the bits above (0028,0102) *High Bit* set where `junk_mask` is (PS3.5 8.1.1 leaves them undefined)."""
    stored = _quantize(hu, slope, intercept, encoding.stored_range)
    stored[outside] = (
        _quantize(np.asarray(AIR_HU), slope, intercept, encoding.stored_range) if padding is None else padding
    )
    pixels = stored.astype(np.int32)
    if junk_mask is not None:
        pixels[junk_mask] ^= (0xFFFF >> encoding.bits_stored) << encoding.bits_stored
    return (pixels & 0xFFFF).astype(np.uint16).view(encoding.dtype)


# Name-based UUIDs (ISO/IEC 9834-8) give valid 2.25 UIDs that depend only on their inputs;
# pydicom's generate_uid(prefix=None) ignores its entropy sources and is random.
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "ctexplore/phantom")


def _uid(*parts: Any) -> str:
    """A deterministic ``2.25.<int>`` UID from the given parts."""
    return UID(f"2.25.{uuid.uuid5(_UID_NAMESPACE, '|'.join(repr(p) for p in parts)).int}")


def _ds(value: float) -> str:
    """A Decimal String of at most 16 characters, as precise as that allows."""
    value = float(value)
    if value == 0:
        return "0"
    if value == round(value) and abs(value) < 1e15:
        return str(int(round(value)))
    return format_number_as_ds(value)


def _ds_value(value: float) -> float:
    """The float a reader will parse from the Decimal String we write for `value`."""
    return float(_ds(value))


def _stored_range(signed: bool, bits_stored: int) -> tuple[int, int]:
    if signed:
        return -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
    return 0, (1 << bits_stored) - 1


def _as_vr(value: int, vr: str) -> int:
    if vr == "US":
        return int(value) & 0xFFFF
    if vr == "SS":
        return int(np.int16(np.uint16(int(value) & 0xFFFF).view(np.int16)))
    raise ValueError(f"padding_vr must be 'SS' or 'US', not {vr!r}")


def _ct_slice_dataset(
    *, patient_id: str, study_uid: str, series_uid: str, sop_uid: str, frame_of_reference_uid: str, seed: int
) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = "20240101"
    ds.SeriesDate = "20240101"
    ds.ContentDate = "20240101"
    ds.StudyTime = "120000"
    ds.ContentTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = "CT"
    ds.Manufacturer = "ctexplore phantom"
    ds.ReferringPhysicianName = ""
    ds.PatientName = f"PHANTOM^{patient_id}"
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.KVP = "120"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = str(seed)
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    return ds


def _set_image_pixel_module(ds: Dataset, rows: int, cols: int, bits_stored: int, signed: bool) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0


def _write_dataset(
    path: Path, ds: Dataset, pixels: np.ndarray, transfer_syntax: str, *, file_meta: bool = True
) -> None:
    """Attach pixels and file meta, encode, and write atomically (temp file, then rename)."""
    transfer_syntax = UID(transfer_syntax)
    if transfer_syntax.is_compressed:
        ds.compress(
            transfer_syntax,
            np.ascontiguousarray(pixels),
            encoding_plugin=_ENCODER_PLUGINS[transfer_syntax],
            generate_instance_uid=False,
        )
    else:
        byte_order = pixels.dtype.newbyteorder(">" if transfer_syntax == ExplicitVRBigEndian else "<")
        ds.PixelData = pixels.astype(byte_order, copy=False).tobytes()
        ds["PixelData"].VR = "OB" if pixels.dtype.itemsize == 1 else "OW"
    _write_atomically(path, ds, transfer_syntax, file_meta=file_meta)


def _write_atomically(
    path: Path,
    ds: Dataset,
    transfer_syntax: str,
    *,
    file_meta: bool = True,
    media_storage: tuple[str, str] | None = None,
) -> None:
    if file_meta:
        sop_class, sop_instance = media_storage or (ds.SOPClassUID, ds.SOPInstanceUID)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(sop_class)
        meta.MediaStorageSOPInstanceUID = UID(sop_instance)
        meta.TransferSyntaxUID = UID(transfer_syntax)
        meta.ImplementationVersionName = "CTEXPLORE_PHTM"
        ds.file_meta = meta
        ds.preamble = b"\0" * 128
    with atomic_target(path) as temporary:
        if file_meta:
            dcmwrite(temporary, ds, enforce_file_format=True)
        else:
            dcmwrite(temporary, ds, implicit_vr=True, little_endian=True)


def _write_non_images(dest: Path, image_series: WrittenSeries, *, patient_id: str, study_uid: str, seed: int) -> None:
    (dest / "EMPTY.dcm").write_bytes(b"")
    (dest / "README.txt").write_text(
        "Synthetic head CT written by ctexplore.phantom (no real patient).\n"
        "This file, EMPTY.dcm, SUMMARY.dcm and DICOMDIR are not CT images.\n"
    )

    summary = _ct_slice_dataset(
        patient_id=patient_id,
        study_uid=study_uid,
        series_uid=image_series.series_uid,  # as scanners do: the summary joins an image series
        sop_uid=_uid("summary", image_series.series_uid),
        frame_of_reference_uid=image_series.meta.get("frame_of_reference_uid", _uid("frame", study_uid)),
        seed=seed,
    )
    summary.SOPClassUID = SECONDARY_CAPTURE_STORAGE
    summary.ImageType = ["DERIVED", "SECONDARY", "SCREEN SAVE"]
    summary.ConversionType = "WSD"
    summary.SeriesDescription = image_series.description
    summary.SeriesNumber = image_series.meta.get("series_number", 1)
    summary.InstanceNumber = 1000
    summary.SamplesPerPixel = 1
    summary.PhotometricInterpretation = "MONOCHROME2"
    summary.Rows = summary.Columns = 64
    summary.BitsAllocated = summary.BitsStored = 8
    summary.HighBit = 7
    summary.PixelRepresentation = 0
    row_index, col_index = np.indices((64, 64))
    screen = np.where(((row_index // 8) + (col_index // 8)) % 2 == 0, 40, 200).astype(np.uint8)
    _write_dataset(dest / "SUMMARY.dcm", summary, screen, ExplicitVRLittleEndian)

    directory = Dataset()
    directory.FileSetID = "PHANTOM"
    directory.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    directory.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    directory.FileSetConsistencyFlag = 0
    directory.DirectoryRecordSequence = DicomSequence([])
    _write_atomically(
        dest / "DICOMDIR",
        directory,
        ExplicitVRLittleEndian,
        media_storage=(MEDIA_STORAGE_DIRECTORY_STORAGE, _uid("dicomdir", study_uid)),
    )


def _fold_into_enhanced(classic_files: Sequence[Path], file: Path, transfer_syntax: str) -> None:
    """Write the classic CT slices `classic_files` (spatial order) as one Enhanced CT multi-frame `file`.

    Frame positions go to (5200,9230) *Per-frame Functional Groups*, orientation and
    pixel measures to (5200,9229) *Shared Functional Groups* (PS3.3 A.38 Enhanced CT
    Image IOD, C.7.6.16 Multi-frame Functional Groups).
    """
    from pydicom import dcmread

    slices = [dcmread(f) for f in classic_files]
    first = slices[0]
    pixels = np.stack([s.pixel_array for s in slices])
    series_uid = str(first.SeriesInstanceUID)
    ds = _ct_slice_dataset(
        patient_id=str(first.PatientID),
        study_uid=str(first.StudyInstanceUID),
        series_uid=series_uid,
        sop_uid=_uid("enhanced-sop", series_uid),
        frame_of_reference_uid=str(first.FrameOfReferenceUID),
        seed=0,
    )
    ds.SOPClassUID = ENHANCED_CT_IMAGE_STORAGE
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.SeriesDescription = first.SeriesDescription
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

    _write_dataset(file, ds, pixels, transfer_syntax)


def _rescale_item(source: Dataset) -> Dataset:
    item = Dataset()
    item.RescaleIntercept = source.RescaleIntercept
    item.RescaleSlope = source.RescaleSlope
    item.RescaleType = "HU"
    return item
