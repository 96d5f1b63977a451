"""Browse a CT volume in the notebook: an in-browser viewer (anywidget) on top of plain, testable functions.

:func:`view` sends the volume to the page once, as int16 binary buffers (the three
planes through the crosshair first, so the first picture does not wait for the
rest); slicing, windowing, zoom, read-outs and measurements then run in the page
(``static/viewer.js``, canvas 2D, no CDN). The state a notebook or a test needs
(crosshair, plane, window, overlays shown, opacity, measurements) is synced
traitlets. The functions here (:func:`render_plane`, :func:`render_slice`,
:func:`hu_at`, :func:`readout_text`, :func:`display_volume`,
:func:`full_resolution_slab`) are what the page does, written once in Python, and
give the static picture saved with the notebook. Overlay colours are defined here
once (:data:`OVERLAY_COLOURS`, :func:`as_overlays`) and sent to the page with the
volume, so the page, the static pictures and :mod:`ctexplore.plotting` agree.
:func:`save_viewer_html` writes
the same viewer and the volume into one file that needs neither Python nor a
network. Speed: ``python benchmarks/bench_viewer_browser.py``.

anywidget was chosen over ipyniivue (niivue) because the viewer must know CT:
Hounsfield units and windows, padding, the radiological convention by default,
and millimetre read-outs; niivue's WebGL renderer is built for MRI/NIfTI and
shows none of these, and also needs WebGL, which a GPU-less browser emulates slowly.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .intensity import resolve_window
from .planes import (
    PLANES,
    PlaneGeometry,
    check_plane,
    display_pixel,
    plane_geometry,
    position_label,
    slice_image,
    slice_positions,
    voxel_index,
    window_setting,
)

if TYPE_CHECKING:  # pragma: no cover
    from .volume import Volume

__all__ = [
    "EDGE_LETTERS",
    "MARK_COLOURS",
    "OVERLAY_COLOURS",
    "PLANES",
    "CTViewer",
    "Overlay",
    "ViewerState",
    "as_overlays",
    "blend_labels",
    "decimation_factors",
    "display_range",
    "display_size",
    "display_volume",
    "displayed_geometry",
    "encode_png",
    "full_resolution_slab",
    "hu_at",
    "measurement_lines",
    "measurement_outline",
    "plane_geometry",
    "readout_text",
    "render_plane",
    "render_slice",
    "save_viewer_html",
    "slice_image",
    "view",
]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPE = {1: 0, 3: 2, 4: 6}  # channels -> grey, RGB, RGBA


#: Colours (RGB) of the overlays, the one definition for the page and the static pictures: each
#: mask, and each value present in a label map, takes the next one, in the order the overlays are given.
#: None of them is a colour of :data:`MARK_COLOURS` (nor the page's orange of a shape being drawn),
#: so an overlay never reads as a crosshair or a measurement.
OVERLAY_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 40, 40),
    (41, 121, 255),
    (118, 255, 3),
    (255, 193, 7),
    (224, 64, 251),
    (255, 64, 129),
    (0, 150, 136),
)
#: The other colours the page paints with (RGB), sent to it in ``_meta["colours"]``.
MARK_COLOURS: dict[str, tuple[int, int, int]] = {
    "crosshair": (0, 230, 118),
    "measurement": (64, 196, 255),
    "padding": (40, 20, 60),  # padding must not read as air (black)
    "letters": (255, 235, 59),
}
CROSSHAIR_ALPHA = 0.8


@dataclass(frozen=True)
class Overlay:
    """A mask or a label map shown over the volume, with the colour of each of its values.

    Build them with :func:`as_overlays`. ``colours[v]`` is the RGB colour of
    value ``v`` (``colours[0]``, background, is never drawn); ``values`` are
    the nonzero values it holds (``(1,)`` for a mask).
    """

    name: str
    data: np.ndarray
    colours: tuple[tuple[int, int, int], ...]
    values: tuple[int, ...]

    @property
    def is_label_map(self) -> bool:
        """True when the overlay holds values other than 0 and 1."""
        return self.values != (1,)

    def legend(self) -> list[tuple[str, tuple[int, int, int]]]:
        """``(text, colour)`` per entry: the name for a mask, ``"name value"`` for each label of a label map."""
        if not self.is_label_map:
            return [(self.name, self.colours[1])]
        return [(f"{self.name} {value}", self.colours[value]) for value in self.values]

    def page_info(self) -> dict[str, Any]:
        """What the page needs besides the voxels: name, colour table (by value) and legend."""
        return {
            "name": self.name,
            "colours": [list(c) for c in self.colours],
            "legend": [{"text": text, "colour": list(colour)} for text, colour in self.legend()],
        }

    def cut(self, index: Any) -> Overlay:
        """The same overlay (same colours) on part of the grid, ``data[index]``."""
        return replace(self, data=self.data[index])


def _label_values(array: np.ndarray, name: str) -> tuple[int, ...]:
    if array.dtype == bool:
        return (1,)
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(f"overlay {name!r} holds labels outside 0..255; relabel it first")
    present = np.zeros(256, bool)
    flat = array.reshape(-1)
    for start in range(0, flat.size, 1 << 20):  # bincount copies to intp: chunks keep that small
        present |= np.bincount(flat[start : start + (1 << 20)].astype(np.uint8), minlength=256) > 0
    values = tuple(int(v) for v in np.flatnonzero(present[1:]) + 1)
    return values if values and values != (1,) else (1,)


def as_overlays(volume: Volume, overlays: Any) -> list[Overlay]:
    """Masks and label maps, named and coloured: what :func:`view` and the plots take as `overlays`.

    Parameters
    ----------
    volume : Volume
        The overlays must have its shape.
    overlays : ndarray, Volume, dict of name -> array, list of Overlay, or None
        A single array is named ``"mask"``. Boolean arrays (or 0/1) are masks;
        other integer arrays are label maps with values 0..255 (0 is background).

    Returns
    -------
    list of Overlay
        Colours of :data:`OVERLAY_COLOURS` in turn: one per mask, one per label value present.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> vol = Volume(np.zeros((2, 3, 3), np.int16), np.eye(4))
    >>> labels = np.zeros((2, 3, 3), np.uint8)
    >>> labels[0, 0, :2] = [2, 5]
    >>> [o.legend() for o in as_overlays(vol, {"body": vol.hu == 0, "regions": labels})]
    [[('body', (255, 40, 40))], [('regions 2', (41, 121, 255)), ('regions 5', (118, 255, 3))]]
    """
    if overlays is None:
        return []
    if isinstance(overlays, (list, tuple)) and all(isinstance(o, Overlay) for o in overlays):
        for overlay in overlays:
            _check_overlay_shape(volume, overlay.name, overlay.data)
        return list(overlays)
    if isinstance(overlays, np.ndarray) or hasattr(overlays, "hu"):
        overlays = {"mask": overlays}
    built = []
    taken = 0  # colours handed out so far
    for name, array in dict(overlays).items():
        array = np.asarray(getattr(array, "hu", array))
        _check_overlay_shape(volume, name, array)
        values = _label_values(array, name)
        colours = [(0, 0, 0)] * (max(values) + 1)
        for value in values:
            colours[value] = OVERLAY_COLOURS[taken % len(OVERLAY_COLOURS)]
            taken += 1
        built.append(Overlay(str(name), array, tuple(colours), values))
    return built


def _check_overlay_shape(volume: Volume, name: str, array: np.ndarray) -> None:
    if array.shape != volume.shape:
        raise ValueError(
            f"overlay {name!r} has shape {array.shape}, the volume {volume.shape}; "
            "give one value per voxel (a mask or a label map)"
        )


def blend_labels(
    rgb: np.ndarray, labels: np.ndarray, colours: tuple[tuple[int, int, int], ...], opacity: float
) -> None:
    """Blend ``colours[label]`` into the uint8 RGB image `rgb` (in place) where `labels` is nonzero.

    The page's arithmetic: ``out = pixel * (1 - opacity) + colour * opacity``,
    rounded half to even as a ``Uint8ClampedArray`` does.

    Examples
    --------
    >>> import numpy as np
    >>> rgb = np.full((1, 2, 3), 100, np.uint8)
    >>> blend_labels(rgb, np.array([[0, 1]]), ((0, 0, 0), (255, 0, 0)), 0.5)
    >>> rgb[0].tolist()
    [[100, 100, 100], [178, 50, 50]]
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1, got {opacity}")
    if not labels.any():
        return
    # one lookup table per colour and channel, of every grey level: out = lut[label, channel, in]
    levels = np.arange(256, dtype=np.float64)
    table = np.asarray(colours, np.float64)
    lut = np.rint(levels * (1.0 - opacity) + table[:, :, None] * opacity).astype(np.uint8)
    lut[0] = levels.astype(np.uint8)  # background: unchanged
    index = labels.view(np.uint8) if labels.dtype == bool else labels.astype(np.intp) % len(table)
    for channel in range(3):
        rgb[..., channel] = lut[index, channel, rgb[..., channel]]


