"""The intracranial space of a head CT, skull stripping, and hyperdense (blood-like) regions.

Everything here is exploration, not diagnosis: simple thresholds and connected
components on CT numbers, fast enough to run on every scan of a data set.

The work is done on a coarse grid of about 2 mm blocks (`_BLOCK_MM`) and only the
boundary is refined at full resolution: on a 256 x 512 x 512 volume the mask takes about
half a second, 9 times faster than full-resolution filling and labelling with an eighth of
its memory, and the hyperdense regions about 4 times faster (``benchmarks/bench_brain.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import fft, ndimage

from .volume import Volume

__all__ = ["brain_mask", "skull_strip", "hyperdense_regions", "HyperdenseRegions"]

_BLOCK_MM = 2.0
BONE_HU = 250.0  # inner table and thin temporal bone, even with partial volume
SOFT_TISSUE_HU = (-30.0, 120.0)  # CSF to clotted blood; fat and air stay out
BONE_MARGIN_MM = 2.0  # in-plane partial volume and beam hardening under the inner table look like blood
CALCIFICATION_HU = 120.0  # block means above this inside the brain are calcification, not blood
BRIGHT_CORE_HU = 150.0  # no clot reaches this, even with noise: a calcified core
SMALL_REGION_ML = 0.5  # regions this small touching a bright core are taken as calcification rims
_BRIDGE_MM = 14.0  # skull gaps up to about twice this wide are closed before filling
_SLICE_PLANE = np.zeros((3, 3, 3), bool)
_SLICE_PLANE[1] = ndimage.generate_binary_structure(2, 1)


def _block_factors(volume: Volume) -> tuple[int, int, int]:
    return tuple(max(1, int(round(_BLOCK_MM / step))) for step in volume.spacing)  # type: ignore[return-value]


def _whole_blocks(shape: tuple[int, ...], factors: tuple[int, int, int]) -> tuple[list[int], list[int]]:
    """Number of whole blocks along each axis and the block size used (a short axis is one block)."""
    counts = [max(1, n // f) for n, f in zip(shape, factors)]
    return counts, [min(f, n) for f, n in zip(factors, shape)]


def _blocks(values: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """View of `values` cut into whole blocks: (n0, f0, n1, f1, n2, f2); the remainder is left out.

    Always a view (writing into it writes into `values`): splitting an axis never needs a copy.
    """
    counts, sizes = _whole_blocks(values.shape, factors)
    view = values[: counts[0] * sizes[0], : counts[1] * sizes[1], : counts[2] * sizes[2]].view()
    view.shape = (counts[0], sizes[0], counts[1], sizes[1], counts[2], sizes[2])
    return view


def _block_reduce(values: np.ndarray, factors: tuple[int, int, int], how: str) -> np.ndarray:
    """Max, any or float32 mean of each block."""
    blocks = _blocks(values, factors)
    if how == "max":
        return _fold(_fold(_fold(blocks, 1, np.maximum), 2, np.maximum), 3, np.maximum)
    if how == "any":
        return _fold(_fold(_fold(blocks, 1, np.logical_or), 2, np.logical_or), 3, np.logical_or)
    # whole-number HU sum exactly in int32 (a block holds far fewer than 65536 voxels)
    dtype = np.int32 if values.dtype.kind in "iu" and values.itemsize <= 2 else np.float32
    total = _fold(_fold(_fold(blocks, 1, np.add, dtype), 2, np.add), 3, np.add)
    return (total / np.float32(blocks.shape[1] * blocks.shape[3] * blocks.shape[5])).astype(np.float32)


def _fold(blocks: np.ndarray, axis: int, combine: np.ufunc, dtype: npt.DTypeLike | None = None) -> np.ndarray:
    """`combine` the slices along one short block axis one after another, dropping that axis.

    Whole-array element-wise passes: several times faster than ``combine.reduce`` over a short
    axis, which runs one tiny inner loop per block.
    """
    before = (slice(None),) * axis
    dtype = blocks.dtype if dtype is None else dtype
    if blocks.shape[axis] == 1:
        return blocks[before + (0,)].astype(dtype)
    result = combine(blocks[before + (0,)], blocks[before + (1,)], dtype=dtype)
    for k in range(2, blocks.shape[axis]):
        combine(result, blocks[before + (k,)], out=result)
    return result


def _upsample(coarse: np.ndarray, shape: tuple[int, ...], factors: tuple[int, int, int]) -> np.ndarray:
    """Each block's value at all its full-resolution voxels (the remainder takes the last block's)."""
    counts, sizes = _whole_blocks(shape, factors)
    extra = [n - c * s for n, c, s in zip(shape, counts, sizes)]
    full = coarse
    for axis in range(3):
        repeats = np.full(counts[axis], sizes[axis])
        repeats[-1] += extra[axis]
        full = np.repeat(full, repeats, axis=axis)
    return full


def _close_in_plane(mask: np.ndarray, radius: int) -> np.ndarray:
    """Closing of each axial plane by a disk of `radius` blocks, through FFT convolutions.

    The same set as `ndimage.binary_closing` with the disk as structure (the array padded by
    `radius`), at a cost that does not grow with the disk's area.
    """
    padded = np.pad(mask, ((0, 0), (radius, radius), (radius, radius)))
    plane = padded.shape[1:]
    # Wrap-around never reaches a pixel that matters: the pad holds no set pixel for the
    # dilation, and the erosion is only read at least `radius` from the edges.
    shape = [fft.next_fast_len(n, real=True) for n in plane]
    yy, xx = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    kernel = np.zeros(shape, np.float32)
    kernel[yy % shape[0], xx % shape[1]] = yy**2 + xx**2 <= radius**2  # the disk centred on pixel (0, 0)
    kernel_spectrum = fft.rfft2(kernel)

    def covered(values: np.ndarray) -> np.ndarray:
        """Number of set pixels under the disk centred on each pixel."""
        spectrum = fft.rfft2(values.astype(np.float32), s=shape, axes=(1, 2))
        return fft.irfft2(spectrum * kernel_spectrum, s=shape, axes=(1, 2))[:, : plane[0], : plane[1]]

    dilated = covered(padded) > 0.5
    closed = covered(~dilated) < 0.5
    return closed[:, radius:-radius, radius:-radius]


def _holes(mask: np.ndarray, structure: np.ndarray | None, border_axes: tuple[int, ...]) -> np.ndarray:
    """The voxels outside `mask` that no `structure`-connected path links to the array faces across `border_axes`.

    `ndimage.binary_fill_holes(mask, structure) & ~mask` through one labelling instead of a
    dilation repeated until nothing changes.
    """
    labels, count = ndimage.label(~mask, structure)
    outside = np.zeros(count + 1, bool)
    outside[0] = True  # the mask itself
    for axis in border_axes:
        outside[np.take(labels, [0, -1], axis=axis)] = True
    return ~outside[labels]


def _largest(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _coarse_brain(volume: Volume, factors: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Coarse brain blocks (free of bone) and the coarse bone blocks."""
    bone = _block_reduce(volume.hu, factors, "max") > BONE_HU
    mean = _block_reduce(volume.hu, factors, "mean")
    soft = (mean > SOFT_TISSUE_HU[0]) & (mean < SOFT_TISSUE_HU[1])
    # Close the skull ring in each axial plane so foramina, sutures and thin temporal
    # bone do not let the fill leak out; then everything the ring encloses is inside.
    block_mm = np.array(volume.spacing[1:]) * factors[1:]
    radius = max(1, int(round(_BRIDGE_MM / float(block_mm.min()))))
    ring = _close_in_plane(bone, radius)
    enclosed = _holes(ring, _SLICE_PLANE, border_axes=(1, 2))
    candidate = enclosed & soft & ~bone
    # One block of erosion cuts thin bridges (optic canals, the orbits' fat) before choosing
    # the largest piece; the dilation gives the eroded rim back inside the candidates.
    core = _largest(ndimage.binary_erosion(candidate))
    if not core.any():
        core = _largest(candidate)
    brain = ndimage.binary_dilation(core, iterations=2, mask=candidate)
    brain = (brain | _holes(brain, None, border_axes=(0, 1, 2))) & ~bone  # ventricles, calcifications' surroundings
    return brain, bone


