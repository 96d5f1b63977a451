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
    Medical School): series tilted both ways at 1 mm and 5 mm, with localizers,
    DICOMDIR and DIRFILEs, 233 MB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["BASE_URL_ENV", "HEAD_CT_STUDIES", "HeadCTStudy", "fetch_head_ct", "read_registry"]

BASE_URL_ENV = "CTEXPLORE_HEAD_CT_URL"
_DCM_QA_CT = "https://raw.githubusercontent.com/neurolabusc/dcm_qa_ct/d03e30e4c5c8ad07bf16422b96efc3e91e233dc5/"


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


def fetch_head_ct(
    name: str,
    dest: str | os.PathLike[str] | None = None,
    *,
    base_url: str | None = None,
    progress: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Download (once) a real head CT study named in `HEAD_CT_STUDIES`; return its folder.

    Every file is checked against the sha256 in the registry; files already in
    the cache with the right hash are not downloaded again.

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
    timeout : float, default 60
        Seconds to wait for the server.

    Returns
    -------
    pathlib.Path
        The folder holding the study's files, e.g. ``<dest>/ge-hispeed-head/In/GE``.

    Raises
    ------
    DownloadError
        Offline or the server failed; the message names the URL and what to do.
    ChecksumError
        A file arrived but its hash differs from the registry's; nothing is kept.

    Examples
    --------
    >>> folder = fetch_head_ct("ge-hispeed-head")  # doctest: +SKIP
    >>> len(list(folder.glob("*.dcm")))  # doctest: +SKIP
    28
    """
    import pooch

    from .datasets import ChecksumError, DownloadError, default_cache_dir

    if name not in HEAD_CT_STUDIES:
        raise ValueError(f"unknown study {name!r}; choose one of {sorted(HEAD_CT_STUDIES)}")
    study = HEAD_CT_STUDIES[name]
    files = {
        path: digest for path, (digest, _) in read_registry(study.registry).items() if path.startswith(study.prefix)
    }
    root = (Path(dest) if dest is not None else default_cache_dir() / "head-ct") / name
    base = (base_url or os.environ.get(BASE_URL_ENV) or study.base_url).rstrip("/") + "/"
    fetcher = pooch.create(path=root, base_url=base, registry={p: f"sha256:{d}" for p, d in files.items()})
    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=timeout)
    for path in files:
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
        except OSError as error:  # requests' connection and HTTP errors are OSErrors
            raise DownloadError(
                f"could not download {base}{path}: {error}. Are you offline? Connect, or copy the study "
                f"into {root} (files are verified by hash), or set ${BASE_URL_ENV} to a mirror.",
                f"{base}{path}",
            ) from error
    return root / study.prefix.rstrip("/")
