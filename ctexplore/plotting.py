"""Pictures of a CT volume you can trust: slice grids, Hounsfield histograms, orthogonal views.

Every picture takes its aspect ratio from the voxel spacing, labels slices with
their position in millimetres, and shows axial and coronal planes the
radiological way (patient right on the image left); see
:mod:`ctexplore.planes` for the conventions. Each function returns the
matplotlib figure (created through pyplot, so ``plt.show()`` and notebooks'
inline display work as usual).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from .planes import (
    PlaneGeometry,
    check_plane,
    display_pixel,
    plane_geometry,
    position_label,
    slice_image,
    slice_positions,
    window_setting,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

    from .viewer import Overlay
    from .volume import Volume

__all__ = [
    "TISSUE_BANDS",
    "plot_slice_grid",
    "hu_histogram",
    "plot_hu_histogram",
    "plot_orthogonal",
    "max_intensity_projection",
]

#: Typical Hounsfield ranges of tissues: (name, low HU, high HU, colour).
#: Ranges overlap (unclotted blood and grey matter); they guide the eye, they
#: do not segment.
TISSUE_BANDS: tuple[tuple[str, float, float, str], ...] = (
    ("air", -1024, -950, "#9e9e9e"),
    ("lung", -950, -500, "#80cbc4"),
    ("fat", -120, -60, "#ffd54f"),
    ("water", -5, 5, "#4fc3f7"),
    ("CSF", 0, 15, "#29b6f6"),
    ("white matter", 20, 30, "#ce93d8"),
    ("grey matter", 37, 45, "#9575cd"),
    ("blood", 30, 45, "#ef9a9a"),
    ("acute hemorrhage", 50, 90, "#e53935"),
    ("bone", 300, 3000, "#bcaaa4"),
)

# voxels per bincount call: bincount copies its input to intp, and 2 MiB of that stays in
# cache (measured on 256 x 512 x 512: 0.12 s at 2**18, 0.19 s at 2**21, 0.28 s at 2**22)
_HISTOGRAM_CHUNK_VOXELS = 1 << 18


def _tilt_note(volume: Volume) -> str:
    if not volume.is_tilted:
        return ""
    return f"gantry tilt {volume.gantry_tilt:.1f}°: shown as acquired (sheared); ctexplore.correct_tilt resamples it"


def _show_plane(ax: Axes, image: np.ndarray, geometry: PlaneGeometry, center: float, width: float) -> None:
    ax.imshow(
        image,
        cmap="gray",
        vmin=center - width / 2,
        vmax=center + width / 2,
        aspect=geometry.aspect,
        interpolation="antialiased",
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _overlay_layers(volume: Volume, mask: np.ndarray | None, overlays: Any) -> list[Overlay]:
    """The overlays to draw: `overlays` named and coloured as the viewer does, or `mask` as one named "mask"."""
    from .viewer import as_overlays

    if mask is not None and overlays is not None:
        raise ValueError("give mask (one mask) or overlays (several, named), not both")
    if mask is not None and np.shape(mask) != volume.shape:
        raise ValueError(f"mask shape {np.shape(mask)} differs from volume shape {volume.shape}")
    return as_overlays(volume, {"mask": mask} if mask is not None else overlays)


def _draw_overlays(ax: Axes, layers: Sequence[tuple[np.ndarray, Overlay]], aspect: float, opacity: float) -> None:
    """Fill each overlay's pixels with its colours at `opacity`, in order (the page's blending)."""
    for labels, overlay in layers:
        inside = labels.astype(bool, copy=False)
        if not inside.any():
            continue
        rgba = np.zeros(labels.shape + (4,), np.float32)
        table = np.asarray(overlay.colours, np.float32) / 255
        rgba[inside, :3] = table[labels[inside].astype(np.intp) % len(table)]
        rgba[inside, 3] = opacity
        ax.imshow(rgba, aspect=aspect, interpolation="nearest")


def _overlay_legend(fig: Figure, overlays: Sequence[Overlay], opacity: float, padding: bool = False) -> None:
    """A legend right of the panels (where the viewer has it) naming each overlay, and each value of a
    label map, with its colour; and the padding colour when padding is drawn."""
    from matplotlib.patches import Patch

    from .viewer import MARK_COLOURS

    entries = [entry for overlay in overlays for entry in overlay.legend()]
    if padding:
        entries.append(("padding (outside the scanned field)", MARK_COLOURS["padding"]))
    if entries:
        fig.legend(
            handles=[Patch(facecolor=_rgb(colour), edgecolor="none", label=text) for text, colour in entries],
            loc="outside right center",
            fontsize=8,
            frameon=False,
            title=f"overlays (opacity {opacity:g})" if overlays else None,
            title_fontsize=8,
            alignment="left",
        )
        # widen the figure by the legend (about 0.07 inch per 8 pt character), so the panels keep their size
        longest = max(len(text) for text, _ in entries)
        width, height = fig.get_size_inches()
        fig.set_size_inches(width + 0.5 + 0.07 * longest, height)


def _rgb(colour: Sequence[int]) -> tuple[float, float, float]:
    """A 0-255 RGB colour as matplotlib's 0-1 floats."""
    return (colour[0] / 255, colour[1] / 255, colour[2] / 255)