def display_range(center: float, width: float) -> tuple[float, float]:
    """HU shown as black and as white by the window (`center`, `width`).

    Examples
    --------
    >>> display_range(40, 80)
    (0.0, 80.0)
    """
    center, width = resolve_window((center, width))
    return center - width / 2, center + width / 2


def render_slice(
    hu_slice: np.ndarray,
    center: float,
    width: float,
    mask_slice: np.ndarray | None = None,
    opacity: float = 0.4,
    color: tuple[int, int, int] = OVERLAY_COLOURS[0],
) -> np.ndarray:
    """Window one 2-D slice to display grey levels, with an optional mask overlay.

    Parameters
    ----------
    hu_slice : (height, width) ndarray
        Hounsfield units.
    center, width : float
        Window in HU (see :func:`display_range`).
    mask_slice : (height, width) ndarray, optional
        Nonzero where `color` is blended in with `opacity`.
    opacity : float
        0 (mask invisible) to 1 (mask opaque).
    color : (int, int, int)

    Returns
    -------
    ndarray
        (height, width) uint8 grey without a mask, (height, width, 3) uint8 RGB with one.

    See Also
    --------
    render_plane : a plane as the viewer paints it, with several overlays, crosshair and measurements.

    Examples
    --------
    >>> import numpy as np
    >>> hu = np.array([[-1000, 0, 40, 80, 1000]], dtype=np.int16)
    >>> render_slice(hu, 40, 80)
    array([[  0,   0, 128, 255, 255]], dtype=uint8)
    >>> render_slice(hu, 40, 80, mask_slice=hu == 40, opacity=0.5)[0, 2]
    array([192,  84,  84], dtype=uint8)
    """
    from .intensity import window

    grey = window(hu_slice, center, width, dtype=np.uint8)
    if mask_slice is None:
        return grey
    if mask_slice.shape != grey.shape:
        raise ValueError(f"mask slice shape {mask_slice.shape} differs from {grey.shape}")
    rgb = np.repeat(grey[..., None], 3, axis=2)
    blend_labels(rgb, mask_slice.astype(bool, copy=False), ((0, 0, 0), color), opacity)
    return rgb


