"""Data to learn on: a synthetic sample study written on demand, and the CQ500 download.

`sample_study` and `sample_dataset` write phantom head CTs (no real patient) with the
package's own DICOM writer, deterministically and cached. `fetch_cq500` downloads and
unpacks real head CTs of the CQ500 data set (qure.ai, CC BY-NC-SA 4.0) with a cache,
resumable downloads, checksum verification and a zip extraction that refuses entries
escaping the destination.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import stat
import sys
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ._atomic import atomic_folder

__all__ = [
    "sample_study",
    "sample_dataset",
    "DATASET_FINDINGS",
    "TRUTH_FOLDER",
    "fetch_cq500",
    "cq500_name",
    "cq500_url",
    "safe_extract_zip",
    "default_cache_dir",
    "DownloadError",
    "ChecksumError",
    "UnsafeArchiveError",
    "CQ500_BASE_URL",
    "CQ500_URL_ENV",
]

logger = logging.getLogger(__name__)

#: Where the CQ500 zips are published, one per patient (``<base>/CQ500-CT-<N>.zip``).
CQ500_BASE_URL = "https://s3.ap-south-1.amazonaws.com/qure.headct.study"
#: Environment variable that overrides `CQ500_BASE_URL` (a mirror, a local server).
CQ500_URL_ENV = "CTEXPLORE_CQ500_URL"
#: Environment variable that overrides the cache folder (default: the OS user cache).
CACHE_ENV = "CTEXPLORE_CACHE"

SAMPLE_PATIENT_ID = "PHANTOM-001"
STUDY_FOLDER = "Unknown Study"  # what CQ500 (and many anonymised exports) call the study folder
#: Folder beside ``Unknown Study`` holding a sample patient's ground truth (labels npz, lesion volumes JSON).
TRUTH_FOLDER = "ground-truth"
_MARKER = ".ctexplore-sample.json"
# Bump when the sample layout changes in a way the phantom source hash does not capture.
_SAMPLE_FORMAT = 1
_DOWNLOADS = ".downloads"
# A broken connection loses at most the chunk being read.
_CQ500_NAME = re.compile(r"^CQ500[-_ ]?CT[-_ ]?(\d+)(\.zip)?$", re.IGNORECASE)
# A CQ500 zip unpacks to 0.1-1 GB; anything claiming far more is not what we asked for.
_MAX_EXTRACTED_BYTES = 16 * 1024**3
# No registry gives the zips' sizes (the largest is about 1 GB): a generous bound on each download.
_CQ500_MAX_ZIP_BYTES = 20 * 1024**3


class DownloadError(ConnectionError):
    """A file could not be downloaded: the machine is offline, the server is
    unreachable, or it answered with an HTTP error. ``url`` names what failed."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


class ChecksumError(ValueError):
    """A downloaded file does not match the checksum it was expected to have."""


class UnsafeArchiveError(ValueError):
    """A zip archive holds an entry that would be written outside the destination
    (absolute path, drive letter, ``..``), a link or device, or is implausibly large."""


