"""The `Volume` type and the geometry rules written once in ctexplore.volume."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ctexplore.headers import read_header
from ctexplore.phantom import SliceGeometry, write_series
from ctexplore.reader import load_series
from ctexplore.volume import (
    Volume,
    affine_normal,
    affine_spacing,
    affine_tilt,
    axial_affine,
    patient_axes,
    slice_normal,
)

SMALL = SliceGeometry(n_slices=6, matrix=24, slice_spacing=3.0)


def test_slice_normal_follows_the_standard_sagittal_example():
    # PS3.3 C.7.6.2.1.1: rows towards posterior, columns towards the feet -> normal towards patient right (-x)
    assert np.allclose(slice_normal([0, 1, 0], [0, 0, -1]), [-1, 0, 0])


def test_slice_normal_is_unit_length_for_unnormalised_directions():
    normal = slice_normal([3.0, 0, 0], [0, 0.5, 0.5])
    assert np.isclose(np.linalg.norm(normal), 1.0)
    assert np.allclose(normal, [0, -np.sqrt(0.5), np.sqrt(0.5)])


@pytest.mark.parametrize("tilt", [0.0, 17.0])
def test_header_normal_and_loaded_volume_agree(tmp_path, tilt):
    written = write_series(tmp_path, geometry=replace(SMALL, gantry_tilt=tilt))
    header = read_header(written.files[0])[0]
    volume = load_series(tmp_path)
    assert np.allclose(header.normal, volume.normal)
    assert np.allclose(affine_normal(volume.affine), volume.normal)
    assert affine_tilt(volume.affine) == pytest.approx(tilt, abs=0.01)
    # the spacing between planes is measured along the normal, not along the sheared stack
    assert affine_spacing(volume.affine)[0] == pytest.approx(3.0, abs=1e-3)


def test_axial_affine_places_voxels_where_a_supine_axial_scan_does():
    affine = axial_affine((2.5, 0.5, 0.4), origin=(-10.0, -20.0, 30.0))
    volume = Volume(np.zeros((4, 3, 2), np.int16), affine)
    assert volume.spacing == (2.5, 0.5, 0.4)
    assert volume.gantry_tilt == 0.0
    assert np.allclose(volume.normal, [0, 0, 1])  # slices run towards the head
    # next column -> patient left (+x), next row -> posterior (+y), next slice -> head (+z)
    assert np.allclose(volume.index_to_world([1, 1, 1]), [-9.6, -19.5, 32.5])


def test_axial_affine_matches_what_the_reader_builds_for_an_axial_series(tmp_path):
    write_series(tmp_path, geometry=SMALL)
    volume = load_series(tmp_path)
    rebuilt = axial_affine(volume.spacing, origin=tuple(volume.affine[:3, 3]))
    assert np.allclose(rebuilt, volume.affine)


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ([[0, 0, 1], [0, 1, 0], [1, 0, 0]], (2, 1, 0)),  # axial
        ([[2, 0, 0], [0, 1, 0], [0, 0, -1]], (0, 1, 2)),  # sagittal, columns running down
        ([[0, 1, 0], [0, 0, -1], [1, 0, 0]], (1, 2, 0)),  # a permuted layout
    ],
)
def test_patient_axes_finds_the_array_axis_along_each_patient_axis(columns, expected):
    affine = np.eye(4)
    affine[:3, :3] = columns
    assert patient_axes(affine) == expected


def test_patient_axes_of_a_tilted_scan_is_its_nearest_canonical_layout(tmp_path):
    write_series(tmp_path, geometry=replace(SMALL, gantry_tilt=25.0))
    assert patient_axes(load_series(tmp_path).affine) == (2, 1, 0)


def test_patient_axes_rejects_a_degenerate_affine():
    affine = np.eye(4)
    affine[:3, 2] = 0.0
    with pytest.raises(ValueError, match="degenerate"):
        patient_axes(affine)


def test_volume_rejects_mismatched_padding_and_non_3d_arrays():
    with pytest.raises(ValueError, match="3-D"):
        Volume(np.zeros((3, 4)), np.eye(4))
    with pytest.raises(ValueError, match="padding mask shape"):
        Volume(np.zeros((2, 3, 4)), np.eye(4), padding=np.zeros((2, 3, 5), bool))
