"""Tests for ctexplore.fetch: real downloads from a local HTTP server serving the real GE head CT."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ctexplore.datasets import ChecksumError, DownloadError
from ctexplore.fetch import HEAD_CT_STUDIES, fetch_head_ct, read_registry

GE = Path(os.environ.get("CTEXPLORE_TEST_DATA", "/nonexistent")) / "head-ct-ge"
needs_ge = pytest.mark.skipif(not GE.is_dir(), reason="CTEXPLORE_TEST_DATA/head-ct-ge not available")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        self.server.paths.append(self.path)


@pytest.fixture
def server(tmp_path):
    """Serve ``<root>/In/GE/*.dcm`` as links to the shared files (nothing copied)."""
    root = tmp_path / "www"
    (root / "In" / "GE").mkdir(parents=True)
    for file in GE.glob("*.dcm"):
        (root / "In" / "GE" / file.name).symlink_to(file)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    httpd.paths = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_registry_pins_every_file_of_each_study():
    files = read_registry("dcm_qa_ct.txt")
    ge = [p for p in files if p.startswith(HEAD_CT_STUDIES["ge-hispeed-head"].prefix)]
    philips = [p for p in files if p.startswith(HEAD_CT_STUDIES["philips-head-phantom"].prefix)]
    assert len(ge) == 28 and len(philips) == 445
    assert all(len(digest) == 64 for digest, _ in files.values())


@needs_ge
def test_registry_hashes_match_the_real_files():
    files = read_registry("dcm_qa_ct.txt")
    for file in GE.glob("*.dcm"):
        digest, size = files[f"In/GE/{file.name}"]
        assert hashlib.sha256(file.read_bytes()).hexdigest() == digest and file.stat().st_size == size


@needs_ge
class TestFetchHeadCT:
    def test_downloads_verifies_and_caches(self, server, tmp_path):
        httpd, _, url = server
        folder = fetch_head_ct("ge-hispeed-head", tmp_path / "cache", base_url=url)
        assert sorted(p.name for p in folder.glob("*.dcm")) == sorted(p.name for p in GE.glob("*.dcm"))
        assert (folder / "01.dcm").read_bytes() == (GE / "01.dcm").read_bytes()
        asked = len(httpd.paths)
        assert asked == 28
        assert fetch_head_ct("ge-hispeed-head", tmp_path / "cache", base_url=url) == folder
        assert len(httpd.paths) == asked  # the second call is served from the cache

    def test_a_changed_file_is_refused(self, server, tmp_path):
        _, root, url = server
        served = root / "In" / "GE" / "05.dcm"
        served.unlink()
        served.write_bytes((GE / "05.dcm").read_bytes()[:-1] + b"\x01")
        with pytest.raises(ChecksumError, match="05.dcm"):
            fetch_head_ct("ge-hispeed-head", tmp_path / "cache", base_url=url)
        assert not (tmp_path / "cache" / "ge-hispeed-head" / "In" / "GE" / "05.dcm").exists()


def test_offline_error_names_the_url_and_the_remedy(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    with pytest.raises(DownloadError, match="offline") as caught:
        fetch_head_ct("ge-hispeed-head", tmp_path, base_url=url, timeout=5)
    assert caught.value.url == url + "In/GE/01.dcm"


def test_unknown_study_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="ge-hispeed-head"):
        fetch_head_ct("siemens", tmp_path)
