"""The CT viewer in a real JupyterLab (and Notebook 7), driven through a real Chromium (playwright).

One JupyterLab server on 127.0.0.1 at a free port (token-less, for these tests only)
serves a temporary root holding a notebook that shows ``ctexplore.view``; one page
runs it and the tests below drive it in turn with the mouse and the keyboard,
reading the picture (canvas screenshots), the read-outs (DOM text) and the Python
state (asked from the kernel). Screenshots go to a temporary artifacts folder
(printed); ``CTEXPLORE_UPDATE_IMAGES=1`` also writes ``docs/images/viewer.png``
from the realistic sample study. ``benchmarks/bench_viewer_browser.py`` reuses the
server and browser helpers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ctexplore.viewer import MARK_COLOURS

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CTEXPLORE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TIMEOUT_MS = 30_000
SPACING_MM = (5.0, 1.3, 1.3)

SETUP_SOURCE = (
    "import sys\n"
    f"sys.path.insert(0, {str(REPO / 'tests')!r})\n"
    "import numpy as np\n"
    "from synthetic_volumes import BLEED_CENTRE_MM, synthetic_head\n"
    "import ctexplore\n"
    f"volume = synthetic_head((40, 160, 160), {SPACING_MM}, padding=True)\n"
    "bleed = volume.hu == 70\n"
    "viewer = ctexplore.view(volume, {'bleed': bleed}, index=24)\n"
    "viewer"
)
# over its size limit: arrives thinned, with the full-resolution button
PREVIEW_SOURCE = "preview = ctexplore.view(volume, max_bytes=volume.hu.nbytes // 3, layout='one')\npreview"


def notebook_json(*sources: str) -> str:
    cells = [
        {"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [], "source": s}
        for i, s in enumerate(sources)
    ]
    return json.dumps(
        {
            "cells": cells,
            "metadata": {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"name": "python"},
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_server(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "api/status", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)  # polling a starting server: there is nothing to wait on yet
    raise RuntimeError(f"jupyter did not answer within 60 s:\n{log.read_text()[-3000:]}")


@contextmanager
def running_jupyter(root: Path, work: Path, app: str = "lab") -> Iterator[str]:
    """URL of a token-less ``jupyter lab`` or ``jupyter notebook`` serving `root`; stopped on exit."""
    # no "get Jupyter news?" toast over the screenshots
    notification = work / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    port = _free_port()
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(work / "config"),
        JUPYTER_RUNTIME_DIR=str(work / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(work / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"),
        MPLBACKEND="Agg",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
    )
    app_class = "LabApp" if app == "lab" else "JupyterNotebookApp"
    command = [
        sys.executable,
        "-m",
        "jupyter",
        app,
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={root}",
        f"--{app_class}.expose_app_in_browser=True",
        f"--{app_class}.news_url=",
        f"--{app_class}.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--ServerApp.terminals_enabled=False",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        command.append("--allow-root")
    log = work / f"jupyter-{app}.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_for_server(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def chromium_or_skip() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    reason = f"no Chromium at {CHROMIUM} (Debian package 'chromium'; .ci/run installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def open_and_run(page: Any, url: str) -> None:
    """Open a notebook URL, wait for its kernel and run every cell."""
    page.goto(url)
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
        " && window.jupyterapp.shell.currentWidget.sessionContext"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session"
        " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
    )
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")


def kernel_print(page: Any, code: str) -> str:
    """What `code` prints in the notebook's kernel (the Python side of the viewer)."""
    return page.evaluate(
        """(code) => new Promise((resolve) => {
            const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
            let text = "";
            const future = kernel.requestExecute({code, store_history: false});
            future.onIOPub = (msg) => { if (msg.content.text) text += msg.content.text; };
            future.done.then(() => resolve(text.trim()));
        })""",
        code,
    )


def crosshair_from_python(page: Any, crosshair: list[int]) -> None:
    """Set the first viewer's crosshair in the kernel and wait until the page reads out that voxel."""
    kernel_print(page, f"viewer.crosshair = {crosshair}")
    page.wait_for_function(
        "(t) => document.querySelector('.ctv-crosshair-hu').textContent.startsWith(t)",
        arg=f"crosshair ({', '.join(map(str, crosshair))})",
    )


