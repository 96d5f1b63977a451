"""Run the preprocessing over a whole data set: workers, resume, and the manifest.

`preprocess` walks a data set (the CQ500 layout ``CQ500-CT-N/Unknown
Study/<series folders>`` or any other: series are found by UID, not by folder),
chooses series in each study by an explicit rule (`ctexplore.selection`), runs
`ctexplore.pipeline.preprocess_series` on each in worker processes (or a Dask
cluster) and writes ``OUTPUT/manifest.csv``: what happened to every series
found, ok, skipped (and why) or failed (and why). A rerun skips what is done.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import sys
import time
import warnings
import zipfile
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import DicomError
from .pipeline import (
    PreprocessOptions,
    output_name,
    output_record,
    preprocess_series,
    recorded_options,
    remove_stale_temporaries,
)
from .selection import find_studies, parse_rule, ranked_candidates, select_series
from .series import Series, scan

__all__ = ["preprocess", "ManifestRow", "Summary", "MANIFEST_COLUMNS", "ALREADY_DONE"]


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
    "warnings",
    "kernel",
    "slice_count",
    "output_shape",
    "output_spacing",
    "tilt_deg",
    "seconds",
)


ALREADY_DONE = "already done"


_MANIFEST_INTERVAL_S = 2.0


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
    warnings: str = ""
    output_shape: str = ""
    output_spacing: str = ""
    worker_pid: int | None = None


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
    shape = spacing = ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            preprocess_series(task.series, task.output, task.options, record=task.record)
            status, reason = "ok", ""
            shape, spacing = _output_geometry(task.output)
        except DicomError as error:
            status, reason = "failed", str(error)
        except (KeyboardInterrupt, SystemExit):
            raise
        # recorded, not swallowed: the manifest shows type and message; BaseException too, as some
        # decoders raise one (pylibjpeg-rle's PanicException) that would otherwise end the worker
        except BaseException as error:
            status, reason = "failed", f"{type(error).__name__}: {error}"
    text = " | ".join(dict.fromkeys(str(w.message) for w in caught))
    seconds = time.perf_counter() - start
    return _TaskResult(task.series.key, status, reason, seconds, _peak_rss_bytes(), text, shape, spacing, os.getpid())


def _output_geometry(output: Path) -> tuple[str, str]:
    """``'DxHxW'`` and ``'a x b x c'`` mm of a written output (read back from its header only)."""
    if output.name.endswith(".npz"):
        with zipfile.ZipFile(output) as archive, archive.open("hu.npy") as stream:
            version = np.lib.format.read_magic(stream)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape = read_header(stream)[0]
        with np.load(output, allow_pickle=False) as data:
            spacing = tuple(float(v) for v in data["spacing"])
    else:
        import nibabel

        image: Any = nibabel.load(output)
        shape, spacing = image.shape, tuple(float(v) for v in image.header.get_zooms())
    return "x".join(str(n) for n in shape), "x".join(f"{v:.4g}" for v in spacing)


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
    warnings: str = ""
    kernel: str = ""
    slice_count: int = 0
    output_shape: str = ""
    output_spacing: str = ""
    tilt_deg: float = 0.0
    seconds: float | None = None
    labels: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, series: Series, status: str = "pending", reason: str = "", output: str = "") -> ManifestRow:
        return cls(
            series.patient_id,
            series.study_uid,
            series.uid,
            series.series_number,
            series.description,
            series.n_images,
            status,
            reason,
            output,
            kernel=series.first.convolution_kernel,
            slice_count=series.n_images,
            tilt_deg=round(series.tilt, 2),
        )


@dataclass
class Summary:
    """What a `preprocess` run did: one row per series, the files that were not images, timings."""

    rows: list[ManifestRow]
    skipped_files: list[tuple[Path, str]]
    manifest: Path
    scan_seconds: float = 0.0
    process_seconds: float = 0.0
    peak_rss_bytes: dict[str, int] = field(default_factory=dict)
    worker_peak_rss_bytes: dict[int, int] = field(default_factory=dict)

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
        return sum(row.status == "ok" and row.reason.startswith(ALREADY_DONE) for row in self.rows)

    def __str__(self) -> str:
        extras = []
        if self.already_done:
            extras.append(f"{self.already_done} already done")
        if self.skipped_files:
            count = len(self.skipped_files)
            noun = "file not a CT image" if count == 1 else "files not CT images"
            extras.append(f"{count} {noun}, listed in {self.manifest.parent / 'skipped_files.csv'}")
        tail = f" ({'; '.join(extras)})" if extras else ""
        return f"{self.ok} ok, {self.skipped} skipped, {self.failed} failed{tail}"


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Write a CSV atomically: a temporary file in the same folder, then a rename."""
    from ._atomic import atomic_target

    with atomic_target(path) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8", errors="surrogateescape") as stream:
            writer = csv.writer(stream)
            writer.writerow(header)
            writer.writerows(rows)


