"""Viewer state logic and widget wiring, without a screen (the browser test drives the real thing)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from synthetic_volumes import BLEED_CENTRE_MM, head_affine, synthetic_head

import ctexplore.viewer as viewer_module
from ctexplore.planes import (
    display_pixel,
    plane_geometry,
    position_label,
    slice_positions,
    voxel_index,
    window_setting,
)
from ctexplore.viewer import (
    MARK_COLOURS,
    OVERLAY_COLOURS,
    CTViewer,
    ViewerState,
    as_overlays,
    display_range,
    display_size,
    display_volume,
    encode_png,
    full_resolution_slab,
    hu_at,
    readout_text,
    render_plane,
    render_slice,
    save_viewer_html,
    slice_image,
    view,
)
from ctexplore.volume import Volume


@pytest.fixture(scope="module")
def head() -> Volume:
    return synthetic_head((24, 96, 80), (5.0, 2.5, 2.0))


def _bleed_voxel(volume: Volume) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.round(volume.world_to_index(BLEED_CENTRE_MM)))


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


class TestPlaneLayout:
    def test_axial_is_the_stored_slice_with_patient_left_on_image_right(self, head):
        geometry = plane_geometry(head, "axial")
        k, r, c = _bleed_voxel(head)
        image = slice_image(head.hu, geometry, k)
        assert np.shares_memory(image, head.hu)
        np.testing.assert_array_equal(image, head.hu[k])
        assert c > head.shape[2] / 2  # the bleed is on the patient's left ...
        assert image[r, c] == 70  # ... and shows on the image's right

    def test_coronal_and_sagittal_show_the_head_at_the_top(self, head):
        k, r, c = _bleed_voxel(head)  # the bleed is superior: z = +30 mm
        coronal = slice_image(head.hu, plane_geometry(head, "coronal"), r)
        sagittal = slice_image(head.hu, plane_geometry(head, "sagittal"), c)
        for image in (coronal, sagittal):
            bleed_rows = np.flatnonzero((image == 70).any(axis=1))
            assert bleed_rows.max() < image.shape[0] / 2
        assert (coronal == 70).any(axis=0).nonzero()[0].min() > coronal.shape[1] / 2  # left: right

    def test_sagittal_shows_anterior_on_the_left(self, head):
        sagittal = slice_image(head.hu, plane_geometry(head, "sagittal"), head.shape[2] // 2)
        nose_z = -20.0
        row = int(round((head.affine[2, 3] + (head.shape[0] - 1) * 5.0 - nose_z) / 5.0))
        tissue_cols = np.flatnonzero(sagittal[row] > -500)
        assert tissue_cols[0] < sagittal.shape[1] - 1 - tissue_cols[-1]  # nose sticks out left

    def test_feet_first_stacking_gives_the_same_pictures(self, head):
        reversed_affine = head.affine.copy()
        reversed_affine[:3, 3] = head.index_to_world([head.shape[0] - 1, 0, 0])
        reversed_affine[:3, 0] *= -1
        reversed_head = Volume(head.hu[::-1].copy(), reversed_affine)
        k, r, c = _bleed_voxel(head)  # planes through the bleed are not symmetric in z
        for plane, index_a in (("axial", k), ("coronal", r), ("sagittal", c)):
            a, b = plane_geometry(head, plane), plane_geometry(reversed_head, plane)
            index_b = index_a if plane != "axial" else a.n_slices - 1 - index_a
            np.testing.assert_array_equal(slice_image(head.hu, a, index_a), slice_image(reversed_head.hu, b, index_b))

    def test_sagittal_acquisition_is_mapped_by_its_affine(self, head):
        # store the same head with slices stepping along x: hu[col, slice, row]
        hu = np.ascontiguousarray(head.hu.transpose(2, 0, 1))
        affine = np.eye(4)
        affine[:3, :3] = head.affine[:3, [2, 0, 1]]
        affine[:3, 3] = head.affine[:3, 3]
        sagittal_series = Volume(hu, affine)
        for plane in ("axial", "coronal", "sagittal"):
            a, b = plane_geometry(head, plane), plane_geometry(sagittal_series, plane)
            assert a.aspect == pytest.approx(b.aspect)
            np.testing.assert_array_equal(slice_image(head.hu, a, 5), slice_image(hu, b, 5))

    def test_aspect_comes_from_the_spacing(self, head):
        assert plane_geometry(head, "axial").aspect == pytest.approx(2.5 / 2.0)
        assert plane_geometry(head, "coronal").aspect == pytest.approx(5.0 / 2.0)
        assert plane_geometry(head, "sagittal").aspect == pytest.approx(5.0 / 2.5)

    def test_display_size_keeps_millimetres_square(self, head):
        width, height = display_size(plane_geometry(head, "coronal"), head.shape, 400)
        assert (width, height) == (400 * 160 // 160, round(400 * 120 / 160))

    def test_voxel_index_and_display_pixel_are_inverse(self, head):
        for plane in ("axial", "coronal", "sagittal"):
            geometry = plane_geometry(head, plane)
            voxel = voxel_index(geometry, head.shape, 7, 3, 11)
            assert display_pixel(geometry, head.shape, voxel) == (3.0, 11.0)
            assert voxel[geometry.slice_axis] == 7

    def test_out_of_range_index_and_pixel_are_rejected(self, head):
        geometry = plane_geometry(head, "axial")
        with pytest.raises(IndexError, match="axial index 24 is outside 0..23"):
            slice_image(head.hu, geometry, 24)
        with pytest.raises(IndexError, match="outside the 96 x 80 image"):
            voxel_index(geometry, head.shape, 0, 96, 0)
        with pytest.raises(ValueError, match="plane must be one of"):
            plane_geometry(head, "oblique")

    def test_positions_are_labelled_by_patient_axis(self, head):
        assert slice_positions(head, plane_geometry(head, "axial"))[0] == "z"
        assert slice_positions(head, plane_geometry(head, "coronal"))[0] == "y"
        axis, positions = slice_positions(head, plane_geometry(head, "sagittal"))
        assert axis == "x"
        np.testing.assert_allclose(np.diff(positions), 2.0)

    def test_tilted_plane_is_measured_along_its_normal(self):
        affine = head_affine((10, 32, 32), (5.0, 1.0, 1.0))
        tilt = np.radians(20)  # rows step posterior and downwards: a tilted gantry
        affine[:3, 1] = [0.0, np.cos(tilt), -np.sin(tilt)]
        volume = Volume(np.zeros((10, 32, 32), np.int16), affine)
        axis, positions = slice_positions(volume, plane_geometry(volume, "axial"))
        assert axis is None
        assert position_label(axis, positions[0]).endswith("mm along normal")
        np.testing.assert_allclose(np.diff(positions), 5.0 * np.cos(tilt))


class TestStateFunctions:
    def test_display_range_is_centre_plus_minus_half_width(self):
        assert display_range(80, 200) == (-20.0, 180.0)
        with pytest.raises(ValueError, match="positive"):
            display_range(40, 0)

    def test_window_setting_accepts_presets_and_pairs(self):
        assert window_setting("subdural") == (80.0, 200.0, "subdural 80/200")
        assert window_setting((35, 70))[:2] == (35.0, 70.0)
        with pytest.raises(ValueError, match="unknown window preset 'brian'"):
            window_setting("brian")

    def test_render_slice_windows_to_uint8(self):
        hu = np.array([[-1000, 0, 40, 80, 3000]], np.int16)
        np.testing.assert_array_equal(render_slice(hu, 40, 80), [[0, 0, 128, 255, 255]])

    def test_mask_overlay_blends_only_masked_pixels(self):
        hu = np.array([[40, 40]], np.int16)
        rgb = render_slice(hu, 40, 80, mask_slice=np.array([[True, False]]), opacity=1.0)
        np.testing.assert_array_equal(rgb, [[[255, 40, 40], [128, 128, 128]]])
        invisible = render_slice(hu, 40, 80, mask_slice=np.array([[1, 0]]), opacity=0.0)
        np.testing.assert_array_equal(invisible[..., 0], [[128, 128]])

    @pytest.mark.parametrize("channels", [None, 3, 4])
    def test_encode_png_round_trips_through_a_real_decoder(self, channels):
        rng = np.random.default_rng(0)
        shape = (37, 53) if channels is None else (37, 53, channels)
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_array_equal(_decode(encode_png(image)), image)

    def test_encode_png_rejects_other_dtypes(self):
        with pytest.raises(TypeError, match="uint8"):
            encode_png(np.zeros((4, 4), np.int16))

    def test_hu_at_reads_the_voxel_under_the_displayed_pixel(self, head):
        k, r, c = _bleed_voxel(head)
        coronal = plane_geometry(head, "coronal")
        row, col = display_pixel(coronal, head.shape, (k, r, c))
        assert hu_at(head, "coronal", r, int(row), int(col)) == (70, (k, r, c))

    def test_readout_names_slice_position_value_and_window(self, head):
        k, r, c = _bleed_voxel(head)
        state = ViewerState("axial", k, 40.0, 80.0, "brain", r, c)
        z = head.index_to_world([k, r, c])[2]
        assert readout_text(head, state) == (
            f"axial {k}/23 | z = {z:.1f} mm | HU at (row {r}, col {c}) = 70 | brain 40/80"
        )

    def test_readout_shows_float_hu_with_one_decimal(self, head):
        floats = head.with_hu(head.hu.astype(np.float32) + np.float32(0.25))
        state = ViewerState("axial", 0, 40.0, 80.0, "brain", 0, 0)
        assert "= -999.8 |" in readout_text(floats, state)


class TestCTViewer:
    def test_index_sets_the_crosshair_and_the_state_follows(self, head):
        k, r, c = _bleed_voxel(head)
        viewer = view(head, index=k)
        assert viewer.crosshair[0] == k and viewer.state.index == k
        viewer.crosshair = [k, r, c]
        assert readout_text(viewer.volume, viewer.state).endswith("= 70 | brain 40/80")

    def test_volume_goes_as_three_planes_then_slabs_of_buffers_not_state(self, head, monkeypatch):
        monkeypatch.setattr(viewer_module, "CHUNK_BYTES", 5 * 96 * 80 * 2)  # five slices a message
        mask = head.hu == 70
        viewer = view(head, {"bleed": mask})
        k, r, c = viewer.crosshair
        (start, planes), *chunks = viewer._volume_messages()
        assert start["type"] == "volume_start" and start["overlays"][0]["name"] == "bleed"
        assert start["crosshair"] == [k, r, c] and not start["padding"]
        layers = (head.hu, mask.view(np.uint8))
        expected = [a.tobytes() for layer in layers for a in (layer[k], layer[:, r], layer[:, :, c])]
        assert [bytes(b) for b in planes] == expected  # the first picture needs only these
        assert [(m["type"], m["first"], m["count"]) for m, _ in chunks] == [
            ("volume_chunk", first, min(5, 24 - first)) for first in range(0, 24, 5)
        ]
        assert b"".join(bytes(b[0]) for _, b in chunks) == head.hu.tobytes()
        assert b"".join(bytes(b[1]) for _, b in chunks) == mask.astype(np.uint8).tobytes()
        for _, buffers in chunks:  # slabs are views of the caller's arrays: no copy of the volume
            assert np.shares_memory(np.frombuffer(buffers[0], np.int16), head.hu)
            assert np.shares_memory(np.frombuffer(buffers[1], np.uint8), mask)
        assert len(str(viewer.get_state())) < 50_000  # the volume is not in saved state

    def test_float_volume_is_rounded_and_says_so(self, head):
        shown, note = display_volume(head.with_hu(head.hu.astype(np.float32) + 0.4))
        assert shown.hu.dtype == np.int16 and "rounded" in note
        np.testing.assert_array_equal(shown.hu, head.hu)

    def test_overlay_of_wrong_shape_is_rejected(self, head):
        with pytest.raises(ValueError, match="overlay 'mask' has shape"):
            CTViewer(head, np.zeros((2, 2, 2), bool))

    def test_planes_pushed_with_the_output_are_marked_for_the_page_to_keep(self, head):
        viewer = view(head)
        sent = []
        viewer.send = lambda content, buffers=None: sent.append((content, buffers))  # the comm to the page
        viewer._send_volume(rest=False, pushed=True)
        viewer._on_message(viewer, {"type": "request_volume"}, [])  # a second view asks for its own
        assert [(m["type"], m.get("pushed", False)) for m, _ in sent] == [
            ("volume_start", True),
            ("volume_start", False),
        ]
        assert [bytes(b) for b in sent[0][1]] == [bytes(b) for b in sent[1][1]]

    def test_quick_static_picture_is_the_main_plane_in_square_millimetres(self, head):
        viewer = view(head, plane="coronal", index=40)
        bundle = viewer._static_bundle(quick=True)
        image = _decode(bundle["image/png"])
        geometry = plane_geometry(viewer.volume, "coronal")
        grey = render_slice(slice_image(head.hu, geometry, 40), 40, 80)
        row, col = (int(v) for v in display_pixel(geometry, head.shape, tuple(viewer.crosshair)))
        away = np.ones(grey.shape, bool)
        away[row, :] = away[:, col] = False  # the crosshair lines
        for channel in range(3):
            np.testing.assert_array_equal(image[..., channel][away], grey[away])
        assert (image[row, 0] == np.rint(grey[row, 0] * 0.2 + np.array(MARK_COLOURS["crosshair"]) * 0.8)).all()
        width, height = display_size(geometry, head.shape)
        assert f'width="{width}" height="{height}"' in bundle["text/html"]
        assert "coronal 40/" in bundle["text/plain"]

    def test_static_picture_is_a_real_png(self, head):
        png = view(head, plane="coronal").static_png()
        assert max(_decode(png).shape[:2]) >= 256


class TestFullResolutionOnDemand:
    """A volume over ``max_bytes`` arrives thinned; the page's button asks for every voxel around the crosshair."""

    def test_preview_then_full_slab_then_preview_again(self, head):
        mask = head.hu == 70
        viewer = view(head, {"bleed": mask}, max_bytes=head.hu.nbytes // 3)
        assert viewer._meta["resolution"] == "preview"
        assert viewer.volume.shape == (24, 48, 40) and "every 1st slice, 2nd row, 2nd column" in viewer._meta["note"]
        sent = []
        viewer.send = lambda content, buffers=None: sent.append((content, buffers))  # the comm to the page
        bleed = viewer.volume.world_to_index(BLEED_CENTRE_MM)
        viewer.crosshair = [int(v) for v in np.rint(bleed)]
        world = viewer.volume.index_to_world(viewer.crosshair)

        viewer._on_message(viewer, {"type": "request_full"}, [])
        assert viewer._meta["resolution"] == "slab"
        assert viewer._meta["note"].startswith("full resolution: stored slices ")
        assert [m["type"] for m, _ in sent] == ["volume_start"]  # the page then asks for the rest
        viewer._on_message(viewer, {"type": "request_rest"}, [])
        assert [m["type"] for m, _ in sent] == ["volume_start", "volume_chunk"]
        buffers = sent[1][1]
        assert viewer.volume.shape == (8, 96, 80)
        first = int(np.rint(head.world_to_index(viewer.volume.index_to_world([0, 0, 0]))[0]))
        assert first <= int(np.rint(head.world_to_index(world)[0])) < first + 8
        assert bytes(buffers[0]) == head.hu[first : first + 8].tobytes()  # every voxel, no thinning
        assert bytes(buffers[1]) == mask[first : first + 8].astype(np.uint8).tobytes()
        # the crosshair stays on the same spot of the patient, now on the finer grid
        moved = viewer.volume.index_to_world(viewer.crosshair)
        assert np.abs(moved - world).max() <= max(head.spacing) / 2 + 1e-6
        assert (
            viewer.volume.hu[tuple(viewer.crosshair)] == head.hu[tuple(np.rint(head.world_to_index(moved)).astype(int))]
        )

        viewer._on_message(viewer, {"type": "request_preview"}, [])
        assert viewer._meta["resolution"] == "preview" and viewer.volume.shape == (24, 48, 40)
        viewer._on_message(viewer, {"type": "request_rest"}, [])
        assert bytes(sent[-1][1][0]) == viewer.volume.hu.tobytes()

    def test_small_volume_is_full_resolution_and_needs_no_button(self, head):
        assert view(head)._meta["resolution"] == "full"

    def test_slab_limit_below_one_slice_is_refused_with_the_remedy(self, head):
        with pytest.raises(ValueError, match="over the limit of 100; pass a larger max_bytes"):
            full_resolution_slab(head, 3, limit=100)


def _blend(grey: float, colour: tuple[int, int, int], opacity: float) -> np.ndarray:
    return np.rint(grey * (1 - opacity) + np.asarray(colour, np.float64) * opacity)


def _count_near(image: np.ndarray, colour, tolerance: int = 2) -> int:
    """Pixels of an RGB(A) PNG within `tolerance` of `colour` in every channel."""
    return int((np.abs(image[..., :3].astype(int) - np.asarray(colour, int)) <= tolerance).all(axis=-1).sum())


class TestOverlaysInStaticPictures:
    """The picture saved for readers without a kernel shows the overlays, legend and measurements of the page."""

    @pytest.fixture()
    def overlaid(self, head):
        labels = np.zeros(head.shape, np.uint8)
        labels[head.hu == 5] = 3  # ventricles
        labels[head.hu == 1200] = 9  # skull
        viewer = view(head, {"bleed": head.hu == 70, "tissue": labels})
        viewer.crosshair = list(_bleed_voxel(head))
        return viewer

    def test_masks_and_label_values_take_the_palette_in_turn(self, head, overlaid):
        bleed, tissue = overlaid.overlays
        assert not bleed.is_label_map and bleed.legend() == [("bleed", OVERLAY_COLOURS[0])]
        assert tissue.values == (3, 9)
        assert tissue.legend() == [("tissue 3", OVERLAY_COLOURS[1]), ("tissue 9", OVERLAY_COLOURS[2])]
        # every value present has its own colour in the table the page indexes by value
        info = tissue.page_info()
        assert info["colours"][3] == list(OVERLAY_COLOURS[1]) and info["colours"][9] == list(OVERLAY_COLOURS[2])
        assert [e["text"] for e in info["legend"]] == ["tissue 3", "tissue 9"]

    def test_page_gets_the_same_overlay_colours_as_the_pictures(self, head, overlaid, tmp_path):
        (start, _), *_ = overlaid._volume_messages()
        assert start["overlays"] == [o.page_info() for o in overlaid.overlays]
        assert overlaid._meta["colours"]["crosshair"] == list(MARK_COLOURS["crosshair"])
        html = save_viewer_html(head, tmp_path / "scan.html", overlays=overlaid.overlays).read_text()
        assert json.dumps([o.page_info() for o in overlaid.overlays]) in html
        assert not list(tmp_path.glob("*.tmp"))

    def test_overlay_values_outside_a_byte_are_refused(self, head):
        with pytest.raises(ValueError, match="overlay 'regions' holds labels outside 0..255"):
            as_overlays(head, {"regions": np.full(head.shape, 300, np.int32)})

    def test_quick_picture_blends_visible_overlays_with_their_opacity(self, head, overlaid):
        k, r, c = _bleed_voxel(head)
        pixel = (r + 2, c + 2)  # inside the bleed, off the crosshair lines
        grey = 223.0  # 70 HU in the brain window 40/80
        image = _decode(overlaid._static_bundle(quick=True)["image/png"])
        np.testing.assert_array_equal(image[pixel], _blend(grey, OVERLAY_COLOURS[0], 0.4))
        overlaid.opacity = 0.9
        image = _decode(overlaid._static_bundle(quick=True)["image/png"])
        np.testing.assert_array_equal(image[pixel], _blend(grey, OVERLAY_COLOURS[0], 0.9))
        overlaid.overlay_visible = [False, True]
        image = _decode(overlaid._static_bundle(quick=True)["image/png"])
        np.testing.assert_array_equal(image[pixel], [grey] * 3)
        skull = np.argwhere(head.hu[k] == 1200)[0]
        np.testing.assert_array_equal(image[tuple(skull)], _blend(255, OVERLAY_COLOURS[2], 0.9))

    def test_quick_picture_paints_padding_and_measurements_like_the_page(self):
        padded = synthetic_head((12, 64, 64), (5.0, 2.5, 2.5), padding=True)
        viewer = view(padded)
        corner = np.argwhere(padded.padding[viewer.crosshair[0]])[0]
        line = {"kind": "line", "plane": "axial", "index": viewer.crosshair[0], "pixels": [5, 10, 5, 30], "text": "x"}
        viewer.measurements = [line, {**line, "index": 0, "pixels": [50, 10, 50, 30]}]  # the second: other slice
        image = _decode(viewer._quick_png())
        np.testing.assert_array_equal(image[tuple(corner)], MARK_COLOURS["padding"])
        assert (image[5, 10:31] == MARK_COLOURS["measurement"]).all()
        assert not (image[50, 10:31] == MARK_COLOURS["measurement"]).all(axis=-1).any()

    def test_neurological_picture_is_the_radiological_one_mirrored(self, head, overlaid):
        kwargs = dict(overlays=overlaid.overlays, opacity=0.4)
        point = tuple(overlaid.crosshair)
        radiological = render_plane(head, "axial", point, 40, 80, **kwargs)
        neurological = render_plane(head, "axial", point, 40, 80, convention="neurological", **kwargs)
        np.testing.assert_array_equal(neurological, radiological[:, ::-1])
        overlaid.convention = "neurological"
        np.testing.assert_array_equal(_decode(overlaid._quick_png()), neurological)

    def test_full_picture_shows_overlays_legend_and_only_the_visible_ones(self, head, overlaid):
        bleed_colour = _blend(223.0, OVERLAY_COLOURS[0], 0.4)
        image = _decode(overlaid.static_png())
        assert _count_near(image, bleed_colour) > 50  # the bleed, filled, in three planes
        assert _count_near(image, OVERLAY_COLOURS[0], 0) > 20  # its legend swatch
        assert _count_near(image, OVERLAY_COLOURS[2], 0) > 20  # label 9's swatch
        overlaid.overlay_visible = [False, True]
        image = _decode(overlaid.static_png())
        assert _count_near(image, bleed_colour) == 0 and _count_near(image, OVERLAY_COLOURS[0], 0) == 0
        assert _count_near(image, OVERLAY_COLOURS[2], 0) > 20

    def test_full_picture_draws_the_measurements_of_the_shown_slices(self, head, overlaid):
        k, r, c = overlaid.crosshair
        assert _count_near(_decode(overlaid.static_png()), MARK_COLOURS["measurement"]) == 0
        overlaid.measurements = [
            {"kind": "line", "plane": "axial", "index": k, "pixels": [10, 10, 10, 70], "text": "120.0 mm"},
            {"kind": "ellipse", "plane": "coronal", "index": r, "pixels": [4, 20, 12, 40], "text": "mean 40.0 HU"},
        ]
        image = _decode(overlaid.static_png())
        assert _count_near(image, MARK_COLOURS["measurement"]) > 40
        caption = overlaid._static_bundle(quick=True)["text/plain"]
        assert f"#1 axial {k}: 120.0 mm" in caption and f"#2 coronal {r}: mean 40.0 HU" in caption
        assert "overlays shown: bleed, tissue (opacity 0.4)" in caption

    def test_update_static_redraws_the_output_from_the_current_state(self, head, overlaid):
        updates = []

        class Handle:
            def update(self, bundle, raw):
                updates.append(bundle)

        overlaid._static_handle = Handle()
        overlaid.overlay_visible = [False, False]
        overlaid.update_static()
        assert "overlays shown: none" in updates[-1]["text/plain"]
        assert _count_near(_decode(updates[-1]["image/png"]), OVERLAY_COLOURS[0], 0) == 0

    def test_saved_html_starts_from_the_viewers_state_on_its_own_grid(self, head, overlaid, tmp_path):
        k, r, c = overlaid.crosshair
        overlaid.overlay_visible = [True, False]
        overlaid.opacity = 0.7
        overlaid.measurements = [{"kind": "line", "plane": "axial", "index": k, "pixels": [10, 10, 10, 70]}]
        path = overlaid.save_html(tmp_path / "scan.html", max_bytes=head.hu.nbytes // 3)  # thinned 2x in-plane
        html = path.read_text()
        state = json.loads(html.split("const state = ", 1)[1].split(";\n", 1)[0])
        assert state["overlay_visible"] == [True, False] and state["opacity"] == 0.7
        assert state["crosshair"] == [k, round(r / 2), round(c / 2)]
        assert state["measurements"][0]["pixels"] == [5, 5, 5, 35] and state["measurements"][0]["index"] == k

    def test_one_plane_layout_gives_a_picture_of_the_main_plane(self, head, overlaid):
        three = _decode(overlaid.static_png())
        overlaid.plane_layout, overlaid.plane = "one", "coronal"
        one = _decode(overlaid.static_png())
        assert three.shape[1] > 2 * three.shape[0] and one.shape[1] < 1.6 * one.shape[0]
        assert _count_near(one, _blend(223.0, OVERLAY_COLOURS[0], 0.4)) > 20  # the bleed, in the coronal plane
