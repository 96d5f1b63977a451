"""Stored pixel values to Hounsfield units, the way the DICOM standard orders it.

Stored value -> mask the bits above (0028,0102) *High Bit* and sign-extend
(PS3.3 C.7.6.3 Image Pixel) -> mark (0028,0120) *Pixel Padding Value* and
(0028,0121) *Pixel Padding Range Limit* (PS3.3 C.7.5.1 General Equipment) ->
apply each slice's (0028,1053) *Rescale Slope* and (0028,1052) *Rescale
Intercept* (PS3.3 C.11.1 Modality LUT). Pure functions on arrays plus the
per-slice header lookups the reader needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ._threads import in_threads
from .errors import DicomError
from .headers import SliceHeader
from .volume import AIR_HU

__all__ = ["stored_to_hu", "headers_to_hu", "rescale_slope", "rescale_intercept", "padding_bounds"]

_BLOCK_SLICES = 16
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def rescale_slope(header: SliceHeader) -> float:
    """(0028,1053) *Rescale Slope*; 1 when absent (PS3.3 C.11.1).

    Raises
    ------
    DicomError
        The slope is NaN, infinite, 0 or negative: no CT scanner stores values that way.
    """
    if header.rescale_slope is None:
        return 1.0
    if not math.isfinite(header.rescale_slope) or header.rescale_slope <= 0:
        raise DicomError(
            f"{header.path}: (0028,1053) Rescale Slope is {header.rescale_slope}; Hounsfield units need a finite, "
            "positive slope (attenuation grows with the stored value). The header is damaged: leave the file out "
            "or set the scanner's slope (usually 1)."
        )
    return header.rescale_slope


def rescale_intercept(header: SliceHeader) -> float:
    """(0028,1052) *Rescale Intercept*, which a CT image must carry (PS3.3 C.8.2.1.1.2).

    A missing intercept is refused rather than read as 0: scanners store air
    either as -1000 (intercept 0) or as 0..24 (intercept -1024), so a guess can
    put every voxel 1024 HU off while looking plausible.

    Raises
    ------
    DicomError
        The intercept is absent, NaN or infinite.
    """
    intercept = header.rescale_intercept
    if intercept is None:
        raise DicomError(
            f"{header.path}: CT image without (0028,1052) Rescale Intercept (Type 1 in the CT Image module, "
            "PS3.3 C.8.2.1.1.2). The Hounsfield units are unknown: reading it as 0 would put them 1024 HU off "
            "for a scanner that stores air as 0 (intercept -1024). If you know the scanner's value, add it to "
            "the files (pydicom: dataset.RescaleIntercept = -1024; dataset.save_as(path)) and load again."
        )
    if not math.isfinite(intercept):
        raise DicomError(
            f"{header.path}: (0028,1052) Rescale Intercept is {intercept}; Hounsfield units need a finite "
            "intercept. The header is damaged: leave the file out or set the scanner's intercept."
        )
    return intercept


def padding_bounds(header: SliceHeader) -> tuple[float, float]:
    """Stored-value range marked as padding, ``(nan, nan)`` without (0028,0120)."""
    if header.padding_value is None:
        return (np.nan, np.nan)
    limit = header.padding_range_limit
    if limit is None:
        return (header.padding_value, header.padding_value)
    return (min(header.padding_value, limit), max(header.padding_value, limit))


def stored_to_hu(
    stored: np.ndarray,
    slopes: np.ndarray,
    intercepts: np.ndarray,
    *,
    bits_stored: int = 16,
    signed: bool = True,
    padding_low: np.ndarray | None = None,
    padding_high: np.ndarray | None = None,
    fill_value: float = AIR_HU,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Turn stored pixel values into Hounsfield units, slice by slice.

    Parameters
    ----------
    stored : (slices, rows, cols) int16 or uint16 ndarray
        Raw stored values; consumed (modified in place) to save memory.
    slopes, intercepts : (slices,) array-like
        (0028,1053) *Rescale Slope* and (0028,1052) *Rescale Intercept* per slice.
    bits_stored : int
        (0028,0101) *Bits Stored*: bits above it are masked off and signed
        values sign-extended from the high bit.
    signed : bool
        (0028,0103) *Pixel Representation* is 1.
    padding_low, padding_high : (slices,) array-like, optional
        Inclusive range of stored values that are padding, per slice (NaN where
        a slice has none); from (0028,0120) and (0028,0121).
    fill_value : float
        HU written into padding voxels.

    Returns
    -------
    hu : ndarray
        int16 when every slope and intercept is whole, the HU of the pixels
        that are not padding fit, and so does `fill_value`; float32 otherwise.
    padding : bool ndarray or None
        Where padding was found; a read-only broadcast of one 2-D mask when
        every slice has the same padding, to save memory.

    See Also
    --------
    headers_to_hu : the same, with the parameters read from each slice's header.
    ctexplore.load_series : reads the files and calls this.

    Examples
    --------
    Padding is matched on stored values, before the rescale:

    >>> stored = np.array([[[-2000, 0, 1064]]], dtype=np.int16)
    >>> hu, padding = stored_to_hu(stored, [1.0], [-1024.0],
    ...                            padding_low=[-2000], padding_high=[-2000])
    >>> hu.tolist(), padding.tolist()
    ([[[-1000, -1024, 40]]], [[[True, False, False]]])
    """
    slopes = np.asarray(slopes, dtype=np.float64)
    intercepts = np.asarray(intercepts, dtype=np.float64)
    _normalize_bits(stored, bits_stored, signed)
    values = stored.view(np.int16 if stored.dtype.itemsize == 2 else np.int8) if signed else stored
    if signed:
        low, high = -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
    else:
        low, high = 0, (1 << bits_stored) - 1
    whole = bool(np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts)))
    # The fill goes into the array too: -1000.5, NaN or -40000 need float32.
    fill_whole = bool(float(fill_value).is_integer() and -32768 <= fill_value <= 32767)
    could_fit = whole and fill_whole and values.dtype.itemsize == 2
    fits = could_fit and _fits_int16(slopes, intercepts, low, high)
    padding = _PaddingMask(values, padding_low, padding_high)
    if could_fit and not fits:
        # The bit depth allows values beyond int16; the pixels actually present may not.
        fits = _fits_int16(slopes, intercepts, int(values.min()), int(values.max()))
        if not fits and padding.plane is not None:
            # Padding such as -32768 is replaced by the fill, so its rescaled value never counts.
            fits = _fits_int16(slopes, intercepts, *padding.value_range())
    # int16 HU overwrite the stored values in place: no second array.
    hu = values.view(np.int16) if fits else np.empty(values.shape, dtype=np.float32)
    fill = np.asarray(fill_value, dtype=hu.dtype)
    uniform_rescale = bool(np.all(slopes == slopes[0]) and np.all(intercepts == intercepts[0]))
    slopes_int16, intercepts_int16 = (_wrap_int16(slopes), _wrap_int16(intercepts)) if fits else (None, None)

    def convert(start: int) -> None:
        # Each block is masked, rescaled and filled while it sits in cache.
        block = slice(start, start + _BLOCK_SLICES)
        mask = padding.find(block)
        if slopes_int16 is not None and intercepts_int16 is not None:
            _rescale_int16_block(hu[block], slopes_int16[block], intercepts_int16[block], uniform_rescale)
        else:
            np.multiply(values[block], slopes[block, None, None].astype(np.float32), out=hu[block])
            hu[block] += intercepts[block, None, None].astype(np.float32)
        if mask is not None:
            np.copyto(hu[block], fill, where=mask)

    in_threads(convert, range(0, len(values), _BLOCK_SLICES))
    return hu, padding.result()


