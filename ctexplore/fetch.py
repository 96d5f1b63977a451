"""Download small public real head CTs, verified against sha256 hashes shipped in the package.

One entry point, `fetch_head_ct`, fetches a named study from the registry files
in ``ctexplore/registry/`` (one line per file: ``path sha256 bytes``), caches it
with pooch, and returns its folder. The studies (both from neurolabusc/dcm_qa_ct,
BSD-2-Clause, commit ``d03e30e``; see `HEAD_CT_STUDIES`):

``ge-hispeed-head``
    A patient's head CT on a GE HiSpeed Dual (data provided to dcm_qa_ct by
    Aliza Medical Imaging): 28 slices, gantry tilt 18.5 degrees, uneven slice
    spacing (4 mm at the skull base, 7 mm above), 14 MB.
``philips-head-phantom``
    A head phantom on a Philips Ingenuity (courtesy of Paul Morgan, Nottingham
    Medical School): two 2.5 mm series with the gantry tilted both ways (-18.5
    and +16.5 degrees), untilted 5 mm, 1 mm and 1 mm bone-kernel series, with
    localizers, DICOMDIR and DIRFILEs, 233 MB.

Every download is bounded: the body may not exceed the size the registry
names, the server must answer and keep sending within ``timeout`` seconds and
faster than ``min_speed``, the body is asked for and accepted only without a
Content-Encoding (a gzip body cannot expand on disk), and a redirect may not
leave the host asked. Given a ``part`` file, `BoundedDownloader` also resumes
an interrupted download (used by `ctexplore.fetch_cq500`).
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["BASE_URL_ENV", "HEAD_CT_STUDIES", "HeadCTStudy", "fetch_head_ct", "read_registry", "BoundedDownloader"]

BASE_URL_ENV = "CTEXPLORE_HEAD_CT_URL"
_DCM_QA_CT = "https://raw.githubusercontent.com/neurolabusc/dcm_qa_ct/d03e30e4c5c8ad07bf16422b96efc3e91e233dc5/"
_CHUNK = 64 * 1024
_MAX_REDIRECTS = 5
# A file of unknown size larger than this is not what anyone asked for.
DEFAULT_MAX_BYTES = 8 * 1024**3
# curl's --speed-limit: slower than this for `timeout` seconds is a stalled or trickling server.
DEFAULT_MIN_SPEED = 1024


@dataclass(frozen=True)
class HeadCTStudy:
    """A downloadable study: where it lives and which registry lines are its files."""

    name: str
    registry: str  # file in ctexplore/registry/
    prefix: str  # path prefix of its files in the registry
    base_url: str
    licence: str
    provenance: str


HEAD_CT_STUDIES = {
    study.name: study
    for study in (
        HeadCTStudy(
            "ge-hispeed-head",
            "dcm_qa_ct.txt",
            "In/GE/",
            _DCM_QA_CT,
            "BSD-2-Clause",
            "neurolabusc/dcm_qa_ct In/GE: patient head CT, GE HiSpeed Dual, from Aliza Medical Imaging",
        ),
        HeadCTStudy(
            "philips-head-phantom",
            "dcm_qa_ct.txt",
            "In/Philips/",
            _DCM_QA_CT,
            "BSD-2-Clause",
            "neurolabusc/dcm_qa_ct In/Philips: head phantom, Philips Ingenuity, from Paul Morgan",
        ),
    )
}


def read_registry(name: str) -> dict[str, tuple[str, int]]:
    """The files of a registry shipped in the package: path -> (sha256, bytes).

    Examples
    --------
    >>> files = read_registry("dcm_qa_ct.txt")
    >>> files["In/GE/01.dcm"]
    ('7c911fa70882b69d11d5e8fef5dc6ed46c5d57a1459f709c2777a4d0d5b05e31', 526228)
    """
    text = resources.files("ctexplore").joinpath("registry", name).read_text(encoding="utf-8")
    files = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            path, digest, size = line.split()
            files[path] = (digest, int(size))
    return files


class BoundedDownloader:
    """A pooch downloader that bounds a download's size, time and destination.

    Call it as pooch does, ``downloader(url, output_file, pooch)``; it writes
    the body to ``output_file`` or raises `~ctexplore.datasets.DownloadError`
    naming the URL and the true cause:

    - the announced Content-Length or the body itself exceeds ``expected_size``
      (when known) or ``max_bytes``: an endless body stops at the limit;
    - the server is silent for ``timeout`` seconds, sends slower than
      ``min_speed`` bytes/s over any ``timeout`` seconds, or the whole download
      outlasts ``total_timeout``;
    - the answer carries a Content-Encoding (``identity`` is asked for: a gzip
      body would be written compressed, or expand far beyond its size);
    - a redirect leads to another host or scheme;
    - the connection was cut before the announced length arrived;
    - no connection could be made (offline, or the server is unreachable).

    With ``part``, the body is written to that file and moved to
    ``output_file`` only once complete. If the download is interrupted, the
    part stays, and the next call asks only for the rest: an HTTP Range
    request guarded by If-Range with the strong validator (ETag, else
    Last-Modified) of the first answer, so a file that changed on the server
    is sent whole again (200) instead of being spliced onto the old bytes. A
    206 answer is accepted only if its Content-Range starts where the part ends
    and names the total length; otherwise the part is dropped and the file
    downloaded anew. The size bounds apply to the whole file, part included.

    Parameters
    ----------
    expected_size : int, optional
        The exact size the body must have (from a registry).
    max_bytes : int
        Largest body accepted when the size is not known.
    timeout : float
        Seconds to connect, to receive the headers, and of silence in the body.
    min_speed : float
        Bytes per second below which, averaged over ``timeout`` seconds, the
        download is abandoned.
    total_timeout : float, optional
        Seconds the whole download may take.
    mirror_hint : str
        Appended to connection errors: what the user can do instead.
    part : path-like, optional
        File kept between calls to resume an interrupted download (its
        validator is kept beside it, in ``<part>.validator``).
    progress : bool, default False
        Show a progress bar.

    Examples
    --------
    >>> downloader = BoundedDownloader(expected_size=526228, timeout=30)
    >>> downloader("https://example.org/01.dcm", "/tmp/01.dcm")  # doctest: +SKIP
    >>> resuming = BoundedDownloader(max_bytes=2**30, part="/tmp/big.zip.part")
    >>> resuming("https://example.org/big.zip", "/tmp/big.zip")  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        expected_size: int | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: float = 60.0,
        min_speed: float = DEFAULT_MIN_SPEED,
        total_timeout: float | None = None,
        mirror_hint: str = "",
        part: str | os.PathLike[str] | None = None,
        progress: bool = False,
    ) -> None:
        self.expected_size = expected_size
        self.max_bytes = max_bytes if expected_size is None else expected_size
        self.timeout = timeout
        self.min_speed = min_speed
        self.total_timeout = total_timeout
        self.mirror_hint = mirror_hint
        self.part = None if part is None else Path(part)
        self.progress = progress

    def __call__(self, url: str, output_file: str | os.PathLike[str], pooch: Any = None) -> None:
        from .datasets import DownloadError

        started = time.monotonic()
        if self.part is None:
            self._attempt(url, Path(output_file), started, resume=False)
            return
        self.part.parent.mkdir(parents=True, exist_ok=True)
        # The second attempt, without a Range, runs when the server's answer does not continue the part.
        if not self._attempt(url, self.part, started, resume=True):
            self._forget_part()
            if not self._attempt(url, self.part, started, resume=False):
                raise DownloadError(f"{url} answered a request for the whole file with a part of it; giving up.", url)
        os.replace(self.part, output_file)
        self._validator_file().unlink(missing_ok=True)

    def _attempt(self, url: str, target: Path, started: float, *, resume: bool) -> bool:
        """One request written into ``target``; False where the answer does not continue the part."""
        from .datasets import DownloadError

        offset, headers = 0, {}
        validator = self._read_validator() if resume else None
        size = target.stat().st_size if resume and target.is_file() else 0
        if validator and 0 < size <= self.max_bytes:
            offset = size
            # If the file changed since the part was received, If-Range makes the server send it whole.
            headers = {"Range": f"bytes={offset}-", "If-Range": validator}
        watchdog = _Watchdog()
        try:
            response = self._open(url, watchdog, headers)
            try:
                start = self._check_headers(response, url, offset)
                if start is None or start < 0:
                    return start is None  # None: 416, the part is already whole
                deadline = None if self.total_timeout is None else started + self.total_timeout
                watchdog.watch(watchdog.sock, deadline, f"the download took longer than {self.total_timeout} s")
                with watchdog.running():
                    self._receive(response, url, target, start, started, watchdog)
            finally:
                response.close()
        except DownloadError:
            raise
        except (OSError, http.client.HTTPException) as error:
            raise self._connection_error(url, error, watchdog) from None
        return True

    # -- the part file ---------------------------------------------------------------------------

    def _validator_file(self) -> Path:
        assert self.part is not None
        return self.part.with_name(self.part.name + ".validator")

    def _read_validator(self) -> str | None:
        try:
            return self._validator_file().read_text(encoding="utf-8").strip() or None
        except OSError:  # no validator kept: the part cannot be resumed safely
            return None

    def _keep_validator(self, response: http.client.HTTPResponse) -> None:
        if self.part is None:
            return
        etag = response.getheader("ETag")
        validator = etag if etag and not etag.startswith("W/") else response.getheader("Last-Modified")
        if validator:
            self._validator_file().write_text(validator, encoding="utf-8")
        else:
            self._validator_file().unlink(missing_ok=True)

    def _forget_part(self) -> None:
        if self.part is not None:
            self.part.unlink(missing_ok=True)
            self._validator_file().unlink(missing_ok=True)

    def _resumable(self) -> str:
        """The part kept for next time, if any (said after errors whose message has its own advice)."""
        kept = self._kept()
        return "" if kept.startswith(" Nothing") else kept

    def _kept(self) -> str:
        """What happens to the bytes received: resumed next time (with a part) or nothing kept."""
        if self.part is not None and self.part.is_file() and self.part.stat().st_size:
            return f" The {self.part.stat().st_size} bytes received are kept in {self.part}: calling again resumes it."
        return " Nothing was kept. Try again."

    # -- request -------------------------------------------------------------------------------

    def _open(self, url: str, watchdog: _Watchdog, extra_headers: Mapping[str, str]) -> http.client.HTTPResponse:
        from .datasets import DownloadError

        first = urllib.parse.urlsplit(url)
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(current)
            if parts.scheme not in ("http", "https"):
                raise DownloadError(f"{current}: only http and https addresses can be downloaded", current)
            connection, path = _connection(parts, self.timeout)
            connection.connect()
            # headers must arrive within `timeout`, however slowly they trickle
            watchdog.watch(
                connection.sock,
                time.monotonic() + self.timeout,
                f"the server did not send its answer's headers within {self.timeout:.0f} s",
            )
            with watchdog.running():
                connection.request(
                    "GET",
                    path,
                    headers={
                        "Accept-Encoding": "identity",
                        "User-Agent": "ctexplore",
                        "Connection": "close",
                        **extra_headers,
                    },
                )
                response = connection.getresponse()
            if response.status not in (301, 302, 303, 307, 308):
                return response
            target = urllib.parse.urljoin(current, response.getheader("Location", ""))
            response.close()
            moved = urllib.parse.urlsplit(target)
            if (moved.scheme, moved.hostname, moved.port) != (first.scheme, first.hostname, first.port):
                raise DownloadError(
                    f"{url} redirects to another host, {target}; not following it (a download stays on the "
                    f"server asked). If that server is trusted, pass its address as the base URL.{self.mirror_hint}",
                    url,
                )
            current = target
        raise DownloadError(f"{url} redirected more than {_MAX_REDIRECTS} times; giving up.", url)

    def _check_headers(self, response: http.client.HTTPResponse, url: str, offset: int) -> int | None:
        """Where the body starts in the file (0, or ``offset`` for a 206); None for a 416 saying the part is
        whole, -1 where the answer does not continue the part."""
        from .datasets import DownloadError

        if offset and response.status == 416:
            total = re.fullmatch(r"bytes \*/(\d+)", (response.getheader("Content-Range") or "").strip())
            return None if total is not None and int(total.group(1)) == offset else -1
        start = 0
        if offset and response.status == 206:
            content_range = (response.getheader("Content-Range") or "").strip()
            parts = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", content_range)
            if parts is None or int(parts.group(1)) != offset or int(parts.group(2)) + 1 != int(parts.group(3)):
                return -1  # not the rest of the file: start over
            start = offset
        elif response.status != 200:
            hint = " (no such file on the server)" if response.status == 404 else ""
            status = f"HTTP {response.status} {response.reason}"
            raise DownloadError(f"{url} answered {status}{hint}.{self.mirror_hint}", url)
        encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
        if encoding != "identity":
            raise DownloadError(
                f"{url} sent its body with Content-Encoding {encoding!r} although identity was asked for; "
                "refusing it (the bytes on disk would not be the file, and a compressed body can expand "
                f"without bound). Use a server or mirror that serves the file as it is.{self.mirror_hint}",
                url,
            )
        length = response.getheader("Content-Length")
        if length is not None and length.strip().isdigit():
            announced = start + int(length)
            if self.expected_size is not None and announced != self.expected_size:
                raise DownloadError(
                    f"{url} announces {announced} bytes but the registry says the file has {self.expected_size}: "
                    "the server holds another file; not downloading it.",
                    url,
                )
            if announced > self.max_bytes:
                raise DownloadError(
                    f"{url} announces {announced} bytes, more than the limit of {self.max_bytes}; not downloading "
                    "it. Raise max_bytes if the file is really that large.",
                    url,
                )
        if start == 0:
            self._keep_validator(response)
        return start

    # -- body ------------------------------------------------------------------------------------

    def _receive(
        self,
        response: http.client.HTTPResponse,
        url: str,
        output: Path,
        start: int,
        started: float,
        watchdog: _Watchdog,
    ) -> None:
        from .datasets import DownloadError

        length = response.getheader("Content-Length")
        announced = start + int(length) if length is not None and length.strip().isdigit() else None
        received = start
        window_start, window_bytes = time.monotonic(), 0
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=announced, initial=start, unit="B", unit_scale=True, desc=output.name.removesuffix(".part")
            )
        with (
            # unbuffered: a full disk fails the write that hit it, not a later flush
            open(output, "r+b" if start else "wb", buffering=0) as out,
            contextlib.closing(bar) if bar is not None else contextlib.nullcontext(),
        ):
            out.seek(start)
            out.truncate()
            while True:
                chunk = response.read1(_CHUNK)
                if not chunk:
                    break
                received += len(chunk)
                if received > self.max_bytes:
                    out.close()
                    self._forget_part()
                    limit = "the registry's size" if self.expected_size is not None else "the limit"
                    raise DownloadError(
                        f"{url} sent more than {self.max_bytes} bytes ({limit}); stopped there and kept nothing.",
                        url,
                    )
                try:
                    _write_all(out, chunk)
                except OSError as error:
                    raise self._write_error(url, output, out.tell(), announced, error) from None
                if bar is not None:
                    bar.update(len(chunk))
                now = time.monotonic()
                window_bytes += len(chunk)
                if now - window_start >= self.timeout:
                    if window_bytes / (now - window_start) < self.min_speed:
                        raise DownloadError(
                            f"{url} is too slow: {window_bytes} bytes in the last {now - window_start:.0f} s, "
                            f"below {self.min_speed:.0f} bytes/s; gave up after {received} bytes. "
                            f"Try again later or use a faster mirror.{self._resumable()}{self.mirror_hint}",
                            url,
                        )
                    window_start, window_bytes = now, 0
                if self.total_timeout is not None and now - started > self.total_timeout:
                    raise DownloadError(
                        f"{url} took longer than {self.total_timeout:.0f} s (received {received} bytes); gave up."
                        f"{self._resumable()}",
                        url,
                    )
        if watchdog.fired:
            raise DownloadError(
                f"Could not download {url}: {watchdog.reason}; gave up.{self._resumable()}{self.mirror_hint}", url
            )
        expected = announced if announced is not None else self.expected_size
        if expected is not None and received != expected:
            raise DownloadError(
                f"the connection to {url} was cut after {received} of {expected} bytes.{self._kept()}",
                url,
            )

    def _write_error(self, url: str, output: Path, written: int, announced: int | None, error: OSError) -> Exception:
        """A local write failed: name the disk's cause, not the network's."""
        from .datasets import DownloadError

        causes = {
            errno.ENOSPC: "the disk is full",
            errno.EFBIG: "this process's file-size limit (ulimit -f) was reached",
            getattr(errno, "EDQUOT", -1): "the disk quota is used up",
        }
        cause = causes.get(error.errno or 0, f"{type(error).__name__}: {error}")
        if announced is None:
            self._forget_part()
            return DownloadError(
                f"Could not write {output} after {written} bytes of {url}: {cause}. The server announced no length "
                f"(an endless body?), so what arrived was deleted; max_bytes ({self.max_bytes}) bounds such a "
                "download: lower it, or make room if the file is known to be that large.",
                url,
            )
        return DownloadError(
            f"Could not write {output} after {written} of {announced} bytes of {url}: {cause}. Make room for the "
            f"whole file.{self._resumable()}",
            url,
        )

    def _connection_error(self, url: str, error: BaseException, watchdog: _Watchdog) -> Exception:
        from .datasets import DownloadError

        if watchdog.fired:
            return DownloadError(
                f"Could not download {url}: {watchdog.reason}; gave up.{self._resumable()}{self.mirror_hint}", url
            )
        if isinstance(error, (socket.timeout, TimeoutError)):
            return DownloadError(
                f"Could not download {url}: the server sent nothing for {self.timeout:.0f} s (timeout); "
                f"try again later or raise timeout.{self._resumable()}{self.mirror_hint}",
                url,
            )
        if isinstance(error, (ConnectionResetError, BrokenPipeError, http.client.IncompleteRead)) or (
            isinstance(error, http.client.RemoteDisconnected)
        ):
            return DownloadError(
                f"the connection to {url} was cut ({type(error).__name__}: {error}).{self._kept()}",
                url,
            )
        if isinstance(error, (ssl.SSLError, http.client.HTTPException)):
            return DownloadError(
                f"Could not download {url}: the server's answer is not valid HTTP(S) ({type(error).__name__}: "
                f"{error}).{self.mirror_hint}",
                url,
            )
        return DownloadError(
            f"Could not connect to {url}: {type(error).__name__}: {error}. This machine seems offline, or the "
            f"server is unreachable.{self._resumable()}{self.mirror_hint}",
            url,
        )


