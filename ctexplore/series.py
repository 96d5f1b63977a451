"""Find the CT series under a folder by reading DICOM headers only.

A folder is not a series: scanners and archives put several series (thin, thick,
bone kernel, localizer) side by side, and files that are not images at all next
to them. `scan` groups images by (0020,000E) *Series Instance UID*, splits a UID
whose orientation or matrix changes, marks localizers, and records every file it
could not use in ``SeriesIndex.skipped`` with the reason. A damaged file whose
series can still be told from the readable part of its header is also attached
to that series (``Series.damaged``), so it cannot load silently short. Images
whose UID an anonymiser blanked are grouped by study, series number, orientation,
matrix and position continuity, as GDCM and dcm2niix do.
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .headers import (
    _DAMAGED_CT_REASONS,
    CT_SOP_CLASSES,
    SliceHeader,
    _floats,
    read_header,
    read_header_or_reason,
)

__all__ = ["scan", "SeriesIndex", "Series", "DamagedFile", "SliceHeader", "read_header", "CT_SOP_CLASSES"]

# Below this many files the process pool costs more than it saves.
_PARALLEL_THRESHOLD = 1000
_ORIENTATION_DECIMALS = 4


@dataclass(frozen=True)
class DamagedFile:
    """A file of a series that could not be read, as far as its header could be salvaged.

    Attributes
    ----------
    path : Path
    reason : str
        Why it could not be read.
    position : (3,) tuple of float or None
        Its (0020,0032) *Image Position (Patient)*, where readable.
    certain : bool
        True when its own (0020,000E) *Series Instance UID* names the series; False
        when only its folder does (the UID itself was unreadable).
    """

    path: Path
    reason: str
    position: tuple[float, float, float] | None
    certain: bool


@dataclass(frozen=True, eq=False)
class Series:
    """One stack of CT images that can form a volume, with its headers in slice order.

    Attributes
    ----------
    uid : str
        (0020,000E) *Series Instance UID*.
    key : str
        Unique name within a `SeriesIndex`: the UID, with ``#2``, ``#3`` ...
        appended where one UID had to be split by orientation or matrix.
    headers : tuple of SliceHeader
        Sorted along the slice normal (not by file name or instance number).
    damaged : tuple of DamagedFile
        Files of this series (or, ``certain=False``, of its folder) that `scan`
        could not read; `ctexplore.load_series` refuses or warns about them, so a
        series never loads silently short.
    """

    uid: str
    key: str
    headers: tuple[SliceHeader, ...]
    split_reason: str = ""
    damaged: tuple[DamagedFile, ...] = ()

    @property
    def files(self) -> list[Path]:
        """Source files in slice order (each once, also for multi-frame files)."""
        return list(dict.fromkeys(h.path for h in self.headers))

    @property
    def first(self) -> SliceHeader:
        return self.headers[0]

    @property
    def description(self) -> str:
        return self.first.series_description

    @property
    def modality(self) -> str:
        return self.first.modality

    @property
    def patient_id(self) -> str:
        return self.first.patient_id

    @property
    def study_uid(self) -> str:
        return self.first.study_uid

    @property
    def series_number(self) -> int | None:
        return self.first.series_number

    @property
    def n_images(self) -> int:
        """Number of slices (frames, for Enhanced CT)."""
        return len(self.headers)

    @property
    def orientation(self) -> tuple[float, ...] | None:
        """(0020,0037) *Image Orientation (Patient)*: row then column direction cosines."""
        return self.first.orientation

    @property
    def plane(self) -> str:
        """'axial', 'coronal', 'sagittal' or 'oblique', from the slice normal."""
        normal = self.first.normal
        if normal is None:
            return "unknown"
        axis = int(np.argmax(np.abs(normal)))
        if abs(normal[axis]) < 0.8:
            return "oblique"
        return ("sagittal", "coronal", "axial")[axis]

    @property
    def matrix(self) -> tuple[int, int]:
        """``(rows, columns)``."""
        return (self.first.rows, self.first.columns)

    @property
    def pixel_spacing(self) -> tuple[float, float] | None:
        return self.first.pixel_spacing

    @property
    def slice_thickness(self) -> float | None:
        """(0018,0050) *Slice Thickness*: reconstructed thickness, not the spacing."""
        return self.first.slice_thickness

    @property
    def transfer_syntax(self) -> str:
        """Name of the transfer syntax (of the first image)."""
        return _transfer_syntax_name(self.first.transfer_syntax_uid)

    @property
    def contrast_agent(self) -> str:
        """(0018,0010) *Contrast/Bolus Agent* of the first image, "" when absent (see `selection.is_contrast`)."""
        return self.first.contrast_agent

    @property
    def is_localizer(self) -> bool:
        """Scout image: ImageType says LOCALIZER, or a lone image beside a stack."""
        return any(h.is_localizer for h in self.headers) or self.split_reason == "localizer"

    @property
    def slice_positions(self) -> np.ndarray:
        """Position of each slice along the normal, in mm (ascending)."""
        normal = self.first.normal
        if normal is None or any(h.position is None for h in self.headers):
            return np.full(self.n_images, np.nan)
        return np.array([h.position for h in self.headers]) @ normal

    @property
    def spacing_summary(self) -> tuple[float, float, float]:
        """``(min, median, max)`` distance between consecutive slice planes in mm.

        Measured from (0020,0032) positions projected on the normal; NaN for a
        single image. (0018,0088) *Spacing Between Slices* is never used.
        """
        steps = np.diff(self.slice_positions)
        if steps.size == 0 or np.isnan(steps).any():
            return (math.nan, math.nan, math.nan)
        return (float(steps.min()), float(np.median(steps)), float(steps.max()))

    @property
    def tilt(self) -> float:
        """Gantry tilt in degrees measured between the stacking direction and the normal."""
        if self.n_images < 2 or self.first.normal is None or any(h.position is None for h in self.headers):
            return 0.0
        positions = np.array([h.position for h in self.headers], dtype=np.float64)
        stack = positions[-1] - positions[0]
        length = np.linalg.norm(stack)
        if length == 0:
            return 0.0
        cosine = abs(stack @ self.first.normal) / length
        return float(np.degrees(np.arccos(min(1.0, cosine))))

    def summary(self) -> dict[str, Any]:
        """One row of the index table."""
        low, median, high = self.spacing_summary
        return {
            "key": self.key,
            "description": self.description,
            "modality": self.modality,
            "images": self.n_images,
            "plane": self.plane,
            "matrix": f"{self.matrix[0]}x{self.matrix[1]}",
            "spacing_mm": _format_spacing(low, median, high),
            "thickness_mm": self.slice_thickness,
            "tilt_deg": round(self.tilt, 2),
            "localizer": self.is_localizer,
            "transfer_syntax": self.transfer_syntax,
            "contrast_agent": self.contrast_agent,
            "patient": self.patient_id,
            "folder": str(self.first.path.parent),
        }

    def __repr__(self) -> str:
        row = self.summary()
        return (
            f"Series({row['description']!r}, {row['images']} images, {row['plane']}, "
            f"{row['matrix']}, spacing {row['spacing_mm']} mm, tilt {row['tilt_deg']} deg"
            f"{', localizer' if row['localizer'] else ''})"
        )


@dataclass(eq=False)
class SeriesIndex:
    """The series found under a folder, and the files that were skipped.

    Index it by position or by series key/UID; iterate to get every `Series`.
    """

    root: Path
    series: list[Series] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.series)

    def __iter__(self) -> Iterator[Series]:
        return iter(self.series)

    def __getitem__(self, item: int | str) -> Series:
        if isinstance(item, int):
            return self.series[item]
        for series in self.series:
            if item in (series.key, series.uid):
                return series
        raise KeyError(f"no series with key or UID {item!r} under {self.root}")

    @property
    def damaged(self) -> list[tuple[Path, str]]:
        """Skipped files that are CT images but cannot be used (truncated, required attributes missing).

        Unlike a README or a dose report beside the images, each of these may be a
        slice missing from its series.
        """
        return [(path, reason) for path, reason in self.skipped if reason.startswith(_DAMAGED_CT_REASONS)]

    @property
    def volumes(self) -> list[Series]:
        """Series that can form a volume: not localizers, more than one image."""
        return [s for s in self.series if not s.is_localizer and s.n_images > 1]

    def most_common_slice_count(self, n: int = 1) -> list[tuple[int, int]]:
        """The blog's histogram: ``[(slices, how many series), ...]``, most common first.

        Counts image series (localizers left out) by their number of slices,
        not files per folder, so that a folder mixing series counts right.
        """
        return Counter(s.n_images for s in self.volumes).most_common(n)

    def table(self) -> list[dict[str, Any]]:
        """One summary dict per series (see `Series.summary`)."""
        return [s.summary() for s in self.series]

    def to_pandas(self) -> Any:
        """The index table (`table`) as a pandas DataFrame, one row per series.

        pandas is optional: ``pip install pandas`` to use this.

        Raises
        ------
        ImportError
            pandas is not installed; the message says how to install it.

        Examples
        --------
        >>> import tempfile
        >>> from ctexplore.phantom import write_series
        >>> folder = tempfile.mkdtemp()
        >>> _ = write_series(folder, n_slices=3, matrix=8, series_description="THIN")
        >>> frame = scan(folder).to_pandas()
        >>> frame[["description", "images", "plane"]].to_dict("records")
        [{'description': 'THIN', 'images': 3, 'plane': 'axial'}]
        """
        try:
            import pandas
        except ImportError:
            raise ImportError(
                "SeriesIndex.to_pandas needs pandas, which is not installed: run 'pip install pandas' "
                "(or use SeriesIndex.table(), a list of dicts, without it)"
            ) from None
        return pandas.DataFrame(self.table())

    def __repr__(self) -> str:
        columns = ["description", "images", "plane", "matrix", "spacing_mm", "tilt_deg", "localizer"]
        rows = [[str(row[c]) for c in columns] for row in self.table()]
        widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
        lines = [f"SeriesIndex({self.root}): {len(self.series)} series, {len(self.skipped)} skipped"]
        lines.append("  ".join(["#".rjust(2)] + [c.ljust(w) for c, w in zip(columns, widths)]))
        for number, row in enumerate(rows):
            lines.append("  ".join([str(number).rjust(2)] + [v.ljust(w) for v, w in zip(row, widths)]))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from html import escape

        rows = self.table()
        columns = list(rows[0]) if rows else ["description"]
        head = "".join(f"<th>{escape(c)}</th>" for c in ["#"] + columns)
        body = "".join(
            "<tr>" + f"<td>{i}</td>" + "".join(f"<td>{escape(str(r[c]))}</td>" for c in columns) + "</tr>"
            for i, r in enumerate(rows)
        )
        skipped = ""
        if self.skipped:
            items = "".join(f"<li><code>{escape(str(p))}</code>: {escape(reason)}</li>" for p, reason in self.skipped)
            noun = "file" if len(self.skipped) == 1 else "files"
            skipped = f"<details><summary>{len(self.skipped)} {noun} skipped</summary><ul>{items}</ul></details>"
        return (
            f"<p><b>{len(self.series)} series</b> under <code>{escape(str(self.root))}</code></p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{skipped}"
        )


def scan(path: str | os.PathLike[str], *, workers: int | None = None) -> SeriesIndex:
    """Index the CT series under a folder, reading headers only.

    Parameters
    ----------
    path : path-like
        A folder (searched recursively) or a single file.
    workers : int, optional
        Processes used to parse headers. Default: one per core for large
        folders, none for small ones. Threads would not help: parsing holds
        the GIL.

    Returns
    -------
    SeriesIndex
        ``index.series`` sorted by patient, study, series number; every file
        that is not a readable CT image is in ``index.skipped`` as
        ``(path, reason)``.

    See Also
    --------
    ctexplore.load_series : one series to a `Volume`.
    ctexplore.headers.read_header : one file's header, as `scan` reads it.

    Examples
    --------
    >>> import tempfile
    >>> from ctexplore.phantom import write_series
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_series(folder, n_slices=4, matrix=32, series_description="demo")
    >>> index = scan(folder)
    >>> index[0].description, index[0].n_images, index.skipped
    ('demo', 4, [])
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    found = [root] if not root.is_dir() else sorted(_walk_files(root))
    # Opening a FIFO or device blocks or never ends: only regular files are read.
    files = [f for f in found if f.is_file()]
    headers: list[SliceHeader] = []
    skipped: list[tuple[Path, str]] = [
        (f, "not a regular file (named pipe, socket or device); not read") for f in found if not f.is_file()
    ]
    results = _read_headers(files, workers)
    for file, result in zip(files, results):
        if isinstance(result, str):
            skipped.append((file, result))
        else:
            headers.extend(result)
    return SeriesIndex(root=root, series=_attach_damaged(group_series(headers), skipped), skipped=skipped)


