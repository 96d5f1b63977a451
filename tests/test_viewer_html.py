"""The self-contained viewer HTML in a real Chromium with every network request refused."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from synthetic_volumes import synthetic_head

import ctexplore as ct
from ctexplore.viewer import OVERLAY_COLOURS

pytestmark = pytest.mark.browser
CHROMIUM = Path(os.environ.get("CTEXPLORE_CHROMIUM", "/usr/bin/chromium"))
REPO = Path(__file__).resolve().parents[1]


@contextmanager
def offline_page(path: Path, height: int = 800) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A Chromium page showing `path` with every request but the file refused; the refused URLs; page errors."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    playwright_api = pytest.importorskip("playwright.sync_api")
    refused: list[str] = []
    errors: list[str] = []

    def only_the_file(route: Any) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": height})
            page.route("**/*", only_the_file)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(path.as_uri())
            yield page, refused, errors
        finally:
            browser.close()


def test_saved_html_browses_with_wheel_keys_and_click_offline(tmp_path: Path) -> None:
    volume = synthetic_head((40, 160, 160), (5.0, 1.3, 1.3))
    path = ct.save_viewer_html(volume, tmp_path / "scan.html", overlays={"bleed": volume.hu == 70})
    assert not list(tmp_path.glob("*.tmp"))
    with offline_page(path) as (page, refused, errors):
        page.wait_for_selector(".ctexplore-viewer[data-ready=true]", timeout=15_000)
        label = page.locator(".ctv-axial .ctv-slice-label")
        assert label.inner_text() == "axial 20/39 | z = 2.5 mm"
        canvas = page.locator(".ctv-axial canvas")
        before = canvas.screenshot()
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.wheel(0, -100)  # one notch away from the user: one slice up
        assert label.inner_text() == "axial 21/39 | z = 7.5 mm"
        page.keyboard.press("ArrowUp")
        page.keyboard.press("ArrowUp")
        assert label.inner_text().startswith("axial 23/39")
        assert canvas.screenshot() != before
        page.keyboard.press("4")  # bone preset
        assert page.locator(".ctv-window").inner_text() == "window bone 600/2800"
        # a click on the left of the axial picture moves the sagittal plane to the patient's right
        page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
        sagittal = page.locator(".ctv-sagittal .ctv-slice-label").inner_text()
        assert sagittal.startswith("sagittal") and "x = -" in sagittal, sagittal
        assert errors == [] and refused == []
        (REPO / "artifacts").mkdir(exist_ok=True)
        page.screenshot(path=str(REPO / "artifacts" / "viewer_standalone.png"))


def test_nbconvert_html_of_an_executed_notebook_shows_the_picture_offline(tmp_path: Path) -> None:
    """The contract: ``jupyter nbconvert --to html`` of an executed ``ct.view`` notebook, opened with no
    network, shows an ``<img>`` of the scan (>= 256 px on its longer side) in that output."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    pytest.importorskip("playwright.sync_api")
    nbclient = pytest.importorskip("nbclient")
    nbconvert = pytest.importorskip("nbconvert")
    import nbformat

    source = (
        "import sys\n"
        f"sys.path.insert(0, {str(REPO / 'tests')!r})\n"
        "from synthetic_volumes import synthetic_head\n"
        "import ctexplore as ct\n"
        "vol = synthetic_head((40, 160, 160), (5.0, 1.3, 1.3))\n"
        "ct.view(vol, {'bleed': vol.hu == 70}, index=24)"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    # what --execute does: widget state saved, so nbconvert renders the widget view of the output
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3", store_widget_state=True).execute()
    assert "application/vnd.jupyter.widget-state+json" in notebook.metadata.get("widgets", {})
    html, _ = nbconvert.HTMLExporter().from_notebook_node(notebook)
    path = tmp_path / "executed.html"
    path.write_text(html, encoding="utf-8")
    with offline_page(path, height=900) as (page, refused, errors):
        picture = page.locator("img[alt^='ctexplore viewer']")
        picture.wait_for(state="visible", timeout=15_000)
        size = page.evaluate("(img) => [img.naturalWidth, img.naturalHeight]", picture.element_handle())
        assert max(size) >= 256, size
        # the three labelled planes side by side, drawn after the cell in place of the 160 px stand-in
        assert size[0] > 1.5 * size[1], size
        assert "axial 24/39" in picture.get_attribute("alt")  # plane, slice and window go with it
        assert "overlays shown: bleed (opacity 0.4)" in picture.get_attribute("alt")
        # the bleed filled as the live viewer fills it: red at opacity 0.4 over 70 HU (grey 223)
        shown = base64.b64decode(picture.get_attribute("src").split(",", 1)[1])
        pixels = np.asarray(Image.open(io.BytesIO(shown)))[..., :3].astype(int)
        blended = np.rint(223 * 0.6 + np.asarray(OVERLAY_COLOURS[0]) * 0.4)
        assert (np.abs(pixels - blended) <= 2).all(axis=-1).sum() > 50
        page.screenshot(path=str(tmp_path / "offline.png"))


def test_saved_html_of_a_viewer_keeps_its_overlays_visibility_and_measurements(tmp_path: Path) -> None:
    """``viewer.save_html`` starts the standalone page where the live viewer was: overlays shown or hidden,
    in the colours of the static picture, opacity and the measurements made."""
    volume = synthetic_head((40, 160, 160), (5.0, 1.3, 1.3))
    viewer = ct.view(volume, {"bleed": volume.hu == 70, "skull": volume.hu == 1200})
    k = int(np.argwhere(volume.hu == 70)[:, 0].mean())
    viewer.crosshair = [k, 80, 80]
    viewer.overlay_visible = [True, False]
    viewer.opacity = 1.0
    viewer.measurements = [
        {"kind": "line", "plane": "axial", "index": k, "pixels": [10, 10, 10, 90], "text": "104.0 mm"}
    ]
    path = viewer.save_html(tmp_path / "scan.html")
    with offline_page(path) as (page, refused, errors):
        page.wait_for_selector(".ctexplore-viewer[data-ready=true]", timeout=15_000)
        boxes = page.locator(".ctv-legend input[type=checkbox]")
        assert [boxes.nth(i).is_checked() for i in range(boxes.count())] == [True, False]
        assert page.locator(".ctv-legend").inner_text().split("\n")[:2] == ["bleed", "skull"]
        assert f"#1 axial {k}: 104.0 mm" in page.locator(".ctv-measurements").inner_text()

        def near(colour) -> int:
            shot = np.asarray(Image.open(io.BytesIO(page.locator(".ctv-axial canvas").screenshot())))[..., :3]
            return int((np.abs(shot.astype(int) - np.asarray(colour)) <= 3).all(axis=-1).sum())

        assert near(OVERLAY_COLOURS[0]) > 50 and near(OVERLAY_COLOURS[1]) == 0  # skull hidden
        boxes.nth(1).check()
        assert near(OVERLAY_COLOURS[1]) > 50
        assert errors == [] and refused == []


def test_saved_html_lists_each_value_of_a_label_map_in_its_colour(tmp_path: Path) -> None:
    """A label map gets one legend line per value present, with the colour the picture draws it in."""
    volume = synthetic_head((40, 160, 160), (5.0, 1.3, 1.3))
    labels = np.zeros(volume.shape, np.uint8)
    labels[volume.hu == 70] = 1
    labels[volume.hu == 1200] = 3
    viewer = ct.view(volume, {"regions": labels})
    (overlay,) = viewer.overlays
    path = viewer.save_html(tmp_path / "labels.html")
    with offline_page(path) as (page, refused, errors):
        page.wait_for_selector(".ctexplore-viewer[data-ready=true]", timeout=15_000)
        entries = page.locator(".ctv-legend .ctv-legend-entry")
        assert page.locator(".ctv-legend .ctv-overlay").inner_text() == "regions"
        assert [entries.nth(i).inner_text() for i in range(entries.count())] == ["1", "3"]
        swatches = [entries.nth(i).locator(".ctv-swatch").evaluate("s => s.style.background") for i in (0, 1)]
        assert swatches == [f"rgb({', '.join(map(str, overlay.colours[v]))})" for v in (1, 3)]
        assert errors == [] and refused == []
