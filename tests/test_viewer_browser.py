"""The slice viewer in a real JupyterLab, driven through a real Chromium (playwright).

Starts ``jupyter lab`` on 127.0.0.1 at a free port (token-less, for this test
only) in a temporary root, opens a notebook that shows ``ctexplore.view``,
runs it, moves the slice slider and switches the window preset, and waits for
what the kernel callback renders: a new readout line and new image bytes.
Saves ``artifacts/viewer.png`` (and ``docs/images/viewer.png`` when
``CTEXPLORE_UPDATE_IMAGES=1``).
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
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CTEXPLORE_CHROMIUM", "/usr/bin/chromium"))
TIMEOUT_MS = 30_000

NOTEBOOK_SOURCE = [
    "import sys\n"
    f"sys.path.insert(0, {str(REPO / 'tests')!r})\n"
    "from synthetic_volumes import synthetic_head\n"
    "import ctexplore\n"
    "volume = synthetic_head((40, 160, 160), (5.0, 1.3, 1.3))\n"
    "viewer = ctexplore.view(volume, index=24)\n"
    "viewer.probe_row.value, viewer.probe_col.value = 60, 106  # on the bleed\n"
    "viewer",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_notebook(path: Path) -> None:
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": "viewer",
                "metadata": {},
                "outputs": [],
                "source": NOTEBOOK_SOURCE,
            }
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook))


def _wait_for_server(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "api/status", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)  # polling a starting server: there is nothing to wait on yet
    raise RuntimeError(f"jupyter lab did not answer within 60 s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def jupyter_lab(tmp_path: Path) -> Iterator[str]:
    """URL of a token-less JupyterLab serving `tmp_path`; stopped after the test."""
    root = tmp_path / "root"
    root.mkdir()
    _write_notebook(root / "viewer.ipynb")
    # no "get Jupyter news?" toast over the screenshot
    notification = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    port = _free_port()
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        MPLBACKEND="Agg",
    )
    log = tmp_path / "jupyter.log"
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=", "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--ServerApp.terminals_enabled=False",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        command.append("--allow-root")
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


@pytest.fixture
def chromium_path() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    reason = f"no Chromium at {CHROMIUM} (Debian package 'chromium'; .ci/run installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def test_viewer_slider_and_preset_update_image_and_readout_in_jupyterlab(
    jupyter_lab: str, chromium_path: Path
) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_path),
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-quic",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(jupyter_lab + "lab/tree/viewer.ipynb")
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                " && window.jupyterapp.shell.currentWidget.sessionContext"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
            )
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

            viewer = page.locator(".ctexplore-viewer")
            image = viewer.locator("img.ctexplore-image")
            readout = viewer.locator(".ctexplore-readout")
            image.wait_for(state="visible")
            page.wait_for_function(
                "() => (document.querySelector('.ctexplore-image') || {}).src"
                " && document.querySelector('.ctexplore-image').naturalWidth > 0"
            )
            first_src = image.get_attribute("src")
            first_readout = readout.inner_text()
            assert first_readout.startswith("axial 24/39 | z = 22.5 mm"), first_readout

            # keyboard on the slider handle, as a user would step through slices
            handle = viewer.locator(".widget-slider .noUi-handle").first
            handle.focus()
            page.keyboard.press("ArrowRight")
            page.keyboard.press("ArrowRight")
            readout.filter(has_text="axial 26/39 | z = 32.5 mm").wait_for()
            page.wait_for_function(
                "first => document.querySelector('.ctexplore-image').src !== first", arg=first_src
            )
            assert "HU at (row 60, col 106) = 70 | brain 40/80" in readout.inner_text()

            slice_src = image.get_attribute("src")
            viewer.locator("select").first.select_option("bone")
            readout.filter(has_text="bone 600/2800").wait_for()
            page.wait_for_function(
                "previous => document.querySelector('.ctexplore-image').src !== previous",
                arg=slice_src,
            )
            assert "axial 26/39" in readout.inner_text()
            center = viewer.locator(".widget-text input").first.input_value()
            assert float(center) == 600.0

            artifacts = REPO / "artifacts"
            artifacts.mkdir(exist_ok=True)
            # back to the brain window for a readable picture
            viewer.locator("select").first.select_option("brain")
            readout.filter(has_text="brain 40/80").wait_for()
            page.wait_for_function(
                "() => document.querySelector('.ctexplore-image').complete"
            )
            screenshot = artifacts / "viewer.png"
            viewer.screenshot(path=str(screenshot))
            assert screenshot.stat().st_size > 10_000
            if os.environ.get("CTEXPLORE_UPDATE_IMAGES") == "1":
                target = REPO / "docs" / "images" / "viewer.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(screenshot, target)
        finally:
            browser.close()