# ---------------------------------------------------------------------------
# cache location
# ---------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """The folder where ctexplore caches sample data and downloads.

    ``$CTEXPLORE_CACHE`` when set, otherwise the operating system's user cache
    folder (``~/.cache/ctexplore`` on Linux, ``~/Library/Caches/ctexplore`` on
    macOS, ``%LOCALAPPDATA%\\ctexplore\\ctexplore\\Cache`` on Windows).

    Examples
    --------
    >>> default_cache_dir().name in ("ctexplore", "Cache") or "CTEXPLORE_CACHE" in os.environ
    True
    """
    value = os.environ.get(CACHE_ENV)
    if value:
        return Path(value).expanduser()
    import pooch

    return Path(pooch.os_cache("ctexplore"))


# ---------------------------------------------------------------------------
# synthetic sample data
# ---------------------------------------------------------------------------


def sample_study(
    dest: str | os.PathLike[str] | None = None,
    *,
    patient_id: str = SAMPLE_PATIENT_ID,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write (once) a synthetic head-CT study and return its folder.

    The study is what a scanner export looks like: one folder holding several
    series of one patient side by side -- a thin and a thick axial series, a
    gantry-tilted series, a localizer -- with scanner padding around the field
    of view and a few files that are not images. Series must therefore be told
    apart by (0020,000E) *Series Instance UID*, not by folder. The pixels come
    from `ctexplore.phantom`, not from a patient.

    The files land in ``<dest>/<patient_id>/Unknown Study/``, the layout of a
    CQ500 patient. Writing is deterministic (same arguments, same bytes) and
    cached: a complete study written by the same version of the phantom writer
    is returned as is. The study is written into a temporary sibling folder and
    renamed into place, so an interrupted write is never mistaken for a cached one.

    Parameters
    ----------
    dest : path-like, optional
        Folder to write into. Default: ``default_cache_dir() / "sample"``.
    patient_id : str
        (0010,0020) *Patient ID* and the name of the patient folder.
    seed : int
        Seed of the phantom's random details (noise, UIDs).
    overwrite : bool
        Write again even when a cached study exists. Needed to replace a
        folder of that name that ctexplore did not write (it is never
        overwritten silently).

    Returns
    -------
    pathlib.Path
        ``<dest>/<patient_id>/Unknown Study``. The ground truth of each image
        series (label masks as npz, lesion volumes in mL as JSON) sits beside
        it in ``<dest>/<patient_id>/ground-truth/``, outside the scanned folder.

    See Also
    --------
    sample_dataset : several patients in the CQ500 layout.
    ctexplore.phantom.write_study : the writer behind it, for custom studies.

    Examples
    --------
    >>> import tempfile
    >>> from ctexplore import scan
    >>> study = sample_study(tempfile.mkdtemp())
    >>> study.relative_to(study.parents[1]).as_posix()
    'PHANTOM-001/Unknown Study'
    >>> index = scan(study)
    >>> len(index.series) >= 4  # thin, thick, tilted, localizer: one folder
    True
    """
    root = Path(dest) if dest is not None else default_cache_dir() / "sample"
    params = {"kind": "sample_study", "patient_id": patient_id, "seed": seed}

    def write(patient_folder: Path) -> None:
        from .phantom import write_study

        write_study(
            patient_folder / STUDY_FOLDER, patient_id=patient_id, seed=seed, truth_folder=patient_folder / TRUTH_FOLDER
        )

    patient_folder = _write_cached(root / patient_id, params, write, overwrite=overwrite)
    return patient_folder / STUDY_FOLDER


#: What each patient of `sample_dataset` shows: `ctexplore.headmodel.LESIONS` names, patient ``i``
#: taking entry ``i % 3``.
DATASET_FINDINGS: tuple[tuple[str, ...], ...] = (
    ("subdural haemorrhage",),
    (),
    ("intraparenchymal haemorrhage", "intraventricular haemorrhage"),
)


