"""Hardening: hostile or damaged input gives our errors, never an abort, hang or wrong data."""

from __future__ import annotations

import subprocess
import sys

import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless

from ctexplore.errors import DecodeError
from ctexplore.phantom import write_series
from ctexplore.reader import load_series


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
