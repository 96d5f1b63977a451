"""Tests for ctexplore.phantom: the files are real DICOM and hold exactly the truth we claim."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from ctexplore.headmodel import ImageFormation
from ctexplore.phantom import (
    CT_IMAGE_STORAGE,
    ENHANCED_CT_IMAGE_STORAGE,
    MEDIA_STORAGE_DIRECTORY_STORAGE,
    NON_IMAGE_FILES,
    SECONDARY_CAPTURE_STORAGE,
    SUPPORTED_TRANSFER_SYNTAXES,
    EllipsoidHead,
    Encoding,
    ExportQuirks,
    SeriesHeader,
    SliceGeometry,
    phantom_hu,
    write_enhanced_series,
    write_localizer,
    write_series,
    write_study,
)

SMALL = SliceGeometry(n_slices=8, matrix=64, pixel_spacing=(3.6, 3.6), slice_spacing=10.0)


def read_hu(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


class TestPhantomHu:
    def test_tissues_sit_where_a_head_has_them(self):
        points = np.array(
            [
                [0.0, 0.0, 120.0],  # above the vertex
                [0.0, 0.0, 83.0],  # scalp
                [0.0, 0.0, 85.0 - 4.5],  # outer table of the skull
                [0.0, 0.0, 85.0 - 7.5],  # diploe, middle of the skull
                [0.0, 0.0, 85.0 - 12.0],  # cortex
                [0.0, 0.0, 0.0],  # white matter
                [11.0, 2.0, 18.0],  # left lateral ventricle
                [-30.0, -42.0, 32.0],  # right frontal bleed
            ]
        )
        hu = phantom_hu(points)
        assert hu.dtype == np.float32
        assert hu[0] == -1000 and hu[1] == 40
        assert hu[2] > 1300 and 990 <= hu[3] <= 1010
        assert hu[4] == 38 and hu[5] == 26 and hu[6] == 5 and hu[7] == 70

    def test_keeps_the_leading_shape_of_the_points(self):
        assert phantom_hu(np.zeros((2, 3, 5, 3))).shape == (2, 3, 5)

    def test_rejects_points_without_three_coordinates(self):
        with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
            phantom_hu(np.zeros((4, 2)))

    def test_marker_bead_peaks_at_its_centre(self):
        offsets = np.array([[0.0, 0, 0], [1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.5]])
        hu = phantom_hu(offsets + [5.0, -20.0, 30.0], markers=[(5.0, -20.0, 30.0)], marker_radius=3.0)
        assert hu[0] == 3000 and 2000 <= hu[2] < hu[1] < 3000 and hu[3] < 100


class TestWriteSeriesFiles:
    def test_writes_part10_ct_image_storage_files(self, tmp_path):
        written = write_series(tmp_path / "ct", geometry=SMALL)
        assert len(written.files) == 8 and all(f.parent == tmp_path / "ct" for f in written.files)
        for file in written.files:
            raw = file.read_bytes()
            assert raw[:128] == b"\0" * 128 and raw[128:132] == b"DICM"
            ds = pydicom.dcmread(file)
            assert ds.file_meta.MediaStorageSOPClassUID == CT_IMAGE_STORAGE == ds.SOPClassUID
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
            assert ds.Modality == "CT" and ds.PatientPosition == "HFS"
            assert ds.SeriesInstanceUID == written.series_uid and ds.StudyInstanceUID == written.study_uid
            assert (ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel) == (64, 64, 16, 1)
            assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.RescaleType == "HU"
            assert [float(v) for v in ds.PixelSpacing] == [3.6, 3.6]
        assert not list((tmp_path / "ct").glob(".*")), "temporary files left behind"

    def test_pixels_rescale_to_phantom_hu_at_pixel_centres(self, tmp_path):
        written = write_series(tmp_path, geometry=SMALL)
        hu = np.stack([read_hu(f) for f in written.files])
        inside = ~written.expected_padding()
        truth = phantom_hu(written.pixel_centres())
        assert np.abs(hu - truth)[inside].max() <= 0.5
        assert np.array_equal(hu[inside], written.expected_hu(quantized=True)[inside])
        assert hu[inside].max() > 1000 and hu[inside].min() == -1000

    def test_noise_is_seeded_and_of_the_requested_size(self, tmp_path):
        clean = write_series(tmp_path / "clean", geometry=SMALL)
        noisy = write_series(tmp_path / "noisy", geometry=SMALL, head=EllipsoidHead(noise_sd=10.0))
        again = write_series(tmp_path / "again", geometry=SMALL, head=EllipsoidHead(noise_sd=10.0))
        difference = np.stack([read_hu(a) - read_hu(b) for a, b in zip(noisy.files, clean.files)])
        inside = ~noisy.expected_padding()
        assert 9.0 < difference[inside].std() < 11.0
        assert folder_bytes(tmp_path / "noisy") == folder_bytes(tmp_path / "again")
        assert again.series_uid == noisy.series_uid

    def test_same_arguments_write_byte_identical_files(self, tmp_path):
        options = dict(
            geometry=replace(SMALL, gantry_tilt=15.0),
            head=EllipsoidHead(noise_sd=3.0, markers=[(0, 0, 0)]),
            quirks=ExportQuirks(shuffle=True),
        )
        first = write_series(tmp_path / "a", **options)
        second = write_series(tmp_path / "b", **options)
        assert folder_bytes(tmp_path / "a") == folder_bytes(tmp_path / "b")
        assert [f.name for f in first.files] == [f.name for f in second.files]
        other_seed = write_series(tmp_path / "c", **{**options, "seed": 1})
        assert other_seed.series_uid != first.series_uid
        assert folder_bytes(tmp_path / "c") != folder_bytes(tmp_path / "a")

    def test_uids_are_valid_and_distinct(self, tmp_path):
        written = write_series(tmp_path, geometry=SMALL)
        datasets = [pydicom.dcmread(f) for f in written.files]
        sop_uids = {ds.SOPInstanceUID for ds in datasets}
        assert len(sop_uids) == len(datasets)
        for uid in sop_uids | {written.series_uid, written.study_uid, datasets[0].FrameOfReferenceUID}:
            assert pydicom.uid.UID(uid).is_valid
        assert len({written.series_uid, written.study_uid, datasets[0].FrameOfReferenceUID}) == 3

    def test_shuffle_permutes_file_names_and_instance_numbers(self, tmp_path):
        written = write_series(tmp_path, geometry=SMALL, quirks=ExportQuirks(shuffle=True))
        names = [f.name for f in written.files]
        instances = [int(pydicom.dcmread(f).InstanceNumber) for f in written.files]
        assert sorted(names) == [f"IM{i:04d}.dcm" for i in range(1, 9)]
        assert sorted(instances) == list(range(1, 9))
        assert names != sorted(names) and names != sorted(names, reverse=True)
        assert instances != sorted(instances) and instances != sorted(instances, reverse=True)
        assert np.argsort(names).tolist() != np.argsort(instances).tolist()

    def test_unshuffled_names_and_instance_numbers_follow_space(self, tmp_path):
        written = write_series(tmp_path, geometry=SMALL)
        assert [f.name for f in written.files] == [f"IM{i:04d}.dcm" for i in range(1, 9)]
        assert [int(pydicom.dcmread(f).InstanceNumber) for f in written.files] == list(range(1, 9))


class TestOptionObjects:
    """`write_series` takes small option objects; the flat keywords of earlier versions map onto their fields."""

    def test_flat_keywords_write_the_same_bytes_as_option_objects(self, tmp_path):
        flat = write_series(
            tmp_path / "flat",
            n_slices=4,
            matrix=32,
            gantry_tilt=12.0,
            bits_stored=12,
            rescale_intercept=0.0,
            shuffle=True,
            padding_value=-1000,
            series_description="FLAT",
            noise=4.0,
            seed=3,
        )
        grouped = write_series(
            tmp_path / "grouped",
            geometry=SliceGeometry(n_slices=4, matrix=32, gantry_tilt=12.0),
            encoding=Encoding(bits_stored=12, rescale_intercept=0.0),
            quirks=ExportQuirks(shuffle=True, padding_value=-1000),
            header=SeriesHeader(series_description="FLAT"),
            head=EllipsoidHead(noise_sd=4.0),
            seed=3,
        )
        assert folder_bytes(tmp_path / "flat") == folder_bytes(tmp_path / "grouped")
        assert flat.series_uid == grouped.series_uid and flat.head == grouped.head

    def test_a_flat_keyword_overrides_that_field_of_the_given_object(self, tmp_path):
        written = write_series(tmp_path, geometry=SliceGeometry(n_slices=3, matrix=16), matrix=24)
        assert written.shape == (3, 24, 24)

    def test_unknown_keyword_is_refused_by_name(self, tmp_path):
        with pytest.raises(TypeError, match="n_slice"):
            write_series(tmp_path, n_slice=3)
        assert not any(tmp_path.iterdir())

    def test_the_head_is_given_once(self, tmp_path):
        with pytest.raises(TypeError, match="head= or image_formation="):
            write_series(tmp_path, head=EllipsoidHead(), image_formation=ImageFormation())
        with pytest.raises(ValueError, match="sets its own noise"):
            write_series(tmp_path, head=ImageFormation(), noise=3.0)
        with pytest.raises(ValueError, match="has no markers"):
            write_series(tmp_path, image_formation=ImageFormation(), markers=[(0, 0, 0)])

    def test_option_objects_check_their_values_when_made(self):
        with pytest.raises(ValueError, match="bits_stored must be 8..16"):
            Encoding(bits_stored=4)
        with pytest.raises(ValueError, match="JPEG Baseline"):
            Encoding(transfer_syntax=pydicom.uid.JPEGBaseline8Bit)
        with pytest.raises(ValueError, match="noise_sd"):
            EllipsoidHead(noise_sd=-1.0)

    def test_study_defaults_apply_to_option_objects_that_leave_them_unset(self, tmp_path):
        spec = dict(geometry=SliceGeometry(n_slices=4, matrix=16), header=SeriesHeader(series_description="X"))
        (written,) = write_study(tmp_path, series=[spec], localizer=False, non_images=False)
        names = [f.name for f in written.files]
        assert sorted(names) == [f"S1_{i:04d}.dcm" for i in range(1, 5)] and names != sorted(names)


class TestGeometry:
    def test_untilted_slices_stack_along_z_and_centre_on_the_head(self, tmp_path):
        written = write_series(tmp_path, geometry=SMALL)
        positions = np.array([[float(v) for v in pydicom.dcmread(f).ImagePositionPatient] for f in written.files])
        np.testing.assert_allclose(np.diff(positions, axis=0), [[0, 0, 10.0]] * 7, atol=1e-9)
        centre = written.affine @ [3.5, 31.5, 31.5, 1.0]
        np.testing.assert_allclose(centre[:3], [0, 0, 0], atol=1e-9)

    @pytest.mark.parametrize("tilt", [20.0, 24.0, -12.0])
    def test_tilted_orientation_and_positions_follow_the_convention(self, tmp_path, tilt):
        written = write_series(tmp_path, geometry=replace(SMALL, gantry_tilt=tilt))
        ds = pydicom.dcmread(written.files[0])
        t = np.radians(tilt)
        np.testing.assert_allclose(
            [float(v) for v in ds.ImageOrientationPatient], [1, 0, 0, 0, np.cos(t), -np.sin(t)], atol=1e-12
        )
        assert float(ds.GantryDetectorTilt) == pytest.approx(tilt)
        positions = np.array([[float(v) for v in pydicom.dcmread(f).ImagePositionPatient] for f in written.files])
        steps = np.diff(positions, axis=0)
        np.testing.assert_allclose(steps, [[0, 0, 10.0 / np.cos(t)]] * 7, atol=1e-9)
        normal = np.cross([1, 0, 0], [0, np.cos(t), -np.sin(t)])
        np.testing.assert_allclose(normal, [0, np.sin(t), np.cos(t)], atol=1e-12)
        angle = np.degrees(np.arccos(steps[0] @ normal / np.linalg.norm(steps[0])))
        assert angle == pytest.approx(abs(tilt), abs=1e-6)
        np.testing.assert_allclose(np.diff(positions @ normal), 10.0, atol=1e-9)
        np.testing.assert_allclose(written.affine[:3, 0], steps[0], atol=1e-9)
        np.testing.assert_allclose(written.affine[:3, 3], positions[0])

    def test_affine_maps_indices_to_the_written_pixel_centres(self, tmp_path):
        written = write_series(tmp_path, geometry=replace(SMALL, gantry_tilt=24.0))
        index = np.stack(np.meshgrid(*(np.arange(n) for n in written.shape), indexing="ij"), axis=-1)
        by_affine = index @ written.affine[:3, :3].T + written.affine[:3, 3]
        np.testing.assert_allclose(by_affine, written.pixel_centres(), atol=1e-9)

    def test_slice_positions_give_uneven_planes_and_no_affine(self, tmp_path):
        planes = [-20.0, -16.0, -12.0, -5.0, 2.0, 9.0]
        written = write_series(tmp_path, geometry=SliceGeometry(matrix=32, slice_positions=planes, gantry_tilt=10.0))
        assert written.affine is None and written.shape[0] == 6
        np.testing.assert_allclose(written.slice_positions, planes, atol=1e-9)
        positions = np.array([[float(v) for v in pydicom.dcmread(f).ImagePositionPatient] for f in written.files])
        np.testing.assert_allclose(positions @ written.normal, planes, atol=1e-9)

    def test_slice_positions_must_not_decrease(self, tmp_path):
        with pytest.raises(ValueError, match="non-decreasing"):
            write_series(tmp_path, geometry=SliceGeometry(matrix=16, slice_positions=[0.0, 5.0, 2.0]))

    def test_spacing_tags_are_written_as_asked(self, tmp_path):
        written = write_series(
            tmp_path,
            geometry=SliceGeometry(n_slices=3, matrix=16, slice_spacing=0.625),
            quirks=ExportQuirks(bogus_spacing_between_slices=21.893),
        )
        ds = pydicom.dcmread(written.files[0])
        assert float(ds.SpacingBetweenSlices) == 21.893 and float(ds.SliceThickness) == 0.625
        assert "GantryDetectorTilt" in ds
        no_tilt_tag = write_series(
            tmp_path / "b", geometry=SliceGeometry(n_slices=2, matrix=16), quirks=ExportQuirks(nominal_tilt_tag=False)
        )
        assert "GantryDetectorTilt" not in pydicom.dcmread(no_tilt_tag.files[0])


class TestStoredValues:
    def test_signed_padding_is_ss_minus_2000_outside_the_field_of_view(self, tmp_path):
        written = write_series(tmp_path, geometry=SMALL)
        ds = pydicom.dcmread(written.files[0])
        assert ds["PixelPaddingValue"].VR == "SS" and ds.PixelPaddingValue == -2000
        assert ds.PixelRepresentation == 1 and ds.pixel_array.dtype == np.int16
        outside = written.expected_padding()[0]
        assert outside[0, 0] and not outside[32, 32]
        assert (ds.pixel_array[outside] == -2000).all() and (ds.pixel_array[~outside] != -2000).all()

    def test_unsigned_padding_is_us(self, tmp_path):
        written = write_series(
            tmp_path, geometry=SMALL, encoding=Encoding(signed=False), quirks=ExportQuirks(padding_value=0)
        )
        ds = pydicom.dcmread(written.files[0])
        assert ds["PixelPaddingValue"].VR == "US" and ds.PixelPaddingValue == 0
        assert ds.PixelRepresentation == 0 and ds.pixel_array.dtype == np.uint16
        assert (ds.pixel_array[written.expected_padding()[0]] == 0).all()

    def test_unsigned_series_refuses_a_negative_padding_value(self, tmp_path):
        with pytest.raises(ValueError, match="padding_value=-2000 is outside the stored range"):
            write_series(tmp_path, geometry=SMALL, encoding=Encoding(signed=False))

    def test_padding_vr_us_on_a_signed_image_holds_the_twos_complement(self, tmp_path):
        written = write_series(tmp_path, geometry=SMALL, quirks=ExportQuirks(padding_vr="US"))
        ds = pydicom.dcmread(written.files[0])
        assert ds["PixelPaddingValue"].VR == "US" and ds.PixelPaddingValue == 63536
        assert ds.pixel_array[0, 0] == -2000

    def test_without_padding_tag_outside_the_field_of_view_is_air(self, tmp_path):
        written = write_series(tmp_path, geometry=SMALL, quirks=ExportQuirks(padding_value=None))
        ds = pydicom.dcmread(written.files[0])
        assert "PixelPaddingValue" not in ds and written.expected_padding() is None
        assert read_hu(written.files[0])[0, 0] == -1000

    def test_padding_range_limit_fills_every_value_of_the_range(self, tmp_path):
        written = write_series(
            tmp_path, geometry=SMALL, quirks=ExportQuirks(padding_value=-2000, padding_range_limit=-1990)
        )
        ds = pydicom.dcmread(written.files[0])
        assert ds.PixelPaddingRangeLimit == -1990 and ds["PixelPaddingRangeLimit"].VR == "SS"
        padded = ds.pixel_array[written.expected_padding()[0]]
        assert set(np.unique(padded)) == set(range(-2000, -1989))

    def test_per_slice_rescale_is_written_in_spatial_order(self, tmp_path):
        slopes = [1.0, 0.5, 1.0, 2.0, 1.0, 0.5, 1.0, 1.0]
        intercepts = [-1024.0, -1000.0, 0.0, -1024.0, -512.0, -1024.0, -1024.0, 7.5]
        written = write_series(
            tmp_path,
            geometry=SMALL,
            encoding=Encoding(rescale_slope=slopes, rescale_intercept=intercepts),
            quirks=ExportQuirks(shuffle=True),
        )
        datasets = [pydicom.dcmread(f) for f in written.files]
        assert [float(ds.RescaleSlope) for ds in datasets] == slopes
        assert [float(ds.RescaleIntercept) for ds in datasets] == intercepts
        inside = ~written.expected_padding()
        hu = np.stack([read_hu(f) for f in written.files])
        assert np.abs(hu - phantom_hu(written.pixel_centres()))[inside].max() <= 1.0
        np.testing.assert_array_equal(hu[inside], written.expected_hu(quantized=True)[inside])

    def test_rescale_needs_one_value_per_slice(self, tmp_path):
        with pytest.raises(ValueError, match="one per slice"):
            write_series(tmp_path, geometry=SMALL, encoding=Encoding(rescale_slope=[1.0, 2.0]))

    @pytest.mark.parametrize("signed", [False, True])
    def test_junk_above_the_high_bit_masks_back_to_the_clean_values(self, tmp_path, signed):
        encoding = Encoding(bits_stored=12, signed=signed, rescale_intercept=-1024.0 if not signed else 0.0)
        quirks = ExportQuirks(padding_value=0 if not signed else -2000)
        clean = write_series(tmp_path / "clean", geometry=SMALL, encoding=encoding, quirks=quirks)
        junk = write_series(
            tmp_path / "junk", geometry=SMALL, encoding=encoding, quirks=replace(quirks, junk_high_bits=True)
        )
        ds = pydicom.dcmread(junk.files[3])
        assert (ds.BitsStored, ds.HighBit) == (12, 11)
        raw = np.frombuffer(ds.PixelData, "<u2")
        clean_raw = np.frombuffer(pydicom.dcmread(clean.files[3]).PixelData, "<u2")
        assert (raw != clean_raw).sum() > 100
        np.testing.assert_array_equal(raw & 0x0FFF, clean_raw & 0x0FFF)
        np.testing.assert_array_equal(ds.pixel_array, pydicom.dcmread(clean.files[3]).pixel_array)

    def test_values_are_clipped_to_bits_stored(self, tmp_path):
        written = write_series(
            tmp_path,
            geometry=SliceGeometry(n_slices=1, matrix=64, pixel_spacing=(3.6, 3.6)),
            head=EllipsoidHead(markers=[(0, 0, 0)]),
            encoding=Encoding(bits_stored=12, rescale_intercept=0.0),
        )
        assert pydicom.dcmread(written.files[0]).pixel_array.max() == 2047

    @pytest.mark.parametrize("transfer_syntax", SUPPORTED_TRANSFER_SYNTAXES, ids=lambda ts: ts.name)
    @pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
    def test_every_transfer_syntax_round_trips_losslessly(self, tmp_path, transfer_syntax, signed):
        options = dict(
            n_slices=2,
            matrix=48,
            pixel_spacing=(4.8, 4.8),
            noise=20.0,
            signed=signed,
            padding_value=-2000 if signed else 0,
        )
        reference = write_series(tmp_path / "reference", **options)
        written = write_series(tmp_path / "encoded", transfer_syntax=transfer_syntax, **options)
        for encoded, plain in zip(written.files, reference.files):
            ds = pydicom.dcmread(encoded)
            assert ds.file_meta.TransferSyntaxUID == transfer_syntax
            assert ds.SOPInstanceUID == pydicom.dcmread(plain).SOPInstanceUID
            np.testing.assert_array_equal(ds.pixel_array, pydicom.dcmread(plain).pixel_array)

    def test_big_endian_pixel_bytes_are_swapped(self, tmp_path):
        written = write_series(
            tmp_path,
            geometry=SliceGeometry(n_slices=1, matrix=16),
            encoding=Encoding(transfer_syntax=ExplicitVRBigEndian),
        )
        ds = pydicom.dcmread(written.files[0])
        assert np.frombuffer(ds.PixelData, ">i2")[0] == -2000

    def test_deflated_file_is_smaller_than_explicit(self, tmp_path):
        plain = write_series(tmp_path / "a", geometry=SliceGeometry(n_slices=1, matrix=64))
        deflated = write_series(
            tmp_path / "b",
            geometry=SliceGeometry(n_slices=1, matrix=64),
            encoding=Encoding(transfer_syntax=DeflatedExplicitVRLittleEndian),
        )
        assert deflated.files[0].stat().st_size < plain.files[0].stat().st_size / 2

    def test_unsupported_transfer_syntax_is_refused_by_name(self, tmp_path):
        with pytest.raises(ValueError, match="JPEG Baseline"):
            write_series(tmp_path, geometry=SMALL, encoding=Encoding(transfer_syntax=pydicom.uid.JPEGBaseline8Bit))

    def test_old_archive_files_have_no_preamble_and_need_force(self, tmp_path):
        written = write_series(
            tmp_path, geometry=SMALL, encoding=Encoding(file_meta=False, transfer_syntax=ImplicitVRLittleEndian)
        )
        raw = written.files[0].read_bytes()
        assert raw[128:132] != b"DICM" and raw[:4] == b"\x08\x00\x05\x00"  # starts at (0008,0005)
        with pytest.raises(pydicom.errors.InvalidDicomError):
            pydicom.dcmread(written.files[0])
        ds = pydicom.dcmread(written.files[0], force=True)
        assert ds.SOPClassUID == CT_IMAGE_STORAGE and "TransferSyntaxUID" not in ds.file_meta

    def test_old_archive_files_must_be_implicit_vr(self, tmp_path):
        with pytest.raises(ValueError, match="ImplicitVRLittleEndian"):
            write_series(tmp_path, geometry=SMALL, encoding=Encoding(file_meta=False))


class TestMarkers:
    @pytest.mark.parametrize("tilt", [0.0, 20.0])
    def test_marker_is_the_brightest_voxel_at_its_world_point(self, tmp_path, tilt):
        marker = np.array([17.3, -25.1, 8.6])
        written = write_series(
            tmp_path,
            geometry=SliceGeometry(
                n_slices=20, matrix=64, pixel_spacing=(3.0, 3.0), slice_spacing=4.0, gantry_tilt=tilt
            ),
            head=EllipsoidHead(markers=[marker]),
            quirks=ExportQuirks(shuffle=True),
        )
        hu = np.stack([read_hu(f) for f in written.files])
        brightest = np.unravel_index(np.argmax(hu), hu.shape)
        assert hu[brightest] >= 2000
        # a correct reader finds the marker through the affine: the brightest voxel is the
        # voxel whose centre is nearest to the marker (in a sheared grid that is not always
        # the rounded fractional index)
        index = np.stack(np.meshgrid(*(np.arange(n) for n in hu.shape), indexing="ij"), axis=-1)
        distances = np.linalg.norm(index @ written.affine[:3, :3].T + written.affine[:3, 3] - marker, axis=-1)
        assert distances[brightest] <= distances.min() + 0.05
        assert distances[brightest] <= 0.5 * np.linalg.norm(written.affine[:3, :3], axis=0).sum()


class TestLocalizerAndStudy:
    def test_localizer_is_a_single_coronal_scout(self, tmp_path):
        scout = write_localizer(tmp_path, matrix=64, pixel_spacing=4.0)
        ds = pydicom.dcmread(scout.files[0])
        assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 0, -1]
        image = ds.pixel_array
        assert image.shape == (64, 64) and image[32, 32] > image[0, 0]

    def test_study_writes_series_of_one_patient_and_the_non_images(self, tmp_path):
        written = write_study(tmp_path)
        descriptions = [w.description for w in written]
        assert descriptions == ["HEAD THIN 2.5mm", "HEAD 5mm", "HEAD TILT 20deg", "SCOUT"]
        assert len({w.series_uid for w in written}) == 4 and len({w.study_uid for w in written}) == 1
        files = [f for w in written for f in w.files]
        assert len(files) == len(set(files)) == 72 + 36 + 36 + 1
        names = {p.name for p in tmp_path.iterdir()}
        assert names == {f.name for f in files} | set(NON_IMAGE_FILES)

        headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
        assert {h.PatientID for h in headers} == {"PHANTOM-001"}
        assert len({h.FrameOfReferenceUID for h in headers}) == 1
        tilt_series = written[2]
        assert tilt_series.affine is not None
        assert np.degrees(np.arccos(tilt_series.affine[2, 0] / np.linalg.norm(tilt_series.affine[:3, 0]))) == 0
        assert pydicom.dcmread(tilt_series.files[0]).ImageOrientationPatient[4] == pytest.approx(np.cos(np.radians(20)))
        for series in written[:3]:
            names = [f.name for f in series.files]
            assert names != sorted(names)

        assert (tmp_path / "EMPTY.dcm").stat().st_size == 0
        assert "not CT images" in (tmp_path / "README.txt").read_text()
        summary = pydicom.dcmread(tmp_path / "SUMMARY.dcm")
        assert summary.SOPClassUID == SECONDARY_CAPTURE_STORAGE
        assert summary.SeriesInstanceUID in {w.series_uid for w in written[:3]}
        assert summary.pixel_array.shape == (64, 64)
        directory = pydicom.dcmread(tmp_path / "DICOMDIR")
        assert directory.file_meta.MediaStorageSOPClassUID == MEDIA_STORAGE_DIRECTORY_STORAGE

    def test_study_is_deterministic_and_accepts_custom_series(self, tmp_path):
        series = [
            dict(geometry=SliceGeometry(n_slices=3, matrix=16)),
            dict(
                geometry=SliceGeometry(n_slices=2, matrix=16),
                header=SeriesHeader(series_number=9, series_description="B"),
            ),
        ]
        first = write_study(tmp_path / "a", series=series, localizer=False, non_images=False)
        write_study(tmp_path / "b", series=series, localizer=False, non_images=False)
        assert folder_bytes(tmp_path / "a") == folder_bytes(tmp_path / "b")
        assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
            "S1_0001.dcm",
            "S1_0002.dcm",
            "S1_0003.dcm",
            "S2_0001.dcm",
            "S2_0002.dcm",
        ]
        assert first[0].series_uid != first[1].series_uid


class TestEnhancedSeries:
    def test_one_multiframe_file_with_functional_groups(self, tmp_path):
        classic = write_series(tmp_path / "classic", geometry=replace(SMALL, gantry_tilt=20.0))
        written = write_enhanced_series(tmp_path / "enhanced", geometry=replace(SMALL, gantry_tilt=20.0))
        assert len(written.files) == 1 and [p.name for p in (tmp_path / "enhanced").iterdir()] == ["ENHANCED0001.dcm"]
        ds = pydicom.dcmread(written.files[0])
        assert ds.SOPClassUID == ENHANCED_CT_IMAGE_STORAGE and ds.NumberOfFrames == 8
        shared = ds.SharedFunctionalGroupsSequence[0]
        assert [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient] == list(
            classic.orientation
        )
        assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == [3.6, 3.6]
        assert float(shared.PixelValueTransformationSequence[0].RescaleIntercept) == -1024
        positions = [
            [float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]
            for f in ds.PerFrameFunctionalGroupsSequence
        ]
        np.testing.assert_allclose(positions, classic.image_positions)
        expected = np.stack([pydicom.dcmread(f).pixel_array for f in classic.files])
        np.testing.assert_array_equal(ds.pixel_array, expected)
        np.testing.assert_allclose(written.affine, classic.affine)

    def test_per_frame_rescale_lives_in_the_per_frame_groups(self, tmp_path):
        written = write_enhanced_series(
            tmp_path, geometry=SliceGeometry(n_slices=3, matrix=16), encoding=Encoding(rescale_slope=[1.0, 0.5, 1.0])
        )
        ds = pydicom.dcmread(written.files[0])
        assert "PixelValueTransformationSequence" not in ds.SharedFunctionalGroupsSequence[0]
        slopes = [
            float(f.PixelValueTransformationSequence[0].RescaleSlope) for f in ds.PerFrameFunctionalGroupsSequence
        ]
        assert slopes == [1.0, 0.5, 1.0]

    def test_refuses_what_one_multiframe_file_cannot_hold(self, tmp_path):
        with pytest.raises(ValueError, match="does not support shuffle"):
            write_enhanced_series(tmp_path, geometry=SMALL, quirks=ExportQuirks(shuffle=True))
        assert not list(tmp_path.iterdir())


def test_default_series_matches_the_truth_volume(tmp_path):
    """Moderate size: the default 40 x 128 x 128 series, shuffled and tilted, read back exactly."""
    written = write_series(
        tmp_path,
        geometry=SliceGeometry(gantry_tilt=24.0),
        head=EllipsoidHead(markers=[(20.0, 10.0, -30.0)]),
        quirks=ExportQuirks(shuffle=True),
    )
    hu = np.stack([read_hu(f) for f in written.files])
    expected = written.expected_hu(quantized=True)
    padding = written.expected_padding()
    np.testing.assert_array_equal(np.where(padding, -1000, hu), expected)
    assert written.shape == (40, 128, 128)
    # the phantom's anatomy is present in the written volume
    assert {-1000, 26, 38, 5, 70, 40} <= set(np.unique(hu).astype(int).tolist())