def sample_dataset(
    dest: str | os.PathLike[str] | None = None,
    *,
    n_patients: int = 3,
    overwrite: bool = False,
) -> Path:
    """Write (once) a small CQ500-like data set of synthetic patients, with ground truth.

    Each patient gets the CQ500 layout ``CQ500-CT-<i>/Unknown Study/CT <desc>/``
    with one folder per series, so batch pipelines can be tried on it before
    downloading real data. Every series images the realistic head of
    `ctexplore.headmodel` (partial volume, slice profile, correlated noise;
    `ctexplore.phantom.SAMPLE_IMAGE_FORMATION`), and the patients differ the
    way CQ500's do, in their findings (`DATASET_FINDINGS`) and their series:

    - ``CQ500-CT-0``: an acute subdural haematoma, a thin crescent over the
      right convexity;
    - ``CQ500-CT-1``: no haemorrhage (a normal head). It also has a bone-kernel
      series (``CT BONE``, kernel ``H70h``: sharper and four times noisier,
      `ctexplore.phantom.SAMPLE_BONE_IMAGE_FORMATION`) at the slice positions of
      its thin series: two candidate series of the same shape;
    - ``CQ500-CT-2``: an intraparenchymal haemorrhage in the right frontal lobe
      and intraventricular blood layering in the left occipital horn; its thin
      series is gantry-tilted (20 degrees), so its volume is sheared until
      corrected.

    Every patient has a thin (``CT PLAIN THIN``, 2.5 mm) and a thick (``CT 5mm``)
    axial series, soft kernel ``H30s``; patients from 3 on repeat the findings
    of patient ``i % 3`` without the tilt or the bone series. The noise of each
    series has its own seed, so the bytes are the same on every run.

    The ground truth of each series (its label volume as npz, lesion volumes in
    mL as JSON, `ctexplore.phantom.WrittenSeries.write_truth`) is saved in
    ``CQ500-CT-<i>/ground-truth/``, outside ``Unknown Study``. A scan or batch of
    the whole data set lists those files as skipped (not DICOM), with the
    reason; a real CQ500 download has no such folder.

    Writing is deterministic, cached and atomic per patient, as in `sample_study`.

    Parameters
    ----------
    dest : path-like, optional
        Folder to write into. Default: ``default_cache_dir() / "sample-cq500"``.
    n_patients : int
        Number of patients, ``CQ500-CT-0`` ... ``CQ500-CT-<n_patients - 1>``.
    overwrite : bool
        Write again even when cached (see `sample_study`).

    Returns
    -------
    pathlib.Path
        ``dest``, holding one folder per patient.

    See Also
    --------
    sample_study : one patient, all lesions, every export quirk.
    fetch_cq500 : the real CQ500 scans in the same layout.

    Examples
    --------
    >>> import json, tempfile
    >>> root = sample_dataset(tempfile.mkdtemp(), n_patients=2)
    >>> sorted(p.name for p in root.iterdir())
    ['CQ500-CT-0', 'CQ500-CT-1']
    >>> sorted(p.name for p in (root / "CQ500-CT-1" / "Unknown Study").iterdir())
    ['CT 5mm', 'CT BONE', 'CT PLAIN THIN']
    >>> truth = sorted((root / "CQ500-CT-0" / "ground-truth").glob("CT_PLAIN_THIN_*_lesions.json"))[0]
    >>> volumes = json.loads(truth.read_text())["volumes_ml"]
    >>> [name for name, ml in volumes.items() if ml > 0]
    ['subdural haemorrhage']
    """
    if n_patients < 1:
        raise ValueError(f"n_patients must be at least 1, got {n_patients}")
    root = Path(dest) if dest is not None else default_cache_dir() / "sample-cq500"
    for index in range(n_patients):
        name = f"CQ500-CT-{index}"
        params = {"kind": "sample_dataset", "patient": name}
        _write_cached(root / name, params, _dataset_patient_writer(index), overwrite=overwrite)
    return root


def _dataset_patient_writer(index: int) -> Callable[[Path], None]:
    """How patient ``CQ500-CT-<index>`` of `sample_dataset` is written."""

    def write(patient_folder: Path) -> None:
        from dataclasses import replace

        from .phantom import (
            SAMPLE_BONE_IMAGE_FORMATION,
            SAMPLE_IMAGE_FORMATION,
            SeriesHeader,
            SliceGeometry,
            write_series,
        )

        study = patient_folder / STUDY_FOLDER
        patient_id = f"CQ500-CT-{index}"
        study_uid = _derived_uid(f"sample_dataset/{patient_id}/study")
        identity = SeriesHeader(patient_id=patient_id, study_uid=study_uid, file_prefix="CT")
        findings = DATASET_FINDINGS[index % len(DATASET_FINDINGS)]
        soft = replace(SAMPLE_IMAGE_FORMATION, lesions=findings)
        thin = SliceGeometry(n_slices=48, slice_spacing=2.5, matrix=96)
        series = [
            ("CT PLAIN THIN", 2, soft, replace(thin, gantry_tilt=20.0 if index == 2 else 0.0), "H30s"),
            ("CT 5mm", 3, soft, SliceGeometry(n_slices=24, slice_spacing=5.0, matrix=96), "H30s"),
        ]
        if index == 1:
            series.append(("CT BONE", 4, replace(SAMPLE_BONE_IMAGE_FORMATION, lesions=findings), thin, "H70h"))
        for number, (description, series_number, head, geometry, kernel) in enumerate(series):
            written = write_series(
                study / description,
                head=head,
                geometry=geometry,
                header=replace(
                    identity,
                    series_description=description,
                    series_number=series_number,
                    convolution_kernel=kernel,
                ),
                seed=10 * index + number,
            )
            written.write_truth(patient_folder / TRUTH_FOLDER)

    return write