def wait_for_python(page: Any, code: str, expected: str, timeout_s: float = 10.0) -> str:
    """Ask the kernel until it prints `expected` (the page sends its state once input pauses for 150 ms)."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = kernel_print(page, code)
        if text == expected or time.monotonic() > deadline:
            return text


def point_on(canvas: Any, row: float, col: float, rows: int, cols: int) -> tuple[float, float]:
    """Page coordinates of the centre of displayed pixel (`row`, `col`) of an unzoomed panel."""
    box = canvas.bounding_box()
    return box["x"] + (col + 0.5) * box["width"] / cols, box["y"] + (row + 0.5) * box["height"] / rows


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("viewer-artifacts")
    print(f"viewer screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (playwright allows one sync session at a time)."""
    chromium = chromium_or_skip()
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def new_page(browser: Any, width: int = 1280, height: int = 1000) -> Any:
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    return page


@pytest.fixture(scope="module")
def lab(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A page of JupyterLab that has run the viewer notebook (shared by the tests below, in order)."""
    work = tmp_path_factory.mktemp("lab")
    root = work / "root"
    root.mkdir()
    (root / "viewer.ipynb").write_text(notebook_json(SETUP_SOURCE, PREVIEW_SOURCE))
    with running_jupyter(root, work) as url:
        page = new_page(browser)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(f"{error}\n{error.stack}"))
        open_and_run(page, url + "lab/tree/viewer.ipynb")
        page.locator(".ctexplore-viewer[data-ready=true]").first.wait_for(state="visible")
        yield page
        page.close()
        assert errors == [], errors


def _main(page: Any) -> Any:
    return page.locator(".ctexplore-viewer").first


def test_wheel_and_keys_step_one_slice_and_python_follows(lab: Any, artifacts: Path) -> None:
    viewer = _main(lab)
    label = viewer.locator(".ctv-axial .ctv-slice-label")
    assert label.inner_text() == "axial 24/39 | z = 22.5 mm"
    canvas = viewer.locator(".ctv-axial canvas")
    before = canvas.screenshot()
    box = canvas.bounding_box()
    lab.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    # the pointer over the picture focuses the viewer, which makes its cell (the first) active
    active_cell = "() => window.jupyterapp.shell.currentWidget.content.activeCellIndex"
    assert lab.evaluate(active_cell) == 0
    lab.mouse.wheel(0, -100)  # one notch away from the user: one slice up
    assert label.inner_text() == "axial 25/39 | z = 27.5 mm"
    lab.keyboard.press("ArrowUp")  # must not move the notebook's cell selection
    assert label.inner_text().startswith("axial 26/39")
    lab.keyboard.press("ArrowDown")  # in JupyterLab's command mode this would select the next cell
    lab.keyboard.press("PageDown")
    assert label.inner_text().startswith("axial 15/39")
    assert viewer.locator(".ctv-axial").get_attribute("data-painted-index") == "15"
    assert canvas.screenshot() != before
    assert wait_for_python(lab, "print(viewer.crosshair[0])", "15") == "15"
    # JupyterLab's own shortcuts did not see the keys: the active cell did not move
    assert lab.evaluate(active_cell) == 0
    # the static picture for readers without a kernel is in the output, hidden live
    static = lab.locator("img[alt^='ctexplore viewer']")
    assert static.count() == 2 and not static.first.is_visible()
    viewer.screenshot(path=str(artifacts / "wheel.png"))


def test_a_fast_wheel_reaches_python_when_it_stops_and_never_jumps_back(lab: Any) -> None:
    """The page sends its state once input pauses; echoes of older messages do not undo newer steps."""
    viewer = _main(lab)
    crosshair_from_python(lab, [10, 80, 80])
    label = viewer.locator(".ctv-axial .ctv-slice-label")
    box = viewer.locator(".ctv-axial canvas").bounding_box()
    lab.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for notch in range(12):  # pairs of notches, each pair sent alone: its echo arrives after the next notch
        lab.mouse.wheel(0, -100)
        lab.wait_for_timeout(165 if notch % 2 else 20)  # 165 ms: a message goes out, its echo comes after
    assert label.inner_text().startswith("axial 22/39")
    assert wait_for_python(lab, "print(viewer.crosshair[0])", "22") == "22"
    lab.wait_for_timeout(500)
    assert label.inner_text().startswith("axial 22/39")
    assert kernel_print(lab, "print(viewer.crosshair[0])") == "22"


def test_drag_sets_the_window_in_the_page_and_in_python(lab: Any, artifacts: Path) -> None:
    viewer = _main(lab)
    canvas = viewer.locator(".ctv-axial canvas")
    before = canvas.screenshot()
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    lab.mouse.move(x, y)
    lab.mouse.down()
    # brain 40/80: one pixel right widens by 2 HU, one pixel down raises the centre by 1 HU
    lab.mouse.move(x + 50, y + 20, steps=5)
    lab.mouse.up()
    assert viewer.locator(".ctv-window").inner_text() == "window custom 60/180"
    assert canvas.screenshot() != before
    expected = "60.0 180.0 custom"
    assert wait_for_python(lab, "print(viewer.center, viewer.width, viewer.window_name)", expected) == expected
    viewer.screenshot(path=str(artifacts / "window_drag.png"))


def test_click_moves_the_other_two_planes(lab: Any) -> None:
    viewer = _main(lab)
    crosshair_from_python(lab, [20, 80, 80])
    label = viewer.locator(".ctv-axial .ctv-slice-label")
    coronal = viewer.locator(".ctv-coronal").get_attribute("data-paints")
    canvas = viewer.locator(".ctv-axial canvas")
    # axial columns run to the patient's left, shown on the right: displayed column = array column
    lab.mouse.click(*point_on(canvas, 50, 110, 160, 160))
    assert viewer.locator(".ctv-sagittal .ctv-slice-label").inner_text().startswith("sagittal 110/159")
    assert viewer.locator(".ctv-coronal .ctv-slice-label").inner_text().startswith("coronal 50/159")
    assert viewer.locator(".ctv-coronal").get_attribute("data-paints") != coronal
    assert label.inner_text().startswith("axial 20/39")  # the clicked plane keeps its slice
    assert wait_for_python(lab, "print(viewer.crosshair)", "[20, 50, 110]") == "[20, 50, 110]"
    hu = kernel_print(lab, "print(volume.hu[20, 50, 110])")
    assert viewer.locator(".ctv-crosshair-hu").inner_text() == f"crosshair (20, 50, 110): {hu} HU"


def test_padding_reads_as_padding_not_air(lab: Any) -> None:
    """Voxels outside the scanned field are shown in the padding colour and read as padding."""
    viewer = _main(lab)
    crosshair_from_python(lab, [20, 16, 16])  # the field of view is the inscribed circle
    assert (
        viewer.locator(".ctv-crosshair-hu").inner_text()
        == "crosshair (20, 16, 16): padding (outside the scanned field)"
    )
    assert kernel_print(lab, "print(bool(volume.padding[20, 16, 16]), volume.hu[20, 16, 16])") == "True -1000"
    # the displayed pixel (8, 8): padding colour, not the black of air
    rgb = lab.evaluate(
        """() => { const c = document.querySelector('.ctexplore-viewer .ctv-axial canvas');
        const r = c.width / c.clientWidth, px = (8.5 * c.clientWidth) / 160;
        return [...c.getContext('2d').getImageData(Math.round(px * r), Math.round(px * r), 1, 1).data].slice(0, 3); }"""
    )
    assert rgb == list(MARK_COLOURS["padding"])
    crosshair_from_python(lab, [20, 80, 80])


def test_python_sets_window_and_slice_and_the_page_follows(lab: Any) -> None:
    viewer = _main(lab)
    kernel_print(
        lab, "viewer.center, viewer.width, viewer.window_name = 600.0, 2800.0, 'bone'\nviewer.crosshair = [10, 50, 110]"
    )
    lab.wait_for_function(
        "() => document.querySelector('.ctv-axial .ctv-slice-label').textContent.startsWith('axial 10/39')"
    )
    assert viewer.locator(".ctv-window").inner_text() == "window bone 600/2800"
    assert viewer.locator(".ctv-preset").input_value() == "bone"
    kernel_print(lab, "viewer.center, viewer.width, viewer.window_name = 40.0, 80.0, 'brain'")
    lab.wait_for_function("() => document.querySelector('.ctv-window').textContent === 'window brain 40/80'")


def test_overlay_toggle_changes_the_picture_and_python_state(lab: Any, artifacts: Path) -> None:
    viewer = _main(lab)
    kernel_print(lab, "viewer.crosshair = [int(v) for v in np.rint(volume.world_to_index(BLEED_CENTRE_MM))]")
    bleed_slice = kernel_print(lab, "print(viewer.crosshair[0])")
    lab.wait_for_function(f"() => document.querySelector('.ctv-axial').dataset.paintedIndex === '{bleed_slice}'")
    legend = viewer.locator(".ctv-legend")
    assert legend.locator(".ctv-overlay").inner_text() == "bleed"
    canvas = viewer.locator(".ctv-axial canvas")
    with_overlay = canvas.screenshot()
    viewer.screenshot(path=str(artifacts / "overlay_on.png"))
    legend.locator("input[type=checkbox]").uncheck()
    without = canvas.screenshot()
    assert without != with_overlay
    assert wait_for_python(lab, "print(viewer.overlay_visible)", "[False]") == "[False]"
    legend.locator("input[type=checkbox]").check()
    assert canvas.screenshot() == with_overlay


def test_line_measures_the_distance_in_millimetres(lab: Any, artifacts: Path) -> None:
    viewer = _main(lab)
    viewer.locator(".ctv-tool").select_option("line")
    canvas = viewer.locator(".ctv-axial canvas")
    # 30 rows and 40 columns apart on 1.3 mm pixels: 50 pixels, 65.0 mm
    start, end = point_on(canvas, 40, 40, 160, 160), point_on(canvas, 70, 80, 160, 160)
    lab.mouse.move(*start)
    lab.mouse.down()
    lab.mouse.move(*end, steps=4)
    lab.mouse.up()
    assert viewer.locator(".ctv-measurements").inner_text().endswith(": 65.0 mm")
    expected = "line 65.000"
    code = "m = viewer.measurements[-1]; print(m['kind'], f\"{m['length_mm']:.3f}\")"
    assert wait_for_python(lab, code, expected) == expected
    viewer.screenshot(path=str(artifacts / "measure.png"))
    viewer.locator(".ctv-clear").click()
    viewer.locator(".ctv-tool").select_option("probe")


def test_preview_asks_the_kernel_for_full_resolution(lab: Any, artifacts: Path) -> None:
    preview = lab.locator(".ctexplore-viewer").nth(1)
    preview.scroll_into_view_if_needed()
    assert preview.get_attribute("data-resolution") == "preview"
    assert "every 1st slice, 2nd row, 2nd column shown" in preview.locator(".ctv-note").inner_text()
    assert preview.locator(".ctv-axial .ctv-slice-label").inner_text().startswith("axial 20/39")
    preview.locator(".ctv-resolution").click()
    lab.wait_for_function(
        "() => { const v = document.querySelectorAll('.ctexplore-viewer')[1];"
        " return v.dataset.resolution === 'slab' && v.dataset.ready === 'true'; }"
    )
    assert preview.locator(".ctv-note").inner_text().startswith("full resolution: stored slices ")
    assert kernel_print(lab, "print(preview.volume.shape[1:], preview._meta['resolution'])") == "(160, 160) slab"
    # the same patient position, now with every voxel
    assert "z = 2.5 mm" in preview.locator(".ctv-axial .ctv-slice-label").inner_text()
    preview.screenshot(path=str(artifacts / "full_resolution.png"))
    preview.locator(".ctv-resolution").click()
    lab.wait_for_function(
        "() => { const v = document.querySelectorAll('.ctexplore-viewer')[1];"
        " return v.dataset.resolution === 'preview' && v.dataset.ready === 'true'; }"
    )


def test_tutorial_06_runs_live_in_jupyterlab_on_the_padded_sample(browser: Any, tmp_path: Path) -> None:
    """The tutorial's own viewer (the sample has scanner padding and two overlays) comes up live, without errors."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(REPO / "notebooks" / "06_looking_at_scans.ipynb", root / "06.ipynb")
    with running_jupyter(root, tmp_path) as url:
        page = new_page(browser)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(f"{error}\n{error.stack}"))
        try:
            open_and_run(page, url + "lab/tree/06.ipynb")
            viewer = page.locator(".ctexplore-viewer[data-ready=true]").first
            viewer.wait_for(state="attached")
            assert kernel_print(page, "print(volume.padding.any())") == "True"
            expected = kernel_print(page, "print(viewer.crosshair[0])")
            page.wait_for_function(
                "(k) => document.querySelector('.ctv-axial .ctv-slice-label').textContent.startsWith(`axial ${k}/`)",
                arg=expected,
            )
            assert viewer.locator(".ctv-legend .ctv-overlay").all_text_contents() == ["hyperdense 50-90 HU", "body"]
            viewer.locator(".ctv-axial canvas").hover()  # scrolled into view and still: JupyterLab lays out lazily
            page.mouse.wheel(0, -100)
            page.wait_for_function(
                "(k) => document.querySelector('.ctv-axial .ctv-slice-label').textContent.startsWith(`axial ${k}/`)",
                arg=str(int(expected) + 1),
            )
            assert errors == [], errors
        finally:
            page.close()