def _fits_int16(slopes: np.ndarray, intercepts: np.ndarray, low: int, high: int) -> bool:
    ends = np.concatenate([slopes * low + intercepts, slopes * high + intercepts])
    return bool(ends.min() >= -32768 and ends.max() <= 32767)


def _wrap_int16(numbers: np.ndarray) -> np.ndarray:
    """Whole numbers as int16 modulo 2**16 (e.g. an intercept of -40000 becomes 25536)."""
    return numbers.astype(np.int64).astype(np.int16)


def _rescale_int16_block(hu: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray, uniform: bool) -> None:
    """Rescale one block of int16 `hu` in place (it shares its memory with the stored values).

    int16 arithmetic wraps modulo 2**16, so the result is exact wherever the true
    HU fit int16: also for uint16 stored values above 32767 (read as negative),
    intermediate products that overflow, and intercepts beyond int16. Values
    that do not fit are padding, overwritten by the fill afterwards.
    """
    if uniform:
        if slopes[0] != 1:
            hu *= slopes[0]
        if intercepts[0] != 0:
            hu += intercepts[0]
        return
    if np.any(slopes != 1):
        hu *= slopes[:, None, None]
    hu += intercepts[:, None, None]


def _normalize_bits(stored: np.ndarray, bits_stored: int, signed: bool) -> None:
    """Mask bits above the high bit and sign-extend, in place."""
    bits = stored.dtype.itemsize * 8
    if bits_stored >= bits:
        return
    shift = bits - bits_stored
    if signed:
        as_signed = stored.view(np.int16 if bits == 16 else np.int8)
        np.left_shift(as_signed, shift, out=as_signed)
        np.right_shift(as_signed, shift, out=as_signed)
    else:
        as_unsigned = stored.view(np.uint16 if bits == 16 else np.uint8)
        np.bitwise_and(as_unsigned, (1 << bits_stored) - 1, out=as_unsigned)