def _derived_uid(text: str) -> str:
    """A DICOM UID that depends only on ``text`` (2.25 = UUID-derived root)."""
    return "2.25." + str(int(hashlib.sha256(text.encode()).hexdigest()[:32], 16))


def _generator_fingerprint() -> dict[str, Any]:
    """What the written bytes depend on besides the arguments."""
    import pydicom

    from . import dicomwriter, headmodel, phantom

    source = b"".join(
        Path(module.__file__).read_bytes() for module in (phantom, headmodel, dicomwriter) if module.__file__
    )
    return {
        "format": _SAMPLE_FORMAT,
        "phantom_sha256": hashlib.sha256(source).hexdigest(),
        "pydicom": pydicom.__version__,
    }


def _write_cached(target: Path, params: Mapping[str, Any], write: Callable[[Path], None], *, overwrite: bool) -> Path:
    """Run ``write`` into a temporary sibling of ``target`` and rename it into place,
    unless ``target`` already holds what these parameters would write."""
    expected = {**params, **_generator_fingerprint()}
    if target.exists() and not overwrite:
        found = _read_marker(target)
        if found == expected:
            return target
        if found is None:
            raise FileExistsError(
                f"{target} exists but was not written by ctexplore (no {_MARKER} in it): "
                "refusing to overwrite it. Choose another dest, or pass overwrite=True."
            )
        logger.info("%s was written by another ctexplore version: writing it again", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(target, replace_existing=True) as staging:
        write(staging)
        # The marker goes in last: a folder that has it is complete.
        (staging / _MARKER).write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    return target


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / _MARKER).read_text())
    except (OSError, ValueError):
        return None


def cq500_name(patient: int | str) -> str:
    """The canonical CQ500 name of a patient: ``CQ500-CT-<N>``.

    Examples
    --------
    >>> cq500_name(108), cq500_name("CQ500CT108"), cq500_name("cq500-ct-108.zip")
    ('CQ500-CT-108', 'CQ500-CT-108', 'CQ500-CT-108')
    """
    if isinstance(patient, bool):
        raise TypeError(f"a CQ500 patient is a number or a name like 'CQ500-CT-108', not {patient!r}")
    if isinstance(patient, int):
        if patient < 0:
            raise ValueError(f"CQ500 patient numbers are not negative: {patient}")
        return f"CQ500-CT-{patient}"
    match = _CQ500_NAME.match(str(patient).strip())
    if match is None:
        raise ValueError(f"{patient!r} is not a CQ500 patient: give a number or a name like 'CQ500-CT-108'")
    return f"CQ500-CT-{int(match.group(1))}"


def cq500_url(patient: int | str, base_url: str | None = None) -> str:
    """The download address of one CQ500 patient's zip.

    ``base_url``, else ``$CTEXPLORE_CQ500_URL``, else `CQ500_BASE_URL`.

    Examples
    --------
    >>> cq500_url(7, base_url="http://127.0.0.1:8000/cq500/")
    'http://127.0.0.1:8000/cq500/CQ500-CT-7.zip'
    """
    base = base_url or os.environ.get(CQ500_URL_ENV) or CQ500_BASE_URL
    return f"{base.rstrip('/')}/{cq500_name(patient)}.zip"


