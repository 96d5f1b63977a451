"""ctexplore.headers: one file's header to SliceHeader records, and why a file is refused."""

from __future__ import annotations

import pydicom
import pytest

from ctexplore.errors import DicomError
from ctexplore.headers import read_header, read_header_or_reason
from ctexplore.phantom import write_series
from ctexplore.series import scan


def _rewrite(path, **attributes):
    dataset = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    dataset.save_as(path)


def test_number_of_frames_zero_is_refused_with_the_tag_not_patched(tmp_path):
    written = write_series(tmp_path, n_slices=3, matrix=16)
    broken = written.files[1]
    _rewrite(broken, NumberOfFrames=0)
    with pytest.raises(DicomError, match=r"\(0028,0008\) Number of Frames 0") as caught:
        read_header(broken)
    assert str(broken) in str(caught.value)
    # scanning records it as a damaged CT image (a slice missing from its series), not as a non-image
    index = scan(tmp_path)
    assert [path for path, _ in index.damaged] == [broken]
    assert index[0].n_images == 2


def test_number_of_frames_one_and_absent_read_the_same(tmp_path):
    written = write_series(tmp_path, n_slices=2, matrix=16)
    before = read_header(written.files[0])
    _rewrite(written.files[0], NumberOfFrames=1)
    after = read_header(written.files[0])
    assert len(before) == len(after) == 1
    assert before[0].number_of_frames == after[0].number_of_frames == 1


def test_a_text_file_gives_a_reason_not_an_exception(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not DICOM")
    reason = read_header_or_reason(notes)
    assert isinstance(reason, str) and "DICOM" in reason
