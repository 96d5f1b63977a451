"""Hardening: hostile or damaged input gives our errors, never an abort, hang or wrong data."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless

from ctexplore.errors import DecodeError, DicomError, GeometryError, GeometryWarning
from ctexplore.phantom import write_series
from ctexplore.reader import load_series
from ctexplore.series import scan


def _write_or_skip(folder, syntax):
    try:
        return write_series(folder, n_slices=2, matrix=48, transfer_syntax=syntax)
    except (NotImplementedError, ValueError) as error:
        pytest.skip(f"phantom writer cannot encode {syntax.name}: {error}")


@pytest.mark.parametrize("syntax", [JPEGLSLossless, JPEG2000Lossless])
def test_rows_larger_than_encoded_frame_is_our_error_not_an_abort(tmp_path, syntax):
    written = _write_or_skip(tmp_path / "s", syntax)
    for path in written.files:
        dataset = pydicom.dcmread(path)
        dataset.Rows = 65
        dataset.save_as(path)
    # In a child process: before the check, GDCM aborted the interpreter (exit 134).
    code = (
        "import sys\nfrom ctexplore.reader import load_series\nfrom ctexplore.errors import DecodeError\n"
        f"try:\n    load_series({str(tmp_path / 's')!r})\nexcept DecodeError as e:\n    print(e); sys.exit(3)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert "(0028,0010) Rows" in result.stdout and "48 x 48" in result.stdout
    with pytest.raises(DecodeError, match=r"is 48 x 48 pixels"):
        load_series(tmp_path / "s")


@pytest.mark.parametrize(
    ("keyword", "value", "tag"),
    [
        ("NumberOfFrames", 2_000_000_000, "(0028,0008)"),
        ("Rows", 0, "(0028,0010)"),
        ("BitsAllocated", 0, "(0028,0100)"),
        ("BitsStored", 0, "(0028,0101)"),
    ],
)
def test_absurd_counts_are_skipped_with_the_tag_not_allocated(tmp_path, keyword, value, tag):
    from ctexplore.series import scan

    written = write_series(
        tmp_path / "s",
        n_slices=2,
        matrix=16,
        transfer_syntax=JPEGLSLossless if keyword == "NumberOfFrames" else pydicom.uid.ExplicitVRLittleEndian,
    )
    dataset = pydicom.dcmread(written.files[0])
    setattr(dataset, keyword, value)
    dataset.save_as(written.files[0])
    index = scan(tmp_path / "s", workers=1)
    reasons = dict(index.skipped)
    assert written.files[0] in reasons and tag in reasons[written.files[0]], index.skipped


def test_named_pipe_is_skipped_with_a_reason_not_read(tmp_path):
    import os

    from ctexplore.series import scan

    write_series(tmp_path / "s", n_slices=2, matrix=16)
    pipe = tmp_path / "s" / "pipe.dcm"
    os.mkfifo(pipe)
    code = f"from ctexplore.series import scan\nprint(len(scan({str(tmp_path / 's')!r}, workers=1).skipped))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "1", result.stderr
    index = scan(tmp_path / "s", workers=1)
    assert index.skipped == [(pipe, "not a regular file (named pipe, socket or device); not read")]
    assert index[0].n_images == 2


def test_non_utf8_file_name_has_an_input_fingerprint(tmp_path):
    import os

    from ctexplore.pipeline import PreprocessOptions, output_record
    from ctexplore.series import scan

    written = write_series(tmp_path / "s", n_slices=2, matrix=16)
    odd = os.path.join(os.fsencode(tmp_path / "s"), b"\xff-slice.dcm")
    os.rename(written.files[0], odd)
    series = scan(tmp_path / "s", workers=1)[0]
    record = output_record(series, PreprocessOptions())
    assert len(record["source"]["files_sha1"]) == 40 and series.n_images == 2


def test_non_utf8_skipped_file_name_does_not_abort_the_batch(tmp_path):
    import os

    from ctexplore.batch import preprocess

    write_series(tmp_path / "in", n_slices=2, matrix=16)
    junk = os.path.join(os.fsencode(tmp_path / "in"), b"\xff-notes.txt")
    with open(junk, "wb") as stream:
        stream.write(b"not dicom")
    preprocess(tmp_path / "in", tmp_path / "out", workers=1)
    assert os.fsencode(b"\xff-notes.txt") in (tmp_path / "out" / "skipped_files.csv").read_bytes()


# --- issue 12, item 5: bad header values give our error naming file and tag, or a recorded warning ---


def _rewrite(path, **attributes):
    dataset = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        if value is None:
            delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    dataset.save_as(path)


@pytest.mark.parametrize(
    ("keyword", "value", "tag"),
    [
        ("RescaleSlope", "nan", r"\(0028,1053\) Rescale Slope"),
        ("RescaleSlope", "inf", r"\(0028,1053\) Rescale Slope"),
        ("RescaleSlope", "0", r"\(0028,1053\) Rescale Slope"),
        ("RescaleSlope", "-1", r"\(0028,1053\) Rescale Slope"),
        ("RescaleSlope", "1e300", r"\(0028,1053\) Rescale Slope.*beyond float32"),
        ("RescaleIntercept", "1e300", r"\(0028,1052\) Rescale Intercept.*beyond float32"),
        ("RescaleIntercept", "nan", r"\(0028,1052\) Rescale Intercept"),
        ("RescaleIntercept", "-inf", r"\(0028,1052\) Rescale Intercept"),
    ],
)
def test_non_finite_rescale_is_refused_naming_file_and_tag(tmp_path, keyword, value, tag):
    written = write_series(tmp_path, n_slices=3, matrix=16)
    _rewrite(written.files[1], **{keyword: value})
    with pytest.raises(DicomError, match=tag) as caught:
        load_series(tmp_path)
    assert str(written.files[1]) in str(caught.value)


def test_missing_rescale_intercept_on_ct_is_refused_not_read_as_zero(tmp_path):
    written = write_series(tmp_path, n_slices=3, matrix=16, signed=False, padding_value=None, rescale_intercept=-1024.0)
    _rewrite(written.files[0], RescaleIntercept=None)
    with pytest.raises(DicomError, match=r"\(0028,1052\) Rescale Intercept.*1024") as caught:
        load_series(tmp_path)
    assert str(written.files[0]) in str(caught.value)


@pytest.mark.parametrize("spacing", [[0, 0], [-0.5, 0.5], [1e9, 1e9], [0.5, 0]])
def test_absurd_pixel_spacing_is_refused_naming_the_tag(tmp_path, spacing):
    written = write_series(tmp_path, n_slices=3, matrix=16)
    for path in written.files:
        _rewrite(path, PixelSpacing=spacing)
    with pytest.raises(GeometryError, match=r"\(0028,0030\) Pixel Spacing") as caught:
        load_series(tmp_path)
    assert str(written.files[0]) in str(caught.value)


def test_slightly_skewed_orientation_is_orthonormalised_with_a_recorded_warning(tmp_path):
    written = write_series(tmp_path, n_slices=4, matrix=16)
    skewed = [1.0, 0.02, 0.0, 0.0, 1.0, 0.0]  # 1.1 degrees of shear, row vector not unit length
    for path in written.files:
        _rewrite(path, ImageOrientationPatient=skewed)
    with pytest.warns(GeometryWarning, match=r"\(0020,0037\) Image Orientation \(Patient\).*orthonormalised"):
        volume = load_series(tmp_path)
    directions = volume.affine[:3, :3] / np.linalg.norm(volume.affine[:3, :3], axis=0)
    np.testing.assert_allclose(directions.T @ directions, np.eye(3), atol=1e-9)  # no shear survives
    assert any("orthonormalised" in text for text in volume.meta["warnings"])


def test_strongly_non_orthogonal_orientation_is_refused(tmp_path):
    written = write_series(tmp_path, n_slices=4, matrix=16)
    for path in written.files:
        _rewrite(path, ImageOrientationPatient=[1.0, 0.0, 0.0, 0.5, 0.866, 0.0])  # 30 degrees apart from 90
    with pytest.raises(
        GeometryError, match=r"\(0020,0037\) Image Orientation \(Patient\).*60.00 degrees apart.*must be perpendicular"
    ):
        load_series(tmp_path)


def test_bits_allocated_8_on_16_bit_pixel_data_is_refused(tmp_path):
    written = write_series(tmp_path, n_slices=2, matrix=16)
    _rewrite(written.files[0], BitsAllocated=8, BitsStored=8, HighBit=7)
    reasons = dict(scan(tmp_path, workers=1).skipped)
    assert "(0028,0100) Bits Allocated" in reasons[written.files[0]] and "512" in reasons[written.files[0]]


@pytest.mark.parametrize(
    "change",
    [
        dict(ImageOrientationPatient=[1, 0.04, 0, 0, 1, 0]),
        dict(ImageOrientationPatient=[2, 0, 0, 0, 2, 0]),
        dict(Rows=31),
    ],
)
@pytest.mark.parametrize("which", [0, -1])
def test_one_end_slice_with_another_orientation_or_matrix_is_not_split_off_as_a_localizer(tmp_path, change, which):
    written = write_series(tmp_path, n_slices=5, matrix=32)
    _rewrite(written.files[which], **change)
    index = scan(tmp_path, workers=1)
    assert [s.n_images for s in index] == [5]
    with pytest.raises(DicomError, match=written.files[which].name):
        load_series(index[0])


def test_end_slice_whose_uid_was_damaged_is_warned_about(tmp_path):
    written = write_series(tmp_path, n_slices=5, matrix=16)
    _rewrite(written.files[0], SeriesInstanceUID=written.series_uid[:-1] + "9")
    index = scan(tmp_path, workers=1)
    stack = next(s for s in index if s.n_images == 4)
    with pytest.warns(GeometryWarning, match=rf"may be slices of it.*{written.files[0].name}: slice 1 of 5 \(first\)"):
        load_series(stack)


def test_end_slice_with_a_garbled_sop_class_is_a_damaged_member_not_another_object(tmp_path):
    written = write_series(tmp_path, n_slices=5, matrix=16)
    _rewrite(written.files[0], SOPClassUID="1.2.840.10008]5.1.4.1.1.2")  # one flipped byte
    _rewrite(written.files[-1], SOPClassUID="1.2.840.10008.5")  # cut short: a valid UID, but unknown
    index = scan(tmp_path, workers=1)
    assert "not a valid UID" in dict(index.damaged)[written.files[0]]
    with pytest.raises(DicomError, match=rf"{written.files[0].name}: slice 1 of 5 \(first\)"):
        load_series(index[0])
    _rewrite(written.files[0], SOPClassUID=pydicom.uid.CTImageStorage)
    with pytest.warns(GeometryWarning, match=rf"may be slices of it.*{written.files[-1].name}: slice 5 of 5 \(last"):
        load_series(scan(tmp_path, workers=1)[0])


@pytest.mark.parametrize("keep", [60, 140])
def test_file_cut_inside_its_preamble_or_meta_is_warned_about(tmp_path, keep):
    written = write_series(tmp_path, n_slices=4, matrix=16)
    written.files[-1].write_bytes(written.files[-1].read_bytes()[:keep])
    with pytest.warns(GeometryWarning, match=rf"may be slices of it.*{written.files[-1].name}"):
        assert load_series(scan(tmp_path, workers=1)[0]).shape[0] == 3


def test_one_slice_with_a_damaged_orientation_is_named_not_split_off_as_a_localizer(tmp_path):
    written = write_series(tmp_path, n_slices=4, matrix=16)
    _rewrite(written.files[-1], ImageOrientationPatient=["nan", 0, 0, 0, 1, 0])
    index = scan(tmp_path, workers=1)
    assert len(index.series) == 1 and index[0].n_images == 4
    with pytest.raises(GeometryError, match=rf"\(0020,0037\).*{written.files[-1].name}"):
        load_series(index[0])


@pytest.mark.parametrize("syntax", [JPEGLSLossless, JPEG2000Lossless])
def test_encoded_frame_with_the_declared_pixel_count_but_another_shape_is_refused(tmp_path, syntax):
    written = _write_or_skip(tmp_path / "s", syntax)
    for path in written.files:
        _rewrite(path, Rows=24, Columns=96)  # 48 x 48 = 24 x 96 pixels
    with pytest.raises(DecodeError, match=r"48 x 48 pixels.*24 x 96"):
        load_series(tmp_path / "s")


# --- item 6: a damaged first or last member never lets the series load silently short ---


@pytest.mark.parametrize("which", [0, -1])
def test_series_with_an_unreadable_end_file_fails_naming_file_and_position(tmp_path, which):
    written = write_series(tmp_path, n_slices=6, matrix=16)
    damaged = written.files[which]
    data = damaged.read_bytes()
    damaged.write_bytes(data[: data.index(b"\x28\x00\x10\x00")])  # cut inside the header, before (0028,0010)
    index = scan(tmp_path, workers=1)
    assert damaged in dict(index.damaged)
    series = index[0]
    assert [member.path for member in series.damaged] == [damaged]
    with pytest.raises(DicomError) as caught:
        load_series(series)  # the batch loads the Series itself, not the folder
    message = str(caught.value)
    assert damaged.name in message and ("slice 1 of 6" if which == 0 else "slice 6 of 6") in message


def test_damaged_file_without_a_readable_uid_warns_only_the_series_it_could_belong_to(tmp_path):
    write_series(tmp_path, n_slices=4, matrix=16, series_description="THIN", file_prefix="A")
    bone = write_series(tmp_path, n_slices=3, matrix=16, series_description="BONE", file_prefix="B", series_number=2)
    data = bone.files[0].read_bytes()
    bone.files[0].write_bytes(data[: data.index(b"\x20\x00\x0d\x00")])  # before (0020,000D): no UIDs left
    index = scan(tmp_path, workers=1)
    damaged = {s.description: [d.path for d in s.damaged] for s in index}
    assert damaged == {"THIN": [], "BONE": [bone.files[0]]}  # (0008,103E) was readable and rules THIN out
    with pytest.warns(GeometryWarning, match=rf"may be slices of it.*{bone.files[0].name}"):
        volume = load_series(next(s for s in index if s.description == "BONE"))
    assert volume.shape[0] == 2 and volume.meta["warnings"]


# --- item 7: our errors, not numpy's ---


@pytest.mark.parametrize("value", [None, ["nan", "0", "0"]])
def test_missing_or_nan_position_on_one_slice_is_our_error(tmp_path, value):
    written = write_series(tmp_path, n_slices=4, matrix=16)
    _rewrite(written.files[2], ImagePositionPatient=value)
    index = scan(tmp_path, workers=1)
    repr(index)  # the table must not raise either
    with pytest.raises(GeometryError, match=r"\(0020,0032\) Image Position \(Patient\)") as caught:
        load_series(index[0])
    assert written.files[2].name in str(caught.value)


def test_samples_per_pixel_zero_is_skipped_with_the_tag_not_a_zero_division(tmp_path):
    written = write_series(tmp_path, n_slices=2, matrix=16)
    _rewrite(written.files[0], SamplesPerPixel=0)
    reasons = dict(scan(tmp_path, workers=1).damaged)
    assert "(0028,0002) Samples per Pixel = 0" in reasons[written.files[0]]


def test_columns_zero_is_skipped_with_the_tag(tmp_path):
    written = write_series(tmp_path, n_slices=2, matrix=16)
    _rewrite(written.files[0], Columns=0)
    reasons = dict(scan(tmp_path, workers=1).skipped)
    assert "(0028,0011) Columns = 0" in reasons[written.files[0]]


def test_decoded_size_is_bounded_before_decoding(tmp_path, monkeypatch):
    written = _write_or_skip(tmp_path / "s", JPEGLSLossless)
    for path in written.files:
        _rewrite(path, Rows=65535, Columns=65535)
    with pytest.raises(DecodeError, match=r"2 x 65535 x 65535 pixels x 2 bytes = 16 GiB.*CTEXPLORE_MAX_VOLUME_GIB"):
        load_series(tmp_path / "s")
    monkeypatch.setenv("CTEXPLORE_MAX_VOLUME_GIB", "0.0000001")
    written_small = write_series(tmp_path / "small", n_slices=2, matrix=16)
    with pytest.raises(DecodeError, match="limit 1e-07 GiB"):
        load_series(tmp_path / "small")
    assert load_series(written_small.files[0].parent, max_volume_gib=1).shape == (2, 16, 16)


# --- item 11: real exports ---


def test_blank_series_uid_is_grouped_by_study_number_and_geometry_and_loaded(tmp_path):
    study = pydicom.uid.generate_uid()
    thin = write_series(tmp_path / "a", n_slices=5, matrix=16, study_uid=study, series_number=2)
    thick = write_series(tmp_path / "b", n_slices=3, matrix=16, study_uid=study, series_number=3, slice_spacing=10)
    for path in thin.files + thick.files:
        _rewrite(path, SeriesInstanceUID="")
    index = scan(tmp_path, workers=1)
    assert index.skipped == []
    assert sorted(s.n_images for s in index.volumes) == [3, 5]
    with pytest.warns(GeometryWarning, match=r"\(0020,000E\) Series Instance UID.*blank"):
        volume = load_series(index.volumes[0])
    assert volume.shape[0] == 5 and any("blank" in text for text in volume.meta["warnings"])


def test_blank_uid_stacks_of_one_series_number_split_where_positions_jump(tmp_path):
    study = pydicom.uid.generate_uid()
    write_series(tmp_path / "a", n_slices=4, matrix=16, study_uid=study, slice_positions=[0, 5, 10, 15])
    write_series(tmp_path / "b", n_slices=4, matrix=16, study_uid=study, slice_positions=[200, 205, 210, 215])
    for path in sorted(tmp_path.rglob("*.dcm")):
        _rewrite(path, SeriesInstanceUID="")
    index = scan(tmp_path, workers=1)
    assert [s.n_images for s in index] == [4, 4] and len({s.key for s in index}) == 2


def test_file_with_a_blank_uid_rejoins_its_series_with_a_warning(tmp_path):
    written = write_series(tmp_path, n_slices=5, matrix=16)
    _rewrite(written.files[-1], SeriesInstanceUID="")
    index = scan(tmp_path, workers=1)
    assert len(index.series) == 1 and index[0].n_images == 5
    with pytest.warns(GeometryWarning, match=rf"blank in 1 of its files \({written.files[-1].name}\)"):
        assert load_series(index[0]).shape[0] == 5


def test_elscint_private_compression_names_the_true_cause(tmp_path):
    written = write_series(tmp_path, n_slices=1, matrix=16, transfer_syntax=pydicom.uid.ImplicitVRLittleEndian)
    dataset = pydicom.dcmread(written.files[0])
    dataset.add_new((0x07A1, 0x0010), "LO", "ELSCINT1")
    dataset.add_new((0x07A1, 0x100A), "OB", dataset.PixelData[:100])
    del dataset.PixelData
    dataset.save_as(written.files[0])
    reason = dict(scan(tmp_path, workers=1).skipped)[written.files[0]]
    assert "Elscint" in reason and "gdcmconv" in reason and "truncated" not in reason


def test_uneven_spacing_error_points_at_the_odd_step_not_every_position(tmp_path):
    positions = [float(5 * k) for k in range(40)] + [205.0, 210.0]  # one 10 mm step after slice 40
    write_series(tmp_path, n_slices=len(positions), matrix=16, slice_positions=positions)
    with pytest.raises(GeometryError) as caught:
        load_series(tmp_path)
    message = str(caught.value)
    assert "slices 39 and 40" in message and "195.00" in message and "205.00" in message and "10" in message
    assert len(message) < 600 and "100.00" not in message


# --- item 12: a localizer loaded as a volume is said so ---


def test_loading_a_localizer_warns(tmp_path):
    from ctexplore.phantom import write_localizer

    write_localizer(tmp_path)
    index = scan(tmp_path, workers=1)
    with pytest.warns(GeometryWarning, match="localizer"):
        volume = load_series(index[0])
    assert any("localizer" in text for text in volume.meta["warnings"])
