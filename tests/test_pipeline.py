"""Batch preprocessing on real DICOM bytes: selection, naming, manifest, resume, workers, geometry."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
from batch_data import MARKER_MM, write_dataset

import ctexplore as ct
from ctexplore import DicomError, scan
from ctexplore.batch import ALREADY_DONE, MANIFEST_COLUMNS, preprocess
from ctexplore.export import load_npz
from ctexplore.intensity import window, window_stack
from ctexplore.phantom import write_series
from ctexplore.pipeline import PreprocessOptions, iter_volumes, output_name

FAST = PreprocessOptions(spacing=(4.0, 4.0, 4.0))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def index(dataset):
    return scan(dataset.root)


def read_manifest(folder: Path) -> dict[str, dict[str, str]]:
    """Manifest rows keyed by series description."""
    with open(folder / "manifest.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert tuple(rows[0]) == MANIFEST_COLUMNS
    return {row["series_description"]: row for row in rows}


def run(dataset, out, **kwargs):
    kwargs.setdefault("options", FAST)
    kwargs.setdefault("workers", 1)
    return preprocess(dataset.root, out, progress=False, **kwargs)


class TestOptions:
    def test_spacing_and_shape_together_are_refused(self):
        with pytest.raises(ValueError, match="either spacing or shape"):
            PreprocessOptions(spacing=(2, 2, 2), shape=(8, 8, 8))

    def test_an_explicit_default_spacing_with_a_shape_is_refused(self):
        # (1, 1, 1) equals the default, so a value comparison would silently drop it
        with pytest.raises(ValueError, match="either spacing or shape"):
            PreprocessOptions(spacing=(1.0, 1.0, 1.0), shape=(8, 8, 8))
        assert PreprocessOptions(shape=(8, 8, 8)).spacing is None
        assert PreprocessOptions().spacing == (1.0, 1.0, 1.0)

    def test_unknown_window_preset_is_refused(self):
        with pytest.raises(ValueError, match="unknown window preset"):
            PreprocessOptions(window="liver-ish")
        with pytest.raises(ValueError, match="unknown window preset"):
            PreprocessOptions(windows=("brain", "liver-ish"))

    def test_a_window_is_a_preset_or_center_width_and_several_go_in_windows(self):
        assert PreprocessOptions(window=(40, 80)).window == (40.0, 80.0)
        assert PreprocessOptions(windows=("brain", (80, 200))).windows == ("brain", (80.0, 200.0))
        with pytest.raises(ValueError, match="windows="):
            PreprocessOptions(window=("brain", "bone"))
        with pytest.raises(ValueError, match="positive"):
            PreprocessOptions(window=(40, 0))
        with pytest.raises(ValueError, match="one of window, windows or normalize"):
            PreprocessOptions(window="brain", windows=("bone",))


class TestPreprocess:
    def test_manifest_has_one_row_per_series_with_status_and_reason(self, dataset, tmp_path):
        summary = run(dataset, tmp_path)
        rows = read_manifest(tmp_path)
        assert set(rows) == {"CT THIN", "CT 5mm", "SCOUT", "CT TILT", "CT PLAIN"}
        assert {d: r["status"] for d, r in rows.items()} == {
            "CT THIN": "ok",
            "CT 5mm": "skipped",
            "SCOUT": "skipped",
            "CT TILT": "ok",
            "CT PLAIN": "failed",
        }
        assert (summary.ok, summary.skipped, summary.failed) == (2, 2, 1)
        assert str(summary).startswith("2 ok, 2 skipped, 1 failed")
        for row in rows.values():
            assert (row["output"] != "") == (row["status"] == "ok")
            assert (tmp_path / row["output"]).is_file() or row["status"] != "ok"

    def test_truncated_file_fails_its_series_naming_the_file_and_the_rest_goes_on(self, dataset, tmp_path):
        run(dataset, tmp_path)
        row = read_manifest(tmp_path)["CT PLAIN"]
        assert row["status"] == "failed"
        assert dataset.truncated_file.name in row["reason"] and "truncated" in row["reason"]
        assert not (tmp_path / "CQ500-CT-3").exists() or not any((tmp_path / "CQ500-CT-3").iterdir())

    def test_non_image_files_are_listed_with_their_reason(self, dataset, tmp_path):
        summary = run(dataset, tmp_path)
        with open(tmp_path / "skipped_files.csv", newline="") as stream:
            skipped = {Path(row["path"]).name: row["reason"] for row in csv.DictReader(stream)}
        assert "not a DICOM" in skipped["README.txt"]
        assert "README.txt" in {p.name for p, _ in summary.skipped_files}

    def test_output_holds_the_series_geometry_and_provenance(self, dataset, tmp_path):
        run(dataset, tmp_path)
        row = read_manifest(tmp_path)["CT THIN"]
        volume, extras = load_npz(tmp_path / row["output"])
        assert volume.spacing == pytest.approx((4.0, 4.0, 4.0))
        assert volume.meta["series_uid"] == row["series_uid"]
        assert extras["provenance"]["options"]["pipeline"]["spacing"] == [4.0, 4.0, 4.0]
        assert len(extras["provenance"]["files"]) == 16

    def test_rule_all_writes_both_series_of_a_patient_without_overwriting(self, dataset, tmp_path):
        run(dataset, tmp_path, rule="all")
        rows = read_manifest(tmp_path)
        thin, thick = rows["CT THIN"], rows["CT 5mm"]
        assert thin["status"] == thick["status"] == "ok"
        assert thin["output"] != thick["output"]
        assert Path(thin["output"]).parent == Path(thick["output"]).parent == Path("CQ500-CT-1")
        for row in (thin, thick):
            assert load_npz(tmp_path / row["output"])[0].meta["series_uid"] == row["series_uid"]

    def test_tilted_series_comes_out_orthogonal_with_the_marker_at_its_world_point(self, dataset, tmp_path):
        run(dataset, tmp_path, options=PreprocessOptions(spacing=(2.0, 2.0, 2.0)))
        volume, _ = load_npz(tmp_path / read_manifest(tmp_path)["CT TILT"]["output"])
        axes = volume.affine[:3, :3]
        assert not volume.is_tilted
        np.testing.assert_allclose(axes.T @ axes, np.diag([4.0, 4.0, 4.0]), atol=1e-9)  # no shear
        at_marker = tuple(np.rint(volume.world_to_index(MARKER_MM)).astype(int))
        assert volume.hu[at_marker] > 2000
        # the bead's centre of mass, in world mm, lands on the marker (source voxels are 4 x 4 x 5 mm)
        world = volume.index_to_world(np.indices(volume.shape).reshape(3, -1).T)
        weight = np.clip(volume.hu.reshape(-1) - 200.0, 0, None)
        near = np.linalg.norm(world - MARKER_MM, axis=1) < 15.0
        centre = (world[near] * weight[near, None]).sum(axis=0) / weight[near].sum()
        np.testing.assert_allclose(centre, MARKER_MM, atol=1.0)

    def test_nifti_output_places_the_marker_at_its_world_point(self, dataset, tmp_path):
        import nibabel

        run(dataset, tmp_path, options=PreprocessOptions(spacing=(2.0, 2.0, 2.0), format="nifti"))
        output = tmp_path / read_manifest(tmp_path)["CT TILT"]["output"]
        assert output.name.endswith(".nii.gz") and output.with_name(output.name[:-7] + ".json").is_file()
        image = nibabel.load(output)
        ras = np.array([-MARKER_MM[0], -MARKER_MM[1], MARKER_MM[2], 1.0])
        ijk = np.rint(np.linalg.solve(image.affine, ras)[:3]).astype(int)
        assert image.get_fdata()[tuple(ijk)] > 2000

    def test_windows_option_stores_a_channel_stack(self, dataset, tmp_path):
        run(
            dataset,
            tmp_path,
            options=PreprocessOptions(spacing=(4.0, 4.0, 4.0), windows=("brain", "bone"), hu_dtype="float32"),
        )
        volume, extras = load_npz(tmp_path / read_manifest(tmp_path)["CT THIN"]["output"])
        assert extras["processed"].shape == (2, *volume.shape)
        # the processed array is computed from the float32 HU stored beside it
        assert np.allclose(extras["processed"], window_stack(volume.hu, ("brain", "bone")), atol=1e-6)

    def test_a_center_width_window_stores_that_window(self, dataset, tmp_path):
        run(dataset, tmp_path, options=PreprocessOptions(spacing=(4.0, 4.0, 4.0), window=(40, 80), hu_dtype="float32"))
        volume, extras = load_npz(tmp_path / read_manifest(tmp_path)["CT THIN"]["output"])
        assert extras["processed"].shape == volume.shape
        assert np.allclose(extras["processed"], window(volume.hu, "brain"), atol=1e-6)

    def test_rerun_keeps_finished_outputs_and_redoes_a_deleted_one(self, dataset, tmp_path):
        run(dataset, tmp_path)
        rows = read_manifest(tmp_path)
        thin, tilt = tmp_path / rows["CT THIN"]["output"], tmp_path / rows["CT TILT"]["output"]
        thin_mtime = thin.stat().st_mtime_ns
        tilt.unlink()
        summary = run(dataset, tmp_path)
        rows = read_manifest(tmp_path)
        assert thin.stat().st_mtime_ns == thin_mtime
        assert rows["CT THIN"]["reason"] == ALREADY_DONE and rows["CT THIN"]["status"] == "ok"
        assert tilt.is_file() and rows["CT TILT"]["status"] == "ok" and rows["CT TILT"]["reason"] == ""
        assert rows["CT PLAIN"]["status"] == "failed"  # failures are retried, not remembered as done
        assert summary.already_done == 1

    def test_changed_options_recompute_the_output(self, dataset, tmp_path):
        run(dataset, tmp_path)
        output = tmp_path / read_manifest(tmp_path)["CT THIN"]["output"]
        run(dataset, tmp_path, options=PreprocessOptions(spacing=(5.0, 5.0, 5.0)))
        assert read_manifest(tmp_path)["CT THIN"]["reason"] == ""
        assert load_npz(output)[0].spacing == pytest.approx((5.0, 5.0, 5.0))

    def test_stale_temporary_file_from_an_interrupted_run_is_removed(self, dataset, tmp_path):
        run(dataset, tmp_path)
        output = tmp_path / read_manifest(tmp_path)["CT THIN"]["output"]
        stale = output.with_name(f".{output.stem}.k2j4h1.npz")
        stale.write_bytes(b"half a zip")
        run(dataset, tmp_path)
        assert not stale.exists()
        assert read_manifest(tmp_path)["CT THIN"]["reason"] == ALREADY_DONE

    def test_corrupt_output_is_redone_not_trusted(self, dataset, tmp_path):
        run(dataset, tmp_path)
        output = tmp_path / read_manifest(tmp_path)["CT THIN"]["output"]
        output.write_bytes(b"not a zip file")
        run(dataset, tmp_path)
        assert read_manifest(tmp_path)["CT THIN"]["reason"] == ""
        assert load_npz(output)[0].shape[0] > 0

    def test_no_temporary_files_are_left_in_the_output(self, dataset, tmp_path):
        run(dataset, tmp_path)
        assert not [p for p in tmp_path.rglob(".*") if p.is_file()]

    def test_output_inside_the_input_is_refused_and_nothing_is_written(self, dataset):
        inside = dataset.root / "CQ500-CT-1" / "out"
        with pytest.raises(ValueError, match="inside the input"):
            preprocess(dataset.root, inside, progress=False)
        assert not inside.exists()

    def test_output_names_are_unique_per_series(self, index):
        names = [output_name(series) for series in index.series]
        assert len(set(names)) == len(names)
        assert all("/" in name and " " not in name for name in names)


class TestWorkers:
    def test_local_pool_and_dask_cluster_write_the_same_outputs(self, dataset, tmp_path):
        distributed = pytest.importorskip("distributed")
        pool_out, dask_out = tmp_path / "pool", tmp_path / "dask"
        pool_summary = run(dataset, pool_out, workers=2)
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            dask_summary = run(dataset, dask_out, dask_address=cluster.scheduler_address)

        def timeless(manifest):  # seconds taken differ between runs; everything else must not
            return {d: {k: v for k, v in row.items() if k != "seconds"} for d, row in manifest.items()}

        assert timeless(read_manifest(pool_out)) == timeless(read_manifest(dask_out))
        assert (pool_summary.ok, pool_summary.failed) == (dask_summary.ok, dask_summary.failed) == (2, 1)
        # the worker that processed a series is another process: its peak memory is reported
        assert set(dask_summary.peak_rss_bytes) == set(pool_summary.peak_rss_bytes)
        for row in read_manifest(pool_out).values():
            if row["status"] == "ok":
                with np.load(pool_out / row["output"]) as a, np.load(dask_out / row["output"]) as b:
                    assert sorted(a.files) == sorted(b.files)
                    for key in a.files:
                        np.testing.assert_array_equal(a[key], b[key])


class TestIterVolumes:
    def test_streams_one_volume_per_chosen_series_and_warns_about_unreadable_ones(self, dataset):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            found = [(s.description, v.shape) for s, v in iter_volumes(dataset.root, on_error="skip")]
        assert found == [("CT THIN", (16, 48, 48)), ("CT TILT", (12, 48, 48))]
        assert any(dataset.truncated_file.name in str(w.message) for w in caught)

    def test_raises_the_loader_error_by_default(self, dataset):
        with pytest.raises(DicomError, match=dataset.truncated_file.name):
            list(iter_volumes(dataset.root))


@pytest.mark.realdata
def test_real_series_with_two_kernels_at_identical_positions(ct_data, tmp_path):
    source = ct_data / "lung-pet-ct-dx"
    before = sorted(source.rglob("*"))
    summary = preprocess(
        source, tmp_path, options=PreprocessOptions(spacing=(8.0, 8.0, 8.0)), workers=2, progress=False
    )
    with open(tmp_path / "manifest.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 4
    for patient in ("Lung_Dx-A0001", "Lung_Dx-A0002"):
        mine = {row["series_number"]: row for row in rows if row["patient_id"] == patient}
        assert mine["2"]["status"] == "ok"
        assert mine["3"]["status"] == "skipped" and "tie-break" in mine["3"]["reason"]
        volume, _ = load_npz(tmp_path / mine["2"]["output"])
        assert volume.spacing == pytest.approx((8.0, 8.0, 8.0))
        assert -1100 < float(volume.hu.min()) and float(volume.hu.max()) > 100  # HU, not stored values
    assert summary.failed == 0 and len(summary.skipped_files) == 2  # LICENSE, metadata.csv
    assert sorted(source.rglob("*")) == before  # nothing written into the input


class TestStoredValues:
    def test_hu_are_stored_as_int16_by_default_within_half_a_hu_of_float32(self, dataset, tmp_path):
        run(dataset, tmp_path / "int16", options=PreprocessOptions(spacing=(4.0, 4.0, 4.0), normalize=(-100, 200)))
        run(
            dataset,
            tmp_path / "float32",
            options=PreprocessOptions(spacing=(4.0, 4.0, 4.0), normalize=(-100, 200), hu_dtype="float32"),
        )
        name = read_manifest(tmp_path / "int16")["CT THIN"]["output"]
        rounded, extras16 = load_npz(tmp_path / "int16" / name)
        exact, extras32 = load_npz(tmp_path / "float32" / name)
        assert rounded.hu.dtype == np.int16 and exact.hu.dtype == np.float32
        assert np.abs(rounded.hu - exact.hu).max() <= 0.5
        # the processed array is float32 and computed from the unrounded HU
        assert extras16["processed"].dtype == np.float32
        np.testing.assert_array_equal(extras16["processed"], extras32["processed"])
        assert extras16["provenance"]["options"]["pipeline"]["hu_dtype"] == "int16"

    def test_unknown_hu_dtype_is_refused(self):
        with pytest.raises(ValueError, match="hu_dtype"):
            PreprocessOptions(hu_dtype="float64")


class TestSafety:
    @pytest.mark.parametrize(
        ("patient", "description"),
        [("../evil", "a/b\\c"), ("Pätiënt 1", "Kopf ünd Hals"), ("CON", ""), ("...", "日本語"), ("x" * 60, "y" * 60)],
    )
    def test_odd_patient_ids_and_descriptions_give_safe_names_inside_the_output(self, tmp_path, patient, description):
        data, out = tmp_path / "data", tmp_path / "out"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about over-long or non-Latin-1 values: the point here
            write_series(data / "s", n_slices=3, matrix=16, patient_id=patient, series_description=description)
            summary = preprocess(data, out, options=FAST, workers=1, progress=False)
        assert summary.ok == 1
        relative = Path(summary.rows[0].output)
        assert (out / relative).is_file() and (out / relative).resolve().is_relative_to(out.resolve())
        assert len(relative.parts) == 2 and relative.as_posix().isascii()
        for part in relative.parts:
            assert part[0] not in ".-" and len(part) < 120
            assert part.split(".")[0].split("__")[0].upper() not in ("CON", "NUL", "PRN", "AUX")
        if patient == "Pätiënt 1":
            assert relative.parts[0] == "Patient-1" and "Kopf-und-Hals" in relative.name

    def test_input_inside_the_output_is_refused(self, dataset):
        with pytest.raises(ValueError, match="inside the output"):
            preprocess(dataset.root, dataset.root.parent, progress=False)

    def test_stale_manifest_temporaries_are_removed(self, dataset, tmp_path):
        stale = tmp_path / ".manifest.x1y2z3.csv"
        stale.write_text("half a manifest")
        run(dataset, tmp_path)
        assert not stale.exists()


# ---------------------------------------------------------------------------- model inputs

BLEED_CENTRE = np.array([-30.0, -42.0, 32.0])  # the phantom's right frontal bleed (ctexplore.phantom)
BLEED_SEMI_AXES = np.array([10.0, 13.0, 9.0])
TILT = 20.0


def _inside_bleed(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm((points - BLEED_CENTRE) / BLEED_SEMI_AXES, axis=-1) < 1


def _slices_through_bleed(volume) -> np.ndarray:
    """Per slice of `volume`: does any voxel centre lie inside the bleed (computed from the geometry)?"""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in volume.shape], indexing="ij"), axis=-1)
    return _inside_bleed(volume.index_to_world(index.reshape(-1, 3)).reshape(volume.shape + (3,))).any(axis=(1, 2))


@pytest.fixture(scope="module")
def tilted_with_image_labels(tmp_path_factory):
    """A gantry-tilted series and an RSNA-style image-level label file (bleed per SOP Instance UID)."""
    source = tmp_path_factory.mktemp("tilted")
    write_series(source / "P1", n_slices=40, matrix=64, slice_spacing=2.5, gantry_tilt=TILT, noise=3.0, shuffle=True)
    from ctexplore.reader import load_series

    volume = load_series(source / "P1")
    through = _slices_through_bleed(volume)
    assert 2 < through.sum() < 20  # the test means something: some images show the bleed, most do not
    labels = tmp_path_factory.mktemp("labels") / "images.csv"
    lines = [f"{uid},{int(hit)}" for uid, hit in zip(volume.meta["sop_instance_uids"], through)]
    labels.write_text("sop_instance_uid,bleed\n" + "\n".join(lines) + "\n")
    return source, labels, volume


def _cli_preprocess(source, out, *flags):
    import subprocess
    import sys

    args = [sys.executable, "-m", "ctexplore", "preprocess", str(source), str(out), "--workers", "1", "--no-progress"]
    result = subprocess.run([*args, *flags], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


class TestModelInputs:
    FLAGS = ("--spacing", "2", "--slab", "5", "max", "--stack-2p5d", "1", "--window", "brain", "subdural")

    def test_options_check_slab_and_stack(self):
        assert PreprocessOptions(slab=5).slab == (5.0, "mean")
        with pytest.raises(ValueError, match="slab mode"):
            PreprocessOptions(slab=(5, "median"))
        with pytest.raises(ValueError, match="positive"):
            PreprocessOptions(slab=(0, "max"))
        with pytest.raises(ValueError, match="whole number"):
            PreprocessOptions(stack_2p5d=-1)
        with pytest.raises(ValueError, match="format 'npz'"):
            PreprocessOptions(stack_2p5d=1, format="nifti")

    def test_cli_slab_and_2p5d_on_a_tilted_series_keep_image_labels_aligned(self, tilted_with_image_labels, tmp_path):
        source, labels, acquired = tilted_with_image_labels
        _cli_preprocess(source, tmp_path, *self.FLAGS, "--skull-strip", "--no-compress")
        ds = ct.VolumeDataset(tmp_path, labels=labels, slices=True)
        volume, extras = load_npz(ds[0][1]["path"])
        assert not volume.is_tilted and volume.spacing == pytest.approx((4.0, 2.0, 2.0))  # 5 mm -> 2 slices of 2 mm
        assert volume.meta["slab"]["mode"] == "max" and volume.meta["processed_axes"] == "channel, slice, row, col"
        processed = extras["processed"]
        assert processed.shape == (6,) + volume.shape
        assert volume.meta["processed_channels"][:3] == ["brain[-1]", "brain[+0]", "brain[+1]"]
        half_hu = 0.5 / 80 + 1e-6  # the stored HU are rounded to int16 after the window was taken (width 80)
        np.testing.assert_allclose(processed[1], window(volume.hu, "brain"), atol=half_hu)
        np.testing.assert_allclose(processed[0, 1:], window(volume.hu[:-1], "brain"), atol=half_hu)
        assert volume.hu.max() < 400  # skull stripped before the MIP slab: no bone left
        assert len(ds) == volume.shape[0]
        # every output slab that crosses the bleed is labelled from the acquired images; none far from it is
        crosses = _slices_through_bleed(volume)
        extent = np.sqrt(((BLEED_SEMI_AXES * volume.normal) ** 2).sum())  # the bleed's half-extent along the normal
        centre = BLEED_CENTRE @ volume.normal
        reach = volume.spacing[0] / 2 + acquired.spacing[0]  # half a slab plus the interpolation's neighbour
        positives = 0
        for i in range(len(ds)):
            image, record = ds[i]
            assert image.shape == (6,) + volume.shape[1:]
            np.testing.assert_array_equal(image, processed[:, i])
            assert record["sop_instance_uids"].split("\\") == volume.meta["slice_sources"][i]
            assert set(volume.meta["slice_sources"][i]) <= set(acquired.meta["sop_instance_uids"])
            label = record["labels"]["bleed"]
            positives += label == 1
            if crosses[i]:
                assert label == 1, i
            if label == 1:
                plane = volume.meta["slice_positions"][i]
                assert abs(plane - centre) <= extent + reach, i
        assert 0 < positives < len(ds)

    def test_a_rerun_with_the_same_model_flags_is_already_done(self, tilted_with_image_labels, tmp_path):
        source, _, _ = tilted_with_image_labels
        _cli_preprocess(source, tmp_path, *self.FLAGS)
        _cli_preprocess(source, tmp_path, *self.FLAGS)
        assert [row["reason"] for row in read_manifest(tmp_path).values()] == [ALREADY_DONE]
        _cli_preprocess(source, tmp_path, "--spacing", "2", "--slab", "5", "mean")
        assert [row["reason"] for row in read_manifest(tmp_path).values()] == [""]

    def test_every_output_records_the_source_images_of_each_slice(self, tilted_with_image_labels, tmp_path):
        source, _, acquired = tilted_with_image_labels
        _cli_preprocess(source, tmp_path, "--keep-spacing", "--format", "nifti")
        sidecar = next(tmp_path.rglob("*.json"))
        import json

        meta = json.loads(sidecar.read_text())["meta"]
        # keep-spacing on a tilted series: the orthogonal slices are the acquired planes, one image each
        assert meta["slice_sources"] == [[uid] for uid in acquired.meta["sop_instance_uids"]]
