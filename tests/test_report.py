"""ctexplore report: a DICOM tree with known quirks, written as real DICOM, flagged on the right series; the page
opened in a real Chromium with every network request refused."""

from __future__ import annotations

import csv
import html
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from test_viewer_browser import CHROMIUM, CHROMIUM_ARGS

from ctexplore.cli import main
from ctexplore.phantom import write_series
from ctexplore.report import hu_flags, write_report

SMALL = dict(n_slices=12, matrix=64, slice_spacing=5.0)

# patient -> the flags (text before the first ':') the report must give its one series, and no others
EXPECTED = {
    "CLEAN": set(),
    "TILT": {"gantry tilt 20.0 deg (measured from positions)"},
    "GAPS": {"uneven spacing"},
    "DUPLICATE": {"duplicates"},
    "RESCALE": {"varying rescale"},
    "PADDED": {"pixel padding covers {:.0%} of the checked voxels (outside the scan field); left out of the HU checks"},
    "WRAPPED": {"12-bit unsigned wrap-around", "values outside the scanner range"},
    "INTERCEPT": {"air not near -1000 HU"},
    "UNDECLARED": {"values outside the scanner range"},
}


def rewrite(files, change):
    """Apply `change` to each real DICOM file's dataset and save it back."""
    for path in files:
        dataset = pydicom.dcmread(path)
        change(dataset)
        dataset.save_as(path)


def wrap_12_bit(dataset):
    """What some public CT sets hold: negative HU stored modulo 4096 in 12-bit unsigned, intercept 0."""
    hu = dataset.pixel_array.astype(np.int32) + int(dataset.RescaleIntercept)
    dataset.PixelData = (hu % 4096).astype(np.uint16).tobytes()
    dataset.RescaleIntercept = 0


def intercept_zero(dataset):
    dataset.RescaleIntercept = 0


def drop_padding_tag(dataset):
    del dataset.PixelPaddingValue


def write_quirky_tree(root: Path) -> Path:
    def series(patient, change=None, **kwargs):
        options = {**SMALL, "padding_value": None, **kwargs}
        written = write_series(root / patient, patient_id=patient, series_description=patient, **options)
        if change is not None:
            rewrite(written.files, change)

    series("CLEAN")
    series("TILT", gantry_tilt=20.0)
    series("GAPS", slice_positions=[0, 5, 10, 15, 25, 30, 35, 40, 45, 50, 55, 60])
    series("DUPLICATE", slice_positions=[0, 5, 10, 15, 20, 20, 25, 30, 35, 40, 45, 50])
    series("RESCALE", rescale_intercept=[-1024.0] * 6 + [-1000.0] * 6)
    series("PADDED", padding_value=-2000)
    series("WRAPPED", wrap_12_bit, signed=False, bits_stored=12)
    series("INTERCEPT", intercept_zero)
    series("UNDECLARED", drop_padding_tag, padding_value=-2000)
    return root


@pytest.fixture(scope="module")
def quirky_tree(tmp_path_factory):
    return write_quirky_tree(tmp_path_factory.mktemp("quirks"))


@pytest.fixture(scope="module")
def tree_report(quirky_tree, tmp_path_factory):
    before = sorted(p.relative_to(quirky_tree) for p in quirky_tree.rglob("*"))
    report = write_report(quirky_tree, tmp_path_factory.mktemp("report") / "out")
    assert sorted(p.relative_to(quirky_tree) for p in quirky_tree.rglob("*")) == before  # nothing written into it
    return report


def flag_table(page: str) -> dict[str, set[str]]:
    rows = re.findall(r"<tr><td>([^<]*)</td><td>[^<]*</td><td>([^<]*)</td></tr>", page.split('id="flags"')[1])
    found: dict[str, set[str]] = {}
    for patient, flag in rows:
        found.setdefault(html.unescape(patient), set()).add(html.unescape(flag).split(":")[0])
    return found


def test_each_quirk_is_flagged_on_its_series_and_only_there(tree_report, quirky_tree):
    page = tree_report.read_text(encoding="utf-8")
    flags = flag_table(page)
    padded = [pydicom.dcmread(path) for path in sorted((quirky_tree / "PADDED").iterdir())]
    fraction = np.mean([ds.pixel_array == ds.PixelPaddingValue for ds in padded])
    expected = {**EXPECTED, "PADDED": {next(iter(EXPECTED["PADDED"])).format(fraction)}}
    assert {patient: flags.get(patient, set()) for patient in EXPECTED} == expected
    assert "9 patient(s), 9 series (localizers left out): 9 chosen." in page


