"""Tests for ctexplore.geometry: every check is made in patient (world) coordinates."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ctexplore.geometry import body_mask, correct_tilt, crop_to_head, reorient, resample
from ctexplore.volume import Volume


def axial_affine(
    slice_step: float = 2.5,
    pixel: tuple[float, float] = (0.8, 0.8),
    tilt_deg: float = 0.0,
    origin: tuple[float, float, float] = (-25.0, -30.0, 10.0),
    shear_axis: int = 1,
) -> np.ndarray:
    """Axial LPS affine; the stacking vector leans by `tilt_deg` along y (rows) or x (cols)."""
    affine = np.eye(4)
    affine[:3, 1] = [0.0, pixel[0], 0.0]  # rows step along +y (posterior)
    affine[:3, 2] = [pixel[1], 0.0, 0.0]  # columns step along +x (left)
    tilt = np.radians(tilt_deg)
    stack = np.array([0.0, 0.0, slice_step])
    lean = slice_step * np.tan(tilt)
    stack[shear_axis] = lean
    affine[:3, 0] = stack
    affine[:3, 3] = origin
    return affine


def world_grid(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """(..., 3) world coordinates of every voxel centre."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return index @ affine[:3, :3].T + affine[:3, 3]


def blob_volume(affine: np.ndarray, shape: tuple[int, int, int], centre, sigma: float = 3.0) -> Volume:
    """A Gaussian blob of 1000 HU above air at a known world point."""
    distance2 = ((world_grid(affine, shape) - np.asarray(centre)) ** 2).sum(-1)
    hu = (-1000.0 + 1000.0 * np.exp(-distance2 / (2 * sigma**2))).astype(np.float32)
    return Volume(hu, affine)


def linear_volume(affine: np.ndarray, shape: tuple[int, int, int]) -> Volume:
    """HU that are a linear function of world position: linear interpolation reproduces it exactly."""
    hu = (world_grid(affine, shape) @ np.array([2.0, -3.0, 5.0]) + 100.0).astype(np.float32)
    return Volume(hu, affine)


def linear_field(points: np.ndarray) -> np.ndarray:
    return points @ np.array([2.0, -3.0, 5.0]) + 100.0


def between_centres(out: Volume, source: Volume) -> np.ndarray:
    """Output voxels whose centre lies within the hull of the source voxel centres."""
    index = source.world_to_index(world_grid(out.affine, out.shape))
    upper = np.array(source.shape) - 1
    return np.all((index >= -1e-9) & (index <= upper + 1e-9), axis=-1)


def centre_of_mass_world(volume: Volume) -> np.ndarray:
    weights = volume.hu.astype(np.float64) + 1000.0
    return volume.index_to_world(np.array(ndimage.center_of_mass(weights)))


BLOB_CENTRE = (-3.0, -3.0, 40.0)  # well inside every test slab: the blob is not truncated
SHAPE = (24, 64, 64)