def fetch_cq500(
    patients: int | str | Iterable[int | str],
    dest: str | os.PathLike[str] | None = None,
    *,
    base_url: str | None = None,
    known_hashes: Mapping[int | str, str] | None = None,
    keep_zips: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
    max_bytes: int = _CQ500_MAX_ZIP_BYTES,
) -> list[Path]:
    """Download and unpack CQ500 patients; return their folders.

    CQ500 (qure.ai; Chilamkurthy et al., Lancet 2018) is 491 head CTs published
    as one zip per patient under CC BY-NC-SA 4.0 (non-commercial, share alike,
    cite the paper). Each patient ends up as
    ``<dest>/CQ500-CT-<N>/Unknown Study/CT <desc>/CT000000.dcm ...`` (the
    zips' own top folder, ``CQ500CT<N> CQ500CT<N>/``, is replaced by
    ``CQ500-CT-<N>/``).

    Caching and resume: a patient folder that exists is never downloaded
    again. A download runs into ``<dest>/.downloads/CQ500-CT-<N>.zip.part``; if
    it is interrupted, the next call asks the server for the rest only (an
    HTTP Range request, guarded by the ETag or Last-Modified date the first
    answer carried) and starts over when the server cannot resume or the file
    changed. A partial file is never unpacked: it becomes ``.zip`` only once
    complete and, where a hash is known, verified.

    Parameters
    ----------
    patients : int, str or iterable of them
        Patient numbers (``108``) or names (``"CQ500-CT-108"``, ``"CQ500CT108"``).
    dest : path-like, optional
        Folder holding one sub-folder per patient. Default:
        ``default_cache_dir() / "cq500"``. The whole data set is 40-50 GB
        unpacked: pick a disk with room.
    base_url : str, optional
        Where the zips are. Default: ``$CTEXPLORE_CQ500_URL``, else `CQ500_BASE_URL`.
    known_hashes : mapping, optional
        Patient (number or name) -> ``"sha256:<hex>"`` (or ``md5:``/``sha1:``).
        The download is verified against it, and a mismatch raises
        `ChecksumError` and keeps nothing. Patients without a hash are logged
        with the SHA-256 of what arrived, ready to pin.
    keep_zips : bool
        Keep the downloaded zips in ``<dest>/.downloads`` after unpacking.
    progress : bool
        Show a progress bar per download.
    timeout : float
        Seconds to wait for the server to connect, answer or send more data; a
        server sending slower than 1 KiB/s over that long is abandoned too (the
        part is kept for the next call).
    max_bytes : int, default 20 GiB
        Largest zip accepted (the zips have no published sizes; the largest are
        about 1 GB). An announced or received size beyond it is refused and
        nothing is kept.

    Returns
    -------
    list of pathlib.Path
        ``<dest>/CQ500-CT-<N>``, in the order asked.

    Raises
    ------
    DownloadError
        Offline, server unreachable, an HTTP error (404 for a patient that does
        not exist), a cut connection, a stalled or trickling server, a body
        beyond ``max_bytes``, an encoded body or a redirect to another host
        (see `ctexplore.fetch.BoundedDownloader`). The message names the URL.
    ChecksumError
        A download does not match ``known_hashes``.
    UnsafeArchiveError
        A zip holds an entry that would land outside its patient folder; nothing
        of that zip is unpacked.

    See Also
    --------
    sample_dataset : a synthetic stand-in with the same layout, offline.
    ctexplore.cq500_labels : the radiologists' reads for these scans.

    Examples
    --------
    >>> folders = fetch_cq500([0, 108], "/data/cq500")  # doctest: +SKIP
    >>> folders[1]  # doctest: +SKIP
    PosixPath('/data/cq500/CQ500-CT-108')
    """
    if isinstance(patients, (int, str)):
        patients = [patients]
    names = list(dict.fromkeys(cq500_name(p) for p in patients))
    hashes = {cq500_name(k): v for k, v in (known_hashes or {}).items()}
    root = Path(dest) if dest is not None else default_cache_dir() / "cq500"
    downloads = root / _DOWNLOADS
    folders = []
    try:
        for name in names:
            folder = root / name
            if folder.is_dir():
                logger.info("%s already unpacked: not downloading it again", folder)
            else:
                archive = _download(
                    cq500_url(name, base_url),
                    downloads,
                    f"{name}.zip",
                    hashes.get(name),
                    progress=progress,
                    timeout=timeout,
                    max_bytes=max_bytes,
                )
                _unpack(archive, folder)
                if not keep_zips:
                    archive.unlink()
            folders.append(folder)
    finally:
        if downloads.is_dir() and not any(downloads.iterdir()):
            downloads.rmdir()
    return folders