def _draw_padding(ax: Axes, padding: np.ndarray, aspect: float) -> None:
    """Voxels outside the scanner's field of view in the viewer's padding colour, opaque (not air)."""
    from .viewer import MARK_COLOURS

    if padding.any():
        rgba = np.zeros(padding.shape + (4,), np.float32)
        rgba[padding] = (*_rgb(MARK_COLOURS["padding"]), 1.0)
        ax.imshow(rgba, aspect=aspect, interpolation="nearest")


def _mark_edges(ax: Axes, plane: str, convention: str = "radiological") -> None:
    from .viewer import EDGE_LETTERS

    left, right, top, bottom = EDGE_LETTERS[plane]
    if convention == "neurological" and plane != "sagittal":
        left, right = right, left
    for x, y, letter, ha, va in (
        (0.02, 0.5, left, "left", "center"),
        (0.98, 0.5, right, "right", "center"),
        (0.5, 0.98, top, "center", "top"),
        (0.5, 0.02, bottom, "center", "bottom"),
    ):
        ax.text(x, y, letter, ha=ha, va=va, transform=ax.transAxes, color="#ffeb3b", fontsize=8, fontweight="bold")


def _choose_indices(
    geometry: PlaneGeometry,
    axis: str | None,
    positions_mm: np.ndarray,
    n_slices: int,
    indices: Sequence[int] | None,
    positions: Sequence[float] | None,
) -> list[int]:
    if indices is not None and positions is not None:
        raise ValueError("give either indices or positions, not both")
    if indices is not None:
        chosen = [int(i) for i in indices]
        bad = [i for i in chosen if not 0 <= i < geometry.n_slices]
        if bad:
            raise IndexError(f"{geometry.plane} indices {bad} are outside 0..{geometry.n_slices - 1}")
        return chosen
    if positions is not None:
        step = abs(positions_mm[1] - positions_mm[0]) if len(positions_mm) > 1 else 0.0
        chosen = []
        for wanted in positions:
            nearest = int(np.argmin(np.abs(positions_mm - wanted)))
            if abs(positions_mm[nearest] - wanted) > step / 2 + 1e-6:
                covered = f"{positions_mm.min():.1f} .. {positions_mm.max():.1f} mm"
                raise ValueError(
                    f"position {position_label(axis, wanted)} is outside the {geometry.plane} planes ({covered})"
                )
            chosen.append(nearest)
        return chosen
    if n_slices < 1:
        raise ValueError(f"n_slices must be at least 1, got {n_slices}")
    count = min(n_slices, geometry.n_slices)
    # skip the outermost planes, which are usually air or the edge of the scan
    fractions = (np.arange(count) + 0.5) / count
    return [int(i) for i in np.round(fractions * (geometry.n_slices - 1))]