def test_notebook7_renders_the_viewer_and_the_wheel_steps(browser: Any, tmp_path: Path) -> None:
    pytest.importorskip("notebook", minversion="7")
    playwright_errors = pytest.importorskip("playwright.sync_api")
    root = tmp_path / "root"
    root.mkdir()
    (root / "viewer.ipynb").write_text(notebook_json(SETUP_SOURCE))
    with running_jupyter(root, tmp_path, app="notebook") as url:
        page = new_page(browser)
        try:
            page.goto(url + "notebooks/viewer.ipynb")
            # Notebook 7 does not put its app on window even when asked: run the cell as a user does
            prompt = page.locator(".jp-InputPrompt").first
            for _attempt in range(3):  # a Shift+Enter before the editor is ready is lost
                page.locator(".jp-Cell .cm-content").first.click()
                page.keyboard.press("Shift+Enter")
                try:
                    page.wait_for_function(
                        "(p) => /\\[[0-9*]+\\]/.test(p.textContent)", arg=prompt.element_handle(), timeout=5000
                    )
                    break
                except playwright_errors.TimeoutError:
                    continue
            viewer = page.locator(".ctexplore-viewer[data-ready=true]")
            try:
                viewer.wait_for(state="visible")
            finally:
                page.screenshot(path=str(tmp_path / "notebook7.png"))
            label = viewer.locator(".ctv-axial .ctv-slice-label")
            assert label.inner_text() == "axial 24/39 | z = 22.5 mm"
            box = viewer.locator(".ctv-axial canvas").bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.wheel(0, 100)  # one notch towards the user: one slice down
            assert label.inner_text() == "axial 23/39 | z = 17.5 mm"
            page.keyboard.press("ArrowUp")
            page.keyboard.press("ArrowUp")
            assert label.inner_text() == "axial 25/39 | z = 27.5 mm"
            page.screenshot(path=str(tmp_path / "notebook7.png"))
        finally:
            page.close()


