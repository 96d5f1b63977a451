"""Hounsfield units to network and display intensities: windows, normalisation, zero-centring.

Every function here is a pure function on arrays. A :class:`~ctexplore.Volume`
is accepted wherever an array is, and its ``hu`` array is used; the result is
always a plain ndarray (the geometry does not change, so keep the Volume for it).

The arithmetic is fused: int16 (or float32) Hounsfield units are converted
block by block into a float32 (or uint8) output, never through a float64
temporary of the whole volume.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "WINDOWS",
    "NORMALIZE_RANGE",
    "resolve_window",
    "window",
    "window_stack",
    "normalize",
    "zero_center",
    "dataset_mean",
]

#: Named head-CT (and lung) display windows: name -> (center, width) in HU.
WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (80.0, 200.0),
    "stroke": (40.0, 40.0),
    "soft_tissue": (40.0, 400.0),
    "bone": (600.0, 2800.0),
    "lung": (-600.0, 1500.0),
}

#: Default ``(low, high)`` HU range of :func:`normalize` and :func:`dataset_mean`.
NORMALIZE_RANGE: tuple[float, float] = (-100.0, 200.0)

# elements per block: 2 MiB of float32 stays in cache across the three passes
_BLOCK = 1 << 19


def _as_array(data: Any) -> np.ndarray:
    """The HU array of a Volume, or the array itself."""
    hu = getattr(data, "hu", data)
    array = np.asarray(hu)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"expected a numeric array of Hounsfield units, got dtype {array.dtype}")
    return array


def _scale_into(values: np.ndarray, low: float, high: float, out: np.ndarray, top: float = 1.0) -> np.ndarray:
    """Write ``clip((values - low) / (high - low), 0, 1) * top`` into `out`, block by block.

    A uint8 `out` receives the rounded value (``top`` should then be 255).
    """
    if not high > low:
        raise ValueError(f"the upper bound ({high}) must be above the lower bound ({low})")
    flat_in = np.ascontiguousarray(values).reshape(-1)
    flat_out = out.reshape(-1)  # `out` is always a fresh C-contiguous array here
    scale = np.float32(top / (float(high) - float(low)))
    low32 = np.float32(low)
    buffer = out.dtype == np.float32
    scratch = None if buffer else np.empty(min(_BLOCK, flat_in.size), np.float32)
    for start in range(0, flat_in.size, _BLOCK):
        stop = min(start + _BLOCK, flat_in.size)
        block = flat_out[start:stop] if scratch is None else scratch[: stop - start]
        np.subtract(flat_in[start:stop], low32, out=block, dtype=np.float32)
        np.multiply(block, scale, out=block)
        np.clip(block, 0.0, top, out=block)
        if not buffer:
            np.rint(block, out=block)
            flat_out[start:stop] = block
    return out


def resolve_window(window: str | tuple[float, float] | Sequence[float]) -> tuple[float, float]:
    """``(center, width)`` in HU of a window: a preset name from :data:`WINDOWS` or a ``(center, width)`` pair.

    This is the one place a window is checked; every function that takes a
    ``window=`` argument (plots, viewer, `window`, `PreprocessOptions`) goes
    through it. Center and width mean what DICOM (0028,1050) *Window Center*
    and (0028,1051) *Window Width* mean (PS3.3 C.11.2.1.2).

    Raises
    ------
    ValueError
        Unknown preset name, not a pair of numbers, or a width that is not positive.

    See Also
    --------
    window : applies it.

    Examples
    --------
    >>> resolve_window("brain")
    (40.0, 80.0)
    >>> resolve_window((50, 150))
    (50.0, 150.0)
    >>> resolve_window("brian")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown window preset 'brian'; choose one of ['bone', 'brain', ...] or give (center, width) in HU
    """
    if isinstance(window, str):
        if window not in WINDOWS:
            raise ValueError(
                f"unknown window preset {window!r}; choose one of {sorted(WINDOWS)} or give (center, width) in HU"
            )
        center, width = WINDOWS[window]
    else:
        try:
            center, width = (float(value) for value in window)
        except (TypeError, ValueError):
            raise ValueError(f"a window is a preset name or a (center, width) pair in HU, got {window!r}") from None
    if not (np.isfinite(center) and width > 0 and np.isfinite(width)):
        raise ValueError(f"window width must be positive and finite HU, got center {center}, width {width}")
    return float(center), float(width)


def _output_dtype(dtype: Any) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.uint8)):
        raise ValueError(f"dtype must be float32 or uint8, got {dtype}")
    return dtype


def window(
    hu: Any,
    window: str | tuple[float, float] | float | None = None,
    width: float | None = None,
    *,
    preset: str | None = None,
    dtype: Any = np.float32,
) -> np.ndarray:
    """Map Hounsfield units through a display window to [0, 1] (or 0..255).

    Parameters
    ----------
    hu : ndarray or Volume
        Hounsfield units, any shape; int16 or float32 (a Volume's ``hu`` is used).
    window : str or (center, width)
        A preset name from :data:`WINDOWS` or a ``(center, width)`` pair in HU
        (see `resolve_window`). ``window(hu, center, width)`` with two numbers
        is the same as ``window(hu, (center, width))``.
    width : float, optional
        Only with a numeric centre as `window`.
    preset : str, optional
        Same as passing the name as `window` (kept for existing code).
    dtype : {numpy.float32, numpy.uint8}
        float32 gives values in [0, 1]; uint8 gives the same scaled to 0..255
        and rounded (a quarter of the memory, for pictures and PNGs).

    Returns
    -------
    ndarray
        Same shape as `hu`, of `dtype`.

    Notes
    -----
    The window clips at ``center - width/2`` and ``center + width/2`` and is
    linear between, the convention of most machine-learning code. The DICOM
    VOI LINEAR function (PS3.3 C.11.2.1.2) instead uses ``center - 0.5`` and
    ``width - 1``, which places integer stored values on the output grey levels
    of a display; the difference is half a HU in the centre and one HU in the
    width, irrelevant for a network and for the eye, and the symmetric form is
    the one papers and models quote.

    See Also
    --------
    resolve_window : the one check of a window argument.
    window_stack : several windows as channels.

    Examples
    --------
    >>> import numpy as np
    >>> hu = np.array([-1000, 0, 40, 80, 1000], dtype=np.int16)
    >>> window(hu, "brain")
    array([0. , 0. , 0.5, 1. , 1. ], dtype=float32)
    >>> window(hu, (40, 80), dtype=np.uint8)
    array([  0,   0, 128, 255, 255], dtype=uint8)

    A window too wide hides what it is meant to show: blood (~60 HU) and brain
    (~30 HU) are 1% of the output apart in the bone window:

    >>> bone = window(np.array([30, 60], np.int16), "bone")
    >>> float(bone[1] - bone[0]).__round__(3)
    0.011
    """
    if preset is not None:
        if window is not None or width is not None:
            raise ValueError("give the window once: a preset name or (center, width), not both")
        window = preset
    elif width is not None:
        if isinstance(window, str) or window is None:
            raise ValueError(f"width {width} given with window {window!r}; give window=(center, width)")
        window = (float(window), width)  # type: ignore[arg-type]
    if window is None:
        raise ValueError("give a window: a preset name such as 'brain' or (center, width) in HU")
    center, width = resolve_window(window)  # type: ignore[arg-type]
    dtype = _output_dtype(dtype)
    values = _as_array(hu)
    out = np.empty(values.shape, dtype)
    top = 255.0 if dtype == np.uint8 else 1.0
    return _scale_into(values, center - width / 2, center + width / 2, out, top)


def window_stack(
    hu: Any,
    windows: Sequence[str | tuple[float, float]] = ("brain", "subdural", "soft_tissue"),
    *,
    dtype: Any = np.float32,
) -> np.ndarray:
    """Stack several windows of the same HU array as channels, channels first.

    Intracranial-hemorrhage models commonly take the brain, subdural and
    soft-tissue windows of one slice as the three "colour" channels of an image.

    Parameters
    ----------
    hu : ndarray or Volume
        Hounsfield units, any shape.
    windows : sequence of str or (center, width)
        One window per channel: names from :data:`WINDOWS` or ``(center, width)``
        pairs (see `resolve_window`).
    dtype : {numpy.float32, numpy.uint8}
        Output type, as in :func:`window`.

    Returns
    -------
    ndarray
        Shape ``(len(windows), *hu.shape)``: channels first, as PyTorch expects.
        Use ``np.moveaxis(stack, 0, -1)`` for channels-last libraries.

    See Also
    --------
    window : one window.
    resolve_window : how each entry of `windows` is read.

    Examples
    --------
    >>> import numpy as np
    >>> hu = np.array([[0, 60]], dtype=np.int16)
    >>> stack = window_stack(hu)
    >>> stack.shape, stack.dtype
    ((3, 1, 2), dtype('float32'))
    >>> stack[:, 0, 1].round(3)  # 60 HU in the brain, subdural, soft-tissue windows
    array([0.75, 0.4 , 0.55], dtype=float32)
    """
    if isinstance(windows, str) or len(windows) == 0:
        raise ValueError(f"give a sequence of windows, one per channel, got {windows!r}")
    settings = [resolve_window(w) for w in windows]
    dtype = _output_dtype(dtype)
    values = _as_array(hu)
    top = 255.0 if dtype == np.uint8 else 1.0
    stack = np.empty((len(settings), *values.shape), dtype)
    for channel, (center, width) in zip(stack, settings):
        _scale_into(values, center - width / 2, center + width / 2, channel, top)
    return stack


def normalize(hu: Any, low: float = NORMALIZE_RANGE[0], high: float = NORMALIZE_RANGE[1]) -> np.ndarray:
    """Clip Hounsfield units to ``[low, high]`` and scale linearly to [0, 1], float32.

    Parameters
    ----------
    hu : ndarray or Volume
        Hounsfield units, any shape; int16 or float32.
    low, high : float
        HU mapped to 0 and 1; values outside are clipped.

    Returns
    -------
    ndarray of float32
        Same shape as `hu`.

    Notes
    -----
    Choose the range for the tissue the model must see. The default
    ``(-100, 200)`` keeps CSF, brain, blood and the first HU of calcification
    and spends 27% of the output range on the 0-80 HU where head-CT findings
    live. A wide range such as ``(-1000, 2000)`` gives that same band 2.7% of
    the output range: most of the network's input scale is spent on air and
    bone. For fractures, raise `high` (or add a bone window channel with
    :func:`window_stack`).

    The computation runs block by block in float32 straight from int16, so it
    needs no float64 copy of the volume (a float64 ``(hu - low) / (high - low)``
    on a 256 x 512 x 512 scan allocates 0.5 GiB per temporary).

    See Also
    --------
    window : a display window rather than a fixed model range.
    zero_center : the next step of the model-input recipe.

    Examples
    --------
    >>> import numpy as np
    >>> normalize(np.array([-1000, -100, 50, 200, 3000], dtype=np.int16))
    array([0. , 0. , 0.5, 1. , 1. ], dtype=float32)
    """
    values = _as_array(hu)
    return _scale_into(values, low, high, np.empty(values.shape, np.float32))


def zero_center(x: Any, mean: float | None, *, out: np.ndarray | None = None) -> np.ndarray:
    """Subtract a data-set mean computed beforehand (see :func:`dataset_mean`).

    Parameters
    ----------
    x : ndarray or Volume
        Normalised intensities (usually the output of :func:`normalize`).
    mean : float
        Mean of the normalised intensities over the whole training set.
    out : ndarray of float32, optional
        Where to write the result; may be `x` itself to save memory.

    Returns
    -------
    ndarray of float32

    Raises
    ------
    ValueError
        When `mean` is None.

    Notes
    -----
    The mean must be one number for the whole data set, computed on the
    training scans with the same ``low``/``high`` and reused for validation,
    test and inference. Subtracting each scan's own mean (``x - x.mean()``, as
    blog pipelines do) shifts every scan by a different amount depending on how
    much air, bone or field of view it holds, so the same tissue no longer has
    the same value across scans: exactly the comparability that HU provide.

    See Also
    --------
    dataset_mean : computes `mean` over a data set.
    normalize : the step before.

    Examples
    --------
    >>> import numpy as np
    >>> zero_center(np.array([0.0, 0.5, 1.0], np.float32), mean=0.25)
    array([-0.25,  0.25,  0.75], dtype=float32)
    """
    if mean is None:
        raise ValueError(
            "zero_center needs the data-set mean: compute it once over the training "
            "set with ctexplore.dataset_mean(...) and pass it as mean=; a per-scan "
            "mean would shift every scan differently"
        )
    values = _as_array(x)
    if out is None:
        out = np.empty(values.shape, np.float32)
    np.subtract(values, np.float32(mean), out=out, dtype=np.float32)
    return out


def dataset_mean(
    volumes: Iterable[Any],
    low: float = NORMALIZE_RANGE[0],
    high: float = NORMALIZE_RANGE[1],
) -> float:
    """Mean of the normalised intensities over a whole data set, one scan at a time.

    Parameters
    ----------
    volumes : iterable of ndarray or Volume
        The training scans, in HU. A generator works: only one scan and one
        block of float32 are held at a time.
    low, high : float
        The same range later given to :func:`normalize`.

    Returns
    -------
    float
        Voxel-weighted mean of ``normalize(hu, low, high)`` over every voxel of
        every scan (padding voxels hold air and count as air, as the network
        will see them). Pass it to :func:`zero_center`.

    See Also
    --------
    zero_center : subtracts the mean this returns.

    Examples
    --------
    >>> import numpy as np
    >>> scans = [np.full((2, 2, 2), -1000, np.int16), np.full((1, 2, 2), 200, np.int16)]
    >>> round(dataset_mean(scans), 6)  # 8 voxels at 0 and 4 at 1
    0.333333
    """
    total = 0.0
    count = 0
    scratch = np.empty(_BLOCK, np.float32)
    for item in volumes:
        flat = np.ascontiguousarray(_as_array(item)).reshape(-1)
        for start in range(0, flat.size, _BLOCK):
            block = flat[start : start + _BLOCK]
            normalised = _scale_into(block, low, high, scratch[: block.size])
            total += float(np.add.reduce(normalised, dtype=np.float64))
        count += flat.size
    if count == 0:
        raise ValueError("dataset_mean got no voxels: the iterable of scans was empty")
    return total / count