def _download(
    url: str,
    folder: Path,
    fname: str,
    known_hash: str | None,
    *,
    progress: bool,
    timeout: float,
    max_bytes: int = _CQ500_MAX_ZIP_BYTES,
    manual: str = "download the zip yourself and unzip it so that the patient folder holds 'Unknown Study/'",
) -> Path:
    """Fetch ``url`` into ``folder/fname`` through pooch's cache and hash check, resuming ``fname.part``.

    `manual` is what to do by hand when no server answers.
    """
    import pooch

    from .fetch import BoundedDownloader

    downloader = BoundedDownloader(
        max_bytes=max_bytes,
        timeout=timeout,
        part=folder / f"{fname}.part",
        progress=progress,
        mirror_hint=f" Set {CQ500_URL_ENV} (or base_url=) to a reachable mirror, or {manual}.",
    )
    pooch_logger = pooch.get_logger()
    pooch_level = pooch_logger.level
    # pooch's own messages point at pooch.retrieve's arguments; ours name fetch_cq500's.
    pooch_logger.setLevel(logging.WARNING)
    try:
        path = Path(pooch.retrieve(url, known_hash=known_hash, fname=fname, path=folder, downloader=downloader))
    except ValueError as error:
        if "hash" not in str(error).lower():
            raise
        raise ChecksumError(
            f"{url} does not match the known hash {known_hash}: {error} Nothing was kept. "
            "If the file changed on the server on purpose, update the hash; otherwise "
            "the download was corrupted: try again."
        ) from None
    finally:
        pooch_logger.setLevel(pooch_level)
    if known_hash is None:
        digest = pooch.file_hash(str(path), alg="sha256")
        _say(
            progress,
            f"sha256 of {fname}: {digest} -- pass "
            f"known_hashes={{{fname.removesuffix('.zip')!r}: 'sha256:{digest}'}} to verify it next time",
        )
    return path


def _say(progress: bool, message: str) -> None:
    """Log ``message``; also show it when the caller asked for progress output."""
    logger.info(message)
    if progress:
        print(message, file=sys.stderr)


def _unpack(archive: Path, folder: Path) -> None:
    """Unpack a CQ500 zip into ``folder`` atomically, dropping its single top folder."""
    try:
        safe_extract_zip(archive, folder, strip_top_folder=True)
    except UnsafeArchiveError:
        archive.unlink(missing_ok=True)
        raise
    except zipfile.BadZipFile as error:
        archive.unlink(missing_ok=True)
        raise DownloadError(
            f"{archive} is not a readable zip ({error}); it was deleted: call again to download it anew.", str(archive)
        ) from None