def test_report_writes_one_thumbnail_per_chosen_series_and_the_distributions(tree_report):
    pictures = sorted(p.name for p in (tree_report.parent / "report").iterdir())
    assert pictures == ["distributions.png", "flags.csv"] + [f"thumb_{n:04d}.png" for n in range(9)]
    with open(tree_report.parent / "report" / "flags.csv", newline="") as stream:
        listed = {(row["patient"], row["flag"].split(":")[0]) for row in csv.DictReader(stream)}
    assert ("WRAPPED", "12-bit unsigned wrap-around") in listed and not any(p == "CLEAN" for p, _ in listed)
    for name in pictures[2:] + pictures[:1]:
        assert (tree_report.parent / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = tree_report.read_text(encoding="utf-8")
    assert page.count('<figure class="flagged">') == 8 and page.count('<figure class="clean">') == 1


@pytest.mark.browser
def test_report_opens_offline_in_chromium_with_every_picture_loaded(tree_report):
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
        )
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            refused = []

            def only_files(route):
                if route.request.url.startswith(("file:", "data:")):
                    return route.continue_()
                refused.append(route.request.url)
                return route.abort()

            page.route("**/*", only_files)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(tree_report.as_uri())
            page.wait_for_load_state("load")
            widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
            assert len(widths) == 10 and min(widths) > 0, widths
            assert page.locator("#distributions").evaluate("i => i.naturalWidth") == 1050
            rows = page.locator("#flags tr").all_inner_texts()
            assert any(r.startswith("WRAPPED") and "12-bit unsigned wrap-around" in r for r in rows), rows
            assert any(r.startswith("TILT") and "gantry tilt 20.0 deg" in r for r in rows), rows
            assert page.locator("#series tr").count() == 10  # header and 9 series
            assert errors == [] and refused == []
        finally:
            browser.close()


def test_report_on_a_preprocess_output_reads_manifest_and_volumes(quirky_tree, tmp_path):
    out = tmp_path / "out"
    # exit 1: the series with a gap fails (uneven slices are not stacked by default) and is recorded so
    assert main(["preprocess", str(quirky_tree), str(out), "--spacing", "4", "--workers", "1", "--no-progress"]) == 1
    assert main(["report", str(out)]) == 0
    with open(out / "manifest.csv", newline="") as stream:
        statuses = {row["patient_id"]: row["status"] for row in csv.DictReader(stream)}
    flags = flag_table((out / "report.html").read_text(encoding="utf-8"))
    assert "varying rescale" in flags["RESCALE"] and "12-bit unsigned wrap-around" in flags["WRAPPED"]
    assert any("gantry tilt 20.0 deg" in flag for flag in flags["TILT"])
    assert "air not near -1000 HU" in flags["INTERCEPT"]
    assert statuses["GAPS"] == "failed" and "failed" in flags["GAPS"]
    thumbnails = list((out / "report").glob("thumb_*.png"))
    assert len(thumbnails) == sum(status == "ok" for status in statuses.values())


def test_a_dicom_tree_needs_an_output_folder_outside_it(quirky_tree):
    with pytest.raises(ValueError, match="nothing is written into an input folder"):
        write_report(quirky_tree)
    with pytest.raises(ValueError, match="inside the DICOM tree"):
        write_report(quirky_tree, quirky_tree / "CLEAN" / "report")
    assert main(["report", str(quirky_tree)]) == 2


def test_hu_flags_of_a_plain_head_are_empty_and_padding_is_left_out():
    head = np.full((2, 40, 40), -1000, np.int16)
    head[:, 10:30, 10:30] = 35
    padding = np.zeros(head.shape, bool)
    padding[:, :4] = True
    head[padding] = -3024
    assert hu_flags(head, padding) == [
        "pixel padding covers 10% of the checked voxels (outside the scan field); left out of the HU checks"
    ]
    assert [flag.split(":")[0] for flag in hu_flags(head)] == ["values outside the scanner range"]


def test_hu_flags_of_a_large_volume_check_every_kth_slice():
    head = np.full((40, 256, 256), -1000, np.int16)  # 2.6 million voxels: more than the check reads
    head[:, 64:192, 64:192] = 40
    head[::2, 100, 100] = 3500  # metal in every other slice only
    assert hu_flags(head) == []  # one voxel per slice is far below 0.1% of the voxels
    assert [flag.split(":")[0] for flag in hu_flags(head % 4096)] == [
        "12-bit unsigned wrap-around",
        "values outside the scanner range",
    ]


def test_a_study_without_a_series_that_passes_the_rule_is_flagged(quirky_tree, tmp_path):
    page = write_report(quirky_tree / "CLEAN", tmp_path / "r", rule="kernel:sharp").read_text(encoding="utf-8")
    assert flag_table(page) == {"CLEAN": {"no series of this study passes the rule 'kernel"}}
    assert "kernel &#x27;H30s&#x27; is a soft kernel; rule wants a sharp kernel" in page


def test_report_says_which_outputs_it_did_not_open(quirky_tree, tmp_path):
    out = tmp_path / "out"
    clean = quirky_tree / "CLEAN"
    assert main(["preprocess", str(clean), str(out), "--format", "nifti", "--workers", "1", "--no-progress"]) == 0
    assert main(["report", str(out)]) == 0
    [flag] = flag_table((out / "report.html").read_text(encoding="utf-8"))["CLEAN"]
    assert flag.startswith("output CLEAN/") and flag.endswith(".nii.gz is not .npz")