class TestCorrectTilt:
    @pytest.mark.parametrize("tilt_deg", [20.0, -15.0])
    @pytest.mark.parametrize("shear_axis", [1, 0])
    def test_blob_stays_at_its_world_point(self, tilt_deg, shear_axis):
        vol = blob_volume(axial_affine(tilt_deg=tilt_deg, shear_axis=shear_axis), SHAPE, BLOB_CENTRE)
        assert vol.is_tilted
        fixed = correct_tilt(vol)
        assert not fixed.is_tilted
        assert abs(fixed.gantry_tilt) < 1e-6
        np.testing.assert_allclose(centre_of_mass_world(fixed), BLOB_CENTRE, atol=0.1)

    def test_linear_field_is_reproduced_exactly_inside_the_slab(self):
        vol = linear_volume(axial_affine(tilt_deg=22.0), SHAPE)
        fixed = correct_tilt(vol)
        inside = between_centres(fixed, vol)  # beyond, the edge voxel's value is kept
        assert inside.sum() > 0.8 * vol.hu.size
        expected = linear_field(world_grid(fixed.affine, fixed.shape))
        np.testing.assert_allclose(fixed.hu[inside], expected[inside], atol=0.05)

    def test_slices_lie_along_the_normal_with_true_plane_distance(self):
        vol = linear_volume(axial_affine(slice_step=5.0, tilt_deg=24.0), SHAPE)
        fixed = correct_tilt(vol)
        np.testing.assert_allclose(fixed.affine[:3, 0], [0.0, 0.0, 5.0], atol=1e-9)
        np.testing.assert_allclose(fixed.spacing, (5.0, 0.8, 0.8))
        np.testing.assert_allclose(fixed.affine[:3, 1:3], vol.affine[:3, 1:3])

    def test_first_slice_keeps_its_voxel_centres(self):
        vol = blob_volume(axial_affine(tilt_deg=20.0), SHAPE, BLOB_CENTRE)
        fixed = correct_tilt(vol)
        start = np.round(fixed.world_to_index(vol.index_to_world([0, 0, 0]))).astype(int)
        rows, cols = vol.shape[1:]
        np.testing.assert_array_equal(fixed.hu[0, start[1] : start[1] + rows, start[2] : start[2] + cols], vol.hu[0])

    def test_air_outside_the_acquired_slab_and_marked(self):
        vol = linear_volume(axial_affine(tilt_deg=20.0), SHAPE)
        fixed = correct_tilt(vol)
        assert fixed.shape[1] > vol.shape[1]  # grown to hold the sheared slab
        assert fixed.padding is not None and fixed.padding.any()
        assert np.all(fixed.hu[fixed.padding] == -1000.0)
        # the slab's positive-y shift leaves the first slice's last rows empty ...
        assert fixed.padding[0, -1, 0] and fixed.padding[-1, 0, 0]
        # ... while the output voxels nearest to the acquired corners hold data
        for corner in np.ndindex(2, 2, 2):
            source_corner = np.array(corner) * (np.array(SHAPE) - 1)
            nearest = np.round(fixed.world_to_index(vol.index_to_world(source_corner))).astype(int)
            assert not fixed.padding[tuple(nearest)]
        # the voxel count with data equals the acquired count, slice by slice
        np.testing.assert_array_equal((~fixed.padding).sum(axis=(1, 2)), SHAPE[1] * SHAPE[2])

    def test_untilted_volume_is_returned_unchanged(self):
        vol = linear_volume(axial_affine(), SHAPE)
        assert correct_tilt(vol) is vol

    def test_descending_slice_order_keeps_its_direction(self):
        affine = axial_affine(tilt_deg=18.0)
        affine[:3, 0] *= -1
        vol = blob_volume(affine, SHAPE, (-3.0, -8.0, -20.0))
        fixed = correct_tilt(vol)
        assert fixed.affine[2, 0] < 0
        np.testing.assert_allclose(centre_of_mass_world(fixed), (-3.0, -8.0, -20.0), atol=0.1)

    def test_output_is_float32(self):
        vol = Volume(np.zeros(SHAPE, np.int16), axial_affine(tilt_deg=10.0))
        assert correct_tilt(vol).hu.dtype == np.float32