def _write_manifest(path: Path, rows: Sequence[ManifestRow], findings: Sequence[str] = ()) -> None:
    """The manifest; with labels, one column per finding (majority vote, empty when the study has no read)."""

    def cells(row: ManifestRow) -> list[Any]:
        values = [getattr(row, c) if getattr(row, c) is not None else "" for c in MANIFEST_COLUMNS]
        return values + [row.labels.get(f, "") for f in findings]

    _write_csv(path, (*MANIFEST_COLUMNS, *findings), [cells(row) for row in rows])


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
    labels: str | os.PathLike[str] | None = None,
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
        Local worker processes (default: one per core), started before the
        header scan so they are warm when it ends. Each gets one series at a
        time, largest first; a worker that dies (a decoder's native abort, the
        out-of-memory killer) costs only its series, recorded ``failed`` with
        the cause, and is replaced.
    dask_address : str, optional
        Run the same tasks on a ``dask.distributed`` scheduler at this address
        (e.g. ``"tcp://10.0.0.5:8786"``) instead; its workers must see the
        input and output folders under the same paths.
    progress : bool
        Show a progress bar over series (with the number of finished studies).
    labels : path-like, optional
        CQ500 ``reads.csv`` (see `ctexplore.labels.cq500_labels`): the majority
        vote of each finding becomes a manifest column named after it (``ICH``,
        ``SDH``, ...), joined on the ``CQ500-CT-N`` in the patient ID or folder.

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

    When the series a rule chose for a study fails, the next candidate of the
    rule (`ranked_candidates`) is processed instead: the failed row keeps its
    reason, the replacement's reason says which series it replaces.

    One run at a time holds ``OUTPUT`` (a lock file in it): a second run into
    the same folder raises `BlockingIOError` naming the process that holds it.
    After Ctrl-C (``KeyboardInterrupt``) the manifest records every output
    that was complete as ``ok``, the rest as ``failed`` ("not run").

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
    from .labels import cq500_labels

    reads = cq500_labels(labels) if labels is not None else None
    target.mkdir(parents=True, exist_ok=True)
    with _output_lock(target):
        runner = _start_runner(workers, dask_address)  # before the scan: local workers start while headers are read
        try:
            return _preprocess_locked(source, target, rule, options, workers, progress, reads, runner)
        finally:
            runner.close()


def _preprocess_locked(
    source: Path,
    target: Path,
    rule: str,
    options: PreprocessOptions,
    workers: int | None,
    progress: bool,
    reads: Any,
    runner: _Runner,
) -> Summary:
    from .labels import study_name

    findings = reads.findings if reads is not None else ()
    manifest = target / "manifest.csv"
    for table in (manifest, target / "skipped_files.csv"):
        remove_stale_temporaries(table)

    start = time.perf_counter()
    index = scan(source, workers=None if isinstance(runner, _DaskRunner) else workers)
    scan_seconds = time.perf_counter() - start
    _write_csv(target / "skipped_files.csv", ("path", "reason"), [(str(p), r) for p, r in index.skipped])

    rows: list[ManifestRow] = []
    plan = _Plan(target, options)
    studies = find_studies(index)
    pending_per_study = [0] * len(studies)
    tasks: list[_Task] = []
    for number, study in enumerate(studies):
        chosen, skipped = select_series(study.series, rule)
        ranked, _ = ranked_candidates(study.series, rule)
        chosen_keys = {series.key for series in chosen}
        plan.fallbacks[number] = deque(series for series in ranked if series.key not in chosen_keys)
        reasons = {series.key: reason for series, reason in skipped}
        for series in study.series:
            row = ManifestRow.of(series)
            if reads is not None:
                name = study_name(series.patient_id) or study_name(str(series.first.path.parent))
                if name in reads.votes:
                    row.labels = reads.majority(name)
            rows.append(row)
            plan.row_of[series.key] = row
            plan.study_of[series.key] = number
            if series.key in reasons:
                row.status, row.reason = "skipped", reasons[series.key]
                continue
            task = plan.task_or_done(series)
            if task is not None:
                pending_per_study[number] += 1
                tasks.append(task)
    _write_manifest(manifest, rows, findings)

    summary = Summary(rows, list(index.skipped), manifest, scan_seconds=scan_seconds)
    start = time.perf_counter()
    # largest first: the long series do not end up alone at the tail while the other workers idle
    runner.submit(sorted(tasks, key=lambda task: -_task_size(task)))
    try:
        with _progress_bar(len(tasks), len(studies), pending_per_study, progress) as bar:
            last_write = time.monotonic()
            for result in runner.results():
                row = plan.row_of[result.key]
                _record(row, result)
                if result.peak_rss_bytes is not None:
                    summary.peak_rss_bytes[result.key] = result.peak_rss_bytes
                if result.worker_pid is not None and result.peak_rss_bytes is not None:
                    peaks = summary.worker_peak_rss_bytes
                    peaks[result.worker_pid] = max(peaks.get(result.worker_pid, 0), result.peak_rss_bytes)
                plan.running.pop(result.key, None)
                number = plan.study_of[result.key]
                fallback = plan.fallback_after(result) if result.status != "ok" else None
                if fallback is not None:
                    runner.submit([fallback], first=True)
                    bar.add_series(number)
                bar.series_done(number)
                if time.monotonic() - last_write > _MANIFEST_INTERVAL_S:
                    _write_manifest(manifest, rows, findings)
                    last_write = time.monotonic()
    finally:
        runner.close()  # stops what has not finished (after Ctrl-C) before the outputs are checked below
        for key, task in plan.running.items():
            _record_unfinished(plan.row_of[key], task)
        summary.process_seconds = time.perf_counter() - start
        _write_manifest(manifest, rows, findings)
    return summary