class _PaddingMask:
    """Finds padding block by block; keeps one 2-D mask while every slice pads the same pixels.

    Blocks may be searched concurrently: each block only reads `plane` and
    records its own mask where it differs.
    """

    def __init__(self, values: np.ndarray, low: np.ndarray | None, high: np.ndarray | None) -> None:
        self.values = values
        self.plane: np.ndarray | None = None
        self.differing: dict[int, np.ndarray] = {}
        if low is None or high is None or np.isnan(np.asarray(low, float)).all():
            return
        low = np.asarray(low, dtype=np.float64)
        high = np.asarray(high, dtype=np.float64)
        has = ~np.isnan(low)
        info = np.iinfo(values.dtype)
        # Slices without padding get an empty range (low > high).
        self.low = np.where(has, np.clip(low, info.min, info.max), info.max).astype(values.dtype)
        self.high = np.where(has, np.clip(high, info.min, info.max), info.min).astype(values.dtype)
        self.single = bool(has.all() and np.all(self.low == self.low[0]) and np.all(self.high == self.low[0]))
        self.plane = self._match(slice(0, 1))[0]

    def _match(self, block: slice) -> np.ndarray:
        values = self.values[block]
        if self.single:
            return values == self.low[0]
        return (values >= self.low[block, None, None]) & (values <= self.high[block, None, None])

    def value_range(self) -> tuple[int, int]:
        """Smallest and largest stored value that is not padding (needs padding declared)."""
        info = np.iinfo(self.values.dtype)
        lows, highs = [info.max], [info.min]
        for start in range(0, len(self.values), _BLOCK_SLICES):
            block = slice(start, start + _BLOCK_SLICES)
            kept = ~self._match(block)
            lows.append(self.values[block].min(where=kept, initial=info.max))
            highs.append(self.values[block].max(where=kept, initial=info.min))
        return int(min(lows)), int(max(highs))

    def find(self, block: slice) -> np.ndarray | None:
        if self.plane is None:
            return None
        mask = self._match(block)
        if np.array_equal(mask, np.broadcast_to(self.plane, mask.shape)):
            return self.plane
        self.differing[block.start] = mask
        return mask

    def result(self) -> np.ndarray | None:
        if self.plane is None:
            return None
        if not self.differing:
            return np.broadcast_to(self.plane, self.values.shape) if self.plane.any() else None
        volume = np.empty(self.values.shape, dtype=bool)
        volume[...] = self.plane
        for start, mask in self.differing.items():
            volume[start : start + len(mask)] = mask
        return volume if volume.any() else None


def headers_to_hu(
    stored: np.ndarray, headers: Sequence[SliceHeader], *, fill_value: float = AIR_HU
) -> tuple[np.ndarray, np.ndarray | None]:
    """`stored_to_hu` with bits, padding and rescale taken from each slice's header.

    ``stored`` is ``(slices, rows, columns)`` in the order of `headers`; it is
    converted in place where it can be (see `stored_to_hu`).
    """
    first = headers[0]
    slopes = np.array([rescale_slope(h) for h in headers], dtype=np.float64)
    intercepts = np.array([rescale_intercept(h) for h in headers], dtype=np.float64)
    largest = slopes * float(1 << first.bits_stored) + np.abs(intercepts)
    if largest.max() > _FLOAT32_MAX:
        bad = headers[int(largest.argmax())]
        raise DicomError(
            f"{bad.path}: (0028,1053) Rescale Slope {bad.rescale_slope} and (0028,1052) Rescale Intercept "
            f"{bad.rescale_intercept} turn {first.bits_stored}-bit stored values into numbers beyond float32 "
            "(infinite HU). The header is damaged: leave the file out or set the scanner's rescale."
        )
    bounds = np.array([padding_bounds(h) for h in headers], dtype=np.float64).reshape(len(headers), 2)
    return stored_to_hu(
        stored,
        slopes,
        intercepts,
        bits_stored=first.bits_stored,
        signed=first.pixel_representation == 1,
        padding_low=bounds[:, 0],
        padding_high=bounds[:, 1],
        fill_value=fill_value,
    )
