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
import time
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from .selection import find_studies, parse_rule, select_series
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
        except Exception as error:  # recorded, not swallowed: the manifest shows type and message
            status, reason = "failed", f"{type(error).__name__}: {error}"
    text = " | ".join(dict.fromkeys(str(w.message) for w in caught))
    return _TaskResult(
        task.series.key, status, reason, time.perf_counter() - start, _peak_rss_bytes(), text, shape, spacing
    )


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

        image = nibabel.load(output)
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
            extras.append(
                f"{len(self.skipped_files)} files not CT images, listed in {self.manifest.parent / 'skipped_files.csv'}"
            )
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
        Local processes (default: one per core); 1 runs in this process.
        Each task is one series, so a worker holds one series at a time.
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
    from .labels import cq500_labels, study_name

    reads = cq500_labels(labels) if labels is not None else None
    findings = reads.findings if reads is not None else ()
    target.mkdir(parents=True, exist_ok=True)
    manifest = target / "manifest.csv"
    for table in (manifest, target / "skipped_files.csv"):
        remove_stale_temporaries(table)

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
            if reads is not None:
                name = study_name(series.patient_id) or study_name(str(series.first.path.parent))
                if name in reads.votes:
                    row.labels = reads.majority(name)
            rows.append(row)
            if series.key in reasons:
                row.status, row.reason = "skipped", reasons[series.key]
                continue
            relative = output_name(series, options.suffix)
            path = target / relative
            row.output = relative
            remove_stale_temporaries(path)
            record = output_record(series, options)
            if recorded_options(path) == json.loads(json.dumps(record)):
                row.status, row.reason = "ok", ALREADY_DONE
                continue
            row_of[series.key] = row
            study_of[series.key] = number
            pending_per_study[number] += 1
            tasks.append(_Task(series, path, options, record))
    _write_manifest(manifest, rows, findings)

    summary = Summary(rows, list(index.skipped), manifest, scan_seconds=scan_seconds)
    start = time.perf_counter()
    results = _run_tasks(tasks, workers, dask_address)
    try:
        with _progress_bar(len(tasks), len(studies), pending_per_study, progress) as bar:
            last_write = time.monotonic()
            for result in results:
                row = row_of[result.key]
                row.status, row.reason = result.status, result.reason
                row.warnings, row.seconds = result.warnings, round(result.seconds, 3)
                row.output_shape, row.output_spacing = result.output_shape, result.output_spacing
                if result.status != "ok":
                    row.output = ""
                if result.peak_rss_bytes is not None:
                    summary.peak_rss_bytes[result.key] = result.peak_rss_bytes
                bar.series_done(study_of[result.key])
                if time.monotonic() - last_write > _MANIFEST_INTERVAL_S:
                    _write_manifest(manifest, rows, findings)
                    last_write = time.monotonic()
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()  # cancels what has not started and waits for running workers
        for row in row_of.values():
            if row.status == "pending":
                row.status, row.reason, row.output = (
                    "failed",
                    "not run: the batch stopped early (interrupted, or the workers were unreachable)",
                    "",
                )
        summary.process_seconds = time.perf_counter() - start
        _write_manifest(manifest, rows, findings)
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

    def __enter__(self) -> _progress_bar:
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
