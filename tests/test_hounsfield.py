"""ctexplore.hounsfield: stored values to HU on plain arrays, in the order the standard gives."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from ctexplore.hounsfield import headers_to_hu, stored_to_hu
from ctexplore.phantom import write_series
from ctexplore.series import scan


def test_bits_above_bits_stored_are_masked_and_the_sign_comes_from_the_high_bit():
    # 12 bits stored in 16: the top nibble holds overlay junk (0xA000) that must not reach the HU
    true_values = np.array([-2048, -1, 0, 2047], dtype=np.int16)
    junk = (true_values.view(np.uint16) & 0x0FFF) | 0xA000
    hu, _ = stored_to_hu(junk.view(np.int16).reshape(1, 1, 4).copy(), [1.0], [0.0], bits_stored=12, signed=True)
    assert hu.ravel().tolist() == true_values.tolist()


def test_unsigned_values_are_masked_not_sign_extended():
    stored = np.array([[[0xF000 | 4095, 0xF000]]], dtype=np.uint16)
    hu, _ = stored_to_hu(stored, [1.0], [-1024.0], bits_stored=12, signed=False)
    assert hu.ravel().tolist() == [4095 - 1024, -1024]


def test_each_slice_gets_its_own_rescale():
    stored = np.full((3, 2, 2), 100, dtype=np.int16)
    hu, _ = stored_to_hu(stored, [1.0, 2.0, 0.5], [0.0, -1024.0, 10.0])
    assert hu[:, 0, 0].tolist() == [100.0, -824.0, 60.0]
    assert hu.dtype == np.float32  # a fractional slope cannot be exact in int16


def test_padding_range_is_inclusive_and_matched_before_the_rescale():
    stored = np.array([[[-3000, -2001, -2000, -1999]]], dtype=np.int16)
    hu, padding = stored_to_hu(stored, [1.0], [0.0], padding_low=[-3000], padding_high=[-2000], fill_value=-1000)
    assert padding.ravel().tolist() == [True, True, True, False]
    assert hu.ravel().tolist() == [-1000, -1000, -1000, -1999]
    assert hu.dtype == np.int16


def test_headers_to_hu_reads_rescale_and_padding_from_the_headers(tmp_path):
    written = write_series(tmp_path, n_slices=3, matrix=16, rescale_intercept=-1024.0, padding_value=-2000)
    headers = list(scan(tmp_path)[0].headers)
    stored = np.stack([pydicom.dcmread(f).pixel_array for f in written.files])
    hu, padding = headers_to_hu(stored.copy(), headers)
    expected = stored.astype(np.float64) - 1024.0
    expected[stored == -2000] = -1000.0
    np.testing.assert_array_equal(hu, expected)
    assert (stored == -2000).any(), "the phantom writes padding outside its circular field of view"
    np.testing.assert_array_equal(padding, stored == -2000)


@pytest.mark.parametrize("fill", [-1000.0, -3024.0])
def test_fill_value_lands_in_padding_voxels(fill):
    stored = np.array([[[-2000, 0]]], dtype=np.int16)
    hu, _ = stored_to_hu(stored, [1.0], [0.0], padding_low=[-2000], padding_high=[-2000], fill_value=fill)
    assert hu.ravel().tolist() == [fill, 0]
