"""Read the header attributes a CT slice needs straight from the file's bytes, for the common layout.

pydicom turns every element of a header into Python objects, which costs about a
millisecond per file; `series.scan` needs some thirty top-level attributes. This
reader walks the top-level elements of a DICOM Part 10 file in little endian
(explicit or implicit VR; native or encapsulated pixel data), decodes only those
attributes into the values pydicom's ``Dataset.get`` would give, and stops at
(7FE0,0010) *Pixel Data*. Whatever it does not handle exactly like pydicom (big
endian, deflate, other character sets, Enhanced CT functional groups, DICOMDIR,
multi-frame, out-of-order or malformed elements, a missing Pixel Data element) it
declines: `read_fast_header` returns None and the caller reads the file with
pydicom instead, so the fast path never changes a result, it only saves time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from struct import Struct, unpack_from
from struct import error as StructError
from typing import Any

__all__ = ["FastHeader", "read_fast_header", "salvage_values"]

# A CT header is 1-20 KiB; private sequences can make it longer, then we read more.
_FIRST_READ = 16 * 1024
_GROWTH = 8
_MAX_NESTING = 16
_UNDEFINED = 0xFFFFFFFF

_PREAMBLE = 128
# Group, element and the next 4 bytes: the implicit VR length, or explicit VR + 2-byte length.
_TAG_AND_LENGTH = Struct("<HHI").unpack_from
_LENGTH = Struct("<I").unpack_from
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_NATIVE_SYNTAXES = {_IMPLICIT_LE: True, _EXPLICIT_LE: False}  # uid -> implicit VR
# Encapsulated syntaxes (JPEG family, JPEG-LS, JPEG 2000, HTJ2K, MPEG, RLE) encode
# the dataset in explicit VR little endian.
_JPEG_FAMILY_PREFIX = "1.2.840.10008.1.2.4."
_RLE_LOSSLESS = "1.2.840.10008.1.2.5"

# Explicit VRs with 2 reserved bytes and a 4-byte length (PS3.5 Table 7.1-1).
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"})
_SHORT_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN",
     b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)  # fmt: skip

_PIXEL_DATA = 0x7FE00010
_SPECIFIC_CHARACTER_SET = 0x00080005
# Elements whose presence means a layout pydicom must read: DICOMDIR records,
# Enhanced CT functional groups, float pixel data.
_DECLINE_TAGS = frozenset({0x00041220, 0x52009229, 0x52009230, 0x7FE00008, 0x7FE00009})
_CHARACTER_SETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}

# tag -> (keyword, how to decode, explicit VRs accepted)
_WANTED: dict[int, tuple[str, str, tuple[bytes, ...]]] = {
    0x00080008: ("ImageType", "code_list", (b"CS",)),
    0x00080016: ("SOPClassUID", "uid", (b"UI",)),
    0x00080018: ("SOPInstanceUID", "uid", (b"UI",)),
    0x00080060: ("Modality", "code", (b"CS",)),
    0x0008103E: ("SeriesDescription", "text", (b"LO",)),
    0x00100020: ("PatientID", "text", (b"LO",)),
    0x00180010: ("ContrastBolusAgent", "text", (b"LO",)),
    0x00180050: ("SliceThickness", "decimal", (b"DS",)),
    0x00180088: ("SpacingBetweenSlices", "decimal", (b"DS",)),
    0x00181120: ("GantryDetectorTilt", "decimal", (b"DS",)),
    0x00181210: ("ConvolutionKernel", "text_list", (b"SH",)),
    0x0020000D: ("StudyInstanceUID", "uid", (b"UI",)),
    0x0020000E: ("SeriesInstanceUID", "uid", (b"UI",)),
    0x00200011: ("SeriesNumber", "integer", (b"IS",)),
    0x00200013: ("InstanceNumber", "integer", (b"IS",)),
    0x00200032: ("ImagePositionPatient", "decimal", (b"DS",)),
    0x00200037: ("ImageOrientationPatient", "decimal", (b"DS",)),
    0x00280002: ("SamplesPerPixel", "unsigned", (b"US",)),
    0x00280004: ("PhotometricInterpretation", "code", (b"CS",)),
    0x00280008: ("NumberOfFrames", "integer", (b"IS",)),
    0x00280010: ("Rows", "unsigned", (b"US",)),
    0x00280011: ("Columns", "unsigned", (b"US",)),
    0x00280030: ("PixelSpacing", "decimal", (b"DS",)),
    0x00280100: ("BitsAllocated", "unsigned", (b"US",)),
    0x00280101: ("BitsStored", "unsigned", (b"US",)),
    0x00280102: ("HighBit", "unsigned", (b"US",)),
    0x00280103: ("PixelRepresentation", "unsigned", (b"US",)),
    0x00280120: ("PixelPaddingValue", "us_or_ss", (b"US", b"SS")),
    0x00280121: ("PixelPaddingRangeLimit", "us_or_ss", (b"US", b"SS")),
    0x00281052: ("RescaleIntercept", "decimal", (b"DS",)),
    0x00281053: ("RescaleSlope", "decimal", (b"DS",)),
    _SPECIFIC_CHARACTER_SET: ("SpecificCharacterSet", "code", (b"CS",)),
}


@dataclass(frozen=True, slots=True)
class FastHeader:
    """What `read_fast_header` found.

    Attributes
    ----------
    transfer_syntax_uid, media_storage_sop_class_uid : str
        (0002,0010) and (0002,0002) from the file meta ("" when absent).
    values : dict
        Keyword -> value for the attributes present, shaped like pydicom's
        ``Dataset.get``: ``str`` (UI, CS, LO, SH), ``list`` of them when
        multi-valued, DS as the stripped ``str`` pydicom converts with ``float``,
        IS and US/SS as ``int``; ``None`` for an empty DS, IS, US or SS.
    pixel_offset, pixel_length : int or None
        Where native pixel data starts and its byte length; None for
        encapsulated or undefined-length pixel data.
    """

    transfer_syntax_uid: str
    media_storage_sop_class_uid: str
    values: dict[str, Any]
    pixel_offset: int | None
    pixel_length: int | None


class _Decline(Exception):
    """The file is valid or not, but not a layout this reader handles like pydicom does."""


class _NeedMore(Exception):
    """The header goes on past the bytes read so far."""


def read_fast_header(path: str | os.PathLike[str]) -> FastHeader | None:
    """Read a CT slice's header attributes without pydicom, or None where pydicom must do it.

    Parameters
    ----------
    path : path-like
        A file.

    Returns
    -------
    FastHeader or None
        None for anything unusual: no 128-byte preamble and ``DICM``, big endian,
        deflated, a Specific Character Set other than ISO_IR 6/100/192, Enhanced
        CT functional groups, a DICOMDIR record sequence, Number of Frames above
        1, elements out of order or past the end of the file, no Pixel Data.

    Raises
    ------
    OSError
        The file cannot be opened or read.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from ctexplore.phantom import write_series
    >>> written = write_series(tempfile.mkdtemp(), n_slices=1, matrix=16)
    >>> header = read_fast_header(written.files[0])
    >>> header.values["Modality"], header.values["Rows"], header.values["PixelSpacing"]
    ('CT', 16, ['14.4', '14.4'])
    >>> header.pixel_length
    512
    >>> text = Path(tempfile.mkdtemp()) / "notes.txt"
    >>> _ = text.write_text("not DICOM")
    >>> read_fast_header(text) is None
    True
    """
    with open(path, "rb") as handle:
        buffer = handle.read(_FIRST_READ)
        at_end = len(buffer) < _FIRST_READ
        while True:
            try:
                return _parse(buffer)
            except _Decline:
                return None
            except _NeedMore:
                if at_end:
                    return None  # truncated
                wanted = len(buffer) * _GROWTH
                buffer += handle.read(wanted - len(buffer))
                at_end = len(buffer) < wanted


# Enough for the attributes before a damaged spot; salvage runs only on files that failed.
_SALVAGE_READ = 64 * 1024


def salvage_values(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The wanted attributes that can be read from a damaged file's header, up to the damage.

    Used to tell which series a file that cannot be read belongs to, and where in
    it the file sits: (0020,000E) and (0020,0032) precede the pixel attributes, so
    a file cut short or corrupted after them still names its series and position.
    Never raises for the file's content; an empty dict when nothing is readable.

    Examples
    --------
    >>> import tempfile
    >>> from ctexplore.phantom import write_series
    >>> written = write_series(tempfile.mkdtemp(), n_slices=1, matrix=16)
    >>> data = written.files[0].read_bytes()
    >>> _ = written.files[0].write_bytes(data[: data.index(bytes([0x28, 0, 0x10, 0]))])
    >>> values = salvage_values(written.files[0])
    >>> values["ImagePositionPatient"], "Rows" in values
    (['-108', '-108', '0'], False)
    """
    with open(path, "rb") as handle:
        buffer = handle.read(_SALVAGE_READ)
    raw: dict[int, tuple[bytes | None, bytes]] = {}
    implicit = False
    try:
        if buffer[_PREAMBLE : _PREAMBLE + 4] != b"DICM":
            return {}
        position, meta = _read_file_meta(buffer, _PREAMBLE + 4)
        syntax = meta.get(0x00020010, "")
        if syntax not in _NATIVE_SYNTAXES and not (syntax.startswith(_JPEG_FAMILY_PREFIX) or syntax == _RLE_LOSSLESS):
            return {}
        implicit = _NATIVE_SYNTAXES.get(syntax, False)
        _walk_dataset(buffer, position, implicit, raw)
    except (_Decline, _NeedMore, StructError):
        pass  # keep what was read before the damage
    values: dict[str, Any] = {}
    for tag, element in raw.items():
        keyword, kind, vrs = _WANTED[tag]
        if kind == "us_or_ss":
            continue
        try:
            values[keyword] = _DECODERS[kind](_checked(element, vrs, implicit), "latin-1")
        except (_Decline, UnicodeDecodeError, ValueError):
            continue
    return values


