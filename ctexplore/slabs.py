"""Model inputs made of several slices: 2.5D neighbour stacks, thick slabs, and the source slices of each.

A 2.5D input gives a 2D network each slice with its neighbours (and several
windows) as channels, the key input of the RSNA intracranial-haemorrhage
winners; a thick slab averages (or takes the maximum or minimum of) the thin
slices of a few millimetres along the slice normal, as a radiologist's 5 mm
reformat, a MIP or a MinIP does. Both change which acquired images make an
output slice, so `source_slices` maps every slice back to the SOP Instance UIDs
of the acquired images (``meta['sop_instance_uids']``, recorded by
`ctexplore.load_series`): slice-level labels such as RSNA's stay aligned after
tilt correction, resampling and slabbing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from .volume import AIR_HU, Volume

__all__ = ["SLAB_MODES", "source_slices", "slice_plane_positions", "thick_slabs", "stack_2p5d", "stack_channel_names"]

SLAB_MODES: dict[str, str] = {"mean": "average", "max": "maximum intensity projection (MIP)", "min": "MinIP"}
"""Slab reductions: ``mean`` (average), ``max`` (MIP), ``min`` (MinIP)."""


def slice_plane_positions(volume: Volume) -> np.ndarray:
    """Position of every slice plane along the slice normal (mm), from the affine.

    The same measure as the loader's ``meta['source_slice_positions']`` (Image
    Position (Patient) dotted with the normal), so output and acquired slices
    compare directly; a gantry tilt shifts slices within their planes and does
    not change these positions.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> import ctexplore as ct
    >>> from ctexplore.phantom import write_series
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_series(folder, n_slices=3, matrix=16, slice_spacing=2.5, gantry_tilt=20.0, first_position_z=0.0)
    >>> volume = ct.load_series(folder)
    >>> np.diff(slice_plane_positions(volume)).round(2).tolist()  # the true 2.5 mm, not the 2.66 mm table step
    [2.5, 2.5]
    >>> bool(np.allclose(slice_plane_positions(ct.correct_tilt(volume)), volume.meta["source_slice_positions"]))
    True
    """
    starts = volume.affine[:3, 3] + np.outer(np.arange(volume.shape[0]), volume.affine[:3, 0])
    return starts @ volume.normal


def source_slices(volume: Volume, thickness: float | None = None) -> list[list[str]]:
    """The SOP Instance UIDs of the acquired images that make each slice of `volume`.

    A slice is made of the acquired images whose planes lie within half its
    `thickness` of its own plane (what averaging and anti-aliasing draw on) and
    of the two acquired images that bracket its plane (what linear
    interpolation draws on).

    Parameters
    ----------
    volume : Volume
        Any volume derived from `ctexplore.load_series` (resampled, tilt
        corrected, cropped, slabbed): its metadata carries the acquired
        images' ``sop_instance_uids`` and ``source_slice_positions``.
    thickness : float, optional
        Extent of each slice along the normal, mm; default the slice step.

    Returns
    -------
    list of list of str
        One list per slice, in acquisition order along the normal.

    Raises
    ------
    ValueError
        The volume does not record its acquired images (built by hand, or
        saved by an older ctexplore).

    Examples
    --------
    >>> import tempfile
    >>> import ctexplore as ct
    >>> from ctexplore.phantom import write_series
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_series(folder, n_slices=6, matrix=16, slice_spacing=2.0)
    >>> volume = ct.load_series(folder)
    >>> thick = ct.resample(volume, spacing=(4.0, 2.0, 2.0))
    >>> [len(uids) for uids in ct.source_slices(thick)]  # each 4 mm slice spans two 2 mm images
    [2, 2, 2]
    >>> ct.source_slices(volume)[0] == [volume.meta["sop_instance_uids"][0]]
    True
    """
    uids = volume.meta.get("sop_instance_uids")
    acquired = volume.meta.get("source_slice_positions")
    if uids is None or acquired is None or len(uids) != len(acquired):
        raise ValueError(
            "the volume does not record its acquired images (meta 'sop_instance_uids' and "
            "'source_slice_positions', set by ctexplore.load_series); load it with load_series"
        )
    acquired = np.asarray(acquired, dtype=np.float64)
    order = np.argsort(acquired, kind="stable")
    sorted_positions = acquired[order]
    planes = slice_plane_positions(volume)
    if thickness is None:
        thickness = abs(float(np.linalg.norm(volume.affine[:3, 0]))) if volume.shape[0] > 1 else 0.0
    tolerance = 1e-3  # mm: a plane recomputed from the affine sits on its acquired image up to rounding
    half = float(thickness) / 2.0 + tolerance
    first = np.searchsorted(sorted_positions, planes - half, side="left")
    last = np.searchsorted(sorted_positions, planes + half, side="right")  # exclusive
    # the nearest acquired images at or below and at or above each plane (interpolation's neighbours)
    below = np.searchsorted(sorted_positions, planes + tolerance, side="right") - 1
    above = np.searchsorted(sorted_positions, planes - tolerance, side="left")
    low = np.clip(np.minimum(first, below), 0, len(acquired) - 1)
    high = np.clip(np.maximum(last, above + 1), low + 1, len(acquired))
    names = np.asarray(uids, dtype=object)[order]
    return [list(names[a:b]) for a, b in zip(low.tolist(), high.tolist())]


def thick_slabs(volume: Volume, thickness: float, mode: Literal["mean", "max", "min"] = "mean") -> Volume:
    """Thick slabs along the slice normal: each the mean, maximum (MIP) or minimum (MinIP) of its thin slices.

    A gantry-tilted volume is first put on a grid whose slices lie along the
    normal (`ctexplore.correct_tilt`), so a slab is a slab of the patient, not
    a sheared stack. Consecutive slices are grouped ``n = round(thickness /
    step)`` at a time (at least one); the slices left over at the end (fewer
    than ``n``) are dropped and counted in ``meta['slab']``.

    Parameters
    ----------
    volume : Volume
        Thin slices (any spacing; resample first for an exact thickness).
    thickness : float
        Slab thickness along the normal, mm.
    mode : {'mean', 'max', 'min'}
        Average, maximum intensity projection or minimum intensity projection.

    Returns
    -------
    Volume
        One slice per slab, centred on its thin slices; float32 for ``mean``,
        the input dtype otherwise. A voxel is padding when any of its thin
        voxels was (no acquired data for part of the slab); it holds -1000 HU.
        ``meta['slab']`` records thickness, mode, slices per slab and the
        slices dropped; ``meta['slice_sources']`` (when the volume records its
        acquired images) the SOP Instance UIDs of each slab (`source_slices`).

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> hu = np.zeros((10, 2, 2), np.int16); hu[3] = 80
    >>> slabs = thick_slabs(Volume(hu, np.diag([1.0, 1.0, 1.0, 1.0])), 5.0, "max")
    >>> slabs.shape, slabs.spacing[0], slabs.hu[:, 0, 0].tolist()  # the 80 HU slice is in the first slab
    ((2, 2, 2), 5.0, [80, 0])
    >>> float(slabs.affine[0, 3])  # centred on slices 0..4
    2.0
    >>> float(thick_slabs(Volume(hu, np.eye(4)), 5.0, "mean").hu[0, 0, 0])  # 80 HU and four 0 HU slices
    16.0
    """
    from .geometry import correct_tilt

    if mode not in SLAB_MODES:
        raise ValueError(f"slab mode must be one of {sorted(SLAB_MODES)}, not {mode!r}")
    if not (np.isfinite(thickness) and thickness > 0):
        raise ValueError(f"slab thickness must be positive millimetres, got {thickness!r}")
    volume = correct_tilt(volume)
    step = float(volume.spacing[0])
    per_slab = max(1, int(round(thickness / step)))
    n_slabs = volume.shape[0] // per_slab
    if n_slabs == 0:
        raise ValueError(
            f"a {thickness} mm slab needs {per_slab} slices of {step:.3g} mm; the volume has {volume.shape[0]}"
        )
    used = n_slabs * per_slab
    grouped = volume.hu[:used].reshape(n_slabs, per_slab, *volume.shape[1:])
    if mode == "mean":
        hu = grouped.mean(axis=1, dtype=np.float32)
    else:
        hu = grouped.max(axis=1) if mode == "max" else grouped.min(axis=1)
    padding: np.ndarray | None = None
    if volume.padding is not None:
        padding = np.asarray(volume.padding[:used].reshape(grouped.shape).any(axis=1))
        np.copyto(hu, np.asarray(AIR_HU, hu.dtype), where=padding)
    affine = volume.affine.copy()
    affine[:3, 3] += affine[:3, 0] * (per_slab - 1) / 2.0
    affine[:3, 0] *= per_slab
    meta: dict[str, Any] = dict(volume.meta)
    meta["slab"] = {
        "thickness_mm": per_slab * step,
        "mode": mode,
        "slices_per_slab": per_slab,
        "dropped_slices": volume.shape[0] - used,
    }
    slabs = Volume(hu=hu, affine=affine, padding=padding, files=volume.files, meta=meta)
    meta["slice_positions"] = [float(p) for p in slice_plane_positions(slabs)]
    if "sop_instance_uids" in meta:
        meta["slice_sources"] = source_slices(slabs)
    return slabs


def stack_2p5d(
    hu: Any, neighbours: int = 1, windows: Sequence[str | tuple[float, float]] | None = ("brain", "subdural", "bone")
) -> np.ndarray:
    """Each slice with its neighbours as channels, times windows: ``(channels, slices, rows, cols)`` float32.

    Slice ``s`` gets slices ``s - neighbours .. s + neighbours`` (the first and
    last slices repeat at the ends, so every slice has a full stack) in each
    window; channels run window by window, offset by offset
    (`stack_channel_names`). With ``neighbours=1`` and three windows this is
    the 9-channel input of RSNA 2019 solutions; a 2D network then sees
    ``stack[:, s]`` for slice ``s``. Channels first, as `ctexplore.window_stack`
    (which is the case ``neighbours=0``), so the stack is stored and loaded
    like any other ``processed`` array.

    Parameters
    ----------
    hu : ndarray or Volume
        ``(slices, rows, cols)`` Hounsfield units along the slice normal
        (correct gantry tilt first, so neighbours lie over each other).
    neighbours : int, default 1
        Slices taken on each side.
    windows : sequence of str or (center, width), or None
        Windows (`ctexplore.resolve_window`) each scaled to [0, 1]; None keeps
        the HU as float32.

    Returns
    -------
    (len(windows) * (2 * neighbours + 1), slices, rows, cols) float32 ndarray

    Examples
    --------
    >>> import numpy as np
    >>> hu = np.zeros((4, 2, 2), np.int16); hu[2] = 80
    >>> stack = stack_2p5d(hu, 1, windows=["brain"])
    >>> stack.shape, stack_channel_names(["brain"], 1)
    ((3, 4, 2, 2), ['brain[-1]', 'brain[+0]', 'brain[+1]'])
    >>> stack[:, :, 0, 0].T.tolist()  # per slice: slice 3 sees slice 2 below it and repeats itself above
    [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    """
    from .intensity import window_stack

    values = np.asarray(hu.hu if isinstance(hu, Volume) else hu)
    if values.ndim != 3:
        raise ValueError(f"stack_2p5d takes (slices, rows, cols) HU, got shape {values.shape}")
    if int(neighbours) != neighbours or neighbours < 0:
        raise ValueError(f"neighbours must be a whole number >= 0, got {neighbours!r}")
    neighbours = int(neighbours)
    channels = values[np.newaxis].astype(np.float32) if windows is None else window_stack(values, windows)
    offsets = np.arange(-neighbours, neighbours + 1)
    index = np.clip(np.arange(values.shape[0])[:, None] + offsets, 0, values.shape[0] - 1)
    stacked = channels[:, index]  # (windows, slices, offsets, rows, cols)
    stacked = np.moveaxis(stacked, 2, 1)  # (windows, offsets, slices, rows, cols)
    return np.ascontiguousarray(stacked).reshape(-1, *values.shape)


def stack_channel_names(windows: Sequence[str | tuple[float, float]] | None, neighbours: int) -> list[str]:
    """Names of the `stack_2p5d` channels, e.g. ``'brain[-1]'`` (window, slice offset).

    Examples
    --------
    >>> stack_channel_names([(40, 80)], 0), stack_channel_names(None, 1)[0]
    (['40/80[+0]'], 'hu[-1]')
    """
    labels = ["hu"] if windows is None else [w if isinstance(w, str) else f"{w[0]:g}/{w[1]:g}" for w in windows]
    return [f"{label}[{offset:+d}]" for label in labels for offset in range(-neighbours, neighbours + 1)]
