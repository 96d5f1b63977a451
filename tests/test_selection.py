"""ctexplore.selection: which series each study contributes, and why the others are left out."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from batch_data import write_dataset

from ctexplore import scan
from ctexplore.phantom import write_series
from ctexplore.selection import find_studies, parse_rule, select_series


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return scan(write_dataset(tmp_path_factory.mktemp("data")).root)


class TestSelectSeries:
    def test_default_rule_takes_thin_axial_series_and_gives_reasons_for_the_rest(self, index):
        study = next(s for s in find_studies(index) if s.patient_id == "CQ500-CT-1")
        chosen, skipped = select_series(study.series)
        assert [s.description for s in chosen] == ["CT THIN"]
        reasons = {s.description: reason for s, reason in skipped}
        assert reasons["CT 5mm"].startswith("not the thinnest: 5 mm")
        assert "localizer" in reasons["SCOUT"]

    def test_slices_rule_takes_only_series_with_that_many_images(self, index):
        chosen, skipped = select_series(index.series, "slices:8")
        assert sorted(s.description for s in chosen) == ["CT 5mm", "CT PLAIN"]
        assert any(reason == "16 images; rule wants 8" for _, reason in skipped)

    def test_description_rule_matches_case_insensitively(self, index):
        chosen, skipped = select_series(index.series, "description:tilt")
        assert [s.description for s in chosen] == ["CT TILT"]
        assert any("does not match 'tilt'" in reason for _, reason in skipped)

    def test_equal_spacing_is_broken_by_series_number_with_the_reason_recorded(self, tmp_path):
        for number, kernel in ((4, "BONE"), (2, "SOFT")):
            write_series(
                tmp_path, n_slices=4, matrix=16, series_number=number, series_description=kernel, file_prefix=kernel
            )
        chosen, skipped = select_series(scan(tmp_path).series)
        assert [s.description for s in chosen] == ["SOFT"]
        assert "same slice spacing (5 mm) as series 2 'SOFT'" in skipped[0][1]

    def test_coverage_rule_leaves_out_a_series_that_does_not_reach_across_the_head(self, tmp_path):
        write_series(tmp_path, n_slices=30, slice_spacing=5.0, matrix=16, series_number=2, file_prefix="A")
        write_series(tmp_path, n_slices=20, slice_spacing=1.0, matrix=16, series_number=3, file_prefix="B")
        chosen, skipped = select_series(scan(tmp_path).series, "coverage:120 & thinnest")
        assert [s.series_number for s in chosen] == [2]  # 145 mm; the thin one covers 19 mm only
        assert skipped[0][1] == "covers 19 mm from first to last slice; rule wants at least 120 mm"

    @pytest.mark.parametrize(
        "rule", ["largest", "slices:0", "slices:x", "description:(", "thinnest:2", "coverage:0", "coverage:x"]
    )
    def test_invalid_rules_are_refused(self, rule):
        with pytest.raises(ValueError, match="rule"):
            parse_rule(rule)


def add_contrast_agent(files, agent, syntax=None):
    """Rewrite real DICOM files with (0018,0010) Contrast/Bolus Agent set, as a CT console writes it."""
    import pydicom

    for path in files:
        dataset = pydicom.dcmread(path)
        dataset.ContrastBolusAgent = agent
        if syntax is not None:
            dataset.file_meta.TransferSyntaxUID = syntax
        dataset.save_as(path, enforce_file_format=True, implicit_vr=syntax == "1.2.840.10008.1.2")


class TestContrastAgent:
    @pytest.mark.parametrize("syntax", [None, "1.2.840.10008.1.2"], ids=["explicit", "implicit"])
    def test_fast_and_pydicom_headers_read_the_agent(self, tmp_path, syntax):
        from ctexplore import headers

        written = write_series(tmp_path, n_slices=2, matrix=8)
        add_contrast_agent(written.files, "OMNIPAQUE 350 ", syntax)
        fast = headers.read_header(written.files[0])[0]
        slow = headers._read_header_pydicom(written.files[0])[0]
        assert fast.contrast_agent == slow.contrast_agent == "OMNIPAQUE 350"
        assert scan(tmp_path).table()[0]["contrast_agent"] == "OMNIPAQUE 350"  # carried to the series table

    def test_cq500_rule_leaves_out_the_series_whose_tag_names_an_agent(self, tmp_path):
        # Same description, kernel and spacing: only the tag tells them apart.
        plain = write_series(
            tmp_path, n_slices=6, matrix=16, series_number=2, series_description="HEAD", file_prefix="A"
        )
        enhanced = write_series(
            tmp_path, n_slices=8, matrix=16, series_number=3, series_description="HEAD", file_prefix="B"
        )
        add_contrast_agent(enhanced.files, "IOHEXOL")
        add_contrast_agent(plain.files, "NONE")
        chosen, skipped = select_series(scan(tmp_path).series, "cq500")
        assert [s.series_number for s in chosen] == [2]
        reasons = {s.series_number: reason for s, reason in skipped}
        assert reasons[3] == "contrast-enhanced ((0018,0010) Contrast/Bolus Agent 'IOHEXOL'); rule wants non-contrast"

    def test_without_the_tag_description_words_decide(self, tmp_path):
        from ctexplore.selection import contrast_evidence

        write_series(tmp_path / "a", n_slices=2, matrix=8, series_description="CT PLAIN POST OP")
        write_series(tmp_path / "b", n_slices=2, matrix=8, series_description="CTA HEAD", series_number=2)
        by_number = {s.series_number: contrast_evidence(s) for s in scan(tmp_path).series}
        assert by_number == {1: "", 2: "description 'CTA HEAD'"}


class TestToPandas:
    def test_frame_holds_the_table_with_patient_and_folder(self, index):
        pandas = pytest.importorskip("pandas")
        frame = index.to_pandas()
        assert isinstance(frame, pandas.DataFrame)
        assert len(frame) == len(index.series)
        assert frame.to_dict("records") == index.table()
        assert {"patient", "folder", "images", "spacing_mm"} <= set(frame.columns)

    def test_missing_pandas_says_how_to_install_it(self, index):
        # A fresh interpreter where pandas cannot be imported (None in sys.modules blocks it).
        script = (
            "import sys; sys.modules['pandas'] = None\n"
            "from ctexplore import scan\n"
            f"scan({str(index.root)!r}).to_pandas()\n"
        )
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=os.environ)
        assert run.returncode == 1
        assert "ImportError: SeriesIndex.to_pandas needs pandas" in run.stderr
        assert "pip install pandas" in run.stderr
