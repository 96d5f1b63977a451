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
    "viewer = ctexplore.view(volume, {'bleed': volume.hu == 70}, index=24)\n"
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
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
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


def test_viewer_slider_and_preset_update_image_and_readout_in_jupyterlab(jupyter_lab: str, chromium_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_path),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
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

            viewer = page.locator(".ctexplore-viewer[data-ready=true]")
            viewer.wait_for(state="visible")
            label = viewer.locator(".ctv-axial .ctv-slice-label")
            assert label.inner_text() == "axial 24/39 | z = 22.5 mm"
            canvas = viewer.locator(".ctv-axial canvas")
            before = canvas.screenshot()
            box = canvas.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.wheel(0, -100)
            assert label.inner_text() == "axial 25/39 | z = 27.5 mm"
            page.keyboard.press("ArrowUp")  # must not move the notebook's cell selection
            assert label.inner_text().startswith("axial 26/39")
            assert canvas.screenshot() != before
            python_state = page.evaluate(
                """() => new Promise((resolve) => {
                    const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
                    let text = "";
                    const future = kernel.requestExecute({code: "print(viewer.crosshair[0])"});
                    future.onIOPub = (msg) => { if (msg.content.text) text += msg.content.text; };
                    future.done.then(() => resolve(text.trim()));
                })"""
            )
            assert python_state == "26"
            # the static picture for readers without a kernel is in the output, hidden live
            static = page.locator("img[alt^='ctexplore viewer']")
            assert static.count() == 1 and not static.is_visible()
            artifacts = REPO / "artifacts"
            artifacts.mkdir(exist_ok=True)
            screenshot = artifacts / "viewer.png"
            viewer.screenshot(path=str(screenshot))
            assert screenshot.stat().st_size > 10_000
            if os.environ.get("CTEXPLORE_UPDATE_IMAGES") == "1":
                target = REPO / "docs" / "images" / "viewer.png"
                shutil.copyfile(screenshot, target)
        finally:
            browser.close()
