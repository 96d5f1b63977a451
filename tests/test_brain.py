"""Brain mask, skull strip and hyperdense regions on real phantom DICOM and on a real head CT."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ctexplore as ct
from ctexplore.phantom import write_series

BLEED_CENTRE = (-30.0, -42.0, 32.0)
BLEED_SEMI_AXES = (10.0, 13.0, 9.0)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    folder = tmp_path_factory.mktemp("head")
    write_series(folder, n_slices=40, matrix=128, slice_spacing=2.5, noise=5.0, seed=3)
    return ct.load_series(folder)


def _voxel_centres(volume):
    index = np.stack(np.meshgrid(*[np.arange(n) for n in volume.shape], indexing="ij"), axis=-1)
    return volume.index_to_world(index.reshape(-1, 3)).reshape(volume.shape + (3,))


def test_brain_mask_matches_the_phantom_intracranial_space(phantom):
    mask = ct.brain_mask(phantom)
    assert mask.shape == phantom.shape and mask.dtype == bool
    # the phantom's shells have constant thickness along rays from the centre:
    # inside the skull is closer to the centre than the head surface minus scalp and skull
    centres = _voxel_centres(phantom)
    distance = np.linalg.norm(centres, axis=-1)
    direction = centres / np.maximum(distance, 1e-9)[..., None]
    surface = 1 / np.linalg.norm(direction / np.array([72.0, 92.0, 85.0]), axis=-1)
    truth = distance < surface - 11.0
    # Known limit: the phantom's eyes cut through its skull shell, opening the ring in the
    # planes of the orbits (z < -25 mm); real orbits have bone walls. Compare above them.
    above_orbits = centres[..., 2] > -25.0
    mask, truth = mask & above_orbits, truth & above_orbits
    dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert dice > 0.95, dice
    assert not (mask & (phantom.hu > 400)).any()  # no skull inside


def test_skull_strip_fills_outside_and_keeps_the_brain(phantom):
    mask = ct.brain_mask(phantom)
    stripped = ct.skull_strip(phantom, fill=-1000, mask=mask)
    assert stripped.hu.dtype == phantom.hu.dtype and stripped.shape == phantom.shape
    assert (stripped.hu[~mask] == -1000).all()
    np.testing.assert_array_equal(stripped.hu[mask], phantom.hu[mask])
    assert stripped.meta["skull_stripped"] == -1000


def test_hyperdense_regions_finds_the_bleed_and_not_the_calcified_pineal(phantom):
    found = ct.hyperdense_regions(phantom)
    truth_ml = 4 / 3 * np.pi * np.prod(BLEED_SEMI_AXES) / 1000
    assert len(found) == 1
    assert abs(found.volume_ml - truth_ml) / truth_ml < 0.1
    np.testing.assert_allclose(found.table[0]["centroid_mm"], BLEED_CENTRE, atol=1.5)
    assert 60 < found.table[0]["mean_hu"] < 80
    centres = _voxel_centres(phantom)
    truth = np.linalg.norm((centres - BLEED_CENTRE) / BLEED_SEMI_AXES, axis=-1) < 1
    dice = 2 * (found.mask & truth).sum() / (found.mask.sum() + truth.sum())
    assert dice > 0.85, dice
    pineal = tuple(np.round(phantom.world_to_index([0.0, 22.0, 10.0])).astype(int))
    assert found.labels[pineal] == 0


def test_hyperdense_min_ml_and_shape_check(phantom):
    assert len(ct.hyperdense_regions(phantom, min_ml=50.0)) == 0
    with pytest.raises(ValueError, match="mask shape"):
        ct.hyperdense_regions(phantom, mask=np.ones((2, 2, 2), bool))


def test_real_head_ct_mask_is_a_plausible_intracranial_volume(ct_data):
    folder = ct_data / "head-ct-ge"
    if not folder.is_dir():
        pytest.skip("head-ct-ge not in the shared data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ct.GeometryWarning)
        volume = ct.load_series(folder, on_uneven="resample")
    mask = ct.brain_mask(volume)
    ml = mask.sum() * np.prod(volume.spacing) / 1000
    assert 1000 < ml < 1800, ml  # adult intracranial volume, this scan covers skull base to vertex
    assert not (mask & (volume.hu > 400)).any()
    inside = volume.hu[mask]
    assert np.median(inside) == pytest.approx(30, abs=15)  # brain parenchyma
    found = ct.hyperdense_regions(volume, mask=mask)
    assert found.mask.shape == volume.shape and found.volume_ml < 50  # a normal scan: only small false positives