def test_reopened_without_its_kernel_jupyterlab_shows_the_static_picture(browser: Any, tmp_path: Path) -> None:
    """What JupyterLab shows for a saved notebook whose widget models are gone (found, not assumed).

    The executed notebook is saved (as ``jupyter nbconvert --execute`` does, widget
    state included) and opened in a fresh JupyterLab (4.x) without running it. Found:
    the widget output cannot render (its model lived in the old kernel) and JupyterLab
    falls back to the output's ``text/plain``, which the viewer sets to a sentence
    saying so (no "model not found"); the static picture before it, an ordinary HTML
    output, is shown, with the plane, slice and window in its title and alt text.
    """
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    root = tmp_path / "root"
    root.mkdir()
    notebook = nbformat.reads(notebook_json(SETUP_SOURCE), as_version=4)
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3", store_widget_state=True).execute()
    nbformat.write(notebook, root / "saved.ipynb")
    with running_jupyter(root, tmp_path) as url:
        page = new_page(browser)
        try:
            page.goto(url + "lab/tree/saved.ipynb")
            static = page.locator(".jp-OutputArea-output img[alt^='ctexplore viewer']")
            static.wait_for(state="visible")
            assert page.evaluate("(img) => img.naturalWidth", static.element_handle()) >= 256
            assert "axial 24/39" in static.get_attribute("alt")
            page.wait_for_timeout(2000)  # let the widget manager give up on the missing model
            assert page.locator(".ctexplore-viewer[data-ready=true]").count() == 0
            fallback = page.locator(".jp-OutputArea-output", has_text="ctexplore viewer: live only while")
            assert fallback.count() == 1 and fallback.is_visible()
            assert page.get_by_text("model not found").count() == 0
            page.screenshot(path=str(tmp_path / "reopened.png"))
        finally:
            page.close()