def _task_size(task: _Task) -> int:
    first = task.series.first
    return task.series.n_images * (first.rows or 1) * (first.columns or 1)


def _record(row: ManifestRow, result: _TaskResult) -> None:
    replaced = row.reason if row.reason.startswith(_REPLACES) else ""
    row.status, row.reason = result.status, result.reason
    if replaced:
        row.reason = f"{replaced}; {result.reason}" if result.reason else replaced
    row.warnings, row.seconds = result.warnings, round(result.seconds, 3)
    row.output_shape, row.output_spacing = result.output_shape, result.output_spacing
    if result.status != "ok":
        row.output = ""


def _record_unfinished(row: ManifestRow, task: _Task) -> None:
    """A series whose result never came back (Ctrl-C, lost workers): ok if its output is complete."""
    if recorded_options(task.output) == json.loads(json.dumps(task.record)):
        row.status = "ok"
        row.reason = f"{row.reason}; {_FINISHED_UNCOLLECTED}" if row.reason else _FINISHED_UNCOLLECTED
        row.output_shape, row.output_spacing = _output_geometry(task.output)
    else:
        row.status, row.output = "failed", ""
        row.reason = "not run: the batch stopped early (interrupted, or the workers were unreachable)"


_REPLACES = "replaces "
_FINISHED_UNCOLLECTED = "output complete; the batch stopped before its result was collected"


class _Plan:
    """What a run must do: the row of every series, its study, the tasks in flight and each study's fallbacks."""

    def __init__(self, target: Path, options: PreprocessOptions) -> None:
        self.target, self.options = target, options
        self.row_of: dict[str, ManifestRow] = {}
        self.study_of: dict[str, int] = {}
        self.fallbacks: dict[int, deque[Series]] = {}
        self.running: dict[str, _Task] = {}

    def task_or_done(self, series: Series) -> _Task | None:
        """The task for `series`, or None when its output is already there from an earlier run."""
        row = self.row_of[series.key]
        relative = output_name(series, self.options.suffix)
        path = self.target / relative
        row.output = relative
        remove_stale_temporaries(path)
        record = output_record(series, self.options)
        if recorded_options(path) == json.loads(json.dumps(record)):
            row.status = "ok"
            row.reason = f"{ALREADY_DONE}; {row.reason}" if row.reason.startswith(_REPLACES) else ALREADY_DONE
            return None
        row.status = "pending"
        task = _Task(series, path, self.options, record)
        self.running[series.key] = task
        return task

    def fallback_after(self, failed: _TaskResult) -> _Task | None:
        """When a chosen series failed, the next candidate of its study's rule (recorded as replacing it)."""
        queue = self.fallbacks.get(self.study_of[failed.key])
        while queue:
            series = queue.popleft()
            row = self.row_of[series.key]
            failed_row = self.row_of[failed.key]
            row.reason = (
                f"{_REPLACES}series {failed_row.series_number} {failed_row.series_description!r}, "
                f"which failed (next candidate of the rule)"
            )
            task = self.task_or_done(series)
            if task is not None:
                return task
            if row.status == "ok":
                return None  # an earlier run already made this fallback
        return None


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

    def add_series(self, study: int) -> None:
        """A fallback series joins the run."""
        self.pending[study] += 1
        self.bar.total += 1

    def series_done(self, study: int) -> None:
        self.pending[study] -= 1
        if self.pending[study] == 0:
            self.studies_done += 1
            self.bar.set_postfix_str(self._postfix(), refresh=False)
        self.bar.update(1)

    def __enter__(self) -> _progress_bar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()


