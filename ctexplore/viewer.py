"""Browse a CT volume in the notebook: an in-browser viewer (anywidget) on top of plain, testable functions.

:func:`view` sends the volume to the page once, as int16 binary buffers (the three
planes through the crosshair first, so the first picture does not wait for the
rest); slicing, windowing, zoom, read-outs and measurements then run in the page
(``static/viewer.js``, canvas 2D, no CDN). The state a notebook or a test needs
(crosshair, plane, window, measurements) is synced traitlets. The functions here
(:func:`render_slice`, :func:`hu_at`, :func:`readout_text`, :func:`display_volume`,
:func:`full_resolution_slab`) are what the page does, written once in Python, and
give the static picture saved with the notebook. :func:`save_viewer_html` writes
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .intensity import resolve_window
from .planes import (
    PLANES,
    PlaneGeometry,
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
    "PLANES",
    "CTViewer",
    "ViewerState",
    "decimation_factors",
    "display_range",
    "display_size",
    "display_volume",
    "encode_png",
    "full_resolution_slab",
    "hu_at",
    "plane_geometry",
    "readout_text",
    "render_slice",
    "save_viewer_html",
    "slice_image",
    "view",
]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPE = {1: 0, 3: 2, 4: 6}  # channels -> grey, RGB, RGBA


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
    color: tuple[int, int, int] = (255, 40, 40),
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
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1, got {opacity}")
    rgb = np.repeat(grey[..., None], 3, axis=2)
    inside = mask_slice.astype(bool, copy=False)
    blended = grey[inside, None] * (1.0 - opacity) + np.asarray(color, np.float32) * opacity
    rgb[inside] = np.rint(blended).astype(np.uint8)
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


def render_state(volume: Volume, state: ViewerState, mask: np.ndarray | None = None) -> np.ndarray:
    """The display image (uint8 grey, or RGB with a mask) of `state`."""
    geometry = plane_geometry(volume, state.plane)
    mask_slice = None if mask is None else slice_image(mask, geometry, state.index)
    return render_slice(
        slice_image(volume.hu, geometry, state.index),
        state.center,
        state.width,
        mask_slice,
        state.opacity,
    )


_STATIC_DIR = Path(__file__).with_name("static")
#: Volumes up to this many bytes go to the page at full resolution; bigger ones are decimated.
FULL_RESOLUTION_BYTES = 256 * 1024 * 1024
#: Limit of the volume embedded by :func:`save_viewer_html` (base64 adds a third).
HTML_EXPORT_BYTES = 48 * 1024 * 1024
_OVERLAY_COLOURS = [(255, 40, 40), (64, 196, 255), (118, 255, 3), (255, 193, 7), (224, 64, 251), (0, 230, 118)]
# per plane: letters at (left, right, top, bottom) in the radiological layout of ``planes``
_LETTERS = {
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
    letters = {p: dict(zip(("left", "right", "top", "bottom"), v)) for p, v in _LETTERS.items()}
    return {
        "shape": list(volume.shape),
        "planes": planes,
        "letters": letters,
        "initial_window": list(window),
        "note": note,
        "banner": "",
        "resolution": resolution,  # "full", "preview" (decimated) or "slab" (full resolution, part of it)
    }


def _as_overlays(volume: Volume, overlays: Any) -> list[tuple[str, np.ndarray]]:
    if overlays is None:
        return []
    if isinstance(overlays, np.ndarray) or hasattr(overlays, "hu"):
        overlays = {"mask": overlays}
    named = []
    for name, array in dict(overlays).items():
        array = np.asarray(getattr(array, "hu", array))
        if array.shape != volume.shape:
            raise ValueError(
                f"overlay {name!r} has shape {array.shape}, the volume {volume.shape}; "
                "give one value per voxel (a mask or a label map)"
            )
        if array.dtype != bool and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"overlay {name!r} holds labels outside 0..255; relabel it first")
        named.append((name, array))
    return named


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


def _page_volume(volume: Volume, overlays: Any, limit: int) -> tuple[Volume, str, list[tuple[str, np.ndarray]], str]:
    """What a page gets: the display volume, its note, the overlays on its grid, and its resolution."""
    named = _as_overlays(volume, overlays)
    if named and volume.is_tilted:
        raise ValueError(
            "overlays on a gantry-tilted volume would not line up with the tilt-corrected picture: "
            "correct the tilt first (ctexplore.correct_tilt) and build the masks on the corrected volume"
        )
    shown, note = display_volume(volume, limit)
    steps = decimation_factors(volume.shape, 2, limit)
    if steps != (1, 1, 1):
        cut = tuple(slice(None, None, s) for s in steps)
        named = [(name, array[cut]) for name, array in named]
    return shown, note, named, "full" if steps == (1, 1, 1) else "preview"


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

            shown, note, self.overlays, resolution = _page_volume(volume, overlays, max_bytes)
            self.volume = shown  # what the page shows; the same array when no conversion was needed
            # references, not copies: full resolution on demand cuts its slab from these
            self._source = volume
            self._source_overlays = _as_overlays(volume, overlays)
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
            overlays = [(name, array[first : first + slab.shape[0]]) for name, array in self._source_overlays]
            self._switch_grid(slab, note, overlays, "slab", world)

        def show_preview(self) -> None:
            """Go back to the (decimated) whole volume after :meth:`show_full_resolution`."""
            shown, note, overlays = self._preview
            self._switch_grid(shown, note, overlays, "preview", None)

        def _switch_grid(
            self, shown: Volume, note: str, overlays: list[tuple[str, np.ndarray]], resolution: str, world: Any
        ) -> None:
            if world is None:
                world = self.volume.index_to_world(np.asarray(self.crosshair))
            index = np.clip(np.rint(shown.world_to_index(world)), 0, np.asarray(shown.shape) - 1).astype(int)
            self.volume, self.overlays = shown, overlays
            initial = self._meta["initial_window"]
            with self.hold_sync():
                self._meta = _viewer_meta(shown, tuple(initial), note, resolution)
                self.crosshair = [int(i) for i in index]
            self._send_volume(rest=False)

        def _volume_messages(self) -> list[tuple[dict[str, Any], list[memoryview]]]:
            """The volume as custom messages: the three planes through the crosshair, then slabs of slices.

            The page paints the first message at once (the first picture does not
            wait for the whole volume), then asks for the slabs and fills them into
            one preallocated array. Slab buffers are views of the arrays, not copies.
            """
            layers = [self.volume.hu]
            mask = self.volume.padding
            padding = mask is not None and bool(mask.any())
            if mask is not None and padding:
                layers.append(_as_uint8(mask))
            overlays = []
            for i, (name, array) in enumerate(self.overlays):
                layers.append(_as_uint8(array))
                colour = _OVERLAY_COLOURS[i % len(_OVERLAY_COLOURS)]
                colours = (
                    [[0, 0, 0], list(colour)]
                    if array.dtype == bool or array.max() <= 1
                    else [[0, 0, 0], *[list(c) for c in _OVERLAY_COLOURS]]
                )
                overlays.append({"name": name, "colours": colours})
            k, j, i = self.crosshair
            planes = [_buffer(plane) for layer in layers for plane in (layer[k], layer[:, j], layer[:, :, i])]
            start = {"type": "volume_start", "padding": padding, "overlays": overlays, "crosshair": [k, j, i]}
            messages = [(start, planes)]
            n_slices = self.volume.shape[0]
            step = max(1, CHUNK_BYTES // (self.volume.hu[0].size * 2))
            for first in range(0, n_slices, step):
                count = min(step, n_slices - first)
                chunk = {"type": "volume_chunk", "first": first, "count": count}
                messages.append((chunk, [_buffer(layer[first : first + count]) for layer in layers]))
            return messages

        def _send_volume(self, rest: bool, pushed: bool = False) -> None:
            # the planes alone first: 128 MiB of slabs queued behind them would delay the first picture
            messages = self._volume_messages()
            if pushed:  # unasked for: the page stores it for the view that is about to be made
                messages[0][0]["pushed"] = True
            for message, buffers in messages[1:] if rest else messages[:1]:
                self.send(message, buffers)

        # --- pictures without a kernel --------------------------------------------------
        def static_png(self, dpi: int = 90) -> bytes:
            """PNG of the three planes through the crosshair, with window, slice and letters."""
            import io

            import matplotlib.pyplot as plt

            from .plotting import plot_orthogonal

            figure = plot_orthogonal(
                self.volume, tuple(self.crosshair), window=(self.center, self.width), panel_height=3.0
            )
            figure.suptitle(
                f"{readout_text(self.volume, self.state)}  (static picture; run the cell for the live viewer)",
                fontsize=8,
            )
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=dpi)  # constrained layout: "tight" would render twice
            plt.close(figure)
            return buffer.getvalue()

        def _static_bundle(self, quick: bool = False) -> dict[str, Any]:
            import base64

            if quick:  # the main plane windowed with numpy (milliseconds), sized for square millimetres
                width, height = display_size(plane_geometry(self.volume, self.plane), self.volume.shape)
                png, size = encode_png(render_state(self.volume, self.state)), f' width="{width}" height="{height}"'
            else:
                png, size = self.static_png(), ""
            alt = f"ctexplore viewer {self._static_id}: {readout_text(self.volume, self.state)}"
            html = f'<img alt="{alt}"{size} src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            return {"text/html": html, "image/png": png, "text/plain": alt}

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
            """Redraw the static picture (for the saved notebook) from the current state."""
            if self._static_handle is not None:
                self._static_handle.update(self._static_bundle(), raw=True)

        def save_html(self, path: str | os.PathLike[str], max_bytes: int = HTML_EXPORT_BYTES) -> Path:
            """Write one self-contained HTML file that browses this volume offline."""
            return save_viewer_html(
                self.volume,
                path,
                overlays=dict(self.overlays) or None,
                window=(self.center, self.width),
                max_bytes=max_bytes,
                crosshair=(self.crosshair[0], self.crosshair[1], self.crosshair[2]),
            )


def save_viewer_html(
    volume: Volume,
    path: str | os.PathLike[str],
    *,
    overlays: Any = None,
    window: str | tuple[float, float] = "brain",
    max_bytes: int = HTML_EXPORT_BYTES,
    crosshair: tuple[int, int, int] | None = None,
) -> Path:
    """One self-contained HTML file with the viewer and the volume, for a colleague without Python.

    The same JavaScript as :func:`view`; the volume is embedded base64 as int16,
    decimated beyond `max_bytes` (the page says so). Written atomically.
    """
    import base64
    import json
    import tempfile

    shown, note, named, _ = _page_volume(volume, overlays, max_bytes)
    center, width, _ = window_setting(window)
    name = window if isinstance(window, str) else "custom"
    meta = _viewer_meta(shown, (center, width, name), note)
    meta["banner"] = "standalone copy: no Python behind it"
    point = list(crosshair) if crosshair is not None else [n // 2 for n in shown.shape]
    state = {
        "_meta": meta,
        "_static_id": "standalone",
        "crosshair": point,
        "plane": "axial",
        "plane_layout": "three",
        "center": center,
        "width": width,
        "window_name": name,
        "convention": "radiological",
        "opacity": 0.4,
        "overlay_visible": [True] * len(named),
        "measurements": [],
    }
    blobs = [np.ascontiguousarray(shown.hu).tobytes()]
    has_padding = shown.padding is not None and bool(shown.padding.any())
    if has_padding:
        blobs.append(np.ascontiguousarray(shown.padding, np.uint8).tobytes())
    overlay_info = []
    for i, (overlay_name, array) in enumerate(named):
        blobs.append(np.ascontiguousarray(array, np.uint8).tobytes())
        overlay_info.append({"name": overlay_name, "colours": [[0, 0, 0], list(_OVERLAY_COLOURS[i % 6])]})
    message = {"type": "volume", "padding": has_padding, "overlays": overlay_info}
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
        on/off and opacity in the page.
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
    with plane, slice, window and orientation letters, which nbconvert HTML and
    GitHub show. In IPython it is drawn (matplotlib) just after the cell, so the
    live picture does not wait for it; until then a plain picture of the main
    plane stands in. A notebook reopened in JupyterLab 4 shows that picture and,
    in place of the widget whose model is gone, a line saying so (measured
    in ``tests/test_viewer_browser.py``). Call :meth:`CTViewer.update_static`
    to redraw the picture from the current state. A viewer whose kernel stops
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