def safe_extract_zip(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    strip_top_folder: bool = False,
    max_bytes: int = _MAX_EXTRACTED_BYTES,
) -> Path:
    """Unpack a zip into a new folder, refusing any entry that could escape it.

    Every entry is checked before anything is written: absolute paths
    (``/etc/passwd``, ``C:\\x``, ``\\\\server\\share``), ``..`` components
    (with ``/`` or ``\\`` as separator), symbolic links and other non-regular
    files, and a total unpacked size above ``max_bytes`` raise
    `UnsafeArchiveError` naming the entry, and nothing is unpacked. The zip is
    unpacked into a temporary sibling of ``dest`` that is renamed to ``dest``
    only when complete.

    Parameters
    ----------
    archive : path-like
        The zip file.
    dest : path-like
        Folder to create; must not exist yet.
    strip_top_folder : bool
        When every entry sits in one top folder (not ``Unknown Study``), unpack
        that folder's content into ``dest`` instead of the folder itself.
    max_bytes : int
        Largest total size the entries may unpack to.

    Returns
    -------
    pathlib.Path
        ``dest``.

    See Also
    --------
    fetch_cq500 : unpacks every download through this.

    Examples
    --------
    >>> import tempfile, zipfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with zipfile.ZipFile(folder / "bad.zip", "w") as zf:
    ...     zf.writestr("study/../../evil.txt", "gotcha")
    >>> safe_extract_zip(folder / "bad.zip", folder / "out")
    Traceback (most recent call last):
    ...
    ctexplore.datasets.UnsafeArchiveError: ...bad.zip: entry 'study/../../evil.txt' contains '..'...
    >>> (folder / "out").exists()
    False
    """
    archive = Path(archive)
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists: safe_extract_zip only creates new folders")
    with zipfile.ZipFile(archive) as zf:
        members = [(info, _checked_parts(archive, info)) for info in zf.infolist()]
        members = [(info, parts) for info, parts in members if parts]
        total = sum(info.file_size for info, _ in members)
        if total > max_bytes:
            raise UnsafeArchiveError(
                f"{archive}: entries claim {total} bytes unpacked, more than max_bytes={max_bytes}; "
                "not unpacking it (zip bomb?). Raise max_bytes if the archive is trusted."
            )
        tops = {parts[0] for _, parts in members}
        strip = (
            strip_top_folder
            and len(tops) == 1
            and STUDY_FOLDER not in tops
            and all(len(parts) > 1 or info.is_dir() for info, parts in members)
        )
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_folder(dest) as staging:
            resolved_root = staging.resolve()
            for info, parts in members:
                parts = parts[1:] if strip else parts
                if not parts:
                    continue
                target = staging.joinpath(*parts)
                # Defence in depth: the checks above already ruled this out.
                if not target.resolve().is_relative_to(resolved_root):
                    raise UnsafeArchiveError(f"{archive}: entry {info.filename!r} resolves outside {dest}")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():
                    raise UnsafeArchiveError(
                        f"{archive}: entry {info.filename!r} is in the archive "
                        "twice (or clashes with a folder); not unpacking it"
                    )
                with zf.open(info) as source, open(target, "xb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
    return dest


def _checked_parts(archive: Path, info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The path components of a zip entry, or `UnsafeArchiveError` if it may escape."""
    name = info.filename
    where = f"{archive}: entry {name!r}"
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or re.match(r"^[A-Za-z]:", normalised):
        raise UnsafeArchiveError(f"{where} is an absolute path; not unpacking this archive")
    parts = tuple(part for part in normalised.split("/") if part not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(
            f"{where} contains '..' and would land outside the destination; not unpacking this archive"
        )
    if any(":" in part or "\x00" in part for part in parts):
        raise UnsafeArchiveError(f"{where} has a ':' or NUL in a name (a drive or stream); not unpacking this archive")
    mode = info.external_attr >> 16
    file_type = stat.S_IFMT(mode)
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        kind = "a symbolic link" if file_type == stat.S_IFLNK else "not a regular file"
        raise UnsafeArchiveError(f"{where} is {kind}; not unpacking this archive")
    return parts


from .labels import cq500_labels  # noqa: E402,F401  (CQ500 reads.csv; see ctexplore.labels)

__all__ += ["example_study", "EXAMPLE_ENV"]

#: Environment variable naming the study the tutorials run on (see `example_study`).
EXAMPLE_ENV = "CTEXPLORE_EXAMPLE"
_LEGACY_EXAMPLE_ENV = "CTEXPLORE_CQ500_STUDY"  # the older name, still honoured


def example_study(choice: str | os.PathLike[str] | None = None) -> Path:
    """The study the tutorials run on: the built-in sample, a folder of DICOM, or a fetched real head CT.

    Parameters
    ----------
    choice : str or path-like, optional
        A folder of DICOM files, or a key of `ctexplore.fetch.HEAD_CT_STUDIES`
        (``"ge-hispeed-head"``, ``"philips-head-phantom"``: downloaded once, then
        cached). Default: ``$CTEXPLORE_EXAMPLE`` (or the older
        ``$CTEXPLORE_CQ500_STUDY``); when neither is set, the built-in sample
        (`sample_study`), the only choice with ground truth beside it.

    Returns
    -------
    pathlib.Path
        The study folder, ready for `ctexplore.scan`.

    Raises
    ------
    FileNotFoundError
        The choice is neither an existing folder nor a fetcher key; the message
        lists the keys.

    Examples
    --------
    >>> import tempfile
    >>> study = sample_study(tempfile.mkdtemp())
    >>> example_study(study) == study  # a folder is taken as it is
    True
    >>> example_study()  # doctest: +SKIP
    PosixPath('/home/me/.cache/ctexplore/sample/PHANTOM-001/Unknown Study')
    """
    from .fetch import HEAD_CT_STUDIES, fetch_head_ct

    if choice is None:
        choice = os.environ.get(EXAMPLE_ENV) or os.environ.get(_LEGACY_EXAMPLE_ENV) or None
        if choice is None:
            return sample_study()
    text = os.fspath(choice)
    if text in HEAD_CT_STUDIES:
        return fetch_head_ct(text)
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"example study {text!r} (from ${EXAMPLE_ENV} or the argument) is neither a folder nor a fetcher key; "
            f"name a folder of DICOM files or one of {sorted(HEAD_CT_STUDIES)}, or unset ${EXAMPLE_ENV} "
            "for the built-in sample"
        )
    return folder