class _Runner(Protocol):
    def submit(self, tasks: list[_Task], *, first: bool = False) -> None: ...
    def results(self) -> Iterator[_TaskResult]: ...
    def close(self) -> None: ...


# Imported by each local worker before its first task (most of a cold worker's first-series time).
_WARM_MODULES = ("ctexplore.pipeline", "ctexplore.reader", "ctexplore.export", "ctexplore.geometry", "pydicom")


def _start_runner(workers: int | None, dask_address: str | None) -> _Runner:
    if dask_address is not None:
        return _DaskRunner(dask_address)
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return _LocalRunner(workers)


class _LocalRunner:
    """Series on local worker processes (even for one worker: a native crash then costs one series, not the run)."""

    def __init__(self, workers: int) -> None:
        from ._pool import WorkerPool

        self.pool = WorkerPool(_run_task, workers, warm=_WARM_MODULES)

    def submit(self, tasks: list[_Task], *, first: bool = False) -> None:
        self.pool.submit(tasks, first=first)

    def results(self) -> Iterator[_TaskResult]:
        from ._pool import WorkerDied

        for task, outcome in self.pool.results():
            if isinstance(outcome, WorkerDied):
                yield _TaskResult(task.series.key, "failed", _death_reason(outcome, task), 0.0, None)
            else:
                yield outcome

    def close(self) -> None:
        self.pool.close()


def _death_reason(death: Any, task: _Task) -> str:
    folder = task.series.first.path.parent
    return (
        f"{death} while reading, decoding or resampling this series ({task.series.n_images} files in {folder}); "
        "a native crash (e.g. a decoder abort on a damaged or mislabelled compressed frame) or the out-of-memory "
        "killer; the other series went on. Load it alone with ctexplore.load_series to see where it stops"
    )


class _DaskRunner:
    """Series on a ``dask.distributed`` cluster; a lost worker becomes a failed series."""

    def __init__(self, address: str) -> None:
        from distributed import Client, as_completed

        self.client = Client(address)
        self.completed = as_completed()
        self.task_of: dict[Any, _Task] = {}

    def submit(self, tasks: list[_Task], *, first: bool = False) -> None:
        for future, task in zip(self.client.map(_run_task, tasks, pure=False), tasks):
            self.task_of[future.key] = task
            self.completed.add(future)

    def results(self) -> Iterator[_TaskResult]:
        for future in self.completed:
            task = self.task_of.pop(future.key)
            try:
                yield future.result()
            except Exception as error:  # killed, out of memory, unreachable: that series fails, the rest go on
                reason = f"worker lost: {type(error).__name__}: {error}"
                yield _TaskResult(task.series.key, "failed", reason, 0.0, None)

    def close(self) -> None:
        self.completed.clear()
        self.client.close()


_RUN_INFO_NAME = ".ctexplore-preprocess.run"


@contextmanager
def _output_lock(target: Path) -> Iterator[None]:
    """Hold OUTPUT for one run: a second run into it stops at once, saying which run holds it.

    Without it the second run's start-up cleanup removes the first run's
    temporary files and both write the same manifest. The lock belongs to the
    open descriptor, so the system releases it when the run ends, however it
    ends. On POSIX the folder itself is locked (``flock``), leaving nothing in
    OUTPUT; on Windows, the first byte of a lock file in it.
    """
    if sys.platform == "win32":
        import msvcrt

        handle = os.open(target / ".ctexplore-preprocess.lock", os.O_RDWR | os.O_CREAT)
        try:
            msvcrt.locking(handle, msvcrt.LK_NBLCK, 1)
            acquired = True
        except OSError:
            acquired = False
    else:
        import fcntl

        handle = os.open(target, os.O_RDONLY)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            acquired = True
        except BlockingIOError:
            acquired = False
    if not acquired:
        os.close(handle)
        try:
            holder = json.loads((target / _RUN_INFO_NAME).read_text())
            who = f"process {holder['pid']} on {holder['host']}, started {holder['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            who = "another process (its details are not written yet)"
        raise BlockingIOError(
            f"output folder {target} is in use by another ctexplore preprocess run ({who}); "
            "wait for it to finish, or choose another output folder"
        ) from None
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        (target / _RUN_INFO_NAME).write_text(json.dumps(info))
        yield
    finally:
        (target / _RUN_INFO_NAME).unlink(missing_ok=True)
        os.close(handle)  # releases the lock
