"""Smoke test of benchmarks/fault_injection.py: its corruptions land, its capped children report back."""

from __future__ import annotations

import http.server
import importlib.util
import random
import shutil
import threading
from pathlib import Path

import pytest

from ctexplore.phantom import write_series

pytestmark = pytest.mark.harness

HARNESS = Path(__file__).resolve().parents[1] / "benchmarks" / "fault_injection.py"


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location("fault_injection", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("base") / "series"
    write_series(folder, n_slices=4, matrix=32)
    return folder


def _case(harness, base, tmp_path, edit, target="middle"):
    folder = tmp_path / edit
    shutil.copytree(base, folder)
    touched = harness.corrupt(folder, edit, target, random.Random(0))
    return touched, harness.run_child({"kind": "load", "folder": str(folder)})


def test_an_intact_series_loads_in_the_child(harness, base, tmp_path):
    shutil.copytree(base, tmp_path / "intact")
    result = harness.run_child({"kind": "load", "folder": str(tmp_path / "intact")})
    assert result["outcome"] == "done"
    assert (result["series"], result["loaded"], result["unexpected"], result["accounted"]) == (1, 1, [], True)


def test_a_truncated_file_is_accounted_for(harness, base, tmp_path):
    touched, result = _case(harness, base, tmp_path, "truncate")
    assert len(touched) == 1 and result["outcome"] == "done" and result["accounted"]
    assert result["files"] == 4


@pytest.mark.parametrize("edit", ["rows-0", "frames-2e9", "syntax-jpegls-on-raw", "sequence-deep"])
def test_header_corruptions_are_written_and_end_in_the_capped_child(harness, base, tmp_path, edit):
    import pydicom

    touched, result = _case(harness, base, tmp_path, edit)
    assert touched == ["IM0003.dcm"] and (tmp_path / edit / touched[0]).stat().st_size > 0
    if edit == "syntax-jpegls-on-raw":
        assert pydicom.dcmread(tmp_path / edit / touched[0]).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80"
    assert result["outcome"] in ("done", "crash", "abort", "memory")  # ended, classified: never a hang
    assert result["rss"] < harness.MEMORY_CAP


def test_a_fetch_attack_is_refused_within_the_caps(harness, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), harness._AttackHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/endless"
        spec = {"kind": "fetch", "fetcher": "head-ct", "url": url, "dest": str(tmp_path / "dest"), "timeout": 3}
        result = harness.run_child(spec, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert result["outcome"] == "done" and result["error"] == "DownloadError"
    assert "more than 526228 bytes" in result["message"]