def _attach_damaged(found: list[Series], skipped: list[tuple[Path, str]]) -> list[Series]:
    """Give each series the damaged files that belong to it, by their salvaged UID or else their folder."""
    from dataclasses import replace

    from ._fastheader import salvage_values

    members: dict[str, list[DamagedFile]] = defaultdict(list)
    by_uid = {s.uid: s for s in reversed(found)}  # the first (largest) group of a split UID
    by_folder: dict[Path, list[Series]] = defaultdict(list)
    for series in found:
        for folder in {h.path.parent for h in series.headers}:
            by_folder[folder].append(series)
    for path, reason in skipped:
        if reason.startswith(_NOT_A_SLICE) or (reason.endswith("is not a CT image") and "(unknown" not in reason):
            continue  # what it is, e.g. an MR image or a dose report, not damage
        try:
            if not (reason.startswith(_DAMAGED_CT_REASONS) or _looks_like_dicom(path)):
                continue
            values = salvage_values(path)
        except OSError:
            values = {}
        uid = str(values.get("SeriesInstanceUID") or "")
        position = _floats(values.get("ImagePositionPatient"), 3)
        if uid in by_uid and uid:
            # an unknown SOP class may be a garbled CT one, or a vendor's private object: say so, don't refuse
            certain = "(unknown SOP class)" not in reason
            members[by_uid[uid].key].append(DamagedFile(path, reason, position, certain))  # type: ignore[arg-type]
        else:  # no UID, or one garbled by the damage: its folder and what else was readable decide
            for series in by_folder.get(path.parent, []):
                if _could_belong(values, series.first):
                    members[series.key].append(DamagedFile(path, reason, position, False))  # type: ignore[arg-type]
    for single in found:
        # one image under a UID of its own, but with a stack's study, number and geometry: maybe a damaged UID
        if single.n_images != 1 or single.is_localizer:
            continue
        for series in by_folder.get(single.first.path.parent, []):
            if series.n_images > 1 and _stack_key(series.first) == _stack_key(single.first):
                reason = (
                    f"a one-image series of its own ((0020,000E) Series Instance UID {single.uid}) with this "
                    "series' study, (0020,0011) Series Number, orientation and matrix: possibly its slice with a "
                    "damaged UID"
                )
                members[series.key].append(DamagedFile(single.first.path, reason, single.first.position, False))
    return [replace(s, damaged=tuple(members[s.key])) if s.key in members else s for s in found]