class TestResample:
    def test_spacing_request_gives_shape_and_spacing(self):
        vol = Volume(np.zeros((32, 64, 64), np.int16), np.diag([0.625, 0.5, 0.5, 1.0]))
        out = resample(vol, spacing=1.0)
        assert out.shape == (20, 32, 32)
        np.testing.assert_allclose(out.spacing, (1.0, 1.0, 1.0))
        assert out.hu.dtype == np.float32

    def test_anisotropic_spacing_and_shape_requests(self):
        vol = Volume(np.zeros((30, 64, 64), np.int16), np.diag([5.0, 0.5, 0.5, 1.0]))
        out = resample(vol, spacing=(2.5, 1.0, 2.0))
        assert out.shape == (60, 32, 16)
        out = resample(vol, shape=(50, 40, 80))
        assert out.shape == (50, 40, 80)
        np.testing.assert_allclose(out.spacing, (3.0, 0.8, 0.4))

    def test_field_of_view_centre_is_kept(self):
        vol = Volume(np.zeros((31, 64, 50), np.int16), axial_affine(slice_step=1.25, pixel=(0.45, 0.6)))
        out = resample(vol, spacing=(1.0, 1.1, 0.7))
        centre_in = vol.index_to_world((np.array(vol.shape) - 1) / 2)
        centre_out = out.index_to_world((np.array(out.shape) - 1) / 2)
        np.testing.assert_allclose(centre_out, centre_in, atol=1e-9)

    @pytest.mark.parametrize("tilt_deg", [0.0, 20.0])
    @pytest.mark.parametrize("spacing", [1.0, (1.7, 0.6, 1.3)])
    def test_blob_stays_at_its_world_point(self, tilt_deg, spacing):
        vol = blob_volume(axial_affine(tilt_deg=tilt_deg), SHAPE, BLOB_CENTRE)
        out = resample(vol, spacing=spacing)
        assert not out.is_tilted
        np.testing.assert_allclose(centre_of_mass_world(out), BLOB_CENTRE, atol=0.15)

    def test_tilted_resample_is_one_trilinear_interpolation(self):
        vol = blob_volume(axial_affine(tilt_deg=20.0), SHAPE, BLOB_CENTRE, sigma=3.0)
        out = resample(vol, spacing=(1.3, 1.1, 0.9))
        source_index = vol.world_to_index(world_grid(out.affine, out.shape))
        expected = ndimage.map_coordinates(
            vol.hu.astype(np.float64), np.moveaxis(source_index, -1, 0), order=1, mode="nearest"
        )
        inside = ~out.padding
        np.testing.assert_allclose(out.hu[inside], expected[inside], atol=1e-2)
        # a two-step pipeline (correct tilt, then resample) would blur more: not equal
        two_step = resample(correct_tilt(vol), spacing=(1.3, 1.1, 0.9))
        assert two_step.shape == out.shape
        assert np.abs(two_step.hu - out.hu).max() > 1.0

    def test_linear_field_exact_for_tilted_volume(self):
        vol = linear_volume(axial_affine(tilt_deg=-17.0, shear_axis=0), SHAPE)
        out = resample(vol, spacing=1.5, antialias=False)  # interpolation alone is exact on a linear field
        inside = between_centres(out, vol)
        assert inside.sum() > 0.6 * (~out.padding).sum()
        expected = linear_field(world_grid(out.affine, out.shape))
        np.testing.assert_allclose(out.hu[inside], expected[inside], atol=0.05)

    @pytest.mark.parametrize("order", [0, 1, 3])
    def test_orders_are_selectable_and_keep_the_blob(self, order):
        vol = blob_volume(axial_affine(tilt_deg=12.0), SHAPE, BLOB_CENTRE)
        out = resample(vol, spacing=1.2, order=order)
        assert out.hu.dtype == np.float32
        assert not out.is_tilted
        np.testing.assert_allclose(centre_of_mass_world(out), BLOB_CENTRE, atol=0.4)

    def test_nearest_neighbour_only_copies_input_values(self):
        rng = np.random.default_rng(1)
        hu = rng.integers(-1000, 1000, SHAPE).astype(np.int16)
        out = resample(Volume(hu, axial_affine()), spacing=(1.0, 1.1, 0.5), order=0, antialias=False)
        assert np.isin(out.hu, hu).all()

    def test_cubic_matches_scipy_on_the_same_grid(self):
        vol = blob_volume(axial_affine(), SHAPE, BLOB_CENTRE)
        out = resample(vol, spacing=1.7, order=3, antialias=False, clip=False)
        source_index = vol.world_to_index(world_grid(out.affine, out.shape))
        expected = ndimage.map_coordinates(
            vol.hu.astype(np.float64), np.moveaxis(source_index, -1, 0), order=3, mode="mirror"
        )
        np.testing.assert_allclose(out.hu, expected, atol=0.05)

    def test_padding_is_carried_and_never_leaks_below_air(self):
        hu = np.full(SHAPE, 40, np.int16)
        padding = np.zeros(SHAPE, bool)
        padding[:, :10, :] = True  # rows outside the reconstructed field of view
        hu[padding] = -1000  # the loader already wrote air there
        vol = Volume(hu, axial_affine(), padding=padding)
        out = resample(vol, spacing=1.6)
        assert out.hu.min() >= -1000.0
        assert out.padding is not None and out.padding.shape == out.shape
        # world y of the padding edge: rows 0..9 of 0.8 mm -> up to 0.4 mm past row 9
        edge_y = vol.index_to_world([0, 9.5, 0])[1]
        row_y = out.index_to_world(
            np.stack([np.zeros(out.shape[1]), np.arange(out.shape[1]), np.zeros(out.shape[1])], -1)
        )[:, 1]
        np.testing.assert_array_equal(out.padding[0, :, 0], row_y < edge_y)
        # well inside the padding band the output is plain air
        assert np.all(out.hu[:, row_y < edge_y - 1.6, :] == -1000.0)

    def test_every_voxel_flagged_as_padding_holds_the_fill_also_at_the_border(self):
        hu = np.full(SHAPE, 40, np.int16)
        padding = np.zeros(SHAPE, bool)
        padding[:, :10, :] = True
        hu[padding] = -1000
        # 1.7 mm output rows fall between 0.8 mm source rows: linear blends, nearest flags
        out = resample(Volume(hu, axial_affine(), padding=padding), spacing=1.7)
        assert out.padding[:, :, 0].any()
        assert np.all(out.hu[out.padding] == -1000.0)

    def test_untilted_volume_without_padding_gets_no_mask(self):
        vol = Volume(np.zeros(SHAPE, np.int16), axial_affine())
        assert resample(vol, spacing=1.0).padding is None

    def test_slice_positions_follow_the_new_slices(self):
        vol = Volume(
            np.zeros((8, 4, 4), np.int16),
            axial_affine(2.0, (1.0, 1.0), origin=(0, 0, 0)),
            meta={"slice_positions": [2.0 * k for k in range(8)]},
        )
        out = resample(vol, spacing=(4.0, 1.0, 1.0))
        assert out.meta["slice_positions"] == [1.0, 5.0, 9.0, 13.0]

    def test_bad_requests_are_refused(self):
        vol = Volume(np.zeros((4, 4, 4), np.int16), np.eye(4))
        with pytest.raises(ValueError, match="exactly one"):
            resample(vol)
        with pytest.raises(ValueError, match="exactly one"):
            resample(vol, spacing=1.0, shape=(2, 2, 2))
        with pytest.raises(ValueError, match="positive"):
            resample(vol, spacing=0.0)
        with pytest.raises(ValueError, match="order"):
            resample(vol, spacing=1.0, order=7)


