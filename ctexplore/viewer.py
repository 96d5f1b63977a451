"""Browse a CT volume slice by slice in Jupyter: ipywidgets on top of plain, testable functions.

The widget only wires controls to the functions below. A slider step
cuts one plane out of the array (a view), windows it to uint8, overlays the
mask, encodes a PNG and replaces the bytes of one ``ipywidgets.Image``: no
figure is re-created, nothing needs ipympl, and it costs a few milliseconds
per 512 x 512 slice (``python benchmarks/bench_viewer.py``).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

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
    "ViewerState",
    "SliceViewer",
    "view",
    "display_range",
    "render_slice",
    "encode_png",
    "hu_at",
    "display_size",
    "readout_text",
    "plane_geometry",
    "slice_image",
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
    if not width > 0:
        raise ValueError(f"window width must be positive, got {width}")
    return float(center) - width / 2, float(center) + width / 2


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


def hu_at(
    volume: Volume, plane: str, index: int, row: int, col: int
) -> tuple[float | int, tuple[int, int, int]]:
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


def display_size(
    geometry: PlaneGeometry, shape: tuple[int, int, int], longest_side: int = 512
) -> tuple[int, int]:
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


def _resize_nearest(image: np.ndarray, width: int, height: int) -> np.ndarray:
    rows = (np.arange(height) * image.shape[0] / height).astype(np.intp)
    cols = (np.arange(width) * image.shape[1] / width).astype(np.intp)
    return image[rows[:, None], cols[None, :]]


class SliceViewer:
    """Slice browser widget; build it with :func:`view`.

    Attributes
    ----------
    state : ViewerState
        The current plane, slice, window and probe.
    widget : ipywidgets.VBox
        The whole control; ``slider``, ``plane_buttons``, ``preset``,
        ``center``, ``width``, ``probe_row``, ``probe_col``, ``opacity``,
        ``play``, ``image`` and ``readout`` are its parts.
    """

    def __init__(
        self,
        volume: Volume,
        mask: np.ndarray | None = None,
        *,
        plane: str = "axial",
        window: str | tuple[float, float] = "brain",
        index: int | None = None,
        size: int = 512,
        opacity: float = 0.4,
    ) -> None:
        import ipywidgets as widgets

        from .intensity import WINDOWS

        self.volume = volume
        if mask is not None:
            mask = np.asarray(getattr(mask, "hu", mask))
            if mask.shape != volume.shape:
                raise ValueError(f"mask shape {mask.shape} differs from volume shape {volume.shape}")
        self.mask = mask
        self.size = size
        center, width, label = window_setting(window)
        window_name = window if isinstance(window, str) else "custom"
        geometry = plane_geometry(volume, plane)
        if index is None:
            index = geometry.n_slices // 2
        height, width_px = slice_image(volume.hu, geometry, 0).shape
        self.state = ViewerState(
            plane, int(index), center, width, window_name, height // 2, width_px // 2, opacity
        )
        self._quiet = 0

        self.plane_buttons = widgets.ToggleButtons(
            options=list(PLANES), value=plane,
            style={"button_width": "80px"},
        )
        self.preset = widgets.Dropdown(
            options=[*WINDOWS, "custom"], value=window_name, description="window",
            layout=widgets.Layout(width="190px"),
        )
        self.center = widgets.FloatText(
            value=center, step=5, description="center", layout=widgets.Layout(width="150px"),
            style={"description_width": "45px"},
        )
        self.width = widgets.BoundedFloatText(
            value=width, min=1, max=10000, step=10, description="width",
            layout=widgets.Layout(width="150px"), style={"description_width": "40px"},
        )
        self.slider = widgets.IntSlider(
            value=self.state.index, min=0, max=geometry.n_slices - 1, description="slice",
            continuous_update=True, layout=widgets.Layout(width="420px"),
        )
        self.play = widgets.Play(
            value=self.state.index, min=0, max=geometry.n_slices - 1, interval=120,
            description="play",
        )
        widgets.jslink((self.play, "value"), (self.slider, "value"))
        self.probe_row = widgets.BoundedIntText(
            value=self.state.probe_row, min=0, max=height - 1, description="probe row",
            layout=widgets.Layout(width="160px"), style={"description_width": "70px"},
        )
        self.probe_col = widgets.BoundedIntText(
            value=self.state.probe_col, min=0, max=width_px - 1, description="col",
            layout=widgets.Layout(width="120px"), style={"description_width": "30px"},
        )
        self.opacity = widgets.FloatSlider(
            value=opacity, min=0.0, max=1.0, step=0.05, description="mask",
            layout=widgets.Layout(width="260px", display="flex" if mask is not None else "none"),
        )
        self.image = widgets.Image(format="png")
        self.image.add_class("ctexplore-image")
        self.readout = widgets.HTML()
        self.readout.add_class("ctexplore-readout")

        self.slider.observe(self._on_slice, "value")
        self.plane_buttons.observe(self._on_plane, "value")
        self.preset.observe(self._on_preset, "value")
        self.center.observe(self._on_window, "value")
        self.width.observe(self._on_window, "value")
        self.opacity.observe(self._on_opacity, "value")
        self.probe_row.observe(self._on_probe, "value")
        self.probe_col.observe(self._on_probe, "value")

        self.widget = widgets.VBox(
            [
                widgets.HBox([self.plane_buttons]),
                widgets.HBox([self.preset, self.center, self.width]),
                widgets.HBox([self.play, self.slider]),
                self.image,
                widgets.HBox([self.probe_row, self.probe_col, self.opacity]),
                self.readout,
            ]
        )
        self.widget.add_class("ctexplore-viewer")
        self._draw()

    # --- drawing -------------------------------------------------------------------------
    def render_png(self) -> bytes:
        """PNG bytes of the current slice at array resolution (what the image widget shows)."""
        return encode_png(render_state(self.volume, self.state, self.mask))

    def _draw(self, image: bool = True) -> None:
        if image:
            geometry = plane_geometry(self.volume, self.state.plane)
            width, height = display_size(geometry, self.volume.shape, self.size)
            self.image.layout.width = f"{width}px"
            self.image.layout.height = f"{height}px"
            self.image.layout.object_fit = "fill"
            self.image.value = self.render_png()
        self.readout.value = f"<code>{readout_text(self.volume, self.state)}</code>"

    @contextmanager
    def _quietly(self) -> Iterator[None]:
        """Change several controls without each one redrawing."""
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    # --- control callbacks ---------------------------------------------------------------
    def _on_slice(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        self.state = replace(self.state, index=int(change["new"]))
        self._draw()

    def _on_plane(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        self.set_plane(change["new"])

    def set_plane(self, plane: str) -> None:
        """Switch plane, keeping the probed voxel: the new plane passes through it."""
        old = plane_geometry(self.volume, self.state.plane)
        new = plane_geometry(self.volume, plane)
        voxel = voxel_index(
            old, self.volume.shape, self.state.index, self.state.probe_row, self.state.probe_col
        )
        row, col = (int(v) for v in display_pixel(new, self.volume.shape, voxel))
        height, width = slice_image(self.volume.hu, new, 0).shape
        index = voxel[new.slice_axis]
        self.state = replace(self.state, plane=plane, index=index, probe_row=row, probe_col=col)
        with self._quietly():
            self.plane_buttons.value = plane
            # widen before narrowing so no intermediate value is clamped
            for control in (self.slider, self.play):
                control.max = max(control.max, new.n_slices - 1)
                control.value = index
                control.max = new.n_slices - 1
            self.probe_row.max, self.probe_col.max = height - 1, width - 1
            self.probe_row.value, self.probe_col.value = row, col
        self._draw()

    def _on_preset(self, change: dict[str, Any]) -> None:
        if self._quiet or change["new"] == "custom":
            return
        from .intensity import WINDOWS

        center, width = WINDOWS[change["new"]]
        self.state = replace(self.state, center=center, width=width, window_name=change["new"])
        with self._quietly():
            self.center.value, self.width.value = center, width
        self._draw()

    def _on_window(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        self.state = replace(
            self.state, center=float(self.center.value), width=float(self.width.value),
            window_name="custom",
        )
        with self._quietly():
            self.preset.value = "custom"
        self._draw()

    def _on_opacity(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        self.state = replace(self.state, opacity=float(change["new"]))
        self._draw()

    def _on_probe(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        self.state = replace(
            self.state, probe_row=int(self.probe_row.value), probe_col=int(self.probe_col.value)
        )
        self._draw(image=False)

    # --- notebook display ----------------------------------------------------------------
    def static_png(self) -> bytes:
        """The current slice with square millimetres, for outputs without a live kernel."""
        geometry = plane_geometry(self.volume, self.state.plane)
        width, height = display_size(geometry, self.volume.shape, self.size)
        image = render_state(self.volume, self.state, self.mask)
        return encode_png(_resize_nearest(image, width, height), compress_level=6)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        # the widget view for a live kernel; JupyterLab prefers it, while nbconvert (without
        # saved widget state) and GitHub fall back to the picture and the text
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["image/png"] = self.static_png()
        bundle["text/plain"] = readout_text(self.volume, self.state)
        return bundle

    def __repr__(self) -> str:
        return f"SliceViewer({self.volume!r}, {readout_text(self.volume, self.state)})"


def view(
    volume: Volume,
    mask: np.ndarray | None = None,
    *,
    plane: str = "axial",
    window: str | tuple[float, float] = "brain",
    index: int | None = None,
    size: int = 512,
    opacity: float = 0.4,
) -> SliceViewer:
    """Interactive slice browser for a notebook (display the returned object).

    Parameters
    ----------
    volume : Volume
    mask : (slices, rows, cols) ndarray or Volume, optional
        Nonzero voxels are overlaid in red (e.g. a hemorrhage label).
    plane : {"axial", "coronal", "sagittal"}
    window : str or (float, float)
        Preset of :data:`ctexplore.intensity.WINDOWS` or ``(center, width)`` in HU.
    index : int, optional
        First slice shown (default: the middle one).
    size : int
        Longest side of the picture in screen pixels; the other side follows
        the voxel spacing so millimetres stay square.
    opacity : float
        Mask opacity, 0..1.

    Returns
    -------
    SliceViewer
        Shown as the widget when it is the last expression of a cell; its
        ``state`` holds the current plane, slice, window and probe. Without
        a live kernel (exported HTML, GitHub) the output shows a PNG of the
        slice that was current when the cell ran.

    Notes
    -----
    Controls: plane buttons; window preset menu plus center and width in HU
    (editing them switches the menu to "custom"); slice slider with a play
    button; the probe row and column whose HU value the readout line shows
    (switching plane keeps the probed voxel, so the new plane passes through
    it); mask opacity when a mask is given.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> axial = np.zeros((4, 4))
    >>> axial[2, 0], axial[1, 1], axial[0, 2], axial[3, 3] = 5.0, 0.5, 0.5, 1.0
    >>> viewer = view(Volume(np.zeros((20, 64, 64), np.int16), axial))
    >>> viewer.slider.value = 12  # what dragging the slider does
    >>> viewer.readout.value
    '<code>axial 12/19 | z = 60.0 mm | HU at (row 32, col 32) = 0 | brain 40/80</code>'
    """
    return SliceViewer(
        volume, mask, plane=plane, window=window, index=index, size=size, opacity=opacity
    )