def _parse(buffer: bytes) -> FastHeader:
    if len(buffer) < _PREAMBLE + 4 or buffer[_PREAMBLE : _PREAMBLE + 4] != b"DICM":
        raise _Decline
    position, meta = _read_file_meta(buffer, _PREAMBLE + 4)
    syntax = meta.get(0x00020010, "")
    if syntax in _NATIVE_SYNTAXES:
        implicit = _NATIVE_SYNTAXES[syntax]
    elif syntax.startswith(_JPEG_FAMILY_PREFIX) or syntax == _RLE_LOSSLESS:
        implicit = False
    else:
        raise _Decline
    _check_encoding_guess(buffer, position, implicit)
    raw, pixel = _walk_dataset(buffer, position, implicit)
    values = _decode(raw, implicit)
    pixel_value_at: int | None = pixel[0]
    pixel_length: int | None = pixel[1]
    if syntax not in _NATIVE_SYNTAXES or pixel_length == _UNDEFINED:
        pixel_value_at = pixel_length = None
    return FastHeader(
        transfer_syntax_uid=syntax,
        media_storage_sop_class_uid=meta.get(0x00020002, ""),
        values=values,
        pixel_offset=pixel_value_at,
        pixel_length=pixel_length,
    )


def _read_file_meta(buffer: bytes, position: int) -> tuple[int, dict[int, str]]:
    """Group 0002, always explicit VR little endian; returns where the dataset starts."""
    uids: dict[int, str] = {}
    while True:
        if position + 8 > len(buffer):
            raise _NeedMore
        group, element = unpack_from("<HH", buffer, position)
        if group != 0x0002:
            return position, uids
        tag, vr, length, value_at = _element_header(buffer, position, implicit=False)
        if length == _UNDEFINED or length & 1:
            raise _Decline
        position = value_at + length
        if tag in (0x00020002, 0x00020010):
            if vr != b"UI":
                raise _Decline
            if position > len(buffer):
                raise _NeedMore
            uids[tag] = _decode_uid(buffer[value_at:position], "")


