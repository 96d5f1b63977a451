"""Batch preprocessing: from a data set of DICOM studies to one array file per chosen series.

`preprocess` walks a whole data set (the CQ500 layout ``CQ500-CT-N/Unknown
Study/<series folders>`` or any other: series are found by UID, not by folder),
chooses series in each study by an explicit rule, resamples each chosen series
onto an orthogonal grid (gantry tilt corrected in the same interpolation) and
writes one file per series, named by patient and series so that nothing
overwrites anything. ``OUTPUT/manifest.csv`` says what happened to every series
found: ok, skipped (and why) or failed (and why). A rerun skips what is done.

`iter_volumes` streams the same chosen series one `Volume` at a time, for a
notebook; `preprocess_volume` is the per-volume step both share.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import time
import unicodedata
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .errors import DicomError
from .selection import Study, find_studies, parse_rule, select_series, series_label
from .series import Series, SeriesIndex, scan
from .volume import Volume

__all__ = [
    "Study",
    "PreprocessOptions",
    "ManifestRow",
    "Summary",
    "MANIFEST_COLUMNS",
    "find_studies",
    "parse_rule",
    "select_series",
    "output_name",
    "preprocess_volume",
    "preprocess_series",
    "preprocess",
    "iter_volumes",
]

#: Columns of ``OUTPUT/manifest.csv``, one row per series found in the input.
MANIFEST_COLUMNS = (
    "patient_id",
    "study_uid",
    "series_uid",
    "series_number",
    "series_description",
    "n_images",
    "status",
    "reason",
    "output",
)
ALREADY_DONE = "already done"
_MANIFEST_INTERVAL_S = 2.0


# ---------------------------------------------------------------------------- studies and rules


# ---------------------------------------------------------------------------- options and naming


@dataclass(frozen=True)
class PreprocessOptions:
    """How each chosen series is turned into an output file.

    Attributes
    ----------
    spacing : 3 floats or None, default (1.0, 1.0, 1.0)
        Output voxel size in mm (along the slice normal, between rows, between
        columns). None keeps the acquired voxel size (a tilted series is still
        put on an orthogonal grid).
    shape : 3 ints or None
        Output ``(slices, rows, cols)`` instead of a spacing; then `spacing`
        must be None or left at its default.
    window : str, sequence of str, or None
        Display window preset(s) from `ctexplore.WINDOWS` stored as the
        ``processed`` array (several presets: a channels-first stack).
    normalize : (low, high) or None
        HU range scaled to [0, 1] as the ``processed`` array (instead of `window`).
    crop : bool, default False
        Crop to the head (`ctexplore.crop_to_head`): before resampling to a
        `shape` (so the shape holds the head, not the air), after resampling
        to a `spacing` (cheaper on the coarser grid).
    order : int, default 1
        Interpolation order of the one resampling step.
    format : {'npz', 'nifti'}
        ``.npz`` (HU, affine, spacing, padding, processed, provenance) or
        ``.nii.gz`` (HU) with a ``.json`` provenance file beside it.
    on_uneven : {'raise', 'resample'}
        Passed to `ctexplore.load_series`: uneven slice steps fail the series,
        or are interpolated onto a uniform grid.
    hu_dtype : {'int16', 'float32'}, default 'int16'
        How the resampled HU are stored. Interpolation makes them float32;
        'int16' rounds them to whole HU (at most 0.5 HU off, far below CT
        noise of several HU; values beyond the int16 range are clipped) and
        gives files about a third the size, written 3-4x faster. 'float32'
        keeps the interpolated values. The ``processed`` array is always
        float32 and computed before rounding.
    compress : bool, default True
        zlib-compress ``.npz`` arrays: smaller files, but compressing is most of
        the time of a series (float32 HU with noise compress slowly).

    Examples
    --------
    >>> PreprocessOptions(shape=(64, 128, 128)).spacing is None
    True
    >>> PreprocessOptions(window="brain", format="nifti")
    Traceback (most recent call last):
    ...
    ValueError: format 'nifti' stores Hounsfield units only; use format 'npz' for window or normalize
    """

    spacing: tuple[float, float, float] | None = (1.0, 1.0, 1.0)
    shape: tuple[int, int, int] | None = None
    window: str | tuple[str, ...] | None = None
    normalize: tuple[float, float] | None = None
    crop: bool = False
    order: int = 1
    format: Literal["npz", "nifti"] = "npz"
    on_uneven: Literal["raise", "resample"] = "raise"
    hu_dtype: Literal["int16", "float32"] = "int16"
    compress: bool = True

    def __post_init__(self) -> None:
        if self.shape is not None:
            if self.spacing is not None and tuple(self.spacing) != (1.0, 1.0, 1.0):
                raise ValueError("give either spacing or shape, not both")
            self._set("spacing", None)
            shape = tuple(int(n) for n in self.shape)
            if len(shape) != 3 or min(shape) < 1:
                raise ValueError(f"shape must be 3 positive whole numbers, got {self.shape}")
            self._set("shape", shape)
        if self.spacing is not None:
            spacing = np.broadcast_to(np.asarray(self.spacing, dtype=float), 3)
            if not (np.isfinite(spacing).all() and (spacing > 0).all()):
                raise ValueError(f"spacing must be positive millimetres, got {self.spacing}")
            self._set("spacing", tuple(float(s) for s in spacing))
        if self.window is not None:
            from .intensity import WINDOWS

            presets = (self.window,) if isinstance(self.window, str) else tuple(self.window)
            unknown = [p for p in presets if p not in WINDOWS]
            if unknown or not presets:
                raise ValueError(f"unknown window preset(s) {unknown}; choose from {sorted(WINDOWS)}")
            self._set("window", presets[0] if len(presets) == 1 else presets)
        if self.normalize is not None:
            low, high = (float(v) for v in self.normalize)
            if not high > low:
                raise ValueError(f"normalize needs low < high, got {self.normalize}")
            self._set("normalize", (low, high))
        if self.window is not None and self.normalize is not None:
            raise ValueError("give either window or normalize, not both")
        if self.format not in ("npz", "nifti"):
            raise ValueError(f"format must be 'npz' or 'nifti', not {self.format!r}")
        if self.format == "nifti" and (self.window is not None or self.normalize is not None):
            raise ValueError("format 'nifti' stores Hounsfield units only; use format 'npz' for window or normalize")
        if self.on_uneven not in ("raise", "resample"):
            raise ValueError(f"on_uneven must be 'raise' or 'resample', not {self.on_uneven!r}")
        if self.hu_dtype not in ("int16", "float32"):
            raise ValueError(f"hu_dtype must be 'int16' or 'float32', not {self.hu_dtype!r}")
        if self.order not in (0, 1, 2, 3, 4, 5):
            raise ValueError(f"order must be an interpolation order 0..5, not {self.order!r}")

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # normalising a frozen dataclass in __post_init__

    @property
    def suffix(self) -> str:
        return ".npz" if self.format == "npz" else ".nii.gz"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (lists, not tuples), as stored in each output's provenance."""
        return json.loads(json.dumps(asdict(self)))