def encode_png(image: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG bytes of a uint8 grey, RGB or RGBA image (zlib only, ~2 ms for 512 x 512).

    Level 1 with no row filter is the fastest choice measured here; higher
    levels or PNG row filters save under 10 % of the bytes for 2-3x the time.

    Examples
    --------
    >>> import numpy as np
    >>> png = encode_png(np.zeros((2, 3), np.uint8))
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n", int.from_bytes(png[16:20], "big")  # width
    (True, 3)
    """
    if image.dtype != np.uint8:
        raise TypeError(f"PNG encoding needs uint8, got {image.dtype}")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if image.ndim not in (2, 3) or channels not in _PNG_COLOUR_TYPE:
        raise ValueError(f"expected (h, w), (h, w, 3) or (h, w, 4), got shape {image.shape}")
    height, width = image.shape[:2]
    rows = np.empty((height, width * channels + 1), np.uint8)
    rows[:, 0] = 0  # filter type "none" for every row
    rows[:, 1:] = image.reshape(height, width * channels)

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOUR_TYPE[channels], 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), compress_level))
        + chunk(b"IEND", b"")
    )


def hu_at(volume: Volume, plane: str, index: int, row: int, col: int) -> tuple[float | int, tuple[int, int, int]]:
    """HU value under displayed pixel (`row`, `col`) of plane `index`, and its array index.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> axial = np.zeros((4, 4))
    >>> axial[2, 0], axial[1, 1], axial[0, 2], axial[3, 3] = 5.0, 0.5, 0.5, 1.0
    >>> hu = np.zeros((3, 4, 5), np.int16)
    >>> hu[2, 1, 4] = 70  # top slice
    >>> hu_at(Volume(hu, axial), "coronal", 1, 0, 4)  # coronal row 0 is the top slice
    (70, (2, 1, 4))
    """
    geometry = plane_geometry(volume, plane)
    voxel = voxel_index(geometry, volume.shape, index, row, col)
    return volume.hu[voxel].item(), voxel


def display_size(geometry: PlaneGeometry, shape: tuple[int, int, int], longest_side: int = 512) -> tuple[int, int]:
    """``(width, height)`` in screen pixels that shows the plane with square millimetres.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> axial = np.zeros((4, 4))
    >>> axial[2, 0], axial[1, 1], axial[0, 2], axial[3, 3] = 5.0, 0.5, 0.5, 1.0
    >>> vol = Volume(np.zeros((40, 512, 512), np.int16), axial)
    >>> display_size(plane_geometry(vol, "coronal"), vol.shape)  # 256 mm wide, 200 mm tall
    (512, 400)
    """
    width_mm = shape[geometry.horizontal_axis] * geometry.pixel_width
    height_mm = shape[geometry.vertical_axis] * geometry.pixel_height
    scale = longest_side / max(width_mm, height_mm)
    return max(1, round(width_mm * scale)), max(1, round(height_mm * scale))


@dataclass(frozen=True)
class ViewerState:
    """Everything the picture and the readout depend on.

    ``probe_row`` and ``probe_col`` are displayed-pixel coordinates of the
    HU readout in the current plane.
    """

    plane: str
    index: int
    center: float
    width: float
    window_name: str
    probe_row: int
    probe_col: int
    opacity: float = 0.4


def readout_text(volume: Volume, state: ViewerState) -> str:
    """One line describing the current slice, window and probed pixel.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> axial = np.zeros((4, 4))
    >>> axial[2, 0], axial[1, 1], axial[0, 2], axial[3, 3] = 5.0, 0.5, 0.5, 1.0
    >>> vol = Volume(np.full((40, 8, 8), 42, np.int16), axial)
    >>> readout_text(vol, ViewerState("axial", 7, 40, 80, "brain", 3, 5))
    'axial 7/39 | z = 35.0 mm | HU at (row 3, col 5) = 42 | brain 40/80'
    """
    geometry = plane_geometry(volume, state.plane)
    axis, positions = slice_positions(volume, geometry)
    value, _ = hu_at(volume, state.plane, state.index, state.probe_row, state.probe_col)
    shown = f"{value:.1f}" if isinstance(value, float) else f"{value}"
    return (
        f"{state.plane} {state.index}/{geometry.n_slices - 1} | "
        f"{position_label(axis, positions[state.index])} | "
        f"HU at (row {state.probe_row}, col {state.probe_col}) = {shown} | "
        f"{state.window_name} {state.center:g}/{state.width:g}"
    )


def displayed_geometry(geometry: PlaneGeometry, convention: str = "radiological") -> PlaneGeometry:
    """The plane as shown in `convention`: ``"neurological"`` mirrors axial and coronal planes left-right.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> vol = Volume(np.zeros((2, 3, 4), np.int16), np.diag([-1.0, -1.0, 1.0, 1.0])[[2, 1, 0, 3]])
    >>> axial = plane_geometry(vol, "axial")
    >>> axial.flip_horizontal, displayed_geometry(axial, "neurological").flip_horizontal
    (False, True)
    """
    if _check_convention(convention) == "radiological" or geometry.plane == "sagittal":
        return geometry
    return replace(geometry, flip_horizontal=not geometry.flip_horizontal)


def _check_convention(convention: str) -> str:
    if convention not in ("radiological", "neurological"):
        raise ValueError(f"convention must be 'radiological' or 'neurological', got {convention!r}")
    return convention


def measurement_outline(measurement: dict[str, Any], columns: int, convention: str) -> np.ndarray:
    """``(n, 2)`` display ``(row, col)`` vertices of a measurement made in the page, drawn in `convention`.

    `measurement` is one entry of the viewer's ``measurements``: ``kind``
    (``"line"``, ``"box"`` or ``"ellipse"``) and ``pixels`` ``[row0, col0,
    row1, col1]`` in the displayed plane of ``columns`` columns, in the
    convention it was made in (its ``"convention"``, else `convention`).

    Examples
    --------
    >>> line = {"kind": "line", "pixels": [2, 1, 2, 5], "convention": "neurological"}
    >>> measurement_outline(line, 10, "radiological").tolist()
    [[2.0, 8.0], [2.0, 4.0]]
    >>> measurement_outline({"kind": "box", "pixels": [0, 0, 2, 3]}, 10, "radiological").tolist()
    [[0.0, 0.0], [0.0, 3.0], [2.0, 3.0], [2.0, 0.0], [0.0, 0.0]]
    """
    r0, c0, r1, c1 = (float(v) for v in measurement["pixels"])
    if measurement.get("convention", convention) != convention and measurement.get("plane") != "sagittal":
        c0, c1 = columns - 1 - c0, columns - 1 - c1
    kind = measurement["kind"]
    if kind == "line":
        return np.array([[r0, c0], [r1, c1]])
    if kind == "box":
        return np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0], [r0, c0]])
    if kind == "ellipse":
        angle = np.linspace(0.0, 2 * np.pi, 65)
        rows = (r0 + r1) / 2 + abs(r1 - r0) / 2 * np.sin(angle)
        cols = (c0 + c1) / 2 + abs(c1 - c0) / 2 * np.cos(angle)
        return np.stack([rows, cols], axis=1)
    raise ValueError(f"measurement kind must be 'line', 'box' or 'ellipse', got {kind!r}")


def _rasterise(outline: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the pixels along a polyline, clipped to `shape`."""
    starts, ends = outline[:-1], outline[1:]
    counts = np.ceil(np.abs(ends - starts).max(axis=1)).astype(int) + 1
    fractions = np.concatenate([np.linspace(0.0, 1.0, n) for n in counts])
    first = np.repeat(starts, counts, axis=0)
    points = np.rint(first + (np.repeat(ends, counts, axis=0) - first) * fractions[:, None]).astype(int)
    keep = (points >= 0).all(axis=1) & (points[:, 0] < shape[0]) & (points[:, 1] < shape[1])
    return points[keep, 0], points[keep, 1]


def render_plane(
    volume: Volume,
    plane: str,
    crosshair: tuple[int, int, int],
    center: float,
    width: float,
    *,
    overlays: Any = None,
    visible: list[bool] | None = None,
    opacity: float = 0.4,
    convention: str = "radiological",
    measurements: Sequence[dict[str, Any]] = (),
) -> np.ndarray:
    """One plane through `crosshair` as the page paints it, in numpy: (height, width, 3) uint8 RGB.

    Windowed grey, padding in its own colour, the visible overlays blended
    with `opacity` (:func:`blend_labels`), the crosshair lines (with a gap
    around the point) and the outlines of the measurements made on this slice.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> vol = Volume(np.zeros((3, 20, 20), np.int16), np.eye(4)[[2, 1, 0, 3]])
    >>> rgb = render_plane(vol, "axial", (1, 10, 10), 40, 80, overlays=vol.hu == 0, opacity=1.0)
    >>> rgb[0, 0].tolist(), rgb[0, 10].tolist()  # the mask's colour; the crosshair's column over it
    ([255, 40, 40], [51, 192, 102])
    """
    geometry = displayed_geometry(plane_geometry(volume, plane), convention)
    index = int(crosshair[geometry.slice_axis])
    grey = render_slice(slice_image(volume.hu, geometry, index), center, width)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if volume.padding is not None:
        rgb[slice_image(volume.padding, geometry, index)] = MARK_COLOURS["padding"]
    layers = as_overlays(volume, overlays)
    for overlay, shown in zip(layers, visible if visible is not None else [True] * len(layers)):
        if shown:
            blend_labels(rgb, slice_image(overlay.data, geometry, index), overlay.colours, opacity)
    height, width_px = grey.shape
    row, col = (int(v) for v in display_pixel(geometry, volume.shape, crosshair))
    gap = max(2, round(0.015 * max(height, width_px)))
    line = np.zeros(grey.shape, bool)
    line[row, :] = True
    line[:, col] = True
    line[max(0, row - gap) : row + gap + 1, max(0, col - gap) : col + gap + 1] = False
    crosshair_colour = np.asarray(MARK_COLOURS["crosshair"], np.float64)
    rgb[line] = np.rint(rgb[line] * (1 - CROSSHAIR_ALPHA) + crosshair_colour * CROSSHAIR_ALPHA).astype(np.uint8)
    for measurement in measurements:
        if measurement.get("plane") == plane and measurement.get("index") == index:
            rows, cols = _rasterise(measurement_outline(measurement, width_px, convention), grey.shape)
            rgb[rows, cols] = MARK_COLOURS["measurement"]
    return rgb


def measurement_lines(measurements: list[dict[str, Any]]) -> list[str]:
    """One line per measurement, as the page lists them: ``"#1 axial 12: 34.5 mm"``.

    Examples
    --------
    >>> measurement_lines([{"kind": "line", "plane": "axial", "index": 12, "text": "34.5 mm"}])
    ['#1 axial 12: 34.5 mm']
    """
    return [f"#{i} {m.get('plane')} {m.get('index')}: {m.get('text', '')}" for i, m in enumerate(measurements, 1)]


_STATIC_DIR = Path(__file__).with_name("static")
#: Volumes up to this many bytes go to the page at full resolution; bigger ones are decimated.
FULL_RESOLUTION_BYTES = 256 * 1024 * 1024
#: Limit of the volume embedded by :func:`save_viewer_html` (base64 adds a third).
HTML_EXPORT_BYTES = 48 * 1024 * 1024
#: Per plane, the orientation letters at its (left, right, top, bottom) edges, radiological convention.
EDGE_LETTERS = {
    "axial": ("R", "L", "A", "P"),
    "coronal": ("R", "L", "S", "I"),
    "sagittal": ("A", "P", "S", "I"),
}


def decimation_factors(shape: tuple[int, int, int], itemsize: int, limit: int) -> tuple[int, int, int]:
    """Integer steps per axis that bring ``prod(shape) * itemsize`` under `limit` bytes.

    In-plane axes are thinned first (they are the finest), slices last.

    Examples
    --------
    >>> decimation_factors((256, 512, 512), 2, 256 * 2**20)
    (1, 1, 1)
    >>> decimation_factors((256, 512, 512), 2, 48 * 2**20)
    (1, 2, 2)
    """
    steps = [1, 1, 1]
    order = [1, 2, 0]
    turn = 0
    while np.prod([-(-n // s) for n, s in zip(shape, steps)]) * itemsize > limit:
        steps[order[turn % 3]] += 1
        turn += 1
        if turn > 3000:  # pragma: no cover - limit below one voxel
            raise ValueError(f"limit of {limit} bytes is too small for any volume")
    return tuple(steps)  # type: ignore[return-value]


def display_volume(volume: Volume, limit: int = FULL_RESOLUTION_BYTES) -> tuple[Volume, str]:
    """The volume the page receives: int16 HU, tilt corrected, decimated beyond `limit` bytes.

    Returns the volume and a note saying what was changed ("" when nothing was).

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> axial = np.zeros((4, 4))
    >>> axial[2, 0], axial[1, 1], axial[0, 2], axial[3, 3] = 5.0, 0.5, 0.5, 1.0
    >>> shown, note = display_volume(Volume(np.zeros((4, 8, 8), np.float32) + 0.4, axial), limit=200)
    >>> shown.hu.dtype, shown.shape, note
    (dtype('int16'), (4, 4, 4), 'HU rounded to whole units for display; every 1st slice, 2nd row, 2nd column shown (volume over 200 bytes)')
    """
    notes = []
    if volume.is_tilted:
        from .geometry import correct_tilt

        notes.append(f"gantry tilt {volume.gantry_tilt:.1f}° corrected for display (ctexplore.correct_tilt)")
        volume = correct_tilt(volume)
    hu = volume.hu
    if hu.dtype != np.int16:
        if np.issubdtype(hu.dtype, np.integer) and hu.min() >= -32768 and hu.max() <= 32767:
            hu = hu.astype(np.int16)
        else:
            hu = np.clip(np.rint(hu), -32768, 32767).astype(np.int16)
            notes.append("HU rounded to whole units for display")
    steps = decimation_factors(volume.shape, 2, limit)
    affine = volume.affine
    padding = volume.padding
    if steps != (1, 1, 1):
        cut = tuple(slice(None, None, s) for s in steps)
        hu = hu[cut]
        padding = None if padding is None else padding[cut]
        affine = affine.copy()
        affine[:3, :3] = affine[:3, :3] * np.asarray(steps, dtype=np.float64)
        names = ("slice", "row", "column")
        notes.append(
            "every "
            + ", ".join(f"{_ordinal(s)} {n}" for s, n in zip(steps, names))
            + f" shown (volume over {limit} bytes)"
        )
    shown = volume.with_hu(np.ascontiguousarray(hu), affine, padding=padding)
    return shown, "; ".join(notes)


def full_resolution_slab(volume: Volume, slice_index: int, limit: int = FULL_RESOLUTION_BYTES) -> tuple[Volume, str]:
    """The whole slices of `volume` around `slice_index` that fit in `limit` bytes of int16, undecimated.

    What the viewer sends when a decimated preview is asked for full resolution:
    every voxel of as many stored slices as fit, centred on `slice_index`
    (shifted to stay inside the volume). Returns the slab, prepared as
    :func:`display_volume` does, and a note naming the slices it holds.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> vol = Volume(np.zeros((100, 64, 64), np.int16), np.diag([2.0, 0.5, 0.5, 1.0]))
    >>> slab, note = full_resolution_slab(vol, 95, limit=20 * 64 * 64 * 2)
    >>> slab.shape, float(slab.index_to_world([0, 0, 0])[0]), note
    ((20, 64, 64), 160.0, 'full resolution: stored slices 80-99 of 100 (the slab around the crosshair)')
    """
    slice_bytes = volume.shape[1] * volume.shape[2] * 2
    if slice_bytes > limit:
        raise ValueError(
            f"one {volume.shape[1]} x {volume.shape[2]} slice is {slice_bytes} bytes of int16, over the "
            f"limit of {limit}; pass a larger max_bytes to view()"
        )
    count = min(volume.shape[0], limit // slice_bytes)
    first = int(np.clip(slice_index - count // 2, 0, volume.shape[0] - count))
    cut = slice(first, first + count)
    affine = volume.affine.copy()
    affine[:3, 3] = volume.index_to_world(np.array([first, 0, 0]))
    padding = None if volume.padding is None else volume.padding[cut]
    slab, note = display_volume(volume.with_hu(volume.hu[cut], affine, padding=padding), limit=2**62)
    where = f"full resolution: stored slices {first}-{first + count - 1} of {volume.shape[0]} (the slab around the crosshair)"
    return slab, "; ".join(filter(None, [where, note]))


def _ordinal(n: int) -> str:
    return f"{n}{'st' if n == 1 else 'nd' if n == 2 else 'rd' if n == 3 else 'th'}"


def _viewer_meta(
    volume: Volume, window: tuple[float, float, str], note: str, resolution: str = "full"
) -> dict[str, Any]:
    planes = {}
    for plane in PLANES:
        geometry = plane_geometry(volume, plane)
        axis, positions = slice_positions(volume, geometry)
        planes[plane] = {
            "slice_axis": geometry.slice_axis,
            "vertical_axis": geometry.vertical_axis,
            "horizontal_axis": geometry.horizontal_axis,
            "flip_vertical": geometry.flip_vertical,
            "flip_horizontal": geometry.flip_horizontal,
            "n_slices": geometry.n_slices,
            "pixel_height": geometry.pixel_height,
            "pixel_width": geometry.pixel_width,
            "position_axis": axis,
            "positions": [round(float(p), 3) for p in positions],
        }
    letters = {p: dict(zip(("left", "right", "top", "bottom"), v)) for p, v in EDGE_LETTERS.items()}
    return {
        "shape": list(volume.shape),
        "planes": planes,
        "letters": letters,
        "initial_window": list(window),
        "note": note,
        "banner": "",
        "resolution": resolution,  # "full", "preview" (decimated) or "slab" (full resolution, part of it)
        "colours": {name: list(colour) for name, colour in MARK_COLOURS.items()},
        "crosshair_alpha": CROSSHAIR_ALPHA,
    }


#: Bytes of int16 per volume message after the first (the three planes through the crosshair)
CHUNK_BYTES = 16 * 2**20


def _as_uint8(array: np.ndarray) -> np.ndarray:
    """A mask or label map as uint8 for the page; a view, not a copy, for a contiguous bool mask."""
    if array.dtype == bool and array.flags.c_contiguous:
        return array.view(np.uint8)
    return np.ascontiguousarray(array, dtype=np.uint8)


def _buffer(array: np.ndarray) -> memoryview:
    """Bytes of `array` for a comm message (a view when it is contiguous, else a copy)."""
    return memoryview(np.ascontiguousarray(array)).cast("B")  # type: ignore[arg-type]


def _page_volume(volume: Volume, overlays: Any, limit: int) -> tuple[Volume, str, list[Overlay], str]:
    """What a page gets: the display volume, its note, the overlays on its grid, and its resolution."""
    built = as_overlays(volume, overlays)
    if built and volume.is_tilted:
        raise ValueError(
            "overlays on a gantry-tilted volume would not line up with the tilt-corrected picture: "
            "correct the tilt first (ctexplore.correct_tilt) and build the masks on the corrected volume"
        )
    shown, note = display_volume(volume, limit)
    steps = decimation_factors(volume.shape, 2, limit)
    if steps != (1, 1, 1):
        built = [overlay.cut(tuple(slice(None, None, s) for s in steps)) for overlay in built]
    return shown, note, built, "full" if steps == (1, 1, 1) else "preview"


def _moved_voxel(voxel: Any, source: Volume, target: Volume) -> list[int]:
    """The voxel of `target` at the patient position of `voxel` of `source` (clipped to the grid)."""
    index = np.rint(target.world_to_index(source.index_to_world(np.asarray(voxel, np.float64))))
    return [int(v) for v in np.clip(index, 0, np.asarray(target.shape) - 1)]


try:  # the widget needs anywidget; the functions above do not
    import anywidget
    import traitlets
except ImportError:  # pragma: no cover
    anywidget = None  # type: ignore[assignment]


if anywidget is not None:

    class CTViewer(anywidget.AnyWidget):
        """In-browser CT viewer; build it with :func:`view`.

        Synced state (read and set it from Python): ``crosshair`` (array voxel
        ``[slice, row, col]``, which also fixes the slice of every plane),
        ``plane`` (main plane), ``plane_layout`` (``"three"`` or ``"one"``),
        ``center``/``width``/``window_name``, ``convention``, ``opacity``,
        ``overlay_visible`` and ``measurements`` (made in the page).
        The page sends what the user changed once input pauses for 150 ms (at
        least once a second while it goes on): messages to the kernel while the
        wheel turns would delay the page's own next step. Until then the page's
        value stands, also against an older value coming back from the kernel.
        The volume itself is never synced state: the page asks for it once by
        a custom message and gets it as binary buffers. For a volume over
        ``max_bytes`` (a thinned preview), :meth:`show_full_resolution` sends
        the full-resolution slab around the crosshair and :meth:`show_preview`
        goes back; the page's button does the same.
        """

        _esm = _STATIC_DIR / "viewer.js"
        _css = _STATIC_DIR / "viewer.css"
        _meta = traitlets.Dict().tag(sync=True)
        _static_id = traitlets.Unicode().tag(sync=True)
        crosshair = traitlets.List(traitlets.Int(), minlen=3, maxlen=3).tag(sync=True)
        plane = traitlets.Enum(PLANES, default_value="axial").tag(sync=True)
        # not ``layout``: DOMWidget's ``layout`` is its CSS Layout widget
        plane_layout = traitlets.Enum(("three", "one"), default_value="three").tag(sync=True)
        center = traitlets.Float(40.0).tag(sync=True)
        width = traitlets.Float(80.0).tag(sync=True)
        window_name = traitlets.Unicode("brain").tag(sync=True)
        convention = traitlets.Enum(("radiological", "neurological"), default_value="radiological").tag(sync=True)
        opacity = traitlets.Float(0.4).tag(sync=True)
        overlay_visible = traitlets.List(traitlets.Bool()).tag(sync=True)
        measurements = traitlets.List(traitlets.Dict()).tag(sync=True)

        def __init__(
            self,
            volume: Volume,
            overlays: Any = None,
            *,
            plane: str = "axial",
            window: str | tuple[float, float] = "brain",
            index: int | None = None,
            layout: str = "three",
            opacity: float = 0.4,
            max_bytes: int = FULL_RESOLUTION_BYTES,
        ) -> None:
            import uuid

            # references, not copies: full resolution on demand cuts its slab from these
            self._source = volume
            self._source_overlays = as_overlays(volume, overlays)
            shown, note, self.overlays, resolution = _page_volume(volume, self._source_overlays, max_bytes)
            self.volume = shown  # what the page shows; the same array when no conversion was needed
            self._max_bytes = max_bytes
            self._preview = (shown, note, self.overlays)
            center, width, _ = window_setting(window)
            name = window if isinstance(window, str) else "custom"
            crosshair = [n // 2 for n in shown.shape]
            if index is not None:
                geometry = plane_geometry(shown, plane)
                crosshair[geometry.slice_axis] = int(index)
            super().__init__(
                _meta=_viewer_meta(shown, (center, width, name), note, resolution),
                _static_id=uuid.uuid4().hex,
                crosshair=crosshair,
                plane=plane,
                plane_layout=layout,
                center=center,
                width=width,
                window_name=name,
                opacity=opacity,
                overlay_visible=[True] * len(self.overlays),
            )
            self.on_msg(self._on_message)
            self._static_handle: Any = None

        @property
        def state(self) -> ViewerState:
            """The main plane's slice, window and crosshair as a :class:`ViewerState`."""
            geometry = plane_geometry(self.volume, self.plane)
            k, j, i = self.crosshair
            row, col = display_pixel(geometry, self.volume.shape, (k, j, i))
            return ViewerState(
                self.plane,
                self.crosshair[geometry.slice_axis],
                self.center,
                self.width,
                self.window_name,
                int(row),
                int(col),
                self.opacity,
            )

        def _on_message(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
            if content.get("type") == "ping":
                self.send({"type": "pong"})
            elif content.get("type") == "request_volume":
                self._send_volume(rest=False)
            elif content.get("type") == "request_rest":  # sent once the page has painted the three planes
                self._send_volume(rest=True)
            elif content.get("type") == "request_full":
                self.show_full_resolution()
            elif content.get("type") == "request_preview":
                self.show_preview()

        def show_full_resolution(self) -> None:
            """Send the page every voxel of the slices around the crosshair (what its button asks for).

            A decimated preview (volume over ``max_bytes``) is replaced by the
            full-resolution slab of :func:`full_resolution_slab`, centred on the
            crosshair; :meth:`show_preview` goes back to the whole volume.
            """
            world = self.volume.index_to_world(np.asarray(self.crosshair))
            centre = int(np.clip(np.rint(self._source.world_to_index(world)[0]), 0, self._source.shape[0] - 1))
            slab, note = full_resolution_slab(self._source, centre, self._max_bytes)
            first = int(np.rint(self._source.world_to_index(slab.index_to_world(np.zeros(3)))[0]))
            overlays = [overlay.cut(slice(first, first + slab.shape[0])) for overlay in self._source_overlays]
            self._switch_grid(slab, note, overlays, "slab", world)

        def show_preview(self) -> None:
            """Go back to the (decimated) whole volume after :meth:`show_full_resolution`."""
            shown, note, overlays = self._preview
            self._switch_grid(shown, note, overlays, "preview", None)

        def _switch_grid(self, shown: Volume, note: str, overlays: list[Overlay], resolution: str, world: Any) -> None:
            if world is None:
                world = self.volume.index_to_world(np.asarray(self.crosshair))
            index = np.clip(np.rint(shown.world_to_index(world)), 0, np.asarray(shown.shape) - 1).astype(int)
            self.volume, self.overlays = shown, overlays
            initial = self._meta["initial_window"]
            with self.hold_sync():
                self._meta = _viewer_meta(shown, tuple(initial), note, resolution)
                self.crosshair = [int(i) for i in index]
            self._send_volume(rest=False)

        def _volume_messages(self) -> Iterator[tuple[dict[str, Any], list[memoryview]]]:
            """The volume as custom messages: the three planes through the crosshair, then slabs of slices.

            The page paints the first message at once (the first picture does not
            wait for the whole volume), then asks for the slabs and fills them into
            one preallocated array. HU buffers are views of the array, not copies; a
            mask that is not a contiguous bool array is converted one slab at a time,
            as its message is made.
            """
            mask = self.volume.padding
            padding = mask is not None and bool(mask.any())
            masks = ([mask] if mask is not None and padding else []) + [overlay.data for overlay in self.overlays]

            def pieces(index: Any) -> list[memoryview]:
                # masks become uint8 piece by piece: a loader's padding is often a broadcast view
                return [_buffer(self.volume.hu[index])] + [_buffer(_as_uint8(m[index])) for m in masks]

            overlays = [overlay.page_info() for overlay in self.overlays]
            k, j, i = self.crosshair
            by_plane = [pieces(index) for index in (k, np.s_[:, j], np.s_[:, :, i])]
            planes = [by_plane[axis][layer] for layer in range(1 + len(masks)) for axis in range(3)]
            yield {"type": "volume_start", "padding": padding, "overlays": overlays, "crosshair": [k, j, i]}, planes
            n_slices = self.volume.shape[0]
            step = max(1, CHUNK_BYTES // (self.volume.hu[0].size * 2))
            for first in range(0, n_slices, step):
                count = min(step, n_slices - first)
                yield {"type": "volume_chunk", "first": first, "count": count}, pieces(np.s_[first : first + count])

        def _send_volume(self, rest: bool, pushed: bool = False) -> None:
            # the planes alone first: 128 MiB of slabs queued behind them would delay the first picture
            messages = self._volume_messages()
            start, planes = next(messages)
            if not rest:
                if pushed:  # unasked for: the page stores it for the view that is about to be made
                    start["pushed"] = True
                self.send(start, planes)
                return
            for message, buffers in messages:  # each slab made just before it goes out
                self.send(message, buffers)

        # --- pictures without a kernel --------------------------------------------------
        def _visible_overlays(self) -> list[Overlay]:
            flags = list(self.overlay_visible) + [True] * (len(self.overlays) - len(self.overlay_visible))
            return [overlay for overlay, shown in zip(self.overlays, flags) if shown]

        def _caption(self) -> str:
            """Plane, slice, window and HU readout, then the visible overlays and the measurements."""
            parts = [readout_text(self.volume, self.state)]
            if self.overlays:
                shown = ", ".join(o.name for o in self._visible_overlays()) or "none"
                parts.append(f"overlays shown: {shown} (opacity {self.opacity:g})")
            parts += measurement_lines(self.measurements)
            return "; ".join(parts)

        def static_png(self, dpi: int = 90) -> bytes:
            """PNG of what the page shows: the three planes through the crosshair (the main plane in the
            one-plane layout) with the visible overlays (their colours, opacity and a legend), padding, the
            measurements made in the page, window, slice and letters."""
            import io

            import matplotlib.pyplot as plt

            from .plotting import plot_orthogonal

            figure = plot_orthogonal(
                self.volume,
                tuple(self.crosshair),
                window=(self.center, self.width),
                overlays=self._visible_overlays(),
                mask_opacity=self.opacity,
                convention=self.convention,
                show_padding=True,
                planes=self._shown_planes(),
                panel_height=3.0,
            )
            self._draw_measurements(figure)
            figure.suptitle(
                f"{readout_text(self.volume, self.state)}\n(static picture; run the cell for the live viewer)",
                fontsize=8,
            )
            if self.measurements:  # listed under the panels, which keep their size
                lines = measurement_lines(self.measurements)
                width, height = figure.get_size_inches()
                figure.set_size_inches(width, height + 0.16 * len(lines))
                figure.supxlabel("\n".join(lines), fontsize=8, color="#0277bd")
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=dpi)  # constrained layout: "tight" would render twice
            plt.close(figure)
            return buffer.getvalue()

        def _shown_planes(self) -> tuple[str, ...]:
            """The planes the page shows: all three, or the main plane in the one-plane layout."""
            return (self.plane,) if self.plane_layout == "one" else PLANES

        def _draw_measurements(self, figure: Any) -> None:
            """The page's measurements on the panels of their plane and slice, outline and text."""
            colour = np.asarray(MARK_COLOURS["measurement"]) / 255
            for ax, plane in zip(figure.axes, self._shown_planes()):
                geometry = plane_geometry(self.volume, plane)
                columns = self.volume.shape[geometry.horizontal_axis]
                for number, m in enumerate(self.measurements, 1):
                    if m.get("plane") != plane or m.get("index") != self.crosshair[geometry.slice_axis]:
                        continue
                    outline = measurement_outline(m, columns, self.convention)
                    ax.plot(outline[:, 1], outline[:, 0], color=colour, lw=1.5, scalex=False, scaley=False)
                    # a line's length fits beside it; a region's statistics are in the list below the panels
                    label = f"#{number} {m.get('text', '')}" if m.get("kind") == "line" else f"#{number}"
                    ax.annotate(
                        label,
                        (outline[:, 1].max(), outline[:, 0].min()),
                        xytext=(3, 3),
                        textcoords="offset points",
                        color=colour,
                        fontsize=7,
                        clip_on=True,
                    ).set_in_layout(False)

        def _quick_png(self) -> bytes:
            """The main plane as the page paints it, in numpy (milliseconds): the stand-in picture."""
            rgb = render_plane(
                self.volume,
                self.plane,
                (self.crosshair[0], self.crosshair[1], self.crosshair[2]),
                self.center,
                self.width,
                overlays=self.overlays,
                visible=list(self.overlay_visible),
                opacity=self.opacity,
                convention=self.convention,
                measurements=list(self.measurements),
            )
            return encode_png(rgb)

        def _static_bundle(self, quick: bool = False) -> dict[str, Any]:
            import base64
            import html

            if quick:  # the main plane painted with numpy (milliseconds), sized for square millimetres
                width, height = display_size(plane_geometry(self.volume, self.plane), self.volume.shape)
                png, size = self._quick_png(), f' width="{width}" height="{height}"'
            else:
                png, size = self.static_png(), ""
            alt = html.escape(f"ctexplore viewer {self._static_id}: {self._caption()}", quote=True)
            tag = f'<img alt="{alt}"{size} src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            return {"text/html": tag, "image/png": png, "text/plain": html.unescape(alt)}

        def _repr_mimebundle_(self, **kwargs: Any) -> Any:
            # nbconvert shows only the widget view of an output once widget state is saved,
            # so the static picture is its own output; the live widget hides it in the page
            from IPython import get_ipython
            from IPython.display import display

            # the planes go out before any static picture: the page keeps them until its view exists.
            # In IPython the labelled matplotlib picture (0.3-0.8 s) replaces a quick one after the
            # cell, so the kernel is not busy drawing it while the page makes its first picture
            self._send_volume(rest=False, pushed=True)
            shell = get_ipython()
            self._static_handle = display(self._static_bundle(quick=shell is not None), raw=True, display_id=True)
            if shell is not None:
                handle = self._static_handle  # this output's, should the widget be shown twice in a cell

                def draw_static(*_: Any) -> None:
                    shell.events.unregister("post_run_cell", draw_static)
                    handle.update(self._static_bundle(), raw=True)

                shell.events.register("post_run_cell", draw_static)
            bundle = super()._repr_mimebundle_(**kwargs)
            data = bundle[0] if isinstance(bundle, tuple) else bundle  # anywidget adds metadata
            if data is None:  # pragma: no cover - a widget without a view
                return bundle
            # JupyterLab shows this text where the widget's model is gone (a reopened notebook)
            data["text/plain"] = (
                "ctexplore viewer: live only while its kernel runs; the picture above is its static copy. "
                "Run the cell again to browse."
            )
            return bundle

        def update_static(self) -> None:
            """Redraw the static picture (for the saved notebook) from the current state: crosshair,
            window, convention, the overlays shown and their opacity, and the measurements."""
            if self._static_handle is not None:
                self._static_handle.update(self._static_bundle(), raw=True)

        def save_html(self, path: str | os.PathLike[str], max_bytes: int = HTML_EXPORT_BYTES) -> Path:
            """Write one self-contained HTML file that browses this volume offline, from the current view:
            crosshair, plane, layout, window, convention, overlays shown and opacity, measurements."""
            return save_viewer_html(
                self.volume,
                path,
                overlays=self.overlays or None,
                window=(self.center, self.width),
                max_bytes=max_bytes,
                crosshair=(self.crosshair[0], self.crosshair[1], self.crosshair[2]),
                plane=self.plane,
                layout=self.plane_layout,
                opacity=self.opacity,
                visible=list(self.overlay_visible),
                convention=self.convention,
                measurements=list(self.measurements),
            )


def _check_layout(layout: str) -> str:
    if layout not in ("three", "one"):
        raise ValueError(f"layout must be 'three' (linked planes) or 'one' (the main plane), got {layout!r}")
    return layout


def _moved_measurement(measurement: dict[str, Any], source: Volume, target: Volume, convention: str) -> dict[str, Any]:
    """A page measurement on `source`'s grid redrawn on `target`'s grid (same patient positions)."""
    plane = measurement["plane"]
    before = displayed_geometry(plane_geometry(source, plane), measurement.get("convention", convention))
    after = displayed_geometry(plane_geometry(target, plane), measurement.get("convention", convention))
    r0, c0, r1, c1 = (int(v) for v in measurement["pixels"])
    ends = [
        _moved_voxel(voxel_index(before, source.shape, measurement["index"], r, c), source, target)
        for r, c in ((r0, c0), (r1, c1))
    ]
    pixels = [int(v) for end in ends for v in display_pixel(after, target.shape, (end[0], end[1], end[2]))]
    return {**measurement, "index": ends[0][after.slice_axis], "pixels": pixels}


def save_viewer_html(
    volume: Volume,
    path: str | os.PathLike[str],
    *,
    overlays: Any = None,
    window: str | tuple[float, float] = "brain",
    max_bytes: int = HTML_EXPORT_BYTES,
    crosshair: tuple[int, int, int] | None = None,
    plane: str = "axial",
    layout: str = "three",
    opacity: float = 0.4,
    visible: list[bool] | None = None,
    convention: str = "radiological",
    measurements: list[dict[str, Any]] | None = None,
) -> Path:
    """One self-contained HTML file with the viewer and the volume, for a colleague without Python.

    The same JavaScript as :func:`view`; the volume and the overlays (with
    the colours and legend of the live viewer) are embedded base64, int16
    and uint8, decimated beyond `max_bytes` (the page says so). Written
    atomically. :meth:`CTViewer.save_html` passes the viewer's current state.

    Parameters
    ----------
    volume : Volume
    path : str or path-like
    overlays : as for :func:`view`
    window : str or (float, float)
    max_bytes : int
        Limit of the embedded int16 volume.
    crosshair : (int, int, int), optional
        Array index in `volume` (moved onto the decimated grid when thinned).
    plane, layout, opacity, convention : as for :func:`view`
    visible : list of bool, optional
        Which overlays start shown (default all).
    measurements : list of dict, optional
        Measurements made in a live viewer (its ``measurements``), on `volume`'s grid.
    """
    import base64
    import json
    import tempfile

    shown, note, built, _ = _page_volume(volume, overlays, max_bytes)
    center, width, _ = window_setting(window)
    name = window if isinstance(window, str) else "custom"
    meta = _viewer_meta(shown, (center, width, name), note)
    meta["banner"] = "standalone copy: no Python behind it"
    point = _moved_voxel(crosshair, volume, shown) if crosshair is not None else [n // 2 for n in shown.shape]
    carried = [_moved_measurement(m, volume, shown, convention) for m in measurements or []]
    state = {
        "_meta": meta,
        "_static_id": "standalone",
        "crosshair": point,
        "plane": check_plane(plane),
        "plane_layout": _check_layout(layout),
        "center": center,
        "width": width,
        "window_name": name,
        "convention": _check_convention(convention),
        "opacity": opacity,
        "overlay_visible": list(visible) if visible is not None else [True] * len(built),
        "measurements": carried,
    }
    blobs = [np.ascontiguousarray(shown.hu).tobytes()]
    has_padding = shown.padding is not None and bool(shown.padding.any())
    if has_padding:
        blobs.append(np.ascontiguousarray(shown.padding, np.uint8).tobytes())
    blobs += [_as_uint8(overlay.data).tobytes() for overlay in built]
    message = {"type": "volume", "padding": has_padding, "overlays": [overlay.page_info() for overlay in built]}
    script = (_STATIC_DIR / "viewer.js").read_text().replace("export default { initialize, render };", "")
    script = script.replace("export function createViewer", "function createViewer")
    payload = json.dumps([base64.b64encode(b).decode("ascii") for b in blobs])
    html = _HTML_TEMPLATE.format(
        css=(_STATIC_DIR / "viewer.css").read_text(),
        script=script,
        state=json.dumps(state),
        message=json.dumps(message),
        payload=payload,
        title=f"ctexplore viewer: {volume.meta.get('series_description', 'CT')}",
    )
    target = Path(path)
    with tempfile.NamedTemporaryFile("w", dir=target.parent, suffix=".tmp", delete=False, encoding="utf-8") as handle:
        handle.write(html)
    os.replace(handle.name, target)
    return target


_HTML_TEMPLATE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body {{ background: #111; margin: 12px; }} {css}</style></head>
<body><div id="viewer"></div>
<script>
{script}
(function () {{
  const state = {state};
  const listeners = {{}};
  const model = {{
    standalone: true,
    get: (k) => state[k],
    set: (k, v) => {{ state[k] = v; (listeners["change:" + k] || []).forEach((f) => f()); }},
    on: (name, f) => {{ (listeners[name] = listeners[name] || []).push(f); }},
    save_changes: () => {{}},
    send: (content) => {{
      if (content.type !== "request_volume") return;
      const buffers = {payload}.map((text) => {{
        const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
        return new DataView(bytes.buffer);
      }});
      setTimeout(() => (listeners["msg:custom"] || []).forEach((f) => f({message}, buffers)), 0);
    }},
  }};
  createViewer(model, document.getElementById("viewer"));
}})();
</script></body></html>
"""


def view(
    volume: Volume,
    overlays: Any = None,
    *,
    plane: str = "axial",
    window: str | tuple[float, float] = "brain",
    index: int | None = None,
    layout: str = "three",
    opacity: float = 0.4,
    max_bytes: int = FULL_RESOLUTION_BYTES,
) -> CTViewer:
    """CT viewer that runs in the browser (display the returned widget).

    Parameters
    ----------
    volume : Volume
        Sent to the page once, as int16 HU (float HU rounded to whole units),
        gantry tilt corrected first (the viewer notes it).
    overlays : ndarray, Volume or dict of name -> array, optional
        Masks or label maps (0..255), one value per voxel; colours, a legend,
        on/off and opacity in the page. Each mask, and each value present in a
        label map, takes the next colour of :data:`OVERLAY_COLOURS`
        (:func:`as_overlays`); the static picture uses the same colours.
    plane : {"axial", "coronal", "sagittal"}
        Main plane (the one shown with ``layout="one"``).
    window : str or (float, float)
        Preset of :data:`ctexplore.intensity.WINDOWS` or ``(center, width)`` in HU.
    index : int, optional
        Slice of `plane` shown first (default: the middle one).
    layout : {"three", "one"}
        Three linked planes, or the main plane alone (trait ``plane_layout``).
    opacity : float
        Of the overlays, 0 to 1.
    max_bytes : int
        Size policy: volumes up to this many bytes of int16 (default 256 MiB,
        i.e. 512 x 512 x 512) go at full resolution; bigger ones go as a
        preview thinned by whole steps (rows and columns first) and the viewer
        says so. Its "full resolution around the crosshair" button (or
        :meth:`CTViewer.show_full_resolution`) then makes the kernel send every
        voxel of the stored slices around the crosshair that fit in
        `max_bytes` (:func:`full_resolution_slab`); "back to the whole volume"
        returns to the preview. Pass a larger value for full resolution of
        the whole volume, memory permitting.

    Returns
    -------
    CTViewer
        Its traitlets (``crosshair``, ``plane``, ``center``, ``width`` ...)
        follow the page and drive it. The cell's output also holds a static
        PNG of the three planes for nbconvert HTML and GitHub.

    Notes
    -----
    Mouse: wheel steps a slice per notch in the plane under the pointer;
    click moves the crosshair (the other planes follow); left drag changes
    the window (horizontal width, vertical centre); right or shift drag pans;
    ctrl+wheel zooms; double-click resets. Keys (with the viewer focused):
    ArrowUp/ArrowDown one slice, PageUp/PageDown ten, 1-6 window presets,
    +/- zoom, r reset. The tool menu switches clicks to line (mm) and box or
    ellipse (mean, SD, min, max HU, area) measurements.

    Loading: the three planes through the crosshair go out with the cell's
    output, before anything else; the page paints them from their own buffers
    (window changes work at once), then makes the whole-volume array and asks
    for the rest in 16 MiB slabs; scrolling and clicks start when all slices
    are in.

    Without a kernel: the output also holds a static PNG of the three planes
    with plane, slice, window and orientation letters, the overlays shown in the
    page (their colours, opacity and a legend), padding in its own colour, the
    crosshair and the measurements made on the shown slices (all of them listed
    under the picture), which nbconvert HTML and GitHub show. In IPython it is drawn (matplotlib) just after the cell, so the
    live picture does not wait for it; until then a plain picture of the main
    plane stands in. A notebook reopened in JupyterLab 4 shows that picture and,
    in place of the widget whose model is gone, a line saying so (measured
    in ``tests/test_viewer_browser.py``). Call :meth:`CTViewer.update_static`
    to redraw the picture from the current state (after browsing, toggling
    overlays or measuring in the page, so the saved notebook shows that view). A viewer whose kernel stops
    answering keeps browsing in the page and says that Python no longer sees it.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> axial = np.zeros((4, 4))
    >>> axial[2, 0], axial[1, 1], axial[0, 2], axial[3, 3] = 5.0, 0.5, 0.5, 1.0
    >>> viewer = view(Volume(np.zeros((20, 64, 64), np.int16), axial), index=12)
    >>> viewer.crosshair, viewer.state.index
    ([12, 32, 32], 12)
    >>> viewer.crosshair = [5, 32, 32]  # what scrolling the axial plane does
    >>> readout_text(viewer.volume, viewer.state)
    'axial 5/19 | z = 25.0 mm | HU at (row 32, col 32) = 0 | brain 40/80'
    """
    if anywidget is None:  # pragma: no cover
        raise ImportError("ctexplore.view needs anywidget: pip install anywidget")
    return CTViewer(
        volume,
        overlays,
        plane=plane,
        window=window,
        index=index,
        layout=layout,
        opacity=opacity,
        max_bytes=max_bytes,
    )