def test_readme_picture_of_the_sample_study(browser: Any, tmp_path: Path) -> None:
    """``CTEXPLORE_UPDATE_IMAGES=1``: docs/images/viewer.png from the realistic sample, in JupyterLab."""
    if os.environ.get("CTEXPLORE_UPDATE_IMAGES") != "1":
        pytest.skip("set CTEXPLORE_UPDATE_IMAGES=1 to regenerate docs/images/viewer.png")
    source = (
        "import numpy as np\n"
        "import ctexplore as ct\n"
        "from ctexplore import datasets\n"
        "study = datasets.sample_study()\n"
        "series = min((s for s in ct.scan(study).volumes if s.tilt < 1), key=lambda s: s.spacing_summary[1])\n"
        "volume = ct.load_series(series)\n"
        "truth = np.load(next((study.parent / datasets.TRUTH_FOLDER).glob('HEAD_THIN*_labels.npz')))\n"
        "names, labels = list(truth['names']), truth['labels']\n"
        "kinds = {'IPH': 'intraparenchymal', 'SDH': 'subdural', 'EDH': 'epidural', 'SAH': 'subarachnoid',\n"
        "         'IVH': 'intraventricular'}\n"
        "lesions = {f'{a} (truth)': labels == names.index(f'{kind} haemorrhage') for a, kind in kinds.items()}\n"
        "viewer = ct.view(volume, lesions, window='brain')\n"
        "bleed = lesions['IPH (truth)']\n"
        "k = int(np.argmax(bleed.sum(axis=(1, 2))))  # the bleed's largest cross-section\n"
        "j, i = (int(round(c)) for c in np.argwhere(bleed[k]).mean(axis=0))\n"
        "viewer.crosshair = [k, j, i]\n"
        "viewer"
    )
    root = tmp_path / "root"
    root.mkdir()
    (root / "sample.ipynb").write_text(notebook_json(source))
    with running_jupyter(root, tmp_path) as url:
        page = new_page(browser, 1100, 900)
        try:
            open_and_run(page, url + "lab/tree/sample.ipynb")
            page.evaluate("() => window.jupyterapp.commands.execute('application:toggle-left-area')")
            viewer = page.locator(".ctexplore-viewer[data-ready=true]")
            viewer.wait_for(state="visible")
            box = viewer.locator(".ctv-axial canvas").bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.4)
            screenshot = tmp_path / "viewer.png"
            viewer.screenshot(path=str(screenshot))
            assert screenshot.stat().st_size > 10_000
            shutil.copyfile(screenshot, REPO / "docs" / "images" / "viewer.png")
        finally:
            page.close()
