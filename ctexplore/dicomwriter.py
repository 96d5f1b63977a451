"""Writing CT DICOM files: deterministic UIDs, Decimal Strings, pixel encoding, atomic file writes.

The DICOM half of the phantom: `ctexplore.phantom` decides what a series holds (geometry,
quirks, pixels from `ctexplore.headmodel`); this module turns that into bytes on disk.
Every file is written to a unique temporary name and renamed into place, so a crash
or a second writer never leaves a half-written file under the real name.
"""

from __future__ import annotations

import os
import uuid
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

if TYPE_CHECKING:
    from .phantom import WrittenSeries

__all__ = [
    "CT_IMAGE_STORAGE",
    "ENHANCED_CT_IMAGE_STORAGE",
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
        order = ">" if transfer_syntax == ExplicitVRBigEndian else "<"
        ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(order), copy=False).tobytes()
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
    # a unique name, so two writers filling one folder never share a temporary file
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    if file_meta:
        sop_class, sop_instance = media_storage or (ds.SOPClassUID, ds.SOPInstanceUID)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop_instance
        meta.TransferSyntaxUID = transfer_syntax
        meta.ImplementationVersionName = "CTEXPLORE_PHTM"
        ds.file_meta = meta
        ds.preamble = b"\0" * 128
        dcmwrite(temporary, ds, enforce_file_format=True)
    else:
        dcmwrite(temporary, ds, implicit_vr=True, little_endian=True)
    os.replace(temporary, path)


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