def _write_all(out: Any, data: bytes) -> None:
    """Write all of ``data`` to an unbuffered file, whose writes may be partial."""
    view = memoryview(data)
    while view:
        view = view[out.write(view) :]


def _connection(parts: urllib.parse.SplitResult, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    """A connection for ``parts`` (through the proxy of ``$https_proxy``/``$http_proxy`` where set) and the
    request target."""
    import urllib.request

    host, port = parts.hostname or "", parts.port
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        via = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parts.scheme == "https":
            tunnel = http.client.HTTPSConnection(
                via.hostname or "", via.port or 80, timeout=timeout, context=ssl.create_default_context()
            )
            tunnel.set_tunnel(host, port)
            return tunnel, target
        return http.client.HTTPConnection(via.hostname or "", via.port or 80, timeout=timeout), parts.geturl()
    if parts.scheme == "https":
        context = ssl.create_default_context()
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=context), target
    return http.client.HTTPConnection(host, port, timeout=timeout), target


class _Watchdog:
    """Shuts a socket down when a deadline passes: bounds reads that trickle one byte at a time."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.deadline: float | None = None
        self.reason = ""
        self.fired = False
        self._stop = threading.Event()

    def watch(self, sock: socket.socket | None, deadline: float | None, reason: str) -> None:
        self.sock, self.deadline, self.reason = sock, deadline, reason

    def running(self) -> _WatchdogRun:
        return _WatchdogRun(self)

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            if self.deadline is not None and time.monotonic() > self.deadline and self.sock is not None:
                self.fired = True
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:  # already closed by the other side
                    pass
                return


class _WatchdogRun:
    def __init__(self, watchdog: _Watchdog) -> None:
        self.watchdog = watchdog
        self.thread = threading.Thread(target=watchdog._loop, daemon=True)

    def __enter__(self) -> None:
        self.watchdog._stop.clear()
        self.thread.start()

    def __exit__(self, *exc: object) -> None:
        self.watchdog._stop.set()
        self.thread.join()


def _check_cache_paths(root: Path, files: Mapping[str, Any]) -> None:
    """Refuse, with a clear message, a file or folder in the way of the cache."""
    for parent in [root, *root.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(
                    f"cannot cache the study in {root}: {parent} is a file, not a folder. "
                    "Move that file away or pass another dest."
                )
            break
    for path in files:
        target = root / path
        for parent in list(target.parents)[: len(Path(path).parts) - 1]:
            if parent.exists() and not parent.is_dir():
                raise NotADirectoryError(
                    f"cannot write {target}: {parent} is a file where the cache needs a folder. "
                    "Move it away or pass another dest."
                )
        if target.is_dir():
            raise IsADirectoryError(
                f"cannot write {target}: a folder of that name is in the way. Move it away or pass another dest."
            )


def fetch_head_ct(
    name: str,
    dest: str | os.PathLike[str] | None = None,
    *,
    base_url: str | None = None,
    progress: bool = False,
    timeout: float = 60.0,
    min_speed: float = DEFAULT_MIN_SPEED,
    total_timeout: float | None = None,
) -> Path:
    """Download (once) a real head CT study named in `HEAD_CT_STUDIES`; return its folder.

    Every file is checked against the sha256 and size in the registry; files
    already in the cache with the right hash are not downloaded again. A body
    larger than the registry says, a server slower than ``min_speed``, a gzip
    Content-Encoding and a redirect to another host are refused (see
    `BoundedDownloader`); nothing incomplete is kept under a file's name.

    Parameters
    ----------
    name : str
        ``"ge-hispeed-head"`` or ``"philips-head-phantom"``.
    dest : path-like, optional
        Cache folder. Default: ``default_cache_dir() / "head-ct"``.
    base_url : str, optional
        Where the files are (a mirror, or a local server in tests). Default:
        ``$CTEXPLORE_HEAD_CT_URL``, else the study's pinned GitHub address.
    progress : bool, default False
        Print each file as it is downloaded.
    timeout : float, default 60
        Seconds to wait for the server to connect, answer or send more data.
    min_speed : float, default 1024
        Bytes per second below which (over ``timeout`` seconds) a download is abandoned.
    total_timeout : float, optional
        Seconds one file may take at most.

    Returns
    -------
    pathlib.Path
        The folder holding the study's files, e.g. ``<dest>/ge-hispeed-head/In/GE``.

    Raises
    ------
    DownloadError
        Offline, the server failed, was too slow, cut the connection, sent too
        much, an encoded body or an off-host redirect; the message names the
        URL, the cause and what to do.
    ChecksumError
        A file arrived but its hash differs from the registry's; nothing is kept.
    NotADirectoryError, IsADirectoryError
        A file or folder of the user's is where the cache must write.

    Examples
    --------
    >>> folder = fetch_head_ct("ge-hispeed-head")  # doctest: +SKIP
    >>> len(list(folder.glob("*.dcm")))  # doctest: +SKIP
    28
    """
    import pooch

    from .datasets import ChecksumError, default_cache_dir

    if name not in HEAD_CT_STUDIES:
        raise ValueError(f"unknown study {name!r}; choose one of {sorted(HEAD_CT_STUDIES)}")
    study = HEAD_CT_STUDIES[name]
    files = {path: entry for path, entry in read_registry(study.registry).items() if path.startswith(study.prefix)}
    root = (Path(dest) if dest is not None else default_cache_dir() / "head-ct") / name
    _check_cache_paths(root, files)
    base = (base_url or os.environ.get(BASE_URL_ENV) or study.base_url).rstrip("/") + "/"
    fetcher = pooch.create(path=root, base_url=base, registry={p: f"sha256:{d}" for p, (d, _) in files.items()})
    hint = f" Or copy the study into {root} (files are verified by hash), or set ${BASE_URL_ENV} to a mirror."
    for path, (_, size) in files.items():
        downloader = BoundedDownloader(
            expected_size=size, timeout=timeout, min_speed=min_speed, total_timeout=total_timeout, mirror_hint=hint
        )
        if progress and not (root / path).is_file():
            print(f"downloading {base}{path} ({size} bytes)")
        try:
            fetcher.fetch(path, downloader=downloader)
        except ValueError as error:
            if "hash" not in str(error).lower():
                raise
            raise ChecksumError(
                f"{base}{path} does not match its sha256 in ctexplore/registry/{study.registry}: "
                "the download was corrupted or the server holds another file; nothing was kept. Try again "
                "or point base_url at a trusted copy."
            ) from None
    return root / study.prefix.rstrip("/")
