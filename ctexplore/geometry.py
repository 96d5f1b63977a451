"""Put a Volume on another grid: gantry-tilt correction, resampling, cropping and reorientation.

Every grid change here is a single interpolation from the acquired voxels: for
each output voxel centre, ``source index = inv(source affine) @ output affine @
output index`` is sampled once, so tilt correction and a change of voxel size
never blur twice. Output affines are exact (they give the patient LPS position
of every output voxel centre), and nothing is ever moved in the patient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from .volume import AIR_HU, Volume, affine_spacing, patient_axes

__all__ = ["correct_tilt", "resample", "body_mask", "crop_to_head", "reorient", "AIR_HU"]

# source coordinates within this distance (in voxels) of the outer voxel edge count as inside
_EDGE_TOLERANCE = 1e-6


# ---------------------------------------------------------------------------- grids


def _orthogonal_grid(volume: Volume) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The grid a tilted volume is corrected onto: slice axis along the normal.

    The in-plane steps are kept, the slice step becomes the projection of the
    stacking vector on the normal, and the in-plane extent grows to the bounding
    box of the sheared slab, on whole in-plane steps from the first slice so
    that slice 0 is sampled exactly at its own voxel centres.
    """
    affine = volume.affine
    if not volume.is_tilted:
        return affine, volume.shape
    stack, row_step, col_step = affine[:3, 0], affine[:3, 1], affine[:3, 2]
    normal = volume.normal
    stack_along_normal = (stack @ normal) * normal
    # the in-plane shift of each slice, in rows and columns of that slice
    shear_rows, shear_cols = np.linalg.lstsq(
        np.column_stack([row_step, col_step]), stack - stack_along_normal, rcond=None
    )[0]
    slices, rows, cols = volume.shape
    last = slices - 1
    row_lo = int(np.floor(min(0.0, last * shear_rows) + _EDGE_TOLERANCE))
    row_hi = int(np.ceil(max(0.0, last * shear_rows) + rows - 1 - _EDGE_TOLERANCE))
    col_lo = int(np.floor(min(0.0, last * shear_cols) + _EDGE_TOLERANCE))
    col_hi = int(np.ceil(max(0.0, last * shear_cols) + cols - 1 - _EDGE_TOLERANCE))
    grid = affine.copy()
    grid[:3, 0] = stack_along_normal
    grid[:3, 3] = affine[:3, 3] + row_lo * row_step + col_lo * col_step
    return grid, (slices, row_hi - row_lo + 1, col_hi - col_lo + 1)


