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


def _write_raw_npz(path, arrays, *, allow_pickle=False):
    """A .npz written by numpy itself, holding whatever the test needs."""
    np.savez(path, allow_pickle=allow_pickle, **arrays)
    return path


def _valid_arrays(**changes):
    arrays = {
        "hu": np.zeros((2, 3, 4), np.int16),
        "affine": np.eye(4),
        "spacing": np.ones(3),
        "provenance": np.array(json.dumps({"files": ["a.dcm"], "meta": {}})),
    }
    arrays.update(changes)
    return arrays


class TestLoadNpzRefusesBadFiles:
    def test_a_valid_raw_file_loads(self, tmp_path):
        volume, extras = load_npz(_write_raw_npz(tmp_path / "ok.npz", _valid_arrays()))
        assert volume.shape == (2, 3, 4) and extras["provenance"]["files"] == ["a.dcm"]

    def test_a_header_claiming_more_than_the_data_is_refused_before_allocating(self, tmp_path):
        import tracemalloc

        path = tmp_path / "bomb.npz"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for key, array in _valid_arrays().items():
                if key == "hu":
                    with archive.open("hu.npy", "w") as stream:
                        np.lib.format.write_array_header_1_0(
                            stream, {"descr": "<i2", "fortran_order": False, "shape": (1024, 1024, 1024)}
                        )
                        stream.write(bytes(2 * 1024**2))
                else:
                    with archive.open(f"{key}.npy", "w") as stream:
                        np.lib.format.write_array(stream, array)
        assert path.stat().st_size < 2 * 1024**2
        tracemalloc.start()
        try:
            with pytest.raises(ValueError, match=r"'hu' claims shape \(1024, 1024, 1024\) of int16"):
                load_npz(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 * 1024**2, f"allocated {peak} bytes for a {path.stat().st_size}-byte file"

    def test_arrays_larger_than_max_bytes_are_refused(self, tmp_path):
        path = save_npz(Volume(np.zeros((16, 64, 64), np.int16), np.eye(4)), tmp_path / "scan.npz")
        with pytest.raises(ValueError, match=r"need \d+ bytes in memory, more than max_bytes=100000"):
            load_npz(path, max_bytes=100_000)
        assert load_npz(path, max_bytes=200_000)[0].shape == (16, 64, 64)

    @pytest.mark.parametrize(
        ("key", "array", "message"),
        [
            ("hu", np.zeros((2, 3, 4), np.complex64), "'hu' has dtype complex64"),
            ("hu", np.zeros((2, 3, 4), "S2"), "'hu' has dtype"),
            ("affine", np.eye(4, dtype=np.int64), "'affine' has dtype int64"),
            ("affine", np.eye(3), r"'affine' has shape \(3, 3\), expected \(4, 4\)"),
            ("hu", np.zeros((2, 3), np.int16), "'hu' must be 3-D"),
            ("padding", np.zeros((2, 3, 5), bool), r"'padding' has shape \(2, 3, 5\)"),
            ("processed", np.zeros((2, 2, 3, 5), np.float32), "'processed' of shape"),
            ("extra", np.zeros(3), r"unexpected keys \['extra'\]"),
        ],
    )
    def test_unexpected_dtypes_shapes_and_keys_are_refused(self, tmp_path, key, array, message):
        path = _write_raw_npz(tmp_path / "bad.npz", _valid_arrays(**{key: array}))
        with pytest.raises(ValueError, match=message) as caught:
            load_npz(path)
        assert "bad.npz" in str(caught.value)

    def test_object_arrays_are_refused_without_unpickling(self, tmp_path):
        path = _write_raw_npz(
            tmp_path / "pickled.npz", _valid_arrays(hu=np.array([{"a": 1}], dtype=object)), allow_pickle=True
        )
        with pytest.raises(ValueError, match="'hu' holds Python objects"):
            load_npz(path)

    @pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
    def test_non_finite_affines_are_refused(self, tmp_path, bad):
        affine = np.eye(4)
        affine[0, 3] = bad
        path = _write_raw_npz(tmp_path / "nan.npz", _valid_arrays(affine=affine))
        with pytest.raises(ValueError, match="'affine' holds NaN or infinite values"):
            load_npz(path)

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("{not json", "'provenance' is not valid JSON"),
            ("[1, 2]", "'provenance' must be a JSON object, got list"),
            ('{"files": 3}', "provenance 'files' must be a list of file names"),
            ('{"files": [1]}', "provenance 'files' must be a list of file names"),
            ('{"meta": "x"}', "provenance 'meta' must be a JSON object"),
        ],
    )
    def test_malformed_provenance_gets_a_clear_error(self, tmp_path, text, message):
        path = _write_raw_npz(tmp_path / "prov.npz", _valid_arrays(provenance=np.array(text)))
        with pytest.raises(ValueError, match=message):
            load_npz(path)

    def test_a_file_that_is_not_a_zip(self, tmp_path):
        path = tmp_path / "text.npz"
        path.write_text("hello")
        with pytest.raises(ValueError, match="text.npz is not a .npz file"):
            load_npz(path)