def _check_encoding_guess(buffer: bytes, position: int, implicit: bool) -> None:
    """Decline where pydicom would switch VR encoding after looking at a dataset's first element.

    pydicom takes two capital letters where the VR would be as explicit VR.
    """
    if position + 6 > len(buffer):
        raise _NeedMore
    looks_explicit = 0x40 < buffer[position + 4] < 0x5B and 0x40 < buffer[position + 5] < 0x5B
    if looks_explicit == implicit:
        raise _Decline


def _element_header(buffer: bytes, position: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
    """``(tag, VR or None, value length, value offset)`` of the element at `position`."""
    if position + 8 > len(buffer):
        raise _NeedMore
    group, element, length = _TAG_AND_LENGTH(buffer, position)
    tag = group << 16 | element
    if implicit or group == 0xFFFE:  # items and delimiters carry no VR
        return tag, None, length, position + 8
    vr = buffer[position + 4 : position + 6]
    if vr in _LONG_VRS:
        if position + 12 > len(buffer):
            raise _NeedMore
        return tag, vr, _LENGTH(buffer, position + 8)[0], position + 12
    if vr in _SHORT_VRS:
        return tag, vr, length >> 16, position + 8
    raise _Decline


def _walk_dataset(
    buffer: bytes, position: int, implicit: bool, raw: dict[int, tuple[bytes | None, bytes]] | None = None
) -> tuple[dict[int, tuple[bytes | None, bytes]], tuple[int, int]]:
    """Raw bytes of the wanted top-level elements, and (value offset, length) of Pixel Data.

    `raw`, when given, is filled in place, so that it keeps what was read before an exception.
    """
    if raw is None:
        raw = {}
    previous = -1
    end = len(buffer)
    wanted = _WANTED
    while True:
        # The element header, inlined from _element_header: this loop is the hot path.
        if position + 8 > end:
            raise _NeedMore
        group, element, length = _TAG_AND_LENGTH(buffer, position)
        tag = group << 16 | element
        if implicit:
            vr = None
            value_at = position + 8
        else:
            vr = buffer[position + 4 : position + 6]
            if vr in _SHORT_VRS:
                length >>= 16
                value_at = position + 8
            elif vr in _LONG_VRS:
                if position + 12 > end:
                    raise _NeedMore
                (length,) = _LENGTH(buffer, position + 8)
                value_at = position + 12
            else:
                raise _Decline
        if tag <= previous or tag in _DECLINE_TAGS or group == 0xFFFE:
            raise _Decline  # out of order or repeated, a layout for pydicom, or a stray item
        previous = tag
        if tag >= _PIXEL_DATA:
            if tag > _PIXEL_DATA or not (implicit or vr in (b"OB", b"OW")):
                raise _Decline  # no Pixel Data, or an odd one: pydicom's path reports it
            return raw, (value_at, length)
        if length == _UNDEFINED:
            if not implicit and vr != b"SQ":
                raise _Decline
            position = _skip_sequence(buffer, value_at, implicit, 1)
            continue
        if length & 1:
            raise _Decline
        position = value_at + length
        if tag in wanted:
            if position > end:
                raise _NeedMore
            raw[tag] = (vr, buffer[value_at:position])


def _skip_sequence(buffer: bytes, position: int, implicit: bool, depth: int) -> int:
    """Offset after the delimiter of an undefined-length sequence (or encapsulated pixel data)."""
    if depth > _MAX_NESTING:
        raise _Decline
    while True:
        tag, _, length, value_at = _element_header(buffer, position, implicit)
        if tag == 0xFFFEE0DD:  # sequence delimitation item
            if length != 0:
                raise _Decline
            return value_at
        if tag != 0xFFFEE000:
            raise _Decline
        if length == _UNDEFINED:
            position = _skip_item(buffer, value_at, implicit, depth)
        elif length & 1:
            raise _Decline
        else:
            position = value_at + length


def _skip_item(buffer: bytes, position: int, implicit: bool, depth: int) -> int:
    """Offset after the item delimiter of an undefined-length item."""
    if position + 8 > len(buffer):
        raise _NeedMore
    if _TAG_AND_LENGTH(buffer, position)[0] != 0xFFFE:  # an item's own dataset, not an empty item
        _check_encoding_guess(buffer, position, implicit)
    while True:
        tag, vr, length, value_at = _element_header(buffer, position, implicit)
        if tag == 0xFFFEE00D:  # item delimitation item
            if length != 0:
                raise _Decline
            return value_at
        if tag >> 16 == 0xFFFE:
            raise _Decline
        if length == _UNDEFINED:
            # Implicit VR: a sequence. Explicit: SQ, or an encapsulated icon image.
            if not (implicit or vr == b"SQ" or (tag == _PIXEL_DATA and vr in (b"OB", b"OW"))):
                raise _Decline
            position = _skip_sequence(buffer, value_at, implicit, depth + 1)
        elif length & 1:
            raise _Decline
        else:
            position = value_at + length


def _decode(raw: dict[int, tuple[bytes | None, bytes]], implicit: bool) -> dict[str, Any]:
    """Values as pydicom converts them (pydicom.values, default configuration)."""
    text_codec = "latin-1"
    values: dict[str, Any] = {}
    character_set = raw.pop(_SPECIFIC_CHARACTER_SET, None)
    if character_set is not None:
        text_codec = _CHARACTER_SETS.get(_decode_code(_checked(character_set, (b"CS",), implicit), ""), "")
        if not text_codec:
            raise _Decline
    padding = []
    for tag, element in raw.items():
        keyword, kind, vrs = _WANTED[tag]
        if kind == "us_or_ss":
            padding.append((keyword, element))  # needs Pixel Representation, decoded below
        else:
            values[keyword] = _DECODERS[kind](_checked(element, vrs, implicit), text_codec)
    for keyword, element in padding:
        values[keyword] = _decode_padding(element, values)
    if values.get("NumberOfFrames", 1) not in (None, 1):
        raise _Decline  # multi-frame: per-frame geometry, pydicom's path
    return values


def _checked(element: tuple[bytes | None, bytes], vrs: tuple[bytes, ...], implicit: bool) -> bytes:
    vr, data = element
    if not implicit and vr not in vrs:
        raise _Decline  # e.g. UN or a wrong VR: pydicom converts those its own way
    return data


def _decode_unsigned(data: bytes, text_codec: str) -> int | None:
    if not data:
        return None
    if len(data) != 2:
        raise _Decline  # several values: pydicom gives a list the caller cannot use
    return unpack_from("<H", data)[0]


def _decode_uid(data: bytes, text_codec: str) -> str:
    """UI: pydicom's UID also strips whitespace at both ends."""
    return _decode_code(data, text_codec).strip()


def _decode_code(data: bytes, text_codec: str) -> str:
    """CS read as one string: trailing spaces and NULs dropped; one value only."""
    value = data.decode("latin-1").rstrip(" \0")
    if "\\" in value:
        raise _Decline  # multi-valued where the caller reads one string
    return value


def _decode_code_list(data: bytes, text_codec: str) -> str | list[str]:
    items = data.decode("latin-1").rstrip(" \0").split("\\")
    return items[0] if len(items) == 1 else items


def _decode_text_list(data: bytes, text_codec: str) -> str | list[str]:
    """SH and LO: each value loses its trailing spaces and NULs, not its leading ones."""
    try:
        decoded = data.decode(text_codec)
    except UnicodeDecodeError:
        raise _Decline from None
    items = [item.rstrip("\0 ") for item in decoded.split("\\")]
    return items[0] if len(items) == 1 else items


def _decode_text(data: bytes, text_codec: str) -> str:
    value = _decode_text_list(data, text_codec)
    if not isinstance(value, str):
        raise _Decline
    return value


def _decode_decimal(data: bytes, text_codec: str) -> str | list[str] | None:
    """DS stays a string: pydicom's DSfloat is ``float(value)``, which the caller applies."""
    if not data:
        return None
    items = data.decode("latin-1").strip().rstrip(" \0").split("\\")
    for item in items:
        if item.strip():
            try:
                float(item)  # where pydicom's DSfloat would raise, pydicom must do it
            except ValueError:
                raise _Decline from None
    return items[0] if len(items) == 1 else items


def _decode_integer(data: bytes, text_codec: str) -> int | str | list[int | str] | None:
    """IS: int, a blank value kept as the string (as pydicom's IS does)."""
    if not data:
        return None
    try:
        # "12.0" and "12.5" pydicom converts its own way (IS, ISfloat): decline those.
        texts = data.decode("latin-1").rstrip(" \0").split("\\")
        items: list[int | str] = [int(text) if text.strip() else text for text in texts]
    except ValueError:
        raise _Decline from None
    return items[0] if len(items) == 1 else items


_DECODERS = {
    "unsigned": _decode_unsigned,
    "uid": _decode_uid,
    "code": _decode_code,
    "code_list": _decode_code_list,
    "text": _decode_text,
    "text_list": _decode_text_list,
    "decimal": _decode_decimal,
    "integer": _decode_integer,
}


def _decode_padding(element: tuple[bytes | None, bytes], values: dict[str, Any]) -> int | None:
    """US or SS: explicit VR says which; implicit VR follows (0028,0103) as pydicom does."""
    vr, data = element
    if vr is None:
        representation = values.get("PixelRepresentation", 0)
        if representation is None:
            raise _Decline
        vr = b"US" if representation == 0 else b"SS"
    elif vr not in (b"US", b"SS"):
        raise _Decline
    if not data:
        return None
    if len(data) != 2:
        raise _Decline
    return unpack_from("<H" if vr == b"US" else "<h", data)[0]
