"""`load_series` and `scan` on real scanner files from ../shared/data/ct (CTEXPLORE_TEST_DATA)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

import ctexplore
from ctexplore import DecodeError, GeometryError, GeometryWarning, load_series, scan

pytestmark = pytest.mark.realdata

LOSSLESS_SYNTAXES = [
    "BigEndianExplicitTransferSyntax_1.2.840.10008.1.2.2",
    "DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99",
    "LittleEndianImplicitTransferSyntax_1.2.840.10008.1.2",
    "RLELosslessTransferSyntax_1.2.840.10008.1.2.5",
    "JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90",
    "JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80",
    "JPEGProcess14TransferSyntax_1.2.840.10008.1.2.4.57",
    "JPEGProcess14SV1TransferSyntax_1.2.840.10008.1.2.4.70",
]
LOSSY_SYNTAXES = [
    "JPEG2000TransferSyntax_1.2.840.10008.1.2.4.91",
    "JPEGLSLossyTransferSyntax_1.2.840.10008.1.2.4.81",
]


def _transfer_file(ct_data: Path, name: str) -> Path:
    return ct_data / "single-files" / "transfer-syntaxes" / f"CTImage.dcm_{name}.dcm"


class TestLungPetCtDx:
    def folder(self, ct_data: Path) -> Path:
        return ct_data / "lung-pet-ct-dx"

    def test_two_kernels_at_identical_positions_stay_separate_series(self, ct_data):
        index = scan(self.folder(ct_data))
        assert sorted(s.n_images for s in index.series) == [30, 30, 64, 64]
        assert len({s.uid for s in index.series}) == 4
        assert index.most_common_slice_count(2) == [(64, 2), (30, 2)] or index.most_common_slice_count(2) == [
            (30, 2),
            (64, 2),
        ]
        assert [p.name for p, _ in index.skipped] == ["metadata.csv", "LICENSE"] or {
            p.name for p, _ in index.skipped
        } == {"metadata.csv", "LICENSE"}

    def test_folder_with_several_series_refuses_and_lists_them(self, ct_data):
        with pytest.raises(ctexplore.SeriesSelectionError, match=r"holds 4 image series.*series=N"):
            load_series(self.folder(ct_data))

    def test_philips_implicit_unsigned_12_bit_loads_uniform_5mm(self, ct_data):
        series = next(s for s in scan(self.folder(ct_data)) if s.n_images == 64)
        assert series.transfer_syntax == "Implicit VR Little Endian"
        volume = load_series(series)
        assert volume.shape == (64, 512, 512)
        assert volume.hu.dtype == np.int16
        assert volume.spacing[0] == pytest.approx(5.0, abs=1e-3)
        assert volume.gantry_tilt == pytest.approx(0.0, abs=1e-3)
        assert volume.hu.min() >= -1024
        # Air in the chest scan: the lungs sit far below water.
        assert np.percentile(volume.hu, 5) < -800

    def test_hu_equal_simpleitk_on_every_series(self, ct_data):
        sitk = pytest.importorskip("SimpleITK")
        for series in scan(self.folder(ct_data)):
            volume = load_series(series)
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames([str(f) for f in series.files])
            image = reader.Execute()
            reference = sitk.GetArrayFromImage(image)
            np.testing.assert_array_equal(volume.hu, reference)
            # Same first voxel centre and slice step in patient space.
            np.testing.assert_allclose(volume.affine[:3, 3], image.GetOrigin(), atol=1e-3)
            assert volume.spacing[0] == pytest.approx(image.GetSpacing()[2], abs=1e-3)


class TestKitsDuplicatePositions:
    def test_duplicate_slice_collapsed_with_warning_and_uneven_gaps_refused(self, ct_data):
        folder = ct_data / "kits-duplicate-positions"
        with pytest.warns(GeometryWarning, match=r"CT2[68]\.dcm = CT2[68]\.dcm"):
            with pytest.raises(
                GeometryError,
                match=r"uneven \(7\.5 to 115 mm over 10 slices.*112 mm between slices 0 and 1 \(-512\.50 and -400",
            ):
                load_series(folder)

    def test_resampled_uneven_volume_keeps_positions_right_and_reads_signed_padding(self, ct_data):
        folder = ct_data / "kits-duplicate-positions"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            volume = load_series(folder, on_uneven="resample")
        assert any("resampled" in str(w.message) for w in caught)
        positions = volume.meta["slice_positions"]
        assert positions[0] == pytest.approx(-512.5) and positions[-1] == pytest.approx(-42.5)
        step = 470 / 63  # the largest step below the smallest one (7.5 mm) that ends on the last slice
        np.testing.assert_allclose(np.diff(positions), step)
        assert volume.spacing[0] == pytest.approx(step)
        # (0028,0120) is stored as US 63536 while pixels are signed: it means -2000.
        assert volume.meta["pixel_padding_value"] == -2000
        # No stored pixel holds -2000 here (the corners hold -1024), so nothing is padding and
        # the corners keep what the rescale makes of them: -1024 * 1 - 1024.
        stored_min = min(int(pydicom.dcmread(f).pixel_array.min()) for f in sorted(folder.glob("*.dcm")))
        assert stored_min == -1024
        assert volume.padding is None
        assert volume.hu.min() == -2048


class TestGeometryHeaders:
    def test_tilt_measured_from_geometry_without_the_tag(self, ct_data):
        folder = ct_data / "geometry-headers" / "gantrytilting" / "001"
        assert "GantryDetectorTilt" not in pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True)
        series = scan(folder)[0]
        volume = load_series(series)
        # ImageOrientationPatient column direction (0, 0.9703, -0.2419) is 14.0 degrees off axial.
        assert series.tilt == pytest.approx(14.0, abs=0.05)
        assert volume.gantry_tilt == pytest.approx(14.0, abs=0.05)
        assert volume.meta["nominal_gantry_tilt"] is None

    def test_images_at_one_position_are_not_a_volume(self, ct_data):
        with pytest.raises(GeometryError, match="not a volume"):
            load_series(ct_data / "geometry-headers" / "notavolume" / "001")

    @pytest.mark.parametrize("name, step", [("001", 5.0), ("002", 0.75)])
    def test_missing_slice_is_detected(self, ct_data, name, step):
        folder = ct_data / "geometry-headers" / "sliceincrement" / name
        with pytest.raises(GeometryError, match=rf"uneven \({step:g} to {2 * step:g} mm"):
            load_series(folder)
        with pytest.warns(GeometryWarning):
            volume = load_series(folder, on_uneven="resample")
        assert volume.shape[0] == 5  # the missing slice is interpolated, not skipped
        assert volume.spacing[0] == pytest.approx(step, abs=1e-3)


class TestTransferSyntaxes:
    @pytest.mark.parametrize("name", LOSSLESS_SYNTAXES)
    def test_lossless_encoding_equals_uncompressed_reference(self, ct_data, name):
        reference = load_series(_transfer_file(ct_data, "LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1"))
        volume = load_series(_transfer_file(ct_data, name))
        assert volume.hu.dtype == reference.hu.dtype
        np.testing.assert_array_equal(volume.hu, reference.hu)

    @pytest.mark.parametrize("name", LOSSY_SYNTAXES)
    def test_lossy_encoding_is_close_to_reference(self, ct_data, name):
        reference = load_series(_transfer_file(ct_data, "LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1"))
        volume = load_series(_transfer_file(ct_data, name))
        difference = np.abs(volume.hu.astype(np.float32) - reference.hu)
        assert np.median(difference) <= 2

    @pytest.mark.parametrize("uid", ["1.2.840.10008.1.2.4.53", "1.2.840.10008.1.2.4.55"])
    def test_retired_jpeg_processes_fail_naming_the_syntax(self, ct_data, uid):
        path = next((ct_data / "single-files" / "transfer-syntaxes").glob(f"*{uid}.dcm"))
        with pytest.raises(
            DecodeError, match=rf"{path.name}: no Python decoder exists for transfer syntax .*\({uid}\)"
        ):
            load_series(path)

    @pytest.mark.parametrize("sample", ["CT1", "CT2"])
    @pytest.mark.parametrize("variant", ["J2KR", "JLSL", "JPLL", "RLE"])
    def test_nema_wg04_lossless_variants_decode_to_unc(self, ct_data, sample, variant):
        folder = ct_data / "single-files" / "nema-wg04"
        reference = load_series(folder / f"{sample}_UNC")
        volume = load_series(folder / f"{sample}_{variant}")
        np.testing.assert_array_equal(volume.hu, reference.hu)

    def test_fragmented_two_frame_jpeg_baseline_loads_both_frames(self, ct_data):
        path = next((ct_data / "single-files" / "transfer-syntaxes").glob("CT0012*"))
        volume = load_series(path)
        assert volume.shape == (2, 512, 512)


class TestOddFiles:
    def test_declared_jpeg_ls_holding_raw_pixels_fails_with_named_error(self, ct_data):
        path = ct_data / "single-files" / "odd" / "20-wrong-transfer-syntax.dcm"
        with pytest.raises(DecodeError, match=r"20-wrong-transfer-syntax\.dcm: cannot decode .*JPEG-LS Lossless"):
            load_series(path)

    def test_file_without_preamble_and_implicit_meta_loads(self, ct_data):
        volume = load_series(ct_data / "single-files" / "odd" / "54-implicit-file-meta-info.dcm")
        assert volume.shape == (1, 512, 512)
        reference = pydicom.dcmread(ct_data / "single-files" / "odd" / "54-implicit-file-meta-info.dcm", force=True)
        expected = reference.pixel_array * float(reference.RescaleSlope) + float(reference.RescaleIntercept)
        np.testing.assert_array_equal(volume.hu[0], expected)

    def test_rle_file_loads(self, ct_data):
        volume = load_series(ct_data / "single-files" / "odd" / "rle.dcm")
        assert volume.shape == (1, 512, 512)


class TestPydicomFiles:
    def test_enhanced_ct_frames_take_geometry_and_rescale_from_functional_groups(self, ct_data):
        path = ct_data / "single-files" / "pydicom" / "eCT_Supplemental.dcm"
        volume = load_series(path)
        dataset = pydicom.dcmread(path)
        frames = dataset.PerFrameFunctionalGroupsSequence
        positions = np.array([frame.PlanePositionSequence[0].ImagePositionPatient for frame in frames], float)
        # Orientation (-1,0,0, 0,1,0): the normal points to the feet, so slices sort by descending z.
        normal = np.cross([-1.0, 0, 0], [0, 1.0, 0])
        order = np.argsort(positions @ normal)
        assert volume.shape == (2, 512, 512)
        np.testing.assert_allclose(volume.affine[:3, 3], positions[order[0]])
        np.testing.assert_allclose(volume.index_to_world([1, 0, 0]), positions[order[1]])
        assert volume.spacing[0] == pytest.approx(10.0)
        assert volume.spacing[1:] == pytest.approx((0.388672, 0.388672))
        expected = dataset.pixel_array.astype(np.float64)[order] - 1024
        np.testing.assert_array_equal(volume.hu, expected)

    def test_ct_small_matches_pydicom_rescale(self, ct_data):
        path = ct_data / "single-files" / "pydicom" / "CT_small.dcm"
        dataset = pydicom.dcmread(path)
        expected = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
        np.testing.assert_array_equal(load_series(path).hu[0], expected)
