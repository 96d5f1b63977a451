"""resample(antialias=..., clip=...): Gaussian pre-smoothing when an axis shrinks, no spline overshoot."""

from __future__ import annotations

import numpy as np

import ctexplore as ct


def _stripes(period_voxels: int = 3) -> ct.Volume:
    hu = np.full((8, 96, 96), 40, np.int16)
    hu[:, :, (np.arange(96) % period_voxels) == 0] = 1000  # fine bright lines, one voxel wide every 3
    return ct.Volume(hu, np.diag([2.0, 0.45, 0.45, 1.0]))


def test_antialias_averages_detail_finer_than_the_new_voxels():
    volume = _stripes()
    mean = float(volume.hu.mean())
    aliased = ct.resample(volume, spacing=(2.0, 0.45, 1.8), antialias=False)
    smooth = ct.resample(volume, spacing=(2.0, 0.45, 1.8))
    centre = slice(8, -8)
    # 4x decimation of a period-3 pattern: without smoothing a false stripe pattern of period 3 output voxels
    assert np.ptp(aliased.hu[4, 48, centre]) > 400
    assert np.ptp(smooth.hu[4, 48, centre]) < 0.25 * np.ptp(aliased.hu[4, 48, centre])
    assert abs(float(smooth.hu[4, 48, centre].mean()) - mean) < 25
    # the axes that did not shrink are untouched
    np.testing.assert_allclose(smooth.hu[:, 20, 20], smooth.hu[:, 40, 20])


def test_no_smoothing_when_nothing_shrinks():
    volume = _stripes()
    up = ct.resample(volume, spacing=(1.0, 0.45, 0.45), antialias=True)
    plain = ct.resample(volume, spacing=(1.0, 0.45, 0.45), antialias=False)
    np.testing.assert_array_equal(up.hu, plain.hu)


def test_cubic_is_clipped_to_the_input_range():
    hu = np.full((12, 40, 40), -1000, np.int16)
    hu[:, :, 20:] = 1500
    volume = ct.Volume(hu, np.diag([1.0, 1.0, 1.0, 1.0]))
    raw = ct.resample(volume, spacing=0.7, order=3, clip=False, antialias=False)
    assert raw.hu.min() < -1010 and raw.hu.max() > 1510  # spline overshoot exists
    clipped = ct.resample(volume, spacing=0.7, order=3)
    assert clipped.hu.min() >= -1000 and clipped.hu.max() <= 1500