def _rescaled_grid(
    affine: np.ndarray,
    shape: tuple[int, int, int],
    spacing: float | Sequence[float] | None,
    target_shape: Sequence[int] | None,
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The same field of view and centre with another voxel size or array shape."""
    if (spacing is None) == (target_shape is None):
        raise ValueError("give exactly one of spacing= (mm) or shape= (voxels)")
    old_spacing = np.linalg.norm(affine[:3, :3], axis=0)
    extent = np.asarray(shape) * old_spacing  # outer edge to outer edge, mm
    if spacing is not None:
        new_spacing = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,)).copy()
        if not np.all(new_spacing > 0):
            raise ValueError(f"spacing must be positive millimetres, got {spacing}")
        new_shape = np.maximum(1, np.floor(extent / new_spacing + 0.5)).astype(int)
    else:
        new_shape = np.asarray(target_shape)
        if new_shape.shape != (3,) or not np.all(new_shape >= 1):
            raise ValueError(f"shape must be 3 positive integers (slices, rows, cols), got {target_shape}")
        new_shape = new_shape.astype(int)
        new_spacing = extent / new_shape
    grid = np.eye(4)
    grid[:3, :3] = affine[:3, :3] * (new_spacing / old_spacing)
    centre = affine[:3, :3] @ ((np.asarray(shape) - 1) / 2) + affine[:3, 3]
    grid[:3, 3] = centre - grid[:3, :3] @ ((new_shape - 1) / 2)
    return grid, tuple(int(n) for n in new_shape)  # type: ignore[return-value]


# ---------------------------------------------------------------------------- sampling


def _axis_samples(
    positions: np.ndarray, size: int, order: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Neighbour indices, weights and validity of fractional `positions` on one axis.

    A position counts as inside when it lies within the outer voxel edge (half a
    voxel beyond the first and last centres); there the edge voxel's value
    holds. Outside, the caller writes the fill value.
    """
    valid = (positions >= -0.5 - _EDGE_TOLERANCE) & (positions <= size - 0.5 + _EDGE_TOLERANCE)
    clamped = np.clip(positions, 0, size - 1)
    if order == 0:
        nearest = np.minimum(np.floor(clamped + 0.5), size - 1).astype(np.intp)
        return nearest, nearest, np.zeros(len(positions), np.float32), valid
    lower = np.minimum(np.floor(clamped), max(size - 2, 0)).astype(np.intp)
    upper = np.minimum(lower + 1, size - 1)
    weight = (clamped - lower).astype(np.float32)
    return lower, upper, weight, valid


def _gaussian_kernel(sigma: float) -> np.ndarray:
    """The 1-D kernel of ``scipy.ndimage.gaussian_filter`` (``truncate=4``), offsets ``-r .. r``."""
    radius = int(4.0 * sigma + 0.5)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return kernel / kernel.sum()


def _axis_taps(positions: np.ndarray, size: int, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights, ``(n, taps)`` each, of Gaussian smoothing then linear sampling.

    Linear interpolation at `positions` of the axis smoothed with `sigma`
    (edges repeated, ``mode="nearest"``) is one weighted sum of the source
    voxels ``lower - r .. lower + r + 1``: the two interpolation weights
    spread by the kernel. With ``sigma = 0`` it is plain linear sampling.
    """
    lower, _, weight, valid = _axis_samples(positions, size, 1)
    kernel = _gaussian_kernel(sigma) if sigma > 0 else np.ones(1)
    radius = len(kernel) // 2
    spread_lower = np.append(kernel, 0.0)  # lower + offset, offsets -r .. r + 1
    spread_upper = np.insert(kernel, 0, 0.0)  # upper = lower + 1
    weights = (1.0 - weight)[:, None] * spread_lower + weight[:, None] * spread_upper
    taps = np.clip(lower[:, None] + np.arange(-radius, radius + 2), 0, size - 1)
    return taps, weights.astype(np.float32), valid


def _weighted_rows(plane: np.ndarray, taps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    out = plane[taps[:, 0]]
    out *= weights[:, :1]
    for t in range(1, taps.shape[1]):
        term = plane[taps[:, t]]
        term *= weights[:, t : t + 1]
        out += term
    return out


def _weighted_cols(plane: np.ndarray, taps: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:
    np.take(plane, taps[:, 0], axis=1, out=out)
    out *= weights[:, 0]
    term = np.empty_like(out)
    for t in range(1, taps.shape[1]):
        np.take(plane, taps[:, t], axis=1, out=term)
        term *= weights[:, t]
        out += term


def _is_slice_parallel(matrix: np.ndarray) -> bool:
    """True when output slices are parallel to source slices, in-plane axes aligned.

    Then trilinear sampling factorises: one lerp between two source slices,
    then one lerp along rows and one along columns (a shear is only a shift of
    those per output slice).
    """
    scale = np.abs(matrix).max()
    return bool(np.all(np.abs(matrix[[0, 0, 1, 2], [1, 2, 2, 1]]) <= 1e-9 * scale))


def _sample_slice_parallel(
    source: np.ndarray,
    matrix: np.ndarray,
    offset: np.ndarray,
    out: np.ndarray,
    order: int,
    fill: float,
    sigma: Sequence[float] | None = None,
) -> np.ndarray | None:
    """Separable sampling for slice-parallel grids; returns the outside mask or None.

    Linear sampling is a weighted sum of source voxels along each axis in turn
    (`_axis_taps`). With `sigma` (source voxels per axis) the weights also
    smooth each axis by a Gaussian: the result of ``gaussian_filter`` then
    linear sampling, without a smoothed copy of the whole input.
    """
    slices, rows, cols = source.shape
    out_slices, out_rows, out_cols = out.shape
    sigma = sigma if sigma is not None else (0.0, 0.0, 0.0)
    outside = None
    plane = np.empty((rows, cols), np.float32)
    for k in range(out_slices):
        slice_pos = np.array([matrix[0, 0] * k + offset[0]])
        row_pos = matrix[1, 1] * np.arange(out_rows) + (matrix[1, 0] * k + offset[1])
        col_pos = matrix[2, 2] * np.arange(out_cols) + (matrix[2, 0] * k + offset[2])
        if order == 0:
            (s_near, _, _, s_ok), (r_near, _, _, r_ok), (c_near, _, _, c_ok) = (
                _axis_samples(pos, size, 0) for pos, size in ((slice_pos, slices), (row_pos, rows), (col_pos, cols))
            )
            out[k] = source[s_near[0]][r_near][:, c_near]
        else:
            s_taps, s_weights, s_ok = _axis_taps(slice_pos, slices, sigma[0])
            r_taps, r_weights, r_ok = _axis_taps(row_pos, rows, sigma[1])
            c_taps, c_weights, c_ok = _axis_taps(col_pos, cols, sigma[2])
            (first, weight), *others = [(i, w) for i, w in zip(s_taps[0], s_weights[0]) if w]
            np.multiply(source[first], weight, out=plane)  # int16 slices become float32 here, one at a time
            for index, weight in others:
                plane += source[index] * weight
            # shrink the axis that shrinks most first: less data for the second pass
            if out_rows / rows <= out_cols / cols:
                _weighted_cols(_weighted_rows(plane, r_taps, r_weights), c_taps, c_weights, out[k])
            else:
                by_cols = np.empty((rows, out_cols), np.float32)
                _weighted_cols(plane, c_taps, c_weights, by_cols)
                out[k] = _weighted_rows(by_cols, r_taps, r_weights)
        if not (s_ok[0] and r_ok.all() and c_ok.all()):
            if outside is None:
                outside = np.zeros(out.shape, bool)
            outside[k] = ~s_ok[0] | ~r_ok[:, None] | ~c_ok[None, :]
            out[k][outside[k]] = fill
    return outside


def _outside_general(
    source_shape: tuple[int, ...], matrix: np.ndarray, offset: np.ndarray, out_shape: tuple[int, ...]
) -> np.ndarray | None:
    """Which output voxels map outside the acquired volume, for any affine grid."""
    outside = None
    rows = np.arange(out_shape[1], dtype=np.float64)[:, None]
    cols = np.arange(out_shape[2], dtype=np.float64)[None, :]
    limits = np.asarray(source_shape, dtype=np.float64) - 0.5 + _EDGE_TOLERANCE
    for k in range(out_shape[0]):
        bad = np.zeros(out_shape[1:], bool)
        for axis in range(3):
            pos = matrix[axis, 0] * k + matrix[axis, 1] * rows + matrix[axis, 2] * cols + offset[axis]
            bad |= (pos < -0.5 - _EDGE_TOLERANCE) | (pos > limits[axis])
        if bad.any():
            if outside is None:
                outside = np.zeros(out_shape, bool)
            outside[k] = bad
    return outside


def _sample(
    source: np.ndarray,
    source_affine: np.ndarray,
    out_affine: np.ndarray,
    out_shape: tuple[int, int, int],
    order: int,
    fill: float,
    out_dtype: Any = np.float32,
    sigma: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Sample `source` at the voxel centres of an output grid, in one interpolation.

    Returns the output array and a mask of output voxels outside the acquired
    volume (which hold `fill`), or None when there are none. `sigma` (source
    voxels per axis) smooths first with a Gaussian, as ``gaussian_filter``
    with ``mode="nearest"`` would.
    """
    if order not in (0, 1, 2, 3, 4, 5):
        raise ValueError(f"order must be an integer spline order 0..5, got {order!r}")
    mapping = np.linalg.inv(source_affine) @ out_affine
    matrix, offset = mapping[:3, :3], mapping[:3, 3]
    out = np.empty(out_shape, out_dtype)
    if order <= 1 and _is_slice_parallel(matrix):
        fused = sigma if order == 1 else None
        if sigma is not None and fused is None:
            source = ndimage.gaussian_filter(source.astype(np.float32), tuple(sigma), mode="nearest")
        return out, _sample_slice_parallel(source, matrix, offset, out, order, fill, fused)
    if sigma is not None:
        source = ndimage.gaussian_filter(source.astype(np.float32), tuple(sigma), mode="nearest")
    if order <= 1:
        coefficients = source
    else:
        # float32 spline coefficients: scipy's own prefilter would hold a float64 copy
        coefficients = ndimage.spline_filter(source, order, output=np.float32, mode="mirror")
    ndimage.affine_transform(
        coefficients,
        matrix,
        offset,
        output_shape=out_shape,
        output=out,
        order=order,
        mode="mirror" if order > 1 else "nearest",
        prefilter=False,
    )
    del coefficients
    outside = _outside_general(source.shape, matrix, offset, out_shape)
    if outside is not None:
        out[outside] = fill
    return out, outside


def _regrid(
    volume: Volume,
    out_affine: np.ndarray,
    out_shape: tuple[int, int, int],
    order: int,
    fill: float,
    sigma: Sequence[float] | None = None,
) -> Volume:
    """A Volume holding `volume` sampled on the given grid (smoothed by `sigma` first), padding carried along."""
    hu, outside = _sample(volume.hu, volume.affine, out_affine, out_shape, order, fill, sigma=sigma)
    padding = outside
    if volume.padding is not None:
        # nearest neighbour: a voxel is padding when its nearest source voxel was
        padding, _ = _sample(volume.padding, volume.affine, out_affine, out_shape, 0, True, bool)
        if outside is not None:
            padding |= outside
        # Keep the Volume contract: every voxel flagged as padding holds the fill value.
        np.copyto(hu, np.asarray(fill, hu.dtype), where=padding)
    meta = dict(volume.meta)
    if "slice_positions" in meta:
        normal = volume.normal
        starts = out_affine[:3, 3] + np.outer(np.arange(out_shape[0]), out_affine[:3, 0])
        meta["slice_positions"] = [float(p) for p in starts @ normal]
    return Volume(hu, out_affine, padding=padding, files=volume.files, meta=meta)


# ---------------------------------------------------------------------------- public


def correct_tilt(volume: Volume, *, order: int = 1, fill: float = AIR_HU) -> Volume:
    """Resample a gantry-tilted (sheared) volume onto a grid whose slices lie along the normal.

    Parameters
    ----------
    volume : Volume
        Any volume; an untilted one is returned unchanged (the same object).
    order : int
        Interpolation order: 0 nearest, 1 linear (default), 3 cubic.
    fill : float
        HU written where the output grid lies outside the acquired slab (air).

    Returns
    -------
    Volume
        float32 HU on an orthogonal grid: the same slice planes (the slice step is
        the true distance between planes), the same in-plane voxel size, and an
        in-plane extent grown to hold the whole sheared slab. Every world point
        stays where it was. Voxels outside the slab hold `fill` and are marked
        True in ``padding`` (which then means "no acquired data here"); padding
        voxels of the input are carried by nearest neighbour.

    Notes
    -----
    The tilt is read from the geometry itself, not from (0018,1120)
    *Gantry/Detector Tilt*: (0020,0037) *Image Orientation (Patient)* and the
    (0020,0032) *Image Position (Patient)* of each slice fix every voxel in the
    patient (PS3.3 C.7.6.2.1.1), and a tilted stack steps along the table, not
    along the normal. On a tilted scan each slice is shifted in-plane relative to the previous one
    by ``|s| sin(tilt)``. Because output slices coincide with the acquired
    planes, the correction is an in-plane shift of each slice; slice 0 keeps its
    voxel centres exactly. The loader replaces scanner padding by air before
    this step, so interpolation near the edge of the field of view blends with
    air, never with a padding value such as -2000 or -3024.

    See Also
    --------
    resample : tilt correction and a new voxel size in one interpolation.
    ctexplore.volume.affine_tilt : the tilt angle read from an affine.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> affine = np.diag([2.0, 1.0, 1.0, 1.0])
    >>> affine[1, 0] = 1.0  # each slice 1 mm further along the rows: tilted
    >>> vol = Volume(np.zeros((4, 8, 8), np.int16), affine)
    >>> round(vol.gantry_tilt, 2)
    26.57
    >>> fixed = correct_tilt(vol)
    >>> fixed.shape, fixed.is_tilted, fixed.hu.dtype  # 3 more rows hold the shifted slices
    ((4, 11, 8), False, dtype('float32'))
    >>> bool(fixed.hu[0, 10, 0] == -1000)  # corner outside the acquired slab: air
    True
    """
    if not volume.is_tilted:
        return volume
    grid, shape = _orthogonal_grid(volume)
    return _regrid(volume, grid, shape, order, fill)


def resample(
    volume: Volume,
    spacing: float | Sequence[float] | None = None,
    shape: Sequence[int] | None = None,
    *,
    order: int = 1,
    fill: float = AIR_HU,
    antialias: bool = True,
    clip: bool = True,
) -> Volume:
    """Resample to a voxel size (mm) or to an array shape, correcting gantry tilt in the same step.

    Parameters
    ----------
    volume : Volume
        The volume to resample; tilted or not.
    spacing : float or 3 floats, optional
        Target spacing in mm: along the slice normal, between rows, between
        columns. One float means isotropic.
    shape : 3 ints, optional
        Target ``(slices, rows, cols)`` instead of `spacing`.
    order : int
        Interpolation order: 0 nearest, 1 linear (default, fast separable path),
        3 cubic (scipy splines, slower and about twice the input's memory more).
    fill : float
        HU written outside the acquired volume (air).
    antialias : bool, default True
        Along every axis that shrinks by a factor ``f > 1``, first smooth with
        a Gaussian of standard deviation ``sigma = (f - 1) / 2`` source voxels
        (the filter of ``skimage.transform.resize(anti_aliasing=True)``), so
        detail finer than the new voxels averages out instead of aliasing.
        With linear sampling the smoothing is folded into the interpolation
        weights (no smoothed copy of the input, about a tenth of the time of
        filtering first); orders 0 and 3 filter a float32 copy first. No
        effect when no axis shrinks.
    clip : bool, default True
        For ``order > 1``, clip the result to the input's HU range: cubic
        splines overshoot at sharp edges (air/bone), inventing values the scan
        never held. Orders 0 and 1 cannot overshoot.

    Returns
    -------
    Volume
        float32 HU, exact affine; ``padding`` resampled by nearest neighbour
        (and True where no acquired data exists).

    Notes
    -----
    The output grid has the same field of view (outer edge to outer edge) and
    the same centre as the input grid (after tilt removal, see
    :func:`correct_tilt`). With `spacing`, the voxel count per axis is the
    extent divided by the spacing, rounded; with `shape`, the spacing is the
    extent divided by the count. The tilt correction and the change of voxel
    size are one interpolation, not two.

    Without `antialias`, linear downsampling takes two neighbours per axis and
    does not average the voxels in between (the same as SimpleITK and
    ``scipy.ndimage.zoom``), so 0.45 mm -> 2 mm keeps aliasing.

    See Also
    --------
    correct_tilt : tilt correction alone, keeping the in-plane grid.
    crop_to_head : crop first, so fewer voxels are interpolated.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> vol = Volume(np.zeros((10, 8, 8), np.int16), np.diag([0.5, 0.5, 0.5, 1.0]))
    >>> out = resample(vol, spacing=1.0)
    >>> out.shape, out.spacing, out.hu.dtype
    ((5, 4, 4), (1.0, 1.0, 1.0), dtype('float32'))
    >>> out.affine[:3, 3]  # first centre 0.25 mm further in: the same field of view
    array([0.25, 0.25, 0.25])
    >>> resample(vol, shape=(20, 8, 8)).spacing
    (0.25, 0.5, 0.5)
    """
    base, base_shape = _orthogonal_grid(volume)
    grid, out_shape = _rescaled_grid(base, base_shape, spacing, shape)
    sigma = None
    if antialias:
        shrink = np.linalg.norm(grid[:3, :3], axis=0) / np.linalg.norm(base[:3, :3], axis=0)
        if np.any(shrink > 1.0):
            sigma = tuple(float(s) for s in np.maximum(0.0, (shrink - 1.0) / 2.0))
    out = _regrid(volume, grid, out_shape, order, fill, sigma)
    if clip and order > 1:
        low, high = float(volume.hu.min()), float(volume.hu.max())
        np.clip(out.hu, min(low, fill), max(high, fill), out=out.hu)
    return out


def body_mask(volume_or_hu: Any, threshold: float = -500.0, *, fill_holes: bool = True) -> np.ndarray:
    """The patient's body: the largest connected region above `threshold` HU, holes filled.

    Parameters
    ----------
    volume_or_hu : Volume or (slices, rows, cols) ndarray
    threshold : float
        HU separating tissue from air; -500 keeps skin and leaves out foam
        head rests (about -900 HU).
    fill_holes : bool
        Fill enclosed cavities (sinuses, ventricles below threshold) in 3-D.

    Returns
    -------
    ndarray of bool
        Same shape as the array. The scanner table or head holder stays out when
        it does not touch the body (face-connected, 6-neighbourhood).

    See Also
    --------
    crop_to_head : crop a volume to this mask's bounding box.
    ctexplore.brain.brain_mask : the brain inside the skull.

    Examples
    --------
    >>> import numpy as np
    >>> hu = np.full((5, 9, 9), -1000, np.int16)
    >>> hu[1:4, 1:6, 1:6] = 40   # the head, with a cavity
    >>> hu[2, 3, 3] = -1000
    >>> hu[:, 8, :] = 200        # a table, apart from the head
    >>> mask = body_mask(hu)
    >>> int(mask.sum()), bool(mask[2, 3, 3]), bool(mask[0, 8, 0])
    (75, True, False)
    """
    hu = getattr(volume_or_hu, "hu", volume_or_hu)
    above = np.asarray(hu) > threshold
    labels, count = ndimage.label(above)
    if count == 0:
        return above
    sizes = np.bincount(labels.reshape(-1))
    sizes[0] = 0
    mask = labels == int(np.argmax(sizes))
    del labels, above
    if fill_holes:
        background, _ = ndimage.label(~mask)
        border = np.unique(
            np.concatenate(
                [background[[0, -1]].ravel(), background[:, [0, -1]].ravel(), background[:, :, [0, -1]].ravel()]
            )
        )
        is_outside = np.zeros(int(background.max()) + 1, bool)
        is_outside[border] = True
        is_outside[0] = True  # label 0 is the body itself, handled by `mask`
        mask |= ~is_outside[background]
    return mask


def crop_to_head(volume: Volume, margin_mm: float = 5.0, *, threshold: float = -500.0) -> Volume:
    """Crop to the bounding box of the body (see :func:`body_mask`) plus a margin.

    Parameters
    ----------
    volume : Volume
    margin_mm : float
        Room kept around the body on every side, in millimetres.
    threshold : float
        Passed to :func:`body_mask`.

    Returns
    -------
    Volume
        A copy of the box (hu, padding); the affine's origin moves to the box's
        first voxel so that every voxel keeps its world position. Tilted
        volumes stay tilted.

    Raises
    ------
    ValueError
        When no voxel is above `threshold`.

    See Also
    --------
    body_mask : the mask whose bounding box is kept.
    resample : change the voxel size after cropping.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> hu = np.full((10, 40, 40), -1000, np.int16)
    >>> hu[3:7, 10:20, 15:30] = 30
    >>> vol = Volume(hu, np.diag([1.0, 0.5, 0.5, 1.0]))
    >>> cropped = crop_to_head(vol, margin_mm=1.0)
    >>> cropped.shape, cropped.affine[:3, 3]
    ((6, 14, 19), array([2. , 4. , 6.5]))
    """
    mask = body_mask(volume, threshold)
    if not mask.any():
        raise ValueError(f"no voxel above {threshold} HU: nothing to crop to (is this a CT in Hounsfield units?)")
    margins = np.ceil(margin_mm / np.asarray(affine_spacing(volume.affine)) - 1e-9).astype(int)
    box = []
    for axis in range(3):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        start = max(int(present[0]) - margins[axis], 0)
        stop = min(int(present[-1]) + 1 + margins[axis], volume.shape[axis])
        box.append(slice(start, stop))
    box_t = tuple(box)
    affine = volume.affine.copy()
    affine[:3, 3] = volume.index_to_world(np.array([s.start for s in box_t]))
    meta = dict(volume.meta)
    positions = meta.pop("slice_positions", None)  # the reader stores an array, resample a list
    if positions is not None and len(positions) == volume.shape[0]:
        meta["slice_positions"] = [float(p) for p in np.asarray(positions, dtype=np.float64)[box_t[0]]]
    files = volume.files[box_t[0]] if len(volume.files) == volume.shape[0] else volume.files
    return Volume(
        volume.hu[box_t].copy(),
        affine,
        padding=None if volume.padding is None else volume.padding[box_t].copy(),
        files=files,
        meta=meta,
    )


_AXIS_LETTERS = {"L": (0, 1), "R": (0, -1), "P": (1, 1), "A": (1, -1), "S": (2, 1), "I": (2, -1)}


def reorient(volume: Volume, axes: str = "SPL") -> Volume:
    """Permute and flip array axes so they run towards the given patient directions.

    Parameters
    ----------
    volume : Volume
    axes : str
        Three letters, one per array axis, naming the patient direction each
        axis increases towards: L/R (x), P/A (y), S/I (z) in DICOM's LPS frame.
        The default ``"SPL"`` is the axial radiological layout: slices from
        feet to head, image rows from front to back (anterior at the top),
        columns from the patient's right to left (patient's right on the left).

    Returns
    -------
    Volume
        Same voxels, no interpolation: the array is a permuted/flipped copy and
        the affine is updated exactly (every voxel keeps its world position).
        Each array axis is assigned to the patient axis it is closest to, so an
        oblique or tilted scan gets the nearest canonical layout. When the
        slice axis changes, per-slice ``files`` and ``slice_positions`` no
        longer match the slices: ``slice_positions`` is dropped then.

    See Also
    --------
    ctexplore.volume.patient_axes : which patient axis each array axis runs along.
    nibabel.orientations.io_orientation : the same permutation search in nibabel.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> affine = np.diag([2.0, 1.0, -1.0, 1.0])  # sagittal: slices along x, columns downwards
    >>> vol = Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4), affine)
    >>> out = reorient(vol, "SPL")
    >>> out.shape
    (4, 3, 2)
    >>> out.affine[:3, :3]  # axes now run towards S, P, L
    array([[0., 0., 2.],
           [0., 1., 0.],
           [1., 0., 0.]])
    >>> bool(out.hu[0, 0, 0] == vol.hu[0, 0, 3])  # the lowest voxel is now first
    True
    """
    axes = axes.upper()
    if len(axes) != 3 or sorted(_AXIS_LETTERS[a][0] for a in axes if a in _AXIS_LETTERS) != [0, 1, 2]:
        raise ValueError(f"axes must name x, y and z once each, e.g. 'SPL' or 'LPS', got {axes!r}")
    by_patient = patient_axes(volume.affine)
    best = tuple(by_patient[_AXIS_LETTERS[letter][0]] for letter in axes)
    hu = np.transpose(volume.hu, best)
    padding = None if volume.padding is None else np.transpose(volume.padding, best)
    affine = volume.affine.copy()
    affine[:3, :3] = volume.affine[:3, list(best)]
    flips = []
    for d, letter in enumerate(axes):
        world_axis, sign = _AXIS_LETTERS[letter]
        if np.sign(affine[world_axis, d]) == -sign:
            flips.append(d)
            affine[:3, 3] += (hu.shape[d] - 1) * affine[:3, d]
            affine[:3, d] = 0.0 - affine[:3, d]  # 0.0 - x gives +0.0, not -0.0, for zeros
    if flips:
        hu = np.flip(hu, tuple(flips))
        padding = None if padding is None else np.flip(padding, tuple(flips))
    meta = dict(volume.meta)
    files = volume.files
    if best[0] != 0:
        meta.pop("slice_positions", None)
    elif 0 in flips:
        if "slice_positions" in meta:
            meta["slice_positions"] = list(meta["slice_positions"])[::-1]
        files = tuple(reversed(files))
    if best == (0, 1, 2) and not flips:
        return volume
    return Volume(
        np.ascontiguousarray(hu),
        affine,
        padding=None if padding is None else np.ascontiguousarray(padding),
        files=files,
        meta=meta,
    )
