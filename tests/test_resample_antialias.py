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


def test_antialias_is_gaussian_filtering_then_linear_sampling_tilted_and_padded_too():
    """The smoothing folded into the interpolation weights gives what filtering a copy first gives."""
    from scipy import ndimage

    rng = np.random.default_rng(7)
    hu = rng.integers(-1000, 1500, (30, 70, 60)).astype(np.int16)
    affine = np.eye(4)
    affine[:3, :3] = np.column_stack([[0, 0.25, 0.625], [0, 0.45, 0], [0.45, 0, 0]])  # tilted slice step
    volume = ct.Volume(hu, affine, padding=rng.random(hu.shape) < 0.05)
    for spacing in (1.0, (2.5, 0.9, 0.45), (0.5, 3.0, 1.3)):
        fused = ct.resample(volume, spacing=spacing)
        plain = ct.resample(volume, spacing=spacing, antialias=False)
        # the same filter on a float32 copy (sigma = (shrink - 1) / 2 source voxels), then plain sampling
        step = np.array([np.linalg.norm(volume.affine[:3, 0] @ volume.normal * volume.normal)] + [0.45, 0.45])
        sigma = np.maximum(0.0, (np.asarray(fused.spacing) / step - 1.0) / 2.0)
        smoothed = ndimage.gaussian_filter(hu.astype(np.float32), tuple(sigma), mode="nearest")
        reference = ct.resample(volume.with_hu(smoothed), spacing=spacing, antialias=False)
        assert fused.shape == reference.shape and np.array_equal(fused.padding, plain.padding)
        np.testing.assert_allclose(fused.hu, reference.hu, atol=2e-3)
        assert not np.allclose(fused.hu, plain.hu, atol=1.0)  # it did smooth
