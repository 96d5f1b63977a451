"""Tests for ctexplore.intensity: windows, normalisation and zero-centring."""

from __future__ import annotations

import numpy as np
import pytest

from ctexplore.intensity import (
    NORMALIZE_RANGE,
    WINDOWS,
    dataset_mean,
    normalize,
    window,
    window_stack,
    zero_center,
)
from ctexplore.volume import Volume

HU = np.arange(-1100, 3100, 7, dtype=np.int16).reshape(6, 10, 10)


def reference_window(hu, center, width):
    return np.clip((hu.astype(np.float64) - (center - width / 2)) / width, 0, 1)


class TestWindow:
    @pytest.mark.parametrize("name", sorted(WINDOWS))
    def test_presets_match_the_float64_formula(self, name):
        center, width = WINDOWS[name]
        out = window(HU, name)
        assert out.dtype == np.float32 and out.shape == HU.shape
        np.testing.assert_allclose(out, reference_window(HU, center, width), atol=1e-6)

    def test_brain_window_separates_fresh_blood_from_brain_and_bone_window_does_not(self):
        # what the presets are for: acute blood ~65 HU against grey matter ~37 HU
        tissue = np.array([37, 65], np.int16)
        brain = window(tissue, "brain")
        bone = window(tissue, "bone")
        assert brain[1] - brain[0] > 0.3
        assert bone[1] - bone[0] < 0.02
        # the subdural window keeps blood below white and the skull (1000 HU) saturated
        subdural = window(np.array([65, 1000], np.int16), "subdural")
        assert subdural[0] < 0.9 and subdural[1] == 1.0

    def test_every_spelling_of_one_window_gives_the_same_result(self):
        expected = window(HU, "brain")
        for out in (
            window(HU, (40, 80)),
            window(HU, preset="brain"),
            window(HU, 40, 80),
            window(HU, window=(40.0, 80.0)),
        ):
            np.testing.assert_array_equal(out, expected)

    def test_clips_at_center_plus_minus_half_width(self):
        out = window(np.array([-1, 0, 1, 79, 80, 81], np.int16), 40, 80)
        np.testing.assert_allclose(out, [0, 0, 1 / 80, 79 / 80, 1, 1], atol=1e-7)

    def test_uint8_is_the_rounded_float_window(self):
        out = window(HU, "subdural", dtype=np.uint8)
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, np.rint(reference_window(HU, 80, 200) * 255))

    def test_float32_input_and_volume_input(self):
        vol = Volume(HU.astype(np.float32) + 0.5, np.eye(4))
        out = window(vol, preset="brain")
        assert isinstance(out, np.ndarray) and out.dtype == np.float32
        np.testing.assert_allclose(out, reference_window(vol.hu, 40, 80), atol=1e-6)

    def test_large_volume_is_processed_in_blocks_consistently(self):
        hu = np.random.default_rng(0).integers(-1024, 3000, (3, 512, 700)).astype(np.int16)
        np.testing.assert_allclose(window(hu, preset="brain"), reference_window(hu, 40, 80), atol=1e-6)

    def test_bad_arguments_are_explained(self):
        with pytest.raises(ValueError, match="unknown window preset 'brian'"):
            window(HU, "brian")
        with pytest.raises(ValueError, match=r"preset name or a \(center, width\) pair"):
            window(HU, 40)
        with pytest.raises(ValueError, match="give a window"):
            window(HU)
        with pytest.raises(ValueError, match="not both"):
            window(HU, 40, 80, preset="brain")
        with pytest.raises(ValueError, match="positive"):
            window(HU, 40, 0)
        with pytest.raises(ValueError, match="float32 or uint8"):
            window(HU, "brain", dtype=np.float64)


class TestWindowStack:
    def test_channels_first_in_the_given_order(self):
        stack = window_stack(HU, ("bone", "brain", (80, 200)))
        assert stack.shape == (3, *HU.shape) and stack.dtype == np.float32
        np.testing.assert_allclose(stack[0], window(HU, "bone"))
        np.testing.assert_allclose(stack[1], window(HU, "brain"))
        np.testing.assert_allclose(stack[2], window(HU, "subdural"))

    def test_default_is_the_hemorrhage_triplet_and_uint8_works(self):
        stack = window_stack(HU, dtype=np.uint8)
        assert stack.dtype == np.uint8
        np.testing.assert_array_equal(stack[2], window(HU, "soft_tissue", dtype=np.uint8))

    def test_empty_preset_list_is_refused(self):
        with pytest.raises(ValueError, match="one per channel"):
            window_stack(HU, ())
        with pytest.raises(ValueError, match="one per channel"):
            window_stack(HU, "brain")  # a name is not a sequence of windows


class TestNormalize:
    def test_clips_and_scales_to_unit_range(self):
        low, high = NORMALIZE_RANGE
        out = normalize(HU)
        assert out.dtype == np.float32
        expected = np.clip((HU.astype(np.float64) - low) / (high - low), 0, 1)
        np.testing.assert_allclose(out, expected, atol=1e-6)

    def test_custom_range(self):
        out = normalize(np.array([-1000, 500, 2000], np.int16), -1000, 2000)
        np.testing.assert_allclose(out, [0, 0.5, 1])

    def test_reversed_range_is_refused(self):
        with pytest.raises(ValueError, match="above the lower"):
            normalize(HU, 400, -1000)


class TestZeroCenter:
    def test_subtracts_the_given_mean_in_float32(self):
        x = normalize(HU)
        out = zero_center(x, 0.2)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, x - 0.2, atol=1e-7)

    def test_in_place(self):
        x = normalize(HU)
        expected = x - np.float32(0.3)
        assert zero_center(x, 0.3, out=x) is x
        np.testing.assert_allclose(x, expected)

    def test_missing_mean_is_refused_with_the_remedy(self):
        with pytest.raises(ValueError, match="dataset_mean"):
            zero_center(normalize(HU), None)


class TestDatasetMean:
    def test_equals_the_mean_over_all_voxels_of_all_scans(self):
        rng = np.random.default_rng(5)
        scans = [rng.integers(-1000, 1000, shape).astype(np.int16) for shape in [(3, 40, 50), (1, 700, 800)]]
        expected = np.concatenate([normalize(s).ravel() for s in scans]).astype(np.float64).mean()
        assert dataset_mean(iter(scans)) == pytest.approx(expected, rel=1e-6)

    def test_accepts_volumes_and_custom_range(self):
        vols = [Volume(np.full((2, 2, 2), 0, np.int16), np.eye(4))]
        assert dataset_mean(vols, -1000, 1000) == pytest.approx(0.5)

    def test_empty_data_set_is_refused(self):
        with pytest.raises(ValueError, match="empty"):
            dataset_mean([])