def head_with_table() -> Volume:
    hu = np.full((20, 60, 60), -1000, np.int16)
    z, y, x = np.ogrid[:20, :60, :60]
    head = ((z - 10) / 8.0) ** 2 + ((y - 25) / 18.0) ** 2 + ((x - 30) / 15.0) ** 2 <= 1
    hu[head] = 35
    hu[head & (((z - 10) / 3.0) ** 2 + ((y - 25) / 4.0) ** 2 + ((x - 30) / 4.0) ** 2 <= 1)] = -1000
    hu[:, 52:55, 5:55] = 300  # table below the head, not touching it
    return Volume(hu, axial_affine(slice_step=2.0, pixel=(1.0, 1.0)))


class TestBodyMask:
    def test_keeps_the_head_fills_cavities_and_drops_the_table(self):
        vol = head_with_table()
        mask = body_mask(vol)
        assert mask[10, 25, 30]  # the air cavity inside is filled
        assert not mask[:, 52:55, :].any()  # table excluded
        assert not mask[0].any()

    def test_accepts_arrays_and_handles_all_air(self):
        assert not body_mask(np.full((3, 4, 4), -1000, np.int16)).any()


class TestCropToHead:
    def test_voxels_keep_their_world_position(self):
        vol = head_with_table()
        cropped = crop_to_head(vol, margin_mm=2.0)
        assert cropped.shape[1] < vol.shape[1] and cropped.shape[2] < vol.shape[2]
        # any voxel of the crop holds the value of the source voxel at the same world point
        point = cropped.index_to_world([3, 5, 7])
        source = np.round(vol.world_to_index(point)).astype(int)
        assert cropped.hu[3, 5, 7] == vol.hu[tuple(source)]
        # the margin: 2 mm = 1 slice of 2 mm, 2 pixels of 1 mm around the head's box
        head_rows = np.flatnonzero(body_mask(vol).any(axis=(0, 2)))
        assert cropped.shape[1] == head_rows[-1] - head_rows[0] + 1 + 4

    def test_tilted_volume_stays_tilted_and_in_place(self):
        vol = head_with_table()
        affine = vol.affine.copy()
        affine[1, 0] = 0.7
        tilted = Volume(vol.hu, affine)
        cropped = crop_to_head(tilted)
        assert cropped.is_tilted
        point = cropped.index_to_world([4, 4, 4])
        np.testing.assert_allclose(tilted.world_to_index(point) % 1, 0, atol=1e-9)

    def test_all_air_is_refused(self):
        with pytest.raises(ValueError, match="nothing to crop"):
            crop_to_head(Volume(np.full((3, 4, 4), -1000, np.int16), np.eye(4)))


