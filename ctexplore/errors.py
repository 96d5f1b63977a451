"""Exceptions and warnings raised by ctexplore."""

from __future__ import annotations


class DicomError(ValueError):
    """A DICOM file or series cannot be read correctly.

    Every error ctexplore raises about input data derives from this class, so
    ``except ctexplore.DicomError`` catches them all. Messages name the file,
    the DICOM attribute by tag and keyword, and what to do about it.
    """


class SeriesSelectionError(DicomError):
    """A folder holds several series (or none) where exactly one was expected."""


class GeometryError(DicomError):
    """Slice positions or orientations do not form a volume that can be trusted."""


class DecodeError(DicomError):
    """Pixel data could not be decoded (missing plugin, truncated or corrupt file)."""


class GeometryWarning(UserWarning):
    """The geometry was repaired (duplicates dropped, uneven slices resampled)."""
