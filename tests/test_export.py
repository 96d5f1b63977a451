"""Tests for ctexplore.export: files read back by numpy (no pickle) and nibabel."""

from __future__ import annotations

import json
import os
import stat
import zipfile

import nibabel
import numpy as np
import pytest

import ctexplore
from ctexplore.errors import GeometryError
from ctexplore.export import load_npz, save_nifti, save_npz
from ctexplore.intensity import window_stack
from ctexplore.volume import Volume


def oblique_volume(dtype=np.int16) -> Volume:
    """A small volume with an oblique, descending, non-isotropic but orthogonal grid."""
    rng = np.random.default_rng(3)
    hu = rng.integers(-1000, 1500, (5, 6, 7)).astype(dtype)
    angle = np.radians(30)
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    affine = np.eye(4)
    # columns: slice step (descending along z), row step (y), column step (x)
    affine[:3, :3] = rotation @ np.column_stack([[0, 0, -2.5], [0, 0.6, 0], [0.45, 0, 0]])
    affine[:3, 3] = [-80.0, -95.0, 140.0]
    padding = np.zeros(hu.shape, bool)
    padding[:, 0] = True
    return Volume(
        hu,
        affine,
        padding=padding,
        files=tuple(f"/data/s{k}.dcm" for k in range(5)),
        meta={"series_uid": "1.2.826.0.1.1", "slice_positions": [0.0, -2.5, -5.0, -7.5, -10.0]},
    )


class TestSaveNpz:
    def test_keys_load_without_pickle(self, tmp_path):
        vol = oblique_volume()
        path = save_npz(vol, tmp_path / "scan.npz", processed=window_stack(vol), options={"spacing": 1.0})
        with np.load(path, allow_pickle=False) as data:
            assert sorted(data.files) == ["affine", "hu", "padding", "processed", "provenance", "spacing"]
            np.testing.assert_array_equal(data["hu"], vol.hu)
            assert data["hu"].dtype == np.int16
            np.testing.assert_array_equal(data["affine"], vol.affine)
            np.testing.assert_allclose(data["spacing"], (2.5, 0.6, 0.45))
            assert data["processed"].shape == (3, 5, 6, 7)
            provenance = json.loads(str(data["provenance"]))
        assert provenance["series_uid"] == "1.2.826.0.1.1"
        assert provenance["files"][0] == "/data/s0.dcm"
        assert provenance["ctexplore_version"] == ctexplore.__version__
        assert provenance["options"] == {"spacing": 1.0}

    def test_round_trip_keeps_geometry_and_padding(self, tmp_path):
        vol = oblique_volume(np.float32)
        loaded, extras = load_npz(save_npz(vol, tmp_path / "scan.npz", compress=False))
        np.testing.assert_array_equal(loaded.hu, vol.hu)
        assert loaded.hu.dtype == np.float32
        np.testing.assert_array_equal(loaded.affine, vol.affine)
        np.testing.assert_array_equal(loaded.padding, vol.padding)
        assert [str(p) for p in loaded.files] == [str(p) for p in vol.files]
        assert loaded.meta["slice_positions"] == vol.meta["slice_positions"]
        assert "processed" not in extras

    def test_same_input_gives_identical_bytes(self, tmp_path):
        vol = oblique_volume()
        first = save_npz(vol, tmp_path / "a.npz", options={"order": 1}).read_bytes()
        second = save_npz(vol, tmp_path / "b.npz", options={"order": 1}).read_bytes()
        assert first == second

    def test_overwrite_is_atomic_and_leaves_no_temporary_files(self, tmp_path):
        vol = oblique_volume()
        target = tmp_path / "scan.npz"
        target.write_bytes(b"old")
        save_npz(vol, target)
        assert [p.name for p in tmp_path.iterdir()] == ["scan.npz"]
        with pytest.raises(ValueError, match="last three axes"):
            save_npz(vol, target, processed=np.zeros((4, 4, 4), np.float32))
        assert [p.name for p in tmp_path.iterdir()] == ["scan.npz"]
        load_npz(target)  # the earlier complete file is still there

    def test_missing_folder_is_reported(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            save_npz(oblique_volume(), tmp_path / "nowhere" / "scan.npz")


class TestSaveNifti:
    @pytest.mark.parametrize("name", ["scan.nii", "scan.nii.gz"])
    def test_world_coordinates_of_known_voxels_match(self, tmp_path, name):
        vol = oblique_volume()
        image = nibabel.load(save_nifti(vol, tmp_path / name))
        assert image.shape == (7, 6, 5)
        data = np.asarray(image.dataobj)
        assert data.dtype == np.int16
        for slice_, row, col in [(0, 0, 0), (4, 5, 6), (2, 3, 1), (1, 0, 6)]:
            assert data[col, row, slice_] == vol.hu[slice_, row, col]
            ras = nibabel.affines.apply_affine(image.affine, [col, row, slice_])
            lps = vol.index_to_world([slice_, row, col])
            np.testing.assert_allclose(ras, lps * [-1, -1, 1], atol=1e-4)
        # qform and sform agree, so every reader places it the same way
        np.testing.assert_allclose(image.get_qform(), image.get_sform(), atol=1e-4)
        assert int(image.header["qform_code"]) == 1 and int(image.header["sform_code"]) == 1
        assert [p.name for p in tmp_path.iterdir()] == [name]

    def test_tilted_volume_is_refused_with_the_remedy(self, tmp_path):
        affine = np.diag([2.5, 0.5, 0.5, 1.0])[[2, 1, 0, 3]]
        affine[1, 0] = 1.0
        vol = Volume(np.zeros((3, 4, 4), np.int16), affine)
        assert vol.is_tilted
        with pytest.raises(GeometryError, match="correct_tilt"):
            save_nifti(vol, tmp_path / "scan.nii")
        assert list(tmp_path.iterdir()) == []


class TestFiles:
    def test_outputs_get_the_permissions_the_umask_allows_not_0600(self, tmp_path):
        previous = os.umask(0o022)
        try:
            npz = save_npz(oblique_volume(), tmp_path / "scan.npz")
            nifti = save_nifti(oblique_volume(), tmp_path / "scan.nii.gz")
        finally:
            os.umask(previous)
        assert stat.S_IMODE(npz.stat().st_mode) == 0o644
        assert stat.S_IMODE(nifti.stat().st_mode) == 0o644

    def test_npz_entries_carry_a_fixed_date_so_bytes_depend_on_content_only(self, tmp_path):
        path = save_npz(oblique_volume(), tmp_path / "scan.npz")
        with zipfile.ZipFile(path) as archive:
            assert {entry.date_time for entry in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
            assert {entry.compress_type for entry in archive.infolist()} == {zipfile.ZIP_DEFLATED}

    def test_uncompressed_npz_stores_entries_and_loads_without_pickle(self, tmp_path):
        vol = oblique_volume()
        path = save_npz(vol, tmp_path / "scan.npz", compress=False)
        with zipfile.ZipFile(path) as archive:
            assert {entry.compress_type for entry in archive.infolist()} == {zipfile.ZIP_STORED}
        with np.load(path, allow_pickle=False) as data:
            np.testing.assert_array_equal(data["hu"], vol.hu)