class TestReorient:
    def test_canonical_volume_is_returned_unchanged(self):
        vol = Volume(np.zeros((2, 3, 4), np.int16), axial_affine())
        assert reorient(vol) is vol

    @pytest.mark.parametrize("axes", ["IAR", "LPS", "RSA", "PLI"])
    def test_every_voxel_keeps_its_world_position(self, axes):
        rng = np.random.default_rng(0)
        vol = Volume(rng.integers(-1000, 1000, (5, 6, 7)).astype(np.int16), axial_affine(tilt_deg=10.0))
        out = reorient(vol, axes)
        assert sorted(out.shape) == sorted(vol.shape)
        index = np.stack(np.meshgrid(*[np.arange(n) for n in out.shape], indexing="ij"), -1).reshape(-1, 3)
        source = np.round(vol.world_to_index(out.index_to_world(index))).astype(int)
        np.testing.assert_array_equal(out.hu.reshape(-1), vol.hu[tuple(source.T)])
        back = reorient(out, "SPL")
        np.testing.assert_array_equal(back.hu, vol.hu)
        np.testing.assert_allclose(back.affine, vol.affine, atol=1e-12)

    def test_axes_point_towards_the_requested_directions(self):
        vol = Volume(np.zeros((2, 3, 4), np.int16), axial_affine())
        out = reorient(vol, "IAR")
        assert out.affine[2, 0] < 0 and out.affine[1, 1] < 0 and out.affine[0, 2] < 0

    def test_flipping_slices_reverses_files_and_positions(self):
        vol = Volume(
            np.zeros((3, 2, 2), np.int16),
            axial_affine(),
            files=("a", "b", "c"),
            meta={"slice_positions": [0.0, 2.5, 5.0]},
        )
        out = reorient(vol, "IPL")
        assert out.files == ("c", "b", "a")
        assert out.meta["slice_positions"] == [5.0, 2.5, 0.0]

    def test_bad_axes_are_refused(self):
        vol = Volume(np.zeros((2, 2, 2), np.int16), np.eye(4))
        with pytest.raises(ValueError, match="once each"):
            reorient(vol, "SSL")


class TestCropKeepsPerSliceMetadata:
    def test_crop_of_a_loaded_series_cuts_slice_positions_with_the_slices(self, tmp_path):
        from ctexplore.phantom import SliceGeometry, write_series
        from ctexplore.reader import load_series

        write_series(tmp_path, geometry=SliceGeometry(n_slices=40, matrix=48, slice_spacing=5.0))
        volume = load_series(tmp_path)  # the reader stores slice_positions as an array
        cropped = crop_to_head(volume)
        assert cropped.shape[0] < volume.shape[0]
        positions = cropped.meta["slice_positions"]
        assert len(positions) == cropped.shape[0] == len(cropped.files)
        # each kept slice keeps its own position: the first one is where the affine puts slice 0
        assert positions[0] == pytest.approx(float(cropped.affine[:3, 3] @ cropped.normal))
        np.testing.assert_allclose(np.diff(positions), 5.0, atol=1e-3)
