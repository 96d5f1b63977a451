"""Slice grids, HU histograms, orthogonal views and MIPs of synthetic head volumes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from synthetic_volumes import BLEED_CENTRE_MM, head_affine, synthetic_head  # noqa: E402

from ctexplore.planes import plane_geometry, slice_image  # noqa: E402
from ctexplore.plotting import (  # noqa: E402
    hu_histogram,
    max_intensity_projection,
    plot_hu_histogram,
    plot_orthogonal,
    plot_slice_grid,
)
from ctexplore.viewer import MARK_COLOURS, OVERLAY_COLOURS  # noqa: E402
from ctexplore.volume import Volume  # noqa: E402


@pytest.fixture(scope="module")
def head() -> Volume:
    return synthetic_head((24, 96, 80), (5.0, 2.5, 2.0), padding=True)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _panel_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def _legend_texts(fig):
    return [text.get_text() for legend in fig.legends for text in legend.get_texts()]


def _rendered(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3]


class TestSliceGrid:
    def test_panels_are_labelled_with_their_position_in_mm(self, head):
        fig = plot_slice_grid(head, 4)
        z = head.index_to_world(np.c_[np.arange(24), np.zeros((24, 2))])[:, 2]
        titles = [ax.get_title() for ax in _panel_axes(fig)]
        assert titles == [f"#{k}  z = {z[k]:.1f} mm" for k in (3, 9, 14, 20)]

    def test_positions_pick_the_nearest_plane(self, head):
        fig = plot_slice_grid(head, positions=[31.0, -2.0])
        assert [ax.get_title() for ax in _panel_axes(fig)] == ["#18  z = 32.5 mm", "#11  z = -2.5 mm"]

    def test_position_outside_the_scan_is_an_error(self, head):
        with pytest.raises(ValueError, match=r"z = 80.0 mm is outside the axial planes"):
            plot_slice_grid(head, positions=[80.0])

    def test_indices_outside_the_volume_are_an_error(self, head):
        with pytest.raises(IndexError, match=r"axial indices \[24\]"):
            plot_slice_grid(head, indices=[0, 24])

    def test_coronal_panels_use_spacing_aspect_and_head_up(self, head):
        fig = plot_slice_grid(head, indices=[30], plane="coronal", window="bone")
        image = _panel_axes(fig)[0].images[0]
        assert image.axes.get_aspect() == pytest.approx(5.0 / 2.0)
        np.testing.assert_array_equal(image.get_array(), head.hu[::-1, 30, :])
        assert image.get_clim() == (600 - 1400, 600 + 1400)

    def test_mask_is_drawn_over_the_slice(self, head):
        k = int(round(head.world_to_index(BLEED_CENTRE_MM)[0]))
        fig = plot_slice_grid(head, indices=[k], mask=head.hu == 70, mask_opacity=0.5)
        base, overlay = _panel_axes(fig)[0].images
        rgba = overlay.get_array()
        bleed = head.hu[k] == 70
        np.testing.assert_allclose(rgba[bleed], [(*np.divide(OVERLAY_COLOURS[0], 255), 0.5)] * int(bleed.sum()))
        assert (rgba[~bleed, 3] == 0).all()
        assert _legend_texts(fig) == ["mask"]

    def test_overlays_are_named_in_a_legend_with_label_values(self, head):
        k = int(round(head.world_to_index(BLEED_CENTRE_MM)[0]))
        labels = np.where(head.hu == 1200, 4, 0).astype(np.uint8)
        fig = plot_slice_grid(head, indices=[k], overlays={"bleed": head.hu == 70, "bone": labels})
        assert _legend_texts(fig) == ["bleed", "bone 4"]
        colours = [tuple(np.rint(np.multiply(h.get_facecolor()[:3], 255))) for h in fig.legends[0].legend_handles]
        assert colours == [OVERLAY_COLOURS[0], OVERLAY_COLOURS[1]]
        with pytest.raises(ValueError, match="not both"):
            plot_slice_grid(head, indices=[k], mask=labels > 0, overlays={"bone": labels})

    def test_tilted_volume_says_so_in_the_title(self):
        affine = head_affine((6, 32, 32), (5.0, 1.0, 1.0))
        affine[:3, 0] = [0.0, 5.0 * np.sin(np.radians(15)), 5.0 * np.cos(np.radians(15))]
        fig = plot_slice_grid(Volume(np.zeros((6, 32, 32), np.int16), affine), 2)
        assert "gantry tilt 15.0°" in fig._suptitle.get_text()


class TestHuHistogram:
    def test_int16_counts_every_value_exactly(self, head):
        edges, counts = hu_histogram(head)
        values, expected = np.unique(head.hu, return_counts=True)
        np.testing.assert_array_equal(counts[values - values.min()], expected)
        assert counts.sum() == head.hu.size
        assert edges[0] == values.min() - 0.5 and len(edges) == len(counts) + 1

    def test_float32_is_binned_one_hu_wide(self):
        hu = np.array([[[-0.4, 0.3, 39.6, 40.2, 1000.0]]], np.float32)
        edges, counts = hu_histogram(hu)
        assert counts[0] == 2 and counts[40] == 2 and counts[-1] == 1

    def test_excluded_voxels_are_not_counted(self, head):
        _, counts = hu_histogram(head, exclude=head.padding)
        assert counts.sum() == (~head.padding).sum()

    def test_plot_excludes_padding_by_default(self, head):
        fig = plot_hu_histogram(head)
        assert f"{int((~head.padding).sum()):,} voxels (padding excluded)" in fig.axes[0].get_title()

    def test_outside_air_is_excluded_but_tissue_kept(self, head):
        fig = plot_hu_histogram(head, exclude_outside=True, exclude_padding=False)
        title = fig.axes[0].get_title()
        counted = int(title.split(": ")[1].split(" voxels")[0].replace(",", ""))
        tissue = int((head.hu > -500).sum())
        assert tissue <= counted < tissue + 0.02 * head.hu.size

    def test_log_scale_and_detail_panel(self, head):
        fig = plot_hu_histogram(head, log=True)
        assert [ax.get_yscale() for ax in fig.axes] == ["log", "log"]
        assert fig.axes[1].get_xlim() == (-30.0, 110.0)
        assert len(plot_hu_histogram(head, detail=None).axes) == 1

    def test_tissue_bands_are_labelled(self, head):
        fig = plot_hu_histogram(head)
        detail_labels = {text.get_text() for text in fig.axes[1].texts}
        assert {"CSF", "white matter", "grey matter", "acute hemorrhage"} <= detail_labels
        assert {"air", "bone", "brain (detail)"} <= {t.get_text() for t in fig.axes[0].texts}


class TestOrthogonalAndProjection:
    def test_crosshairs_meet_at_the_point_in_every_plane(self, head):
        k, r, c = (int(v) for v in np.round(head.world_to_index(BLEED_CENTRE_MM)))
        fig = plot_orthogonal(head, BLEED_CENTRE_MM, world=True)
        axial, coronal, sagittal = fig.axes
        assert axial.lines[0].get_ydata()[0] == r and axial.lines[1].get_xdata()[0] == c
        assert coronal.lines[0].get_ydata()[0] == head.shape[0] - 1 - k
        assert sagittal.lines[1].get_xdata()[0] == r
        assert ": 70 HU" in fig._suptitle.get_text()
        for ax, plane in zip(fig.axes, ("axial", "coronal", "sagittal")):
            assert ax.get_aspect() == pytest.approx(plane_geometry(head, plane).aspect)

    def test_point_outside_the_volume_is_an_error(self, head):
        with pytest.raises(IndexError, match="outside the volume"):
            plot_orthogonal(head, (0, 0, 500))

    def test_mip_panels_are_projections(self, head):
        fig = plot_orthogonal(head, mip=True)
        assert [ax.get_title() for ax in fig.axes] == ["axial MIP", "coronal MIP", "sagittal MIP"]

    def test_projection_is_the_maximum_oriented_like_the_slices(self, head):
        coronal = plane_geometry(head, "coronal")
        mip = max_intensity_projection(head, "coronal")
        np.testing.assert_array_equal(mip, head.hu.max(axis=1)[::-1])
        assert mip.shape == slice_image(head.hu, coronal, 0).shape
        slab = max_intensity_projection(head, "axial", slab=(0, 2))
        np.testing.assert_array_equal(slab, head.hu[:2].max(axis=0))
        with pytest.raises(ValueError, match="slab"):
            max_intensity_projection(head, "axial", slab=(5, 5))

    def test_orthogonal_overlays_fill_every_plane_in_the_viewer_colours(self, head):
        point = tuple(int(v) for v in np.round(head.world_to_index(BLEED_CENTRE_MM)))
        fig = plot_orthogonal(head, point, overlays={"bleed": head.hu == 70}, mask_opacity=1.0)
        assert _legend_texts(fig) == ["bleed"]
        for ax, plane in zip(fig.axes, ("axial", "coronal", "sagittal")):
            geometry = plane_geometry(head, plane)
            expected = slice_image(head.hu == 70, geometry, point[geometry.slice_axis])
            np.testing.assert_array_equal(ax.images[1].get_array()[..., 3] > 0, expected)
        picture = _rendered(fig)
        red = (np.abs(picture.astype(int) - OVERLAY_COLOURS[0]) <= 2).all(axis=-1)
        assert red.sum() > 100  # three opaque bleeds and the swatch, in the rendered pixels

    def test_mip_projects_the_overlays_too(self, head):
        fig = plot_orthogonal(head, mip=True, overlays={"bleed": head.hu == 70})
        np.testing.assert_array_equal(fig.axes[0].images[1].get_array()[..., 3] > 0, (head.hu == 70).any(axis=0))

    def test_neurological_convention_mirrors_axial_and_coronal_and_swaps_letters(self, head):
        radiological = plot_orthogonal(head, window="bone")
        neurological = plot_orthogonal(head, window="bone", convention="neurological")
        for a, b in zip(radiological.axes[:2], neurological.axes[:2]):
            np.testing.assert_array_equal(b.images[0].get_array(), a.images[0].get_array()[:, ::-1])
            assert [t.get_text() for t in b.texts][:2] == ["L", "R"]
        np.testing.assert_array_equal(
            neurological.axes[2].images[0].get_array(), radiological.axes[2].images[0].get_array()
        )
        with pytest.raises(ValueError, match="convention must be"):
            plot_orthogonal(head, convention="left")

    def test_padding_is_drawn_in_the_viewer_padding_colour_when_asked(self, head):
        fig = plot_orthogonal(head, show_padding=True)
        assert _legend_texts(fig) == ["padding (outside the scanned field)"]
        picture = _rendered(fig)
        assert (picture == MARK_COLOURS["padding"]).all(axis=-1).sum() > 100
        assert not (_rendered(plot_orthogonal(head)) == MARK_COLOURS["padding"]).all(axis=-1).any()

    def test_chosen_planes_only(self, head):
        fig = plot_orthogonal(head, (10, 40, 30), planes=("coronal",))
        assert [ax.get_title() for ax in fig.axes] == [f"coronal  y = {head.index_to_world([0, 40, 0])[1]:.1f} mm"]
        with pytest.raises(ValueError, match="plane must be one of"):
            plot_orthogonal(head, planes=("oblique",))
