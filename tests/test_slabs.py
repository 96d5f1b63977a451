"""2.5D stacks, thick slabs and source slices on real phantom DICOM, straight and gantry-tilted."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

import ctexplore as ct
from ctexplore.intensity import window, window_stack
from ctexplore.phantom import write_series
from ctexplore.slabs import slice_plane_positions, stack_channel_names


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    folder = tmp_path_factory.mktemp("straight")
    write_series(folder, n_slices=23, matrix=48, slice_spacing=1.0, noise=5.0, shuffle=True, seed=1)
    return ct.load_series(folder)


@pytest.fixture(scope="module")
def tilted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tilted")
    written = write_series(folder, n_slices=16, matrix=48, slice_spacing=2.5, gantry_tilt=22.0, shuffle=True, seed=2)
    return written, ct.load_series(folder)


def _uid_by_plane(files, normal):
    """SOP Instance UID of each file, keyed by its plane position along the normal (read back from the bytes)."""
    planes = {}
    for path in files:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        planes[round(float(np.dot(header.ImagePositionPatient, normal)), 3)] = header.SOPInstanceUID
    return planes


class TestSourceSlices:
    def test_the_loader_records_each_image_uid_at_its_plane(self, tilted):
        written, volume = tilted
        planes = _uid_by_plane(written.files, volume.normal)
        recorded = dict(zip(np.round(volume.meta["source_slice_positions"], 3), volume.meta["sop_instance_uids"]))
        assert recorded == planes and len(recorded) == 16

    def test_after_tilt_correction_each_slice_is_its_own_acquired_image(self, tilted):
        written, volume = tilted
        upright = ct.correct_tilt(volume)
        assert not upright.is_tilted
        planes = _uid_by_plane(written.files, volume.normal)
        expected = [[planes[round(float(p), 3)]] for p in slice_plane_positions(upright)]
        assert ct.source_slices(upright) == expected

    def test_resampled_slices_name_the_images_they_lie_between_or_over(self, tilted):
        written, volume = tilted
        acquired = np.asarray(volume.meta["source_slice_positions"])
        uids = np.asarray(volume.meta["sop_instance_uids"])
        for spacing in (1.0, 4.0):
            out = ct.resample(volume, spacing=(spacing, 2.0, 2.0))
            for plane, sources in zip(slice_plane_positions(out), ct.source_slices(out)):
                near = uids[np.abs(acquired - plane) <= spacing / 2 + 1e-3]
                below = uids[acquired <= plane + 1e-3][-1:]  # interpolation's neighbours
                above = uids[acquired >= plane - 1e-3][:1]
                assert set(sources) == set(near) | set(below) | set(above)

    def test_a_volume_without_recorded_images_is_a_clear_error(self):
        volume = ct.Volume(np.zeros((2, 4, 4), np.int16), np.eye(4))
        with pytest.raises(ValueError, match="sop_instance_uids"):
            ct.source_slices(volume)


class TestThickSlabs:
    @pytest.mark.parametrize("mode, reduce", [("mean", np.mean), ("max", np.max), ("min", np.min)])
    def test_each_slab_reduces_its_thin_slices(self, straight, mode, reduce):
        slabs = ct.thick_slabs(straight, 5.0, mode)
        assert slabs.shape == (4, 48, 48) and slabs.spacing[0] == pytest.approx(5.0)
        expected = reduce(straight.hu[:20].astype(np.float32).reshape(4, 5, 48, 48), axis=1)
        np.testing.assert_allclose(slabs.hu, expected, rtol=1e-6, atol=1e-3)
        assert slabs.meta["slab"] == {"thickness_mm": 5.0, "mode": mode, "slices_per_slab": 5, "dropped_slices": 3}
        # each slab is centred on its five thin slices and made of exactly them
        thin = np.asarray(straight.meta["slice_positions"])
        np.testing.assert_allclose(slice_plane_positions(slabs), thin[:20].reshape(4, 5).mean(axis=1))
        uids = np.asarray(straight.meta["sop_instance_uids"])
        assert slabs.meta["slice_sources"] == [list(group) for group in uids[:20].reshape(4, 5)]

    def test_the_mean_slab_is_float32_and_mip_keeps_the_dtype(self, straight):
        assert ct.thick_slabs(straight, 3.0, "mean").hu.dtype == np.float32
        assert ct.thick_slabs(straight, 3.0, "max").hu.dtype == straight.hu.dtype

    def test_a_tilted_volume_is_slabbed_along_the_normal(self, tilted):
        _, volume = tilted
        slabs = ct.thick_slabs(volume, 5.0, "max")
        upright = ct.correct_tilt(volume)
        assert not slabs.is_tilted and slabs.shape == (8,) + upright.shape[1:]
        np.testing.assert_array_equal(slabs.hu, upright.hu.reshape(8, 2, *upright.shape[1:]).max(axis=1))
        assert all(len(s) == 2 for s in slabs.meta["slice_sources"])  # 5 mm slab over two 2.5 mm images

    def test_padding_in_any_thin_slice_marks_the_slab_voxel(self, tilted):
        _, volume = tilted
        upright = ct.correct_tilt(volume)
        slabs = ct.thick_slabs(volume, 5.0, "mean")
        expected = upright.padding.reshape(8, 2, *upright.shape[1:]).any(axis=1)
        np.testing.assert_array_equal(slabs.padding, expected)
        assert (slabs.hu[slabs.padding] == ct.AIR_HU).all()

    def test_bad_requests_are_refused(self, straight):
        with pytest.raises(ValueError, match="slab mode"):
            ct.thick_slabs(straight, 5.0, "median")
        with pytest.raises(ValueError, match="positive"):
            ct.thick_slabs(straight, -1.0)
        with pytest.raises(ValueError, match="needs 50 slices"):
            ct.thick_slabs(straight, 50.0)


class TestStack2p5d:
    def test_channels_are_each_window_at_each_neighbour(self, straight):
        windows = ["brain", "subdural"]
        stack = ct.stack_2p5d(straight, 2, windows)
        n = straight.shape[0]
        assert stack.shape == (10, n, 48, 48) and stack.dtype == np.float32
        names = stack_channel_names(windows, 2)
        for channel, name in enumerate(names):
            preset, offset = name[:-4], int(name[-3:-1])
            source = np.clip(np.arange(n) + offset, 0, n - 1)  # ends repeat the first and last slices
            np.testing.assert_array_equal(stack[channel], window(straight.hu[source], preset))

    def test_no_neighbours_is_the_window_stack_and_no_windows_keeps_hu(self, straight):
        np.testing.assert_array_equal(
            ct.stack_2p5d(straight, 0, ["brain", "bone"]), window_stack(straight.hu, ["brain", "bone"])
        )
        hu = ct.stack_2p5d(straight.hu, 1, None)
        np.testing.assert_array_equal(hu[1], straight.hu.astype(np.float32))
        np.testing.assert_array_equal(hu[2, :-1], straight.hu[1:].astype(np.float32))

    def test_bad_input_is_refused(self, straight):
        with pytest.raises(ValueError, match="whole number"):
            ct.stack_2p5d(straight, -1)
        with pytest.raises(ValueError, match="slices, rows, cols"):
            ct.stack_2p5d(straight.hu[0], 1)