# Skip reasons that say what a file is (not a slice of a series), not that it is damaged.
_NOT_A_SLICE = ("not a regular file", "DICOMDIR")


def _looks_like_dicom(path: Path) -> bool:
    """A DICOM preamble and magic, or a file cut short inside the (zero) preamble: maybe a slice.

    An empty file is not: exports carry such stubs beside the images, and 0 bytes say nothing.
    """
    with open(path, "rb") as handle:
        start = handle.read(132)
    return start[128:132] == b"DICM" or bool(start and not start.strip(b"\0"))


def _stack_key(header: SliceHeader) -> tuple[Any, ...]:
    return (header.patient_id, header.study_uid, header.series_number, *_geometry_key(header))


def group_series(headers: Iterable[SliceHeader]) -> list[Series]:
    """Group image headers into series: by UID, then by orientation and matrix.

    Within each group the images are sorted along the slice normal. A lone
    image at another orientation than the rest of its UID is a localizer.
    """
    by_uid: dict[str, list[SliceHeader]] = defaultdict(list)
    for header in headers:
        by_uid[header.series_uid].append(header)
    series: list[Series] = _group_blank_uid(_join_uid_series(by_uid.pop("", []), by_uid))
    for uid, members in by_uid.items():
        groups: dict[tuple[Any, ...], list[SliceHeader]] = defaultdict(list)
        for header in members:
            groups[_geometry_key(header)].append(header)
        _merge_unoriented(groups)
        ordered = sorted(groups.values(), key=len, reverse=True)
        ordered = _merge_stray_slices(ordered)
        for number, group in enumerate(ordered, start=1):
            reason = ""
            if len(ordered) > 1:
                reason = "localizer" if len(group) == 1 and number > 1 else "orientation or matrix changes"
            key = uid if number == 1 else f"{uid}#{number}"
            series.append(Series(uid=uid, key=key, headers=_sort_along_normal(group), split_reason=reason))
    series.sort(key=lambda s: (s.patient_id, s.study_uid, s.series_number or 0, s.is_localizer, s.key))
    return series