def plot_slice_grid(
    volume: Volume,
    n_slices: int = 12,
    *,
    indices: Sequence[int] | None = None,
    positions: Sequence[float] | None = None,
    plane: str = "axial",
    window: str | tuple[float, float] = "brain",
    columns: int | None = None,
    panel_size: float = 2.2,
    mask: np.ndarray | None = None,
    overlays: Any = None,
    mask_opacity: float = 0.4,
    title: str | None = None,
) -> Figure:
    """A grid of evenly spaced (or chosen) slices, each labelled with its position in mm.

    Parameters
    ----------
    volume : Volume
    n_slices : int
        How many evenly spaced planes to show (ignored when `indices` or
        `positions` is given).
    indices : sequence of int, optional
        Plane indices to show.
    positions : sequence of float, optional
        Positions in mm along the plane normal (``z`` for axial planes of an
        untilted series); the nearest plane is shown, and a position more
        than half a plane away from every plane is an error.
    plane : {"axial", "coronal", "sagittal"}
    window : str or (float, float)
        A preset of :data:`ctexplore.intensity.WINDOWS` or ``(center, width)`` in HU.
    columns : int, optional
        Panels per row (default: up to 6).
    panel_size : float
        Width of one panel in inches.
    mask : (slices, rows, cols) bool ndarray, optional
        One mask drawn over the slices (e.g. a hemorrhage label), named
        "mask" in the legend; the same as ``overlays={"mask": mask}``.
    overlays : ndarray, dict of name -> array, or list of Overlay, optional
        Several masks or label maps, filled in the colours the viewer uses,
        with a legend (see :func:`ctexplore.viewer.as_overlays`).
    mask_opacity : float
        Opacity of the mask or overlays, 0 to 1.
    title : str, optional
        Figure title; by default the series description, plane and window.

    Returns
    -------
    matplotlib.figure.Figure

    See Also
    --------
    plot_orthogonal : three planes through one point.
    ctexplore.view : the interactive viewer for the same volume.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> affine = np.zeros((4, 4))  # axial: 5 mm slices to the head, 0.5 mm pixels
    >>> affine[2, 0], affine[1, 1], affine[0, 2], affine[3, 3] = 5.0, 0.5, 0.5, 1.0
    >>> vol = Volume(np.zeros((10, 32, 32), np.int16), affine)
    >>> fig = plot_slice_grid(vol, 4, window=(40, 80))
    >>> [ax.get_title() for ax in fig.axes]
    ['#1  z = 5.0 mm', '#3  z = 15.0 mm', '#6  z = 30.0 mm', '#8  z = 40.0 mm']
    >>> fig.axes[0].images[0].get_extent()  # 32 x 32 pixels, shown square
    [-0.5, 31.5, 31.5, -0.5]
    >>> plot_slice_grid(vol, positions=[60.0])
    Traceback (most recent call last):
    ...
    ValueError: position z = 60.0 mm is outside the axial planes (0.0 .. 45.0 mm)
    >>> plt.close("all")
    """
    geometry = plane_geometry(volume, check_plane(plane))
    center, width, window_label = window_setting(window)
    layers = _overlay_layers(volume, mask, overlays)
    axis, positions_mm = slice_positions(volume, geometry)
    chosen = _choose_indices(geometry, axis, positions_mm, n_slices, indices, positions)

    columns = columns or min(len(chosen), 6)
    rows = math.ceil(len(chosen) / columns)
    height, width_px = slice_image(volume.hu, geometry, 0).shape
    panel_ratio = height * geometry.pixel_height / (width_px * geometry.pixel_width)
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(columns * panel_size, rows * panel_size * panel_ratio + 0.7),
        squeeze=False,
        layout="constrained",
    )
    for ax, index in zip(axes.flat, chosen):
        _show_plane(ax, slice_image(volume.hu, geometry, index), geometry, center, width)
        overlay_slices = [(slice_image(overlay.data, geometry, index), overlay) for overlay in layers]
        _draw_overlays(ax, overlay_slices, geometry.aspect, mask_opacity)
        ax.set_title(f"#{index}  {position_label(axis, positions_mm[index])}", fontsize=8)
    for ax in axes.flat[len(chosen) :]:
        ax.remove()
    _mark_edges(axes.flat[0], plane)
    description = volume.meta.get("series_description") or "volume"
    heading = title or f"{description}: {plane}, {window_label}"
    note = _tilt_note(volume)
    fig.suptitle(heading + (f"\n{note}" if note else ""), fontsize=10)
    _overlay_legend(fig, layers, mask_opacity)
    return fig


