"""ctexplore.selection: which series each study contributes, and why the others are left out."""

from __future__ import annotations

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

    @pytest.mark.parametrize("rule", ["largest", "slices:0", "slices:x", "description:(", "thinnest:2"])
    def test_invalid_rules_are_refused(self, rule):
        with pytest.raises(ValueError, match="rule"):
            parse_rule(rule)