# Salvaged attributes that rule a damaged file out of a series when they differ.
_IDENTITY = {
    "PatientID": "patient_id",
    "StudyInstanceUID": "study_uid",
    "SeriesDescription": "series_description",
    "Modality": "modality",
}


def _could_belong(values: dict[str, Any], header: SliceHeader) -> bool:
    """No salvaged identity contradicts the series (a value off by a flipped byte or two does not)."""
    return all(
        _nearly_equal(str(values[k]), getattr(header, attribute)) for k, attribute in _IDENTITY.items() if k in values
    )


def _nearly_equal(salvaged: str, value: str) -> bool:
    if salvaged == value:
        return True
    return len(salvaged) == len(value) and sum(a != b for a, b in zip(salvaged, value)) <= 2


def _merge_unoriented(groups: dict[tuple[Any, ...], list[SliceHeader]]) -> None:
    """Put images with a damaged (0020,0037) back into the largest stack of their matrix.

    Split off, such an image would pass for a localizer and its series would load
    one slice short without a word; kept in, the load names it.
    """
    for key in [k for k in groups if k[0] is None]:
        same_matrix = [k for k in groups if k[0] is not None and k[1:] == key[1:]]
        if same_matrix:
            largest = max(same_matrix, key=lambda k: len(groups[k]))
            groups[largest].extend(groups.pop(key))