def hu_histogram(
    volume: Volume | np.ndarray,
    *,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Voxel counts per whole Hounsfield unit, without a float64 copy of the volume.

    Parameters
    ----------
    volume : Volume or (slices, rows, cols) ndarray
        int16 (or other integer) HU are counted exactly with chunked
        ``np.bincount``; float32 HU are binned 1 HU wide with ``np.histogram``.
    exclude : bool ndarray, optional
        True for voxels to leave out (padding, outside air), same shape.

    Returns
    -------
    edges : (n + 1,) float64 ndarray
        Bin edges, half-integers: bin ``i`` counts values ``round(edges[i] + 0.5)``.
    counts : (n,) int64 ndarray

    See Also
    --------
    plot_hu_histogram : the same counts drawn with the tissue bands.

    Examples
    --------
    >>> import numpy as np
    >>> hu = np.array([[[-1000, 0, 0, 2]]], dtype=np.int16)
    >>> edges, counts = hu_histogram(hu)
    >>> edges[:2], counts[[0, 1000, 1002]], int(counts.sum())
    (array([-1000.5,  -999.5]), array([1, 2, 1]), 4)
    >>> int(hu_histogram(hu, exclude=hu < -500)[1].sum())
    3
    """
    hu = np.asarray(getattr(volume, "hu", volume))
    if exclude is not None and exclude.shape != hu.shape:
        raise ValueError(f"exclude mask shape {exclude.shape} differs from {hu.shape}")
    if hu.size == 0:
        raise ValueError("cannot take the histogram of an empty volume")
    low, high = int(np.rint(hu.min())), int(np.rint(hu.max()))
    n_bins = high - low + 1
    counts = np.zeros(n_bins, dtype=np.int64)
    flat = hu.reshape(-1)
    flat_exclude = None if exclude is None else exclude.reshape(-1)
    integer = hu.dtype.kind in "iu" and hu.dtype.itemsize <= 2
    for start in range(0, flat.size, _HISTOGRAM_CHUNK_VOXELS):
        chunk = flat[start : start + _HISTOGRAM_CHUNK_VOXELS]
        if flat_exclude is not None:
            chunk = chunk[~flat_exclude[start : start + _HISTOGRAM_CHUNK_VOXELS]]
        if integer:
            # the difference wraps in 16 bits but is exact read as uint16 (high - low < 65536)
            offsets = (
                (chunk.astype(np.int16, copy=False) - np.int16(low)).view(np.uint16)
                if hu.dtype == np.int16
                else chunk.astype(np.int32) - low
            )
            counts += np.bincount(offsets, minlength=n_bins)
        else:
            counts += np.histogram(chunk.astype(np.float32, copy=False), bins=n_bins, range=(low - 0.5, high + 0.5))[0]
    edges = np.arange(low, high + 2, dtype=np.float64) - 0.5
    return edges, counts


def _draw_bands(ax: Axes, low: float, high: float, bands: Sequence[tuple[str, float, float, str]]) -> None:
    """Tissue bands as faint spans plus a labelled ruler along the top of `ax`."""
    visible = sorted((band for band in bands if band[2] > low and band[1] < high), key=lambda b: b[1])
    lane_ends: list[float] = []
    transform = blended_transform_factory(ax.transData, ax.transAxes)
    char_width = 0.0085 * (high - low)  # an 8 pt character on a 9 inch wide axes, in HU
    for name, band_low, band_high, colour in visible:
        ax.axvspan(band_low, band_high, color=colour, alpha=0.15, lw=0)
        centre = (max(band_low, low) + min(band_high, high)) / 2
        # a band and its label share a lane with bands they do not overlap
        start = min(band_low, centre - len(name) * char_width / 2)
        end = max(band_high, centre + len(name) * char_width / 2)
        lane = next((i for i, used in enumerate(lane_ends) if used <= start), len(lane_ends))
        if lane == len(lane_ends):
            lane_ends.append(end)
        lane_ends[lane] = end
        top = 1.0 - 0.075 * lane
        ax.axvspan(band_low, band_high, ymin=top - 0.06, ymax=top, color=colour, alpha=0.9, lw=0)
        ax.text(
            centre,
            top - 0.03,
            name,
            transform=transform,
            ha="center",
            va="center",
            fontsize=8,
            clip_on=True,
        )


def plot_hu_histogram(
    volume: Volume | np.ndarray,
    *,
    exclude_padding: bool = True,
    exclude_outside: bool = False,
    log: bool = False,
    hu_range: tuple[float, float] | None = None,
    detail: tuple[float, float] | None = (-30.0, 110.0),
    title: str | None = None,
) -> Figure:
    """Hounsfield-unit histogram with the typical tissue ranges annotated.

    Parameters
    ----------
    volume : Volume or ndarray
    exclude_padding : bool
        Leave out voxels outside the scanner's field of view
        (``volume.padding``); they hold an air fill value, not air.
    exclude_outside : bool
        Leave out the air around the head (see Notes), so the tissue peaks
        are not dwarfed by it; air inside the head (sinuses) stays.
    log : bool
        Logarithmic count axis.
    hu_range : (float, float), optional
        Range of the main panel (default: the data plus 50 HU, within -1100..2000).
    detail : (float, float) or None
        HU range of a second, zoomed panel for brain tissue (CSF, white and
        grey matter, blood, hemorrhage); None for no second panel.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Outside air is everything outside :func:`ctexplore.geometry.body_mask`
    (so a head holder apart from the head goes too); that labelling costs
    2-3 s on 256 x 512 x 512 voxels, which is why it is off by default.
    Integer volumes are counted with ``np.bincount`` on an int16 view in
    chunks (0.1-0.2 s for 256 x 512 x 512 voxels), never through
    ``plt.hist`` on a flattened float64 copy.

    See Also
    --------
    hu_histogram : the counts without a figure.
    ctexplore.intensity.WINDOWS : the window presets the bands relate to.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> hu = np.full((2, 8, 8), -1000, np.int16)
    >>> hu[:, 2:6, 2:6] = 40
    >>> fig = plot_hu_histogram(Volume(hu, np.eye(4)), exclude_outside=True)
    >>> fig.axes[0].get_title()
    'HU histogram: 32 voxels (outside air excluded)'
    >>> plt.close("all")
    """
    hu = np.asarray(getattr(volume, "hu", volume))
    padding = getattr(volume, "padding", None)
    exclude = None
    excluded: list[str] = []
    if exclude_padding and padding is not None:
        exclude = padding
        excluded.append("padding")
    if exclude_outside:
        from .geometry import body_mask

        outside = ~body_mask(hu)
        exclude = outside if exclude is None else outside | exclude
        excluded.append("outside air")
    edges, counts = hu_histogram(hu, exclude=exclude)
    total = int(counts.sum())

    data_low, data_high = edges[0] + 0.5, edges[-1] - 0.5
    low, high = hu_range or (max(data_low - 50, -1100.0), min(data_high + 50, 2000.0))
    if high <= low:
        low, high = data_low - 50, data_high + 50
    panels = 2 if detail is not None else 1
    fig, axes = plt.subplots(panels, 1, figsize=(9, 3.3 * panels), squeeze=False, layout="constrained")
    ranges = [(low, high)] + ([detail] if detail is not None else [])
    for ax, (panel_low, panel_high) in zip(axes[:, 0], ranges):
        first = int(np.clip(np.searchsorted(edges, panel_low) - 1, 0, len(counts) - 1))
        stop = int(np.clip(np.searchsorted(edges, panel_high) + 1, first + 1, len(counts)))
        shown = counts[first:stop]
        # one polygon of steps: ax.stairs(fill=True) spends ~0.4 s on limits for 4000 bins
        ax.fill_between(
            np.repeat(edges[first : stop + 1], 2)[1:-1],
            np.repeat(shown, 2),
            color="#263238",
            alpha=0.85,
            lw=0,
        )
        ax.set_xlim(panel_low, panel_high)
        peak = max(int(shown.max()), 1)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(0.8, peak * (peak / 0.8) ** 0.4)  # headroom for the band ruler
        else:
            ax.set_ylim(0, peak * 1.4)
        ax.set_ylabel("voxels")
        bands = TISSUE_BANDS
        if detail is not None and ax is axes[0, 0]:
            # the narrow brain bands are labelled in the detail panel; here one band stands for them
            bands = tuple(b for b in TISSUE_BANDS if not (detail[0] <= b[1] and b[2] <= detail[1]))
            bands += (("brain (detail)", detail[0], detail[1], "#b39ddb"),)
        _draw_bands(ax, panel_low, panel_high, bands)
    axes[-1, 0].set_xlabel("Hounsfield units")
    if detail is not None:
        axes[1, 0].set_title(f"detail {detail[0]:g} .. {detail[1]:g} HU", fontsize=9)
    note = f" ({' and '.join(excluded)} excluded)" if excluded else ""
    axes[0, 0].set_title(title or f"HU histogram: {total:,} voxels{note}", fontsize=10)
    return fig


def max_intensity_projection(
    volume: Volume,
    plane: str = "axial",
    *,
    slab: tuple[int, int] | None = None,
) -> np.ndarray:
    """Maximum-intensity projection along a plane's normal, oriented like its slices.

    Parameters
    ----------
    volume : Volume
    plane : {"axial", "coronal", "sagittal"}
        The projection shows this plane; it takes the maximum over the plane
        indices.
    slab : (int, int), optional
        ``(start, stop)`` plane indices to project (a thick-slab MIP);
        default all.

    Returns
    -------
    (height, width) ndarray
        Same dtype as ``volume.hu``; display it with
        ``aspect=plane_geometry(volume, plane).aspect``.

    See Also
    --------
    plot_orthogonal : slices rather than projections.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> axial = np.zeros((4, 4))
    >>> axial[2, 0], axial[1, 1], axial[0, 2], axial[3, 3] = 5.0, 0.5, 0.5, 1.0
    >>> hu = np.zeros((3, 2, 2), np.int16)
    >>> hu[2, 0, 1] = 1200  # bone in the top slice
    >>> max_intensity_projection(Volume(hu, axial), "axial")
    array([[   0, 1200],
           [   0,    0]], dtype=int16)
    >>> int(max_intensity_projection(Volume(hu, axial), "axial", slab=(0, 2)).max())
    0
    """
    geometry = plane_geometry(volume, check_plane(plane))
    start, stop = slab if slab is not None else (0, geometry.n_slices)
    if not 0 <= start < stop <= geometry.n_slices:
        raise ValueError(f"slab {slab} must satisfy 0 <= start < stop <= {geometry.n_slices} ({plane} planes)")
    return _project(volume.hu, geometry, start, stop)


def _project(array: np.ndarray, geometry: PlaneGeometry, start: int, stop: int) -> np.ndarray:
    """Maximum of `array` over planes ``start:stop`` of `geometry`, oriented like its slices."""
    cut: list[slice] = [slice(None)] * 3
    cut[geometry.slice_axis] = slice(start, stop)
    projection = array[tuple(cut)].max(axis=geometry.slice_axis, keepdims=True)
    single = PlaneGeometry(**{**geometry.__dict__, "n_slices": 1})
    return slice_image(projection, single, 0)


def plot_orthogonal(
    volume: Volume,
    point: Sequence[float] | None = None,
    *,
    world: bool = False,
    window: str | tuple[float, float] = "brain",
    mip: bool = False,
    mask: np.ndarray | None = None,
    overlays: Any = None,
    mask_opacity: float = 0.4,
    convention: str = "radiological",
    show_padding: bool = False,
    planes: Sequence[str] = ("axial", "coronal", "sagittal"),
    crosshair_color: str = "#00e676",
    panel_height: float = 3.2,
) -> Figure:
    """Axial, coronal and sagittal planes through one point, with crosshairs.

    Parameters
    ----------
    volume : Volume
    point : (3,) sequence, optional
        Array index ``(slice, row, col)``, or with ``world=True`` patient LPS
        millimetres. Default: the centre of the volume.
    world : bool
        Whether `point` is in patient millimetres.
    window : str or (float, float)
        Preset name or ``(center, width)`` in HU.
    mip : bool
        Show maximum-intensity projections instead of the three planes
        (the crosshairs still mark `point`; overlays are projected too).
    mask : (slices, rows, cols) bool ndarray, optional
        One mask, the same as ``overlays={"mask": mask}``.
    overlays : ndarray, dict of name -> array, or list of Overlay, optional
        Masks or label maps filled in the viewer's colours, with a legend
        naming them (see :func:`ctexplore.viewer.as_overlays`).
    mask_opacity : float
        Opacity of the overlays, 0 to 1.
    convention : {"radiological", "neurological"}
        Radiological: patient right on the image left in axial and coronal
        planes; neurological mirrors them.
    show_padding : bool
        Draw voxels outside the scanner's field of view (``volume.padding``)
        in the padding colour of :func:`ctexplore.view`, so they do not read as air.
    planes : sequence of {"axial", "coronal", "sagittal"}
        The panels, left to right (one plane for the viewer's one-plane layout).
    crosshair_color : str
    panel_height : float
        Height of the tallest panel in inches; panels share one mm scale.

    Returns
    -------
    matplotlib.figure.Figure

    See Also
    --------
    plot_slice_grid : many slices of one plane.
    max_intensity_projection : a projection through a slab.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> axial = np.zeros((4, 4))
    >>> axial[2, 0], axial[1, 1], axial[0, 2], axial[3, 3] = 5.0, 0.5, 0.5, 1.0
    >>> vol = Volume(np.zeros((10, 40, 30), np.int16), axial)
    >>> fig = plot_orthogonal(vol, (2, 10, 20))
    >>> [ax.get_title() for ax in fig.axes]
    ['axial  z = 10.0 mm', 'coronal  y = 5.0 mm', 'sagittal  x = 10.0 mm']
    >>> fig.axes[1].lines[0].get_ydata()  # slice 2 of 10, head up: display row 7
    [7.0, 7.0]
    >>> plt.close("all")
    """
    center, width, window_label = window_setting(window)
    layers = _overlay_layers(volume, mask, overlays)
    padding = volume.padding if show_padding and volume.padding is not None and volume.padding.any() else None
    if point is None:
        index = (np.asarray(volume.shape, dtype=np.float64) - 1) / 2
    else:
        index = np.asarray(point, dtype=np.float64)
        if index.shape != (3,):
            raise ValueError(f"point must have 3 coordinates, got {point!r}")
        if world:
            index = volume.world_to_index(index)
    voxel = np.round(index).astype(int)
    outside = (voxel < 0) | (voxel >= np.asarray(volume.shape))
    if outside.any():
        raise IndexError(
            f"point {tuple(point) if point is not None else None} lies outside the volume "
            f"(array index {tuple(voxel)}, shape {volume.shape})"
        )

    from .viewer import displayed_geometry

    geometries = [displayed_geometry(plane_geometry(volume, check_plane(p)), convention) for p in planes]
    widths_mm = [volume.shape[g.horizontal_axis] * g.pixel_width for g in geometries]
    heights_mm = [volume.shape[g.vertical_axis] * g.pixel_height for g in geometries]
    scale = panel_height / max(heights_mm)
    fig, axes = plt.subplots(
        1,
        len(geometries),
        figsize=(sum(widths_mm) * scale + 0.6, panel_height + 0.8),
        width_ratios=widths_mm,
        squeeze=False,
        layout="constrained",
    )
    for ax, geometry in zip(axes[0], geometries):
        index_in_plane = int(voxel[geometry.slice_axis])
        if mip:
            heading = f"{geometry.plane} MIP"
        else:
            axis, positions = slice_positions(volume, geometry)
            heading = f"{geometry.plane}  {position_label(axis, positions[index_in_plane])}"

        def cut(array: np.ndarray, geometry: PlaneGeometry = geometry, index: int = index_in_plane) -> np.ndarray:
            return _project(array, geometry, 0, geometry.n_slices) if mip else slice_image(array, geometry, index)

        _show_plane(ax, cut(volume.hu), geometry, center, width)
        if padding is not None:
            _draw_padding(ax, cut(padding), geometry.aspect)
        _draw_overlays(ax, [(cut(overlay.data), overlay) for overlay in layers], geometry.aspect, mask_opacity)
        row, col = display_pixel(geometry, volume.shape, tuple(voxel))
        ax.axhline(row, color=crosshair_color, lw=0.8, alpha=0.8)
        ax.axvline(col, color=crosshair_color, lw=0.8, alpha=0.8)
        ax.set_title(heading, fontsize=9)
        _mark_edges(ax, geometry.plane, convention)
    value = volume.hu[tuple(voxel)]
    world_mm = volume.index_to_world(voxel)
    note = _tilt_note(volume)
    fig.suptitle(
        f"voxel {tuple(int(v) for v in voxel)} at "
        f"({world_mm[0]:.1f}, {world_mm[1]:.1f}, {world_mm[2]:.1f}) mm LPS: {value} HU, "
        f"{window_label}" + (f"\n{note}" if note else ""),
        fontsize=9,
    )
    _overlay_legend(fig, layers, mask_opacity, padding is not None)
    return fig