# Names Windows reserves for devices, whatever the extension.
_RESERVED_NAMES = {"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(10)), *(f"LPT{n}" for n in range(10))}


def _slug(text: str, limit: int = 40) -> str:
    """ASCII letters, digits, ``._-`` only; accents dropped (``Pätiënt`` -> ``Patient``)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_text).strip("-.")
    slug = slug[:limit].rstrip("-.")
    return f"_{slug}" if slug.split(".")[0].upper() in _RESERVED_NAMES else slug


def output_name(series: Series, suffix: str = ".npz") -> str:
    """Relative output path of a series: ``<patient>/<patient>__s<number>_<description>__<hash>.npz``.

    Deterministic and filesystem-safe on Linux, macOS and Windows (ASCII only,
    accents dropped, no separators, no device names such as ``CON``, at most
    40 characters per part); the hash of the series key (UID, plus ``#2`` ...
    for a split UID) keeps two series apart whose number and description
    look the same once made safe (or are empty).

    Examples
    --------
    >>> import tempfile
    >>> from ctexplore import scan
    >>> from ctexplore.phantom import write_series
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_series(folder, n_slices=2, matrix=16, patient_id="CQ500-CT-7",
    ...                  series_number=3, series_description="CT 5mm / plain")
    >>> output_name(scan(folder)[0])[:-12]  # the hash differs per UID
    'CQ500-CT-7/CQ500-CT-7__s03_CT-5mm-plain__'
    >>> _slug("Kopf/Hals ünd Ü"), _slug("../.."), _slug("con")
    ('Kopf-Hals-und-U', '', '_con')
    """
    patient = _slug(series.patient_id) or "unknown-patient"
    number = f"s{series.series_number:02d}" if series.series_number is not None else "s"
    description = _slug(series.description) or "no-description"
    digest = hashlib.sha1(series.key.encode()).hexdigest()[:8]
    return f"{patient}/{patient}__{number}_{description}__{digest}{suffix}"


def _source_fingerprint(series: Series) -> dict[str, Any]:
    """What identifies the input of an output: the series and its files' names, sizes and times."""
    digest = hashlib.sha1()
    for path in series.files:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return {"series_key": series.key, "n_images": series.n_images, "files_sha1": digest.hexdigest()}


def _output_record(series: Series, options: PreprocessOptions) -> dict[str, Any]:
    """The ``options`` stored in an output's provenance; a rerun redoes the output when it differs."""
    return {"pipeline": options.to_dict(), "source": _source_fingerprint(series)}


def _sidecar(output: Path) -> Path:
    return output.with_name(output.name.removesuffix(".nii.gz") + ".json")


def _recorded_options(output: Path) -> Any:
    """The options recorded in a finished output, or None when it is missing or unreadable."""
    try:
        if output.name.endswith(".nii.gz"):
            if not output.is_file():
                return None
            return json.loads(_sidecar(output).read_text())["options"]
        with np.load(output, allow_pickle=False) as data:
            return json.loads(str(data["provenance"]))["options"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _remove_stale_temporaries(output: Path) -> None:
    """Delete temporary files an interrupted run left beside `output` (see `export`'s atomic writes)."""
    stem = output.name.removesuffix(".nii.gz").removesuffix(".npz").removesuffix(".csv")
    if output.parent.is_dir():
        for leftover in output.parent.glob(f".{_glob_escape(stem)}.*"):
            if leftover.is_file():
                leftover.unlink(missing_ok=True)


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?[])", r"[\1]", text)


# ---------------------------------------------------------------------------- one series


def preprocess_volume(volume: Volume, options: PreprocessOptions | None = None) -> tuple[Volume, np.ndarray | None]:
    """Resample (correcting gantry tilt in the same step), optionally crop, and compute the processed array.

    Parameters
    ----------
    volume : Volume
        As loaded by `ctexplore.load_series`.
    options : PreprocessOptions, optional
        Default: 1 mm isotropic, no crop, no processed array.

    Returns
    -------
    volume : Volume
        float32 HU on an orthogonal grid with an exact affine.
    processed : ndarray or None
        The window(s) or normalised HU (float32), when the options ask for one.

    Examples
    --------
    >>> import numpy as np
    >>> from ctexplore.volume import Volume
    >>> affine = np.diag([5.0, 0.5, 0.5, 1.0])
    >>> affine[1, 0] = 2.0  # tilted: each slice 2 mm further along the rows
    >>> vol = Volume(np.zeros((4, 20, 20), np.int16), affine)
    >>> out, processed = preprocess_volume(vol, PreprocessOptions(spacing=(2.0, 2.0, 2.0), normalize=(-100, 200)))
    >>> out.is_tilted, out.spacing, processed.dtype
    (False, (2.0, 2.0, 2.0), dtype('float32'))
    """
    from .geometry import correct_tilt, crop_to_head, resample
    from .intensity import normalize, window, window_stack

    options = options or PreprocessOptions()
    if options.crop and options.shape is not None:
        volume = crop_to_head(volume)
    if options.spacing is not None or options.shape is not None:
        volume = resample(volume, spacing=options.spacing, shape=options.shape, order=options.order)
    else:
        volume = correct_tilt(volume, order=options.order)
    if options.crop and options.shape is None:
        volume = crop_to_head(volume)
    processed = None
    if isinstance(options.window, str):
        processed = window(volume.hu, preset=options.window)
    elif options.window is not None:
        processed = window_stack(volume.hu, options.window)
    elif options.normalize is not None:
        processed = normalize(volume.hu, *options.normalize)
    return volume, processed


def preprocess_series(
    series: Series,
    output: str | os.PathLike[str],
    options: PreprocessOptions | None = None,
    *,
    record: dict[str, Any] | None = None,
) -> Path:
    """Load one series, preprocess it (`preprocess_volume`) and write it atomically.

    Parameters
    ----------
    series : Series
        From `ctexplore.scan`.
    output : path-like
        File to write (its folder is created). With format ``'nifti'`` a
        ``.json`` provenance file is written beside it, after the image.
    options : PreprocessOptions, optional
    record : dict, optional
        What to store as the provenance ``options`` (default: the options and a
        fingerprint of the input files, which a rerun of `preprocess` compares).

    Returns
    -------
    Path
        `output`.

    Raises
    ------
    DicomError
        The series cannot be read (see `ctexplore.load_series`).
    """
    from ._atomic import atomic_target
    from .export import json_safe, provenance, save_nifti, save_npz
    from .reader import load_series

    options = options or PreprocessOptions()
    output = Path(output)
    record = record if record is not None else _output_record(series, options)
    volume = load_series(series, on_uneven=options.on_uneven)
    volume, processed = preprocess_volume(volume, options)
    if options.hu_dtype == "int16" and volume.hu.dtype != np.int16:
        volume = volume.with_hu(_round_to_int16(volume.hu))
    output.parent.mkdir(parents=True, exist_ok=True)
    if options.format == "npz":
        return save_npz(volume, output, processed=processed, options=record, compress=options.compress)
    # the sidecar says which options made the image: an old one must not outlive a new image
    _sidecar(output).unlink(missing_ok=True)
    save_nifti(volume, output)
    with atomic_target(_sidecar(output)) as temporary:
        temporary.write_text(json.dumps(json_safe(provenance(volume, record)), indent=1, sort_keys=True))
    return output


def _round_to_int16(hu: np.ndarray) -> np.ndarray:
    """Whole HU in int16, clipped to its range, without a float copy of the volume."""
    rounded = np.empty(hu.shape, np.int16)
    info = np.iinfo(np.int16)
    for source, target in zip(hu, rounded):  # one slice at a time: the float scratch stays small
        np.clip(np.rint(source), info.min, info.max, out=target, casting="unsafe")
    return rounded


@dataclass(frozen=True)
class _Task:
    series: Series
    output: Path
    options: PreprocessOptions
    record: dict[str, Any]


@dataclass(frozen=True)
class _TaskResult:
    key: str
    status: str
    reason: str
    seconds: float
    peak_rss_bytes: int | None


def _peak_rss_bytes() -> int | None:
    """This process's peak resident memory (Linux ``VmHWM``), or None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _run_task(task: _Task) -> _TaskResult:
    """Process one series in a worker; every failure becomes a result, never a lost task."""
    start = time.perf_counter()
    try:
        preprocess_series(task.series, task.output, task.options, record=task.record)
        status, reason = "ok", ""
    except DicomError as error:
        status, reason = "failed", str(error)
    except Exception as error:  # recorded, not swallowed: the manifest shows type and message
        status, reason = "failed", f"{type(error).__name__}: {error}"
    return _TaskResult(task.series.key, status, reason, time.perf_counter() - start, _peak_rss_bytes())


# ---------------------------------------------------------------------------- the batch


@dataclass
class ManifestRow:
    """One row of ``manifest.csv``: a series found in the input and what became of it."""

    patient_id: str
    study_uid: str
    series_uid: str
    series_number: int | None
    series_description: str
    n_images: int
    status: str = "pending"
    reason: str = ""
    output: str = ""

    @classmethod
    def of(cls, series: Series, status: str = "pending", reason: str = "", output: str = "") -> "ManifestRow":
        return cls(series.patient_id, series.study_uid, series.uid, series.series_number,
                   series.description, series.n_images, status, reason, output)


@dataclass
class Summary:
    """What a `preprocess` run did: one row per series, the files that were not images, timings."""

    rows: list[ManifestRow]
    skipped_files: list[tuple[Path, str]]
    manifest: Path
    scan_seconds: float = 0.0
    process_seconds: float = 0.0
    peak_rss_bytes: dict[str, int] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(row.status == status for row in self.rows)

    @property
    def ok(self) -> int:
        return self.count("ok")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def already_done(self) -> int:
        return sum(row.status == "ok" and row.reason == ALREADY_DONE for row in self.rows)

    def __str__(self) -> str:
        extras = []
        if self.already_done:
            extras.append(f"{self.already_done} already done")
        if self.skipped_files:
            extras.append(f"{len(self.skipped_files)} files not CT images, listed in {self.manifest.parent / 'skipped_files.csv'}")
        tail = f" ({'; '.join(extras)})" if extras else ""
        return f"{self.ok} ok, {self.skipped} skipped, {self.failed} failed{tail}"


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Write a CSV atomically: a temporary file in the same folder, then a rename."""
    from ._atomic import atomic_target

    with atomic_target(path) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(header)
            writer.writerows(rows)


def _write_manifest(path: Path, rows: Sequence[ManifestRow]) -> None:
    _write_csv(path, MANIFEST_COLUMNS, [[getattr(row, c) if getattr(row, c) is not None else "" for c in MANIFEST_COLUMNS] for row in rows])


def _check_locations(source: Path, output: Path) -> None:
    if not source.exists():
        raise FileNotFoundError(f"input {source} does not exist")
    source_folder = (source if source.is_dir() else source.parent).resolve()
    target = output.resolve()
    if target == source_folder or source_folder in target.parents:
        raise ValueError(
            f"output {output} is inside the input {source}: ctexplore never writes into an input "
            "folder (and outputs there would be scanned as input next time); choose a folder outside it"
        )
    if target in source_folder.parents:
        raise ValueError(
            f"input {source} is inside the output {output}: patient folders written there could "
            "land in the input; choose an output folder that does not contain the input"
        )


def preprocess(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    rule: str = "thinnest",
    options: PreprocessOptions | None = None,
    workers: int | None = None,
    dask_address: str | None = None,
    progress: bool = True,
) -> Summary:
    """Preprocess every chosen series of a data set into ``OUTPUT``; write ``OUTPUT/manifest.csv``.

    Parameters
    ----------
    input : path-like
        The data set: any folder tree of DICOM files (e.g. CQ500's
        ``CQ500-CT-N/Unknown Study/<series>``). Never written to.
    output : path-like
        Output folder, created if needed; must not lie inside `input`.
    rule : str
        Which series of each study to process (see `parse_rule`); every other
        series gets a manifest row with status ``skipped`` and the reason.
    options : PreprocessOptions, optional
        Default: 1 mm isotropic ``.npz`` with HU, affine and provenance.
    workers : int, optional
        Local processes (default: one per core); 1 runs in this process.
        Each task is one series, so a worker holds one series at a time.
    dask_address : str, optional
        Run the same tasks on a ``dask.distributed`` scheduler at this address
        (e.g. ``"tcp://10.0.0.5:8786"``) instead; its workers must see the
        input and output folders under the same paths.
    progress : bool
        Show a progress bar over series (with the number of finished studies).

    Returns
    -------
    Summary
        ``str(summary)`` is ``"N ok, N skipped, N failed ..."``; rows as in the manifest.

    Notes
    -----
    Outputs are named by `output_name` (patient, series number, description,
    a hash of the series UID), so two series of one patient never overwrite
    each other. Every file appears atomically. A rerun keeps an output whose
    recorded options and input fingerprint (file names, sizes, modification
    times) match, with reason ``"already done"``, and redoes it otherwise.
    Files that are not CT images are listed in ``OUTPUT/skipped_files.csv``.

    Examples
    --------
    >>> import tempfile
    >>> from ctexplore.phantom import write_series
    >>> data, out = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> _ = write_series(f"{data}/P1/thin", n_slices=6, slice_spacing=2.5, matrix=32, patient_id="P1",
    ...                  series_number=2, file_prefix="T")
    >>> _ = write_series(f"{data}/P1/thick", n_slices=3, slice_spacing=5.0, matrix=32, patient_id="P1",
    ...                  series_number=3, file_prefix="K")
    >>> summary = preprocess(data, out, options=PreprocessOptions(spacing=(4, 4, 4)), workers=1, progress=False)
    >>> print(summary)
    1 ok, 1 skipped, 0 failed
    >>> print(preprocess(data, out, options=PreprocessOptions(spacing=(4, 4, 4)), workers=1, progress=False))
    1 ok, 1 skipped, 0 failed (1 already done)
    """
    source, target = Path(input), Path(output)
    options = options or PreprocessOptions()
    parse_rule(rule)
    _check_locations(source, target)
    target.mkdir(parents=True, exist_ok=True)
    manifest = target / "manifest.csv"
    for table in (manifest, target / "skipped_files.csv"):
        _remove_stale_temporaries(table)

    start = time.perf_counter()
    index = scan(source, workers=workers if dask_address is None else None)
    scan_seconds = time.perf_counter() - start
    _write_csv(target / "skipped_files.csv", ("path", "reason"), [(str(p), r) for p, r in index.skipped])

    rows: list[ManifestRow] = []
    row_of: dict[str, ManifestRow] = {}
    study_of: dict[str, int] = {}
    tasks: list[_Task] = []
    studies = find_studies(index)
    pending_per_study = [0] * len(studies)
    for number, study in enumerate(studies):
        chosen, skipped = select_series(study.series, rule)
        reasons = {series.key: reason for series, reason in skipped}
        for series in study.series:
            row = ManifestRow.of(series)
            rows.append(row)
            if series.key in reasons:
                row.status, row.reason = "skipped", reasons[series.key]
                continue
            relative = output_name(series, options.suffix)
            path = target / relative
            row.output = relative
            _remove_stale_temporaries(path)
            record = _output_record(series, options)
            if _recorded_options(path) == json.loads(json.dumps(record)):
                row.status, row.reason = "ok", ALREADY_DONE
                continue
            row_of[series.key] = row
            study_of[series.key] = number
            pending_per_study[number] += 1
            tasks.append(_Task(series, path, options, record))
    _write_manifest(manifest, rows)

    summary = Summary(rows, list(index.skipped), manifest, scan_seconds=scan_seconds)
    start = time.perf_counter()
    results = _run_tasks(tasks, workers, dask_address)
    try:
        with _progress_bar(len(tasks), len(studies), pending_per_study, progress) as bar:
            last_write = time.monotonic()
            for result in results:
                row = row_of[result.key]
                row.status, row.reason = result.status, result.reason
                if result.status != "ok":
                    row.output = ""
                if result.peak_rss_bytes is not None:
                    summary.peak_rss_bytes[result.key] = result.peak_rss_bytes
                bar.series_done(study_of[result.key])
                if time.monotonic() - last_write > _MANIFEST_INTERVAL_S:
                    _write_manifest(manifest, rows)
                    last_write = time.monotonic()
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()  # cancels what has not started and waits for running workers
        for row in row_of.values():
            if row.status == "pending":
                row.status, row.reason, row.output = "failed", "not run: the batch stopped early (interrupted, or the workers were unreachable)", ""
        summary.process_seconds = time.perf_counter() - start
        _write_manifest(manifest, rows)
    return summary


class _progress_bar:
    """A tqdm bar over series whose postfix counts finished studies."""

    def __init__(self, n_series: int, n_studies: int, pending_per_study: list[int], enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.pending = list(pending_per_study)
        self.studies_done = sum(count == 0 for count in self.pending)
        self.n_studies = n_studies
        self.bar = tqdm(total=n_series, unit="series", desc="preprocess", disable=not enabled)
        self.bar.set_postfix_str(self._postfix(), refresh=False)

    def _postfix(self) -> str:
        return f"studies {self.studies_done}/{self.n_studies}"

    def series_done(self, study: int) -> None:
        self.pending[study] -= 1
        if self.pending[study] == 0:
            self.studies_done += 1
            self.bar.set_postfix_str(self._postfix(), refresh=False)
        self.bar.update(1)

    def __enter__(self) -> "_progress_bar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()


def _run_tasks(tasks: list[_Task], workers: int | None, dask_address: str | None) -> Iterator[_TaskResult]:
    """Results in completion order: in this process, on a local process pool, or on a dask cluster."""
    if not tasks:
        return iter(())
    if dask_address is not None:
        return _run_on_dask(tasks, dask_address)
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1 or len(tasks) == 1:
        return map(_run_task, tasks)
    return _run_on_pool(tasks, min(workers, len(tasks)))


def _run_on_pool(tasks: list[_Task], workers: int) -> Iterator[_TaskResult]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: the parent may run threads (tqdm's monitor, a dask client) that fork would copy mid-lock
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_run_task, task): task for task in tasks}
        try:
            for future in as_completed(futures):
                yield _result_or_failure(future, futures[future])
        finally:
            for future in futures:
                future.cancel()


def _run_on_dask(tasks: list[_Task], address: str) -> Iterator[_TaskResult]:
    from distributed import Client, as_completed

    with Client(address) as client:
        futures = client.map(_run_task, tasks, pure=False)
        task_of = {future.key: task for future, task in zip(futures, tasks)}
        try:
            for future in as_completed(futures):
                yield _result_or_failure(future, task_of[future.key])
        finally:
            client.cancel(futures)


def _result_or_failure(future: Any, task: _Task) -> _TaskResult:
    """The task's result; a worker that died (killed, out of memory) becomes a failed result."""
    try:
        return future.result()
    except Exception as error:
        return _TaskResult(task.series.key, "failed", f"worker lost: {type(error).__name__}: {error}", 0.0, None)


# ---------------------------------------------------------------------------- streaming


def iter_volumes(
    source: str | os.PathLike[str] | SeriesIndex,
    *,
    rule: str = "thinnest",
    on_error: Literal["raise", "skip"] = "raise",
    **load_kwargs: Any,
) -> Iterator[tuple[Series, Volume]]:
    """Yield ``(series, volume)`` for each chosen series, one volume in memory at a time.

    Parameters
    ----------
    source : path-like or SeriesIndex
        A data set folder, or the result of `ctexplore.scan`.
    rule : str
        Which series of each study (see `parse_rule`).
    on_error : {'raise', 'skip'}
        A series that cannot be read raises its `DicomError`, or is skipped
        with a warning that names it and the reason.
    **load_kwargs
        Passed to `ctexplore.load_series` (``fill_value``, ``on_uneven``).

    Examples
    --------
    >>> import tempfile
    >>> from ctexplore.phantom import write_series
    >>> root = tempfile.mkdtemp()
    >>> for patient in ("P1", "P2"):
    ...     _ = write_series(f"{root}/{patient}", n_slices=4, matrix=16, patient_id=patient)
    >>> for series, volume in iter_volumes(root):
    ...     print(series.patient_id, volume.shape)
    P1 (4, 16, 16)
    P2 (4, 16, 16)
    """
    from .reader import load_series

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    parse_rule(rule)
    for study in find_studies(source):
        chosen, _ = select_series(study.series, rule)
        for series in chosen:
            try:
                volume = load_series(series, **load_kwargs)
            except (DicomError, OSError) as error:
                if on_error == "raise":
                    raise
                warnings.warn(
                    f"skipped {series_label(series)} of patient {series.patient_id!r} "
                    f"in {series.first.path.parent}: {error}",
                    stacklevel=2,
                )
                continue
            yield series, volume