# A lone image whose normal is within this angle of its stack's is a slice of it, not a localizer.
_SAME_PLANE_COSINE = math.cos(math.radians(10.0))


def _merge_stray_slices(ordered: list[list[SliceHeader]]) -> list[list[SliceHeader]]:
    """Return lone images of the stack's plane to the stack, so that the load names what differs.

    A localizer is another plane (or says LOCALIZER); a lone image in the stack's
    plane with a slightly different orientation or another matrix is a damaged slice,
    and splitting it off would load the stack one slice short without a word.
    """
    if len(ordered) < 2 or len(ordered[0]) < 2 or ordered[0][0].normal is None:
        return ordered
    main, reference = ordered[0], ordered[0][0].normal
    kept = [main]
    for group in ordered[1:]:
        header = group[0]
        if len(group) == 1 and not header.is_localizer and header.normal is not None:
            if abs(float(header.normal @ reference)) > _SAME_PLANE_COSINE:
                main.append(header)
                continue
        kept.append(group)
    return kept


#: `Series.split_reason` of series formed without a (0020,000E) Series Instance UID.
BLANK_UID_REASON = "blank (0020,000E) Series Instance UID"
# Within a blank-UID group, a step this many times the median starts another series.
_CONTINUITY_FACTOR = 3.0


def _join_uid_series(blank: list[SliceHeader], by_uid: dict[str, list[SliceHeader]]) -> list[SliceHeader]:
    """Add blank-UID images to the one UID series of their study, number and geometry; return the rest.

    An anonymiser that blanked the UID of some files only must not cut them off their series.
    """
    if not blank:
        return blank
    owners: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    for uid, members in by_uid.items():
        for header in members:
            owners[(header.study_uid, header.series_number, *_geometry_key(header))].add(uid)
    rest = []
    for header in blank:
        uids = owners.get((header.study_uid, header.series_number, *_geometry_key(header)), set())
        if len(uids) == 1:
            by_uid[next(iter(uids))].append(header)
        else:
            rest.append(header)
    return rest


