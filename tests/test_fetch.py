"""Tests for ctexplore.fetch: real downloads from a local HTTP server serving the real GE head CT."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import socket
import struct
import threading
import time
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ctexplore.datasets import ChecksumError, DownloadError
from ctexplore.fetch import HEAD_CT_STUDIES, BoundedDownloader, fetch_head_ct, read_registry

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


# --------------------------------------------------------------------------------------------
# hostile servers: each answers the first file of the GE study (526228 bytes in the registry)
# --------------------------------------------------------------------------------------------

FIRST_FILE = "In/GE/01.dcm"
FIRST_SIZE = read_registry("dcm_qa_ct.txt")[FIRST_FILE][1]


class _HostileHandler(BaseHTTPRequestHandler):
    """Misbehaves as ``server.mode`` says; counts the body bytes it managed to send."""

    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def _send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()
        self.server.sent += len(data)

    def do_GET(self):
        self.server.paths.append(self.path)
        self.server.headers.append(dict(self.headers))
        mode = self.server.mode
        zeros = bytes(64 * 1024)
        try:
            if mode in ("resumable", "wrong-range"):
                self._serve_ranges(mode)
                return
            if mode == "trickle-headers":
                for byte in b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\n":
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.5)
                return
            if mode == "redirect":
                self.send_response(302)
                self.send_header("Location", self.server.location)
                self.end_headers()
                return
            self.send_response(200)
            if mode == "huge-length":
                self.send_header("Content-Length", str(10**12))
            elif mode in ("cut", "trickle", "reset"):
                self.send_header("Content-Length", str(FIRST_SIZE))
            elif mode == "gzip":
                body = gzip.compress(bytes(FIRST_SIZE * 4))
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if mode in ("endless", "huge-length"):
                while self.server.sent < 64 * FIRST_SIZE:  # far beyond any limit, yet finite
                    self._send(zeros)
            elif mode == "gzip":
                self._send(body)
            elif mode == "cut":
                self._send(zeros[:1000])
            elif mode == "reset":
                self._send(zeros[:1000])
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif mode == "trickle":
                for _ in range(60):
                    self._send(b"\0")
                    time.sleep(0.5)
        except (BrokenPipeError, ConnectionResetError):  # the client hung up: what a bounded client does
            pass

    def _serve_ranges(self, mode: str) -> None:
        """``server.payload`` with an ETag, Range and If-Range; the first answer is cut after ``server.cut_after``
        bytes. In ``wrong-range`` mode a Range request gets a 206 that starts at 0 whatever was asked."""
        data = self.server.payload
        etag = f'"{hashlib.md5(data).hexdigest()}"'
        asked = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        start, status = 0, 200
        if asked and self.headers.get("If-Range") == etag:
            start, status = (0 if mode == "wrong-range" else int(asked.group(1))), 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if self.server.cut_after is not None:
            body, self.server.cut_after = body[: self.server.cut_after], None
        self._send(body)


@pytest.fixture
def hostile():
    """A factory of local servers misbehaving in one way each."""
    started = []

    def start(mode: str, location: str = ""):
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _HostileHandler)
        httpd.daemon_threads = True
        httpd.mode, httpd.location, httpd.sent, httpd.paths, httpd.headers = mode, location, 0, [], []
        httpd.payload, httpd.cut_after = bytes(range(256)) * 4000, None
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        started.append(httpd)
        return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"

    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


def _cached_first_file(dest: Path) -> Path:
    return dest / "ge-hispeed-head" / FIRST_FILE


class TestHostileServers:
    def test_an_endless_body_stops_at_the_registry_size(self, hostile, tmp_path):
        httpd, url = hostile("endless")
        with pytest.raises(DownloadError, match=f"more than {FIRST_SIZE} bytes") as caught:
            fetch_head_ct("ge-hispeed-head", tmp_path, base_url=url, timeout=5)
        assert "resume" not in str(caught.value)
        assert not _cached_first_file(tmp_path).exists()
        assert list(_cached_first_file(tmp_path).parent.iterdir()) == []  # pooch's temporary is gone too

    def test_a_huge_content_length_is_refused_before_the_body(self, hostile, tmp_path):
        httpd, url = hostile("huge-length")
        with pytest.raises(DownloadError, match=f"announces {10**12} bytes but the registry says"):
            fetch_head_ct("ge-hispeed-head", tmp_path, base_url=url, timeout=5)
        assert not _cached_first_file(tmp_path).exists()

    def test_a_huge_content_length_is_refused_without_a_registry_size(self, hostile, tmp_path):
        httpd, url = hostile("huge-length")
        with pytest.raises(DownloadError, match="more than the limit of 1000000"):
            BoundedDownloader(max_bytes=10**6, timeout=5)(url + "x.zip", tmp_path / "x.zip")

    def test_an_endless_body_without_a_known_size_stops_at_max_bytes(self, hostile, tmp_path):
        httpd, url = hostile("endless")
        with pytest.raises(DownloadError, match="more than 1000000 bytes"):
            BoundedDownloader(max_bytes=10**6, timeout=5)(url + "x.zip", tmp_path / "x.zip")
        assert (tmp_path / "x.zip").stat().st_size <= 10**6

    def test_a_trickling_body_times_out_with_a_clear_message(self, hostile, tmp_path):
        httpd, url = hostile("trickle")
        with pytest.raises(DownloadError, match="too slow: .* below 1024 bytes/s"):
            fetch_head_ct("ge-hispeed-head", tmp_path, base_url=url, timeout=1.5)
        assert httpd.sent < 20  # gave up after a few seconds, not after the whole file

    def test_trickling_headers_time_out(self, hostile, tmp_path):
        httpd, url = hostile("trickle-headers")
        with pytest.raises(DownloadError, match="did not send its answer's headers within 1 s"):
            fetch_head_ct("ge-hispeed-head", tmp_path, base_url=url, timeout=1)

    def test_a_total_time_limit_ends_a_download(self, hostile, tmp_path):
        httpd, url = hostile("trickle")
        with pytest.raises(DownloadError, match="longer than 2 s"):
            fetch_head_ct("ge-hispeed-head", tmp_path, base_url=url, timeout=30, min_speed=0, total_timeout=2)

    def test_gzip_content_encoding_is_refused_and_nothing_expands(self, hostile, tmp_path):
        httpd, url = hostile("gzip")
        with pytest.raises(DownloadError, match="Content-Encoding 'gzip'") as caught:
            fetch_head_ct("ge-hispeed-head", tmp_path, base_url=url, timeout=5)
        assert "resume" not in str(caught.value)
        assert not _cached_first_file(tmp_path).exists()

    def test_identity_encoding_is_asked_for(self, server_headers, tmp_path):
        fetch_url, headers = server_headers
        with pytest.raises(DownloadError):
            fetch_head_ct("ge-hispeed-head", tmp_path, base_url=fetch_url, timeout=5)
        assert headers[0].get("Accept-Encoding") == "identity"

    def test_a_redirect_to_another_host_is_not_followed(self, hostile, tmp_path):
        other, other_url = hostile("endless")
        elsewhere = other_url.replace("127.0.0.1", "localhost") + FIRST_FILE
        _, url = hostile("redirect", location=elsewhere)
        with pytest.raises(DownloadError, match="redirects to another host") as caught:
            fetch_head_ct("ge-hispeed-head", tmp_path, base_url=url, timeout=5)
        assert elsewhere in str(caught.value)
        assert other.paths == []

    def test_a_cut_connection_is_called_a_cut_connection(self, hostile, tmp_path):
        _, url = hostile("cut")
        with pytest.raises(DownloadError, match=f"was cut after 1000 of {FIRST_SIZE} bytes") as caught:
            fetch_head_ct("ge-hispeed-head", tmp_path, base_url=url, timeout=5)
        assert "offline" not in str(caught.value)
        assert not _cached_first_file(tmp_path).exists()

    def test_a_reset_connection_is_called_a_cut_connection(self, hostile, tmp_path):
        _, url = hostile("reset")
        with pytest.raises(DownloadError, match="was cut") as caught:
            fetch_head_ct("ge-hispeed-head", tmp_path, base_url=url, timeout=5)
        assert "offline" not in str(caught.value)


@pytest.fixture
def server_headers():
    """A server answering 404 that records the request headers it got."""
    headers: list[dict[str, str]] = []

    class Recorder(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            headers.append({**self.headers, "path": self.path})
            self.send_error(404)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", headers
    httpd.shutdown()
    httpd.server_close()


class TestCacheNameClashes:
    def test_a_file_where_the_study_folder_goes(self, tmp_path):
        (tmp_path / "ge-hispeed-head").write_text("mine")
        with pytest.raises(NotADirectoryError, match="ge-hispeed-head is a file"):
            fetch_head_ct("ge-hispeed-head", tmp_path, base_url="http://127.0.0.1:9/")
        assert (tmp_path / "ge-hispeed-head").read_text() == "mine"

    def test_a_file_where_a_subfolder_goes(self, tmp_path):
        (tmp_path / "ge-hispeed-head" / "In").mkdir(parents=True)
        (tmp_path / "ge-hispeed-head" / "In" / "GE").write_text("mine")
        with pytest.raises(NotADirectoryError, match="GE is a file where the cache needs a folder"):
            fetch_head_ct("ge-hispeed-head", tmp_path, base_url="http://127.0.0.1:9/")

    def test_a_folder_where_a_file_goes(self, tmp_path):
        _cached_first_file(tmp_path).mkdir(parents=True)
        with pytest.raises(IsADirectoryError, match="01.dcm: a folder of that name is in the way"):
            fetch_head_ct("ge-hispeed-head", tmp_path, base_url="http://127.0.0.1:9/")

    def test_dest_below_a_file(self, tmp_path):
        (tmp_path / "cache").write_text("mine")
        with pytest.raises(NotADirectoryError, match="cache is a file, not a folder"):
            fetch_head_ct("ge-hispeed-head", tmp_path / "cache", base_url="http://127.0.0.1:9/")


def test_a_configured_http_proxy_is_used(server_headers, monkeypatch, tmp_path):
    proxy_url, headers = server_headers  # answers 404 to whatever it is asked
    monkeypatch.setenv("http_proxy", proxy_url)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(DownloadError, match="404"):
        fetch_head_ct("ge-hispeed-head", tmp_path, base_url="http://ct.example.invalid/data/", timeout=5)
    assert headers[0]["path"] == "http://ct.example.invalid/data/In/GE/01.dcm"


# --------------------------------------------------------------------------------------------
# resuming a download into a part file (what fetch_cq500 does)
# --------------------------------------------------------------------------------------------


class TestResume:
    def test_a_cut_download_resumes_where_it_stopped_and_gives_the_right_bytes(self, hostile, tmp_path):
        httpd, url = hostile("resumable")
        httpd.cut_after = 300_000
        part, output = tmp_path / "big.zip.part", tmp_path / "big.zip"
        with pytest.raises(DownloadError, match=f"was cut after 300000 of {len(httpd.payload)} bytes") as caught:
            BoundedDownloader(max_bytes=10**7, timeout=5, part=part)(url + "big.zip", output)
        assert "offline" not in str(caught.value)
        assert f"kept in {part}: calling again resumes it" in str(caught.value)
        assert part.read_bytes() == httpd.payload[:300_000] and not output.exists()

        BoundedDownloader(max_bytes=10**7, timeout=5, part=part)(url + "big.zip", output)

        assert httpd.headers[-1]["Range"] == "bytes=300000-"
        assert httpd.headers[-1]["If-Range"] == f'"{hashlib.md5(httpd.payload).hexdigest()}"'
        assert httpd.sent == len(httpd.payload)  # the first 300000 bytes were not sent again
        assert output.read_bytes() == httpd.payload
        assert sorted(p.name for p in tmp_path.iterdir()) == ["big.zip"]  # part and validator are gone

    def test_a_file_changed_on_the_server_is_downloaded_whole_again(self, hostile, tmp_path):
        httpd, url = hostile("resumable")
        httpd.cut_after = 300_000
        part, output = tmp_path / "big.zip.part", tmp_path / "big.zip"
        with pytest.raises(DownloadError, match="was cut"):
            BoundedDownloader(max_bytes=10**7, timeout=5, part=part)(url + "big.zip", output)
        httpd.payload = bytes(reversed(httpd.payload))[:700_000]  # another file: another ETag

        BoundedDownloader(max_bytes=10**7, timeout=5, part=part)(url + "big.zip", output)

        assert httpd.headers[-1]["Range"] == "bytes=300000-"  # it asked for the rest ...
        assert output.read_bytes() == httpd.payload  # ... and got the new file whole, not spliced

    def test_a_206_that_does_not_continue_the_part_starts_over(self, hostile, tmp_path):
        httpd, url = hostile("wrong-range")
        httpd.cut_after = 1000
        part, output = tmp_path / "big.zip.part", tmp_path / "big.zip"
        with pytest.raises(DownloadError, match="was cut after 1000"):
            BoundedDownloader(max_bytes=10**7, timeout=5, part=part)(url + "big.zip", output)

        BoundedDownloader(max_bytes=10**7, timeout=5, part=part)(url + "big.zip", output)

        assert [h.get("Range") for h in httpd.headers] == [None, "bytes=1000-", None]
        assert output.read_bytes() == httpd.payload

    def test_the_part_counts_towards_max_bytes(self, hostile, tmp_path):
        httpd, url = hostile("resumable")
        httpd.cut_after = 600_000
        part, output = tmp_path / "big.zip.part", tmp_path / "big.zip"
        with pytest.raises(DownloadError, match="was cut"):
            BoundedDownloader(max_bytes=10**7, timeout=5, part=part)(url + "big.zip", output)
        with pytest.raises(DownloadError, match=f"announces {len(httpd.payload)} bytes, more than the limit of 900000"):
            BoundedDownloader(max_bytes=900_000, timeout=5, part=part)(url + "big.zip", output)
        assert httpd.headers[-1]["Range"] == "bytes=600000-"  # the rest alone (424000 bytes) is within the limit

    def test_an_endless_body_stops_at_max_bytes_and_keeps_no_part(self, hostile, tmp_path):
        httpd, url = hostile("endless")
        part = tmp_path / "x.zip.part"
        with pytest.raises(DownloadError, match="more than 1000000 bytes") as caught:
            BoundedDownloader(max_bytes=10**6, timeout=5, part=part)(url + "x.zip", tmp_path / "x.zip")
        assert "resume" not in str(caught.value)
        assert list(tmp_path.iterdir()) == []


class TestFetchCq500AgainstHostileServers:
    """fetch_cq500 downloads with BoundedDownloader: each attack is refused with its true cause."""

    def fetch(self, url: str, dest: Path, **kwargs):
        from ctexplore.datasets import fetch_cq500

        return fetch_cq500([1], dest, base_url=url, progress=False, **{"timeout": 5, **kwargs})

    def test_a_cut_connection_says_cut_and_resume(self, hostile, tmp_path):
        _, url = hostile("cut")
        with pytest.raises(DownloadError, match=f"was cut after 1000 of {FIRST_SIZE} bytes") as caught:
            self.fetch(url, tmp_path)
        assert "offline" not in str(caught.value) and "calling again resumes it" in str(caught.value)
        assert not (tmp_path / "CQ500-CT-1").exists()

    def test_a_reset_connection_says_cut(self, hostile, tmp_path):
        _, url = hostile("reset")
        with pytest.raises(DownloadError, match="was cut") as caught:
            self.fetch(url, tmp_path)
        assert "offline" not in str(caught.value)

    def test_an_endless_body_stops_at_max_bytes(self, hostile, tmp_path):
        httpd, url = hostile("endless")
        with pytest.raises(DownloadError, match="more than 1000000 bytes") as caught:
            self.fetch(url, tmp_path, max_bytes=10**6)
        assert "resume" not in str(caught.value)
        assert httpd.sent < 64 * FIRST_SIZE and list(tmp_path.rglob("*")) == []

    def test_a_huge_content_length_is_refused_before_the_body(self, hostile, tmp_path):
        _, url = hostile("huge-length")
        with pytest.raises(DownloadError, match=f"announces {10**12} bytes, more than the limit of {20 * 1024**3}"):
            self.fetch(url, tmp_path)
        assert list(tmp_path.rglob("*")) == []

    def test_a_redirect_to_another_host_is_not_followed(self, hostile, tmp_path):
        other, other_url = hostile("endless")
        _, url = hostile("redirect", location=other_url.replace("127.0.0.1", "localhost") + "CQ500-CT-1.zip")
        with pytest.raises(DownloadError, match="redirects to another host"):
            self.fetch(url, tmp_path)
        assert other.paths == []

    def test_a_trickle_times_out(self, hostile, tmp_path):
        httpd, url = hostile("trickle")
        with pytest.raises(DownloadError, match="too slow: .* below 1024 bytes/s"):
            self.fetch(url, tmp_path, timeout=1.5)
        assert httpd.sent < 20


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs resource limits on a child process")
@pytest.mark.parametrize("mode", ["endless", "cut-large"])
def test_a_full_disk_is_named_not_called_offline(hostile, tmp_path, mode):
    """A child whose file-size limit (ulimit -f) is 1 MB downloads more than that into a part."""
    import subprocess
    import sys

    httpd, url = hostile("endless" if mode == "endless" else "resumable")
    httpd.payload = bytes(3 * 10**6)
    part = tmp_path / "x.zip.part"
    script = (
        "import resource, signal, sys\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (10**6, 10**6))\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "from ctexplore.fetch import BoundedDownloader\n"
        "from ctexplore.datasets import DownloadError\n"
        "url, part, output = sys.argv[1:]\n"
        "try:\n"
        "    BoundedDownloader(max_bytes=10**8, timeout=5, part=part)(url, output)\n"
        "except DownloadError as error:\n"
        "    print(error)\n"
    )
    repo = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", script, url + "x.zip", str(part), str(tmp_path / "x.zip")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": repo},
    )
    message = done.stdout
    assert "file-size limit (ulimit -f) was reached" in message and "offline" not in message
    if mode == "endless":
        assert "announced no length" in message and "resume" not in message
        assert not part.exists()
    else:
        assert f"after 1000000 of {3 * 10**6} bytes" in message and "calling again resumes it" in message
        assert part.stat().st_size == 10**6