def _near_bone(volume: Volume, bone: np.ndarray, block_mm: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """Blocks within the partial-volume reach of bone: `BONE_MARGIN_MM` in-plane, more along the slices.

    Along the slice axis the reach is the margin or the local acquired slice step plus half the
    slice thickness, whichever is larger: a 7 mm slice cut through the curved skull at the vertex
    averages bone into brain several millimetres away, and interpolating between such slices
    spreads it over a whole step.
    """
    radius = max(1, int(np.ceil(BONE_MARGIN_MM / float(block_mm[1:].min()))))
    yy, xx = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    disk = (yy * block_mm[1]) ** 2 + (xx * block_mm[2]) ** 2 <= (BONE_MARGIN_MM + 1e-6) ** 2
    in_plane = ndimage.binary_dilation(bone, disk[np.newaxis])
    reach_mm = np.full(bone.shape[0], BONE_MARGIN_MM)
    acquired = volume.meta.get("source_slice_positions")
    if acquired is not None and len(acquired) > 1:
        from .slabs import slice_plane_positions

        acquired = np.sort(np.asarray(acquired, dtype=np.float64))
        planes = slice_plane_positions(volume)[: bone.shape[0] * factors[0]].reshape(bone.shape[0], -1).mean(axis=1)
        right = np.clip(np.searchsorted(acquired, planes), 1, len(acquired) - 1)
        step = acquired[right] - acquired[right - 1]
        thickness = float(volume.meta.get("slice_thickness") or 0.0)
        reach_mm = np.maximum(reach_mm, step + thickness / 2.0)
    reach = np.ceil(reach_mm / block_mm[0] - 1e-6).astype(int)
    # any in-plane-dilated bone within each block slice's own reach along the slice axis
    counts = np.concatenate([np.zeros((1,) + bone.shape[1:], np.int32), np.cumsum(in_plane, axis=0, dtype=np.int32)])
    n = bone.shape[0]
    lows = np.clip(np.arange(n) - reach, 0, n)
    highs = np.clip(np.arange(n) + reach + 1, 0, n)
    return (counts[highs] - counts[lows]) > 0


def brain_mask(volume: Volume) -> np.ndarray:
    """The intracranial space (brain, CSF, blood) of a head CT, from CT numbers alone.

    The skull is the boundary. On blocks of about 2 mm: bone is any voxel above
    250 HU; the bone ring of each axial plane is closed (gaps up to ~28 mm) and
    filled; soft-tissue blocks (mean -30..120 HU) inside it are eroded by one
    block, the largest 3-D piece kept and grown back. The blocks just outside
    that piece (against the inner table) are then decided voxel by voxel at full
    resolution (-30..250 HU: soft tissue, not bone), so the edge follows the
    inner table; so are the few voxels past the last whole block of an axis.

    Parameters
    ----------
    volume : Volume
        Axial head CT (slices along the head-foot axis), tilt-corrected or not.

    Returns
    -------
    (slices, rows, cols) bool ndarray
        True inside the skull.

    Notes
    -----
    Where it fails: a craniectomy or a skull fracture wider than about 28 mm
    opens the ring and the planes through the defect lose their brain; the
    brainstem continues through the foramen magnum into the upper cervical
    cord, which stays in the mask; calcifications (pineal, choroid plexus) and
    the falx above 250 HU are left out; scans without a skull (MR, a phantom
    without bone) give an empty or meaningless mask.

    Examples
    --------
    >>> import tempfile
    >>> import ctexplore as ct
    >>> from ctexplore.phantom import write_series
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_series(folder, n_slices=30, matrix=96, slice_spacing=5.0)
    >>> volume = ct.load_series(folder)
    >>> mask = ct.brain_mask(volume)
    >>> mask.shape == volume.shape, mask.dtype
    (True, dtype('bool'))
    >>> bool(mask[15, 48, 48]), bool(mask[15, 2, 2])  # centre of the head, air in the corner
    (True, False)
    """
    hu = volume.hu
    factors = _block_factors(volume)
    coarse, _ = _coarse_brain(volume, factors)
    # Brain blocks are inside whole; the blocks just outside them are decided voxel by voxel.
    edge = ndimage.binary_dilation(coarse) & ~coarse
    mask = _upsample(coarse, hu.shape, factors)
    at = np.nonzero(edge)
    edge_hu = _blocks(hu, factors)[at[0], :, at[1], :, at[2], :]
    _blocks(mask, factors)[at[0], :, at[1], :, at[2], :] = _soft_voxels(edge_hu)
    # The voxels past the last whole block along an axis are in no block's statistics (a bone
    # voxel there would pass for brain): decided voxel by voxel wherever that block is brain or edge.
    counts, sizes = _whole_blocks(hu.shape, factors)
    whole = [c * s for c, s in zip(counts, sizes)]
    for axis in range(3):
        slab = tuple(
            slice(whole[a], None) if a == axis else slice(0, whole[a]) if a < axis else slice(None) for a in range(3)
        )
        if mask[slab].size:
            index = np.ix_(
                *[np.minimum(np.arange(n)[s] // f, c - 1) for n, s, f, c in zip(hu.shape, slab, sizes, counts)]
            )
            mask[slab] = (coarse | edge)[index] & _soft_voxels(hu[slab])
    return mask


def _soft_voxels(hu: np.ndarray) -> np.ndarray:
    """Voxels that are neither air, fat nor bone."""
    return (hu > SOFT_TISSUE_HU[0]) & (hu < BONE_HU)


def skull_strip(volume: Volume, fill: float | None = None, *, mask: np.ndarray | None = None) -> Volume:
    """The volume with everything outside the brain mask set to `fill`.

    Parameters
    ----------
    volume : Volume
    fill : float, optional
        HU written outside the intracranial space; default the volume's air
        fill value (``meta['fill_value']``, else -1000).
    mask : bool ndarray, optional
        A precomputed `brain_mask` (computed when not given).

    Returns
    -------
    Volume
        Same grid and dtype; ``meta['skull_stripped']`` records the fill.

    Examples
    --------
    >>> import tempfile
    >>> import ctexplore as ct
    >>> from ctexplore.phantom import write_series
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_series(folder, n_slices=30, matrix=96, slice_spacing=5.0)
    >>> stripped = ct.skull_strip(ct.load_series(folder))
    >>> int(stripped.hu.max()) < 250  # no bone left
    True
    """
    if mask is None:
        mask = brain_mask(volume)
    if fill is None:
        fill = float(volume.meta.get("fill_value", -1000.0))
    hu = np.where(mask, volume.hu, np.asarray(fill).astype(volume.hu.dtype))
    meta = dict(volume.meta, skull_stripped=fill)
    return Volume(hu=hu, affine=volume.affine, padding=volume.padding, files=volume.files, meta=meta)


@dataclass(frozen=True, eq=False)
class HyperdenseRegions:
    """Connected hyperdense regions: labels, total volume and a per-region table.

    Attributes
    ----------
    labels : int ndarray, volume shape
        0 outside, 1..n the regions (largest first).
    table : list of dict
        One row per region: ``label``, ``volume_ml``, ``centroid_mm`` (patient
        LPS x, y, z), ``mean_hu``, ``voxels``.
    """

    labels: np.ndarray
    table: list[dict]

    @property
    def mask(self) -> np.ndarray:
        """Bool mask of all regions."""
        return self.labels > 0

    @property
    def volume_ml(self) -> float:
        """Total volume of the regions in millilitres."""
        return float(sum(row["volume_ml"] for row in self.table))

    def __len__(self) -> int:
        return len(self.table)


def hyperdense_regions(
    volume: Volume,
    mask: np.ndarray | None = None,
    low: float = 50.0,
    high: float = 90.0,
    min_ml: float = 0.1,
) -> HyperdenseRegions:
    """Regions inside the brain whose CT numbers look like acute blood (50-90 HU).

    For exploration, not diagnosis: this finds what a reader would window to
    look at, not haemorrhage.

    Regions are found on blocks of about 2 mm whose mean HU is in
    ``[low, high]`` (the mean suppresses voxel noise, which puts single grey
    matter voxels above 50 HU), then grown back by up to one block plus the
    bone margin and cut to the full-resolution voxels in ``[low, high]``.
    Dropped as simple false positives:

    - blocks within the partial-volume reach of bone (the inner table's blur is
      50-90 HU): 2 mm in-plane and, along the slices, the local acquired slice
      step plus half the slice thickness (at least 2 mm), read from
      ``meta['source_slice_positions']``: thick slices cut through the curved
      skull at the vertex and the skull base average bone into the brain
      several millimetres away, and interpolating between them spreads it
      over a whole step. Extra-axial blood thinner than this margin against
      the skull is lost with it; thicker collections keep their rim through
      the regrowth.
    - regions lying mostly next to a calcification (block mean above 120 HU:
      pineal, choroid plexus, basal ganglia, whose rims are 50-90 HU), and
      regions under 0.5 mL touching a very bright core (a voxel above 150 HU,
      which no clot reaches: a calcification smaller than a block);
    - regions below `min_ml`.

    On the realistic phantom (`ctexplore.headmodel`) this finds the
    intraparenchymal and epidural bleeds (Dice about 0.95 and 0.8), part of
    the thin subdural crescent (about a third), little of the
    intraventricular layer and none of the subarachnoid blood, which lies in
    sulci against the bone; on a normal real head CT it still finds a few mL
    of small regions (beam hardening at the skull base, the falx). See
    ``benchmarks/bench_brain.py --validate`` for the table.

    Parameters
    ----------
    volume : Volume
    mask : bool ndarray, optional
        Where to look; default `brain_mask(volume)`.
    low, high : float
        HU range of hyperdense blood.
    min_ml : float
        Smallest region kept, in millilitres.

    Returns
    -------
    HyperdenseRegions
        ``.labels`` / ``.mask`` of the volume's shape, ``.volume_ml`` (total),
        ``.table`` (per region).

    Examples
    --------
    >>> import tempfile
    >>> import ctexplore as ct
    >>> from ctexplore.phantom import write_series
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_series(folder, n_slices=40, matrix=128, slice_spacing=2.5)
    >>> found = ct.hyperdense_regions(ct.load_series(folder))
    >>> len(found), found.mask.shape
    (1, (40, 128, 128))
    >>> row = found.table[0]
    >>> [round(c) for c in row["centroid_mm"]]  # the right frontal bleed of the phantom
    [-30, -42, 32]
    """
    hu = volume.hu
    if mask is None:
        mask = brain_mask(volume)
    if mask.shape != hu.shape:
        raise ValueError(f"mask shape {mask.shape} differs from the volume's shape {hu.shape}")
    factors = _block_factors(volume)
    mean = _block_reduce(hu, factors, "mean")
    maximum = _block_reduce(hu, factors, "max")
    bone = maximum > BONE_HU
    inside = _block_reduce(mask, factors, "any")
    block_mm = np.asarray(volume.spacing) * np.asarray(factors)
    near_bone = _near_bone(volume, bone, block_mm, factors)
    near_calcification = ndimage.binary_dilation((mean > CALCIFICATION_HU) & inside)
    coarse = (mean >= low) & (mean <= high) & inside & ~near_bone
    coarse_labels, count = ndimage.label(coarse)
    if count:
        # A calcification's partial-volume rim lies almost wholly next to it; a bleed that
        # merely touches one (or is joined to one by a noisy voxel) does not.
        sizes = np.bincount(coarse_labels.ravel(), minlength=count + 1)
        contact = np.bincount(coarse_labels[near_calcification], minlength=count + 1)
        keep = contact * 2 < sizes
        # calcification-like: a small region touching a very bright core (a 120+ HU block mean can
        # be lost when the core is smaller than a block; its maximum stays)
        bright = ndimage.binary_dilation((maximum > BRIGHT_CORE_HU) & inside)
        touches_bright = np.bincount(coarse_labels[bright], minlength=count + 1) > 0
        small = sizes * float(np.prod(block_mm)) / 1000.0 < SMALL_REGION_ML
        keep &= ~(small & touches_bright)
        keep[0] = False
        coarse_labels = np.where(keep[coarse_labels], coarse_labels, 0)
    # Grow the seeds back towards the bone: blood against the inner table (subdural, epidural)
    # keeps the part the margin cut away, but only next to a seed, never a lone partial-volume shell.
    reach = BONE_MARGIN_MM + float(block_mm.max())
    seeds = np.nonzero(coarse_labels)
    # only the box around the seeds (plus the regrowth) is looked at again, at full resolution
    pad = np.ceil(reach / block_mm).astype(int) + 1
    low_block = [max(0, int(i.min()) - p) if len(i) else 0 for i, p in zip(seeds, pad)]
    high_block = [min(n, int(i.max()) + p + 1) if len(i) else 0 for i, p, n in zip(seeds, pad, coarse_labels.shape)]
    box = tuple(slice(a, b) for a, b in zip(low_block, high_block))
    grown = coarse_labels[box]
    if grown.any():
        distance, nearest = ndimage.distance_transform_edt(grown == 0, sampling=block_mm, return_indices=True)
        grown = np.where(distance <= reach, grown[tuple(nearest)], 0)
        del distance, nearest
    full_box = tuple(  # the last block also owns the remainder voxels
        slice(a * f, n if b == m else b * f)
        for a, b, f, n, m in zip(low_block, high_block, factors, hu.shape, coarse_labels.shape)
    )
    hu_box = hu[full_box]
    candidates = mask[full_box] & (hu_box >= low) & (hu_box <= high)
    local = np.nonzero(candidates)
    coarse_index = tuple(
        np.minimum((i + s.start) // f, m - 1) - b.start
        for i, s, f, m, b in zip(local, full_box, factors, coarse_labels.shape, box)
    )
    voxel_labels = grown[coarse_index] if grown.size else np.zeros(len(local[0]), np.int32)
    index = tuple(i + s.start for i, s in zip(local, full_box))
    sizes = np.bincount(voxel_labels, minlength=count + 1)
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    order = [
        lab
        for lab in np.argsort(-sizes, kind="stable")
        if lab != 0 and sizes[lab] > 0 and sizes[lab] * voxel_ml >= min_ml
    ]
    relabel = np.zeros(count + 1, np.int32)
    relabel[order] = np.arange(1, len(order) + 1)
    new_labels = relabel[voxel_labels]
    dtype = np.uint8 if len(order) < 256 else np.uint16 if len(order) < 65536 else np.int32
    labels = np.zeros(hu.shape, dtype)
    keep_voxels = new_labels > 0
    chosen = tuple(i[keep_voxels] for i in index)
    chosen_labels = new_labels[keep_voxels]
    labels[chosen] = chosen_labels
    n = len(order)
    counts = np.bincount(chosen_labels, minlength=n + 1)[1:]
    sums = np.bincount(chosen_labels, weights=hu[chosen], minlength=n + 1)[1:]
    centre = np.stack([np.bincount(chosen_labels, weights=i, minlength=n + 1)[1:] for i in chosen], axis=1)
    table = []
    for label in range(1, n + 1):
        ijk = centre[label - 1] / counts[label - 1]
        table.append(
            {
                "label": label,
                "volume_ml": float(counts[label - 1] * voxel_ml),
                "centroid_mm": tuple(float(v) for v in volume.index_to_world(ijk)),
                "mean_hu": float(sums[label - 1] / counts[label - 1]),
                "voxels": int(counts[label - 1]),
            }
        )
    return HyperdenseRegions(labels=labels, table=table)
