"""ctexplore.series: grouping headers into series, the SeriesIndex, and scan."""

from __future__ import annotations

import shutil

import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian

from ctexplore import scan
from ctexplore.phantom import write_series, write_study


class TestScan:
    def test_study_folder_separates_series_localizer_and_skips_non_images(self, tmp_path):
        written = write_study(tmp_path)
        index = scan(tmp_path)
        assert {s.uid for s in index.series} == {w.series_uid for w in written}
        # the truth from the bytes: which written series say LOCALIZER in (0008,0008) Image Type
        localizer_uids = {
            w.series_uid
            for w in written
            if "LOCALIZER" in pydicom.dcmread(w.files[0], stop_before_pixels=True).ImageType
        }
        assert len(localizer_uids) == 1
        assert {s.uid for s in index.series if s.is_localizer} == localizer_uids
        assert {s.uid for s in index.volumes}.isdisjoint(localizer_uids)
        image_series = [w for w in written if w.series_uid not in localizer_uids]
        reasons = " | ".join(reason for _, reason in index.skipped)
        assert "empty file" in reasons
        assert "Secondary Capture" in reasons
        assert all(path.exists() for path, _ in index.skipped)
        assert len(index.skipped) >= 3
        assert len(image_series) >= 3

    def test_most_common_slice_count_counts_series_not_files(self, tmp_path):
        write_series(tmp_path / "a", n_slices=7, matrix=32, series_description="a", seed=1)
        write_series(tmp_path / "a", n_slices=7, matrix=32, series_description="b", seed=2, file_prefix="B")
        write_series(tmp_path / "c", n_slices=5, matrix=32, series_description="c", seed=3)
        index = scan(tmp_path)
        assert index.most_common_slice_count() == [(7, 2)]
        assert index.most_common_slice_count(2) == [(7, 2), (5, 1)]

    def test_uid_that_changes_matrix_is_split(self, tmp_path):
        first = write_series(tmp_path / "x", n_slices=4, matrix=32, seed=5)
        write_series(tmp_path / "y", n_slices=3, matrix=48, seed=5, series_uid=first.series_uid, file_prefix="Y")
        index = scan(tmp_path)
        assert sorted(s.n_images for s in index.series) == [3, 4]
        assert len({s.key for s in index.series}) == 2
        assert {s.uid for s in index.series} == {first.series_uid}

    def test_summary_reports_tilt_spacing_and_transfer_syntax(self, tmp_path):
        write_series(
            tmp_path, n_slices=8, matrix=32, slice_spacing=5.0, gantry_tilt=24.0, transfer_syntax=ImplicitVRLittleEndian
        )
        (series,) = scan(tmp_path)
        assert series.tilt == pytest.approx(24.0, abs=0.01)
        assert series.spacing_summary == pytest.approx((5.0, 5.0, 5.0), abs=1e-3)
        assert series.transfer_syntax == "Implicit VR Little Endian"
        assert "<table>" in scan(tmp_path)._repr_html_()


def test_mr_image_is_skipped_by_scan_with_its_sop_class(tmp_path):
    from pydicom.data import get_testdata_file

    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "mr.dcm")
    index = scan(tmp_path)
    assert len(index) == 0
    ((path, reason),) = index.skipped
    assert path.name == "mr.dcm" and "MR Image Storage" in reason and "is not a CT image" in reason