def _group_blank_uid(headers: list[SliceHeader]) -> list[Series]:
    """Series from images whose UID an anonymiser blanked, as GDCM and dcm2niix form them.

    Grouped by study, (0020,0011) Series Number, orientation and matrix; then split
    where positions jump (a step over three times the median), which keeps
    two stacks of one series number apart.
    """
    groups: dict[tuple[Any, ...], list[SliceHeader]] = defaultdict(list)
    for header in headers:
        groups[(header.study_uid, header.series_number or 0, *_geometry_key(header))].append(header)
    series: list[Series] = []
    for (study, number, *_), members in sorted(groups.items(), key=lambda item: str(item[0])):
        ordered = _sort_along_normal(members)
        runs = [list(ordered)]
        normal = ordered[0].normal
        if normal is not None and all(h.position is not None for h in ordered) and len(ordered) > 2:
            steps = np.diff(np.array([h.position for h in ordered]) @ normal)
            cut_after = np.flatnonzero(steps > _CONTINUITY_FACTOR * max(float(np.median(steps)), 1e-3))
            bounds = [0, *(int(k) + 1 for k in cut_after), len(ordered)]
            runs = [list(ordered[start:end]) for start, end in zip(bounds, bounds[1:])]
        for run in runs:
            key = f"blank-uid:{study}:{number}"
            taken = len([s for s in series if s.key.split("#")[0] == key])
            series.append(
                Series(
                    uid="",
                    key=key if not taken else f"{key}#{taken + 1}",
                    headers=tuple(run),
                    split_reason=BLANK_UID_REASON,
                )
            )
    return series


def _geometry_key(header: SliceHeader) -> tuple[Any, ...]:
    orientation = (
        None if header.orientation is None else tuple(round(v, _ORIENTATION_DECIMALS) + 0.0 for v in header.orientation)
    )
    return (orientation, header.rows, header.columns, header.is_localizer)


def _sort_along_normal(headers: list[SliceHeader]) -> tuple[SliceHeader, ...]:
    normal = next((h.normal for h in headers if h.normal is not None), None)
    if normal is None or any(h.position is None for h in headers):
        return tuple(sorted(headers, key=lambda h: (h.instance_number or 0, str(h.path), h.frame)))
    projected = np.array([h.position for h in headers]) @ normal
    order = np.argsort(projected, kind="stable")
    return tuple(headers[i] for i in order)


# ctexplore's own bookkeeping files (e.g. the sample data's completion marker).
_OWN_FILE_PREFIX = ".ctexplore-"


def _walk_files(root: Path) -> Iterator[Path]:
    for folder, _, names in os.walk(root):
        for name in names:
            if not name.startswith(_OWN_FILE_PREFIX):
                yield Path(folder, name)


def _read_headers(files: list[Path], workers: int | None) -> list[list[SliceHeader] | str]:
    if workers is None:
        workers = (os.cpu_count() or 1) if len(files) >= _PARALLEL_THRESHOLD else 1
    if workers <= 1 or len(files) < 2:
        return [read_header_or_reason(f) for f in files]
    from concurrent.futures import ProcessPoolExecutor

    from ._pool import _context

    chunk = max(16, len(files) // (workers * 8))
    # a fork server or spawn, never plain fork (threads in the parent; deprecated on Python 3.12+)
    with ProcessPoolExecutor(max_workers=workers, mp_context=_context(("ctexplore.headers",))) as pool:
        return list(pool.map(read_header_or_reason, files, chunksize=chunk))


def _transfer_syntax_name(uid: str) -> str:
    from pydicom.uid import UID

    return UID(uid).name if uid else "unknown"


def _format_spacing(low: float, median: float, high: float) -> str:
    if math.isnan(median):
        return "-"
    if high - low < 0.01:
        return f"{median:.3g}"
    return f"{low:.3g}/{median:.3g}/{high:.3g}"
