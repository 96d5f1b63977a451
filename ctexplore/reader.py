"""Read one CT series into a `Volume`: pixels to Hounsfield units, positions to an affine.

The order of operations follows the DICOM standard: stored value -> mask the bits
above (0028,0102) *High Bit* and sign-extend -> mark (0028,0120) *Pixel Padding
Value* -> apply each slice's (0028,1053) *Rescale Slope* and (0028,1052) *Rescale
Intercept*. Slices are ordered by (0020,0032) *Image Position (Patient)* projected
on the slice normal; spacing comes from those positions, never from (0018,0050)
*Slice Thickness* or (0018,0088) *Spacing Between Slices*.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._threads import in_threads
from .errors import DecodeError, DicomError, GeometryError, GeometryWarning, SeriesSelectionError
from .headers import SliceHeader, read_header
from .hounsfield import headers_to_hu, rescale_intercept, rescale_slope
from .series import BLANK_UID_REASON, Series, SeriesIndex, group_series, scan
from .volume import AIR_HU, Volume, affine_normal, slice_normal

__all__ = ["load_series"]

# Steps that differ by less than this are one spacing (dicom2nifti: rtol 0.05, atol 0.1 mm).
_STEP_RTOL = 0.05
_STEP_ATOL_MM = 0.1
# Two images closer than this along the normal sit at the same position.
_DUPLICATE_MM = 0.01
# In-plane drift allowed between a slice's position and the straight stacking line.
_LINE_TOLERANCE_MM = 0.1
# (0020,0037) direction cosines off unit length or perpendicularity by up to this are decimal rounding,
# repaired silently; up to _ORIENTATION_REPAIR they are repaired with a warning; beyond, refused.
_ORIENTATION_ROUNDING = 1e-3
_ORIENTATION_REPAIR = 0.05
# A pixel wider than this is not a CT image (a 512 matrix would span 25 m).
_MAX_PIXEL_SPACING_MM = 50.0
# Decoded stored values allowed by default; CTEXPLORE_MAX_VOLUME_GIB or max_volume_gib raise it.
_DEFAULT_MAX_VOLUME_GIB = 8.0
MAX_VOLUME_ENV = "CTEXPLORE_MAX_VOLUME_GIB"


def load_series(
    source: Series | SeriesIndex | str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    series: int | str | None = None,
    fill_value: float = AIR_HU,
    on_uneven: Literal["raise", "resample"] = "raise",
    max_volume_gib: float | None = None,
) -> Volume:
    """Load a CT series as Hounsfield units with its geometry.

    Parameters
    ----------
    source : Series, SeriesIndex, path-like or sequence of path-likes
        A `Series` from `ctexplore.scan`, a folder, one file (e.g. Enhanced CT),
        or a list of files. A folder or index holding several series needs
        `series`.
    series : int or str, optional
        Which series of a folder or index: its position in ``scan(folder)`` or
        its key / (0020,000E) *Series Instance UID*.
    fill_value : float, default -1000
        HU written where (0028,0120) *Pixel Padding Value* marks pixels outside
        the reconstructed field of view. Those voxels are also flagged in
        ``volume.padding``.
    on_uneven : {'raise', 'resample'}
        What to do when the slice steps are not uniform (a missing slice, or
        thin slices at the skull base and thick ones above). ``'raise'`` refuses
        with a `GeometryError` that says where the step changes (slice numbers,
        positions, steps); ``'resample'`` warns and
        interpolates linearly onto a uniform grid from the first to the last slice
        with a step no larger than the smallest one, so every
        voxel stays where the affine says it is.
    max_volume_gib : float, optional
        Refuse, before anything is read or decoded, a series whose pixels would
        take more memory than this (stored values, plus float32 HU where the
        rescale is fractional). Default: the environment variable
        ``CTEXPLORE_MAX_VOLUME_GIB``, else 8 GiB; a damaged header claiming
        65535 x 65535 pixels fails here instead of exhausting memory.

    Returns
    -------
    Volume
        ``hu`` (slices, rows, cols): int16 when every slope and intercept is a
        whole number and the values fit, float32 otherwise; ``affine`` maps
        ``(slice, row, col, 1)`` to patient LPS mm, sheared if the gantry was
        tilted (see `ctexplore.correct_tilt`). ``meta["warnings"]`` lists every
        warning issued while loading (a localizer, a blank series UID, repaired
        orientation, dropped duplicates, resampled spacing, possibly missing files).

    Raises
    ------
    SeriesSelectionError
        The folder holds no series, or several and `series` is not given.
    GeometryError
        Positions or orientations do not form a volume (or are uneven and
        ``on_uneven='raise'``).
    DecodeError
        A slice cannot be decoded: truncated file, missing decoder plugin, a
        transfer syntax no Python decoder handles, or more decoded memory
        than `max_volume_gib`.
    DicomError
        A file of the series could not be read at scan time (the volume would
        be short), or a slice's rescale is missing, NaN, infinite or zero.

    See Also
    --------
    ctexplore.scan : find the series under a folder first.
    ctexplore.hounsfield.stored_to_hu : the stored value -> HU step (PS3.3 C.11.1 Modality LUT).

    Examples
    --------
    >>> import tempfile
    >>> from ctexplore.phantom import write_series
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_series(folder, n_slices=6, matrix=32, slice_spacing=5.0, shuffle=True)
    >>> volume = load_series(folder)
    >>> volume.shape, volume.hu.dtype, volume.spacing[0]
    ((6, 32, 32), dtype('int16'), 5.0)

    Files are ordered by position, not by name: the slice positions ascend.

    >>> bool((np.diff(volume.meta["slice_positions"]) > 0).all())
    True
    """
    if on_uneven not in ("raise", "resample"):
        raise ValueError(f"on_uneven must be 'raise' or 'resample', not {on_uneven!r}")
    notes: list[str] = []
    chosen = _choose_series(source, series, notes)
    _check_chosen(chosen, notes)
    headers = _drop_duplicates(list(chosen.headers), notes)
    geometry = _geometry(headers, notes)
    _check_memory(headers, max_volume_gib)
    hu, padding = _read_hu(headers, fill_value)
    positions = geometry["positions"]
    source_positions = [float(p) for p in positions]  # as acquired: slabs map output slices back to these
    affine = geometry["affine"]
    if geometry["uneven"]:
        message = (
            f"series {chosen.description!r} ({chosen.uid or 'blank UID'}) in {headers[0].path.parent}: slice "
            f"steps along the normal are uneven ({_odd_steps(positions)})"
        )
        if on_uneven == "raise":
            raise GeometryError(
                message + ". A missing slice or a change of slice spacing cannot be stacked as a uniform "
                "volume. Pass on_uneven='resample' to interpolate onto a uniform grid, or load another series."
            )
        _warn(notes, message + "; resampled linearly onto a uniform grid from the first to the last slice.")
        hu, padding, affine, positions = _resample_uneven(
            hu, padding, positions, geometry["stack_unit"], affine, fill_value
        )
    first = headers[0]
    meta = {
        "series_uid": first.series_uid,
        "study_uid": first.study_uid,
        "patient_id": first.patient_id,
        "series_description": first.series_description,
        "series_number": first.series_number,
        "modality": first.modality,
        "slice_positions": positions,
        "sop_instance_uids": [h.sop_instance_uid for h in headers],
        "source_slice_positions": source_positions,
        "slice_thickness": first.slice_thickness,
        "nominal_gantry_tilt": first.nominal_gantry_tilt,
        "convolution_kernel": first.convolution_kernel,
        "transfer_syntax_uid": first.transfer_syntax_uid,
        "rescale_slope": np.array([rescale_slope(h) for h in headers], dtype=np.float64),
        "rescale_intercept": np.array([rescale_intercept(h) for h in headers], dtype=np.float64),
        "pixel_padding_value": first.padding_value,
        "fill_value": fill_value,
        "warnings": notes,
    }
    files = tuple(dict.fromkeys(h.path for h in headers))  # the duplicates left out are not among them
    return Volume(hu=hu, affine=affine, padding=padding, files=files, meta=meta)


def _warn(notes: list[str], message: str) -> None:
    """Warn (the batch writes warnings into its manifest) and keep the text for ``meta["warnings"]``."""
    notes.append(message)
    warnings.warn(message, GeometryWarning, stacklevel=4)


def _odd_steps(positions: np.ndarray) -> str:
    """Where the step changes: runs of equal steps with their slice numbers and positions, the first few."""
    steps = np.diff(positions)
    starts = [0]  # the step index at which each run of equal steps begins
    for k in range(1, len(steps)):
        if abs(steps[k] - steps[starts[-1]]) > _STEP_ATOL_MM + _STEP_RTOL * abs(steps[starts[-1]]):
            starts.append(k)
    runs = []
    for start, end in zip(starts, starts[1:] + [len(steps)]):
        step = float(np.median(steps[start:end]))
        if end - start == 1:
            runs.append(
                f"{step:.3g} mm between slices {start} and {end} ({positions[start]:.2f} and {positions[end]:.2f} mm)"
            )
        else:
            runs.append(
                f"{step:.3g} mm from slice {start} to {end} ({positions[start]:.2f} to {positions[end]:.2f} mm)"
            )
    more = f", and {len(runs) - 4} more changes" if len(runs) > 4 else ""
    return (
        f"{steps.min():.3g} to {steps.max():.3g} mm over {len(positions)} slices numbered from 0: "
        + ", ".join(runs[:4])
        + more
    )


def _check_chosen(chosen: Series, notes: list[str]) -> None:
    """Refuse a series missing a file of its own; warn about a localizer, a blank UID, files that may belong."""
    name = f"series {chosen.description!r} ({chosen.uid or 'blank UID'})"
    if chosen.is_localizer:
        _warn(
            notes,
            f"{name} in {chosen.first.path.parent} is a localizer (scout; (0008,0008) Image Type "
            f"{'/'.join(chosen.first.image_type) or 'absent'}, {chosen.n_images} image(s)): a planning projection, "
            "not a volume. Load one of ctexplore.scan(folder).volumes instead.",
        )
    if chosen.split_reason == BLANK_UID_REASON:
        _warn(
            notes,
            f"{name} in {chosen.first.path.parent}: (0020,000E) Series Instance UID is blank in its files, "
            f"so its {chosen.n_images} images were grouped by study, (0020,0011) Series Number "
            f"{chosen.series_number}, orientation, matrix and position continuity, as GDCM and dcm2niix do.",
        )
    blank = [h.path.name for h in chosen.headers if not h.series_uid]
    if blank and chosen.uid:
        _warn(
            notes,
            f"{name}: (0020,000E) Series Instance UID is blank in {len(blank)} of its files "
            f"({', '.join(blank[:5])}); they were joined to it by study, (0020,0011) Series Number, "
            "orientation and matrix.",
        )
    if not chosen.damaged:
        return
    normal = chosen.first.normal
    readable = chosen.slice_positions
    known = [d for d in chosen.damaged if d.position is not None and normal is not None]
    placed = np.sort(np.concatenate([readable, [np.asarray(d.position) @ normal for d in known]]))
    total = chosen.n_images + len(chosen.damaged)

    def where(damaged: Any) -> str:
        if damaged.position is None or normal is None or np.isnan(placed).any():
            return "position unknown ((0020,0032) Image Position (Patient) unreadable)"
        along = float(np.asarray(damaged.position) @ normal)
        number = int(np.searchsorted(placed, along)) + 1
        end = " (first)" if number == 1 else " (last)" if number == total else ""
        return f"slice {number} of {total}{end}, at {along:.2f} mm along the normal"

    certain = [d for d in chosen.damaged if d.certain]
    if certain:
        listing = "; ".join(f"{d.path.name}: {where(d)}: {d.reason}" for d in certain[:5])
        raise DicomError(
            f"{name} in {chosen.first.path.parent}: {len(certain)} of its {total} files could not be read, so "
            f"the volume would be silently short ({listing}). Fetch those files again, or, if a shorter volume is "
            "acceptable, load the readable files explicitly: load_series(series.files)."
        )
    listing = "; ".join(f"{d.path.name}: {where(d)}: {d.reason}" for d in chosen.damaged[:5])
    _warn(
        notes,
        f"{name}: {len(chosen.damaged)} damaged file(s) in its folder may be slices of it (their "
        f"(0020,000E) Series Instance UID is unreadable), so the volume may be short: {listing}",
    )


def _choose_series(source: Any, which: int | str | None, notes: list[str]) -> Series:
    if isinstance(source, Series):
        return source
    if isinstance(source, SeriesIndex):
        index = source
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_file():
            return _single_file_series(path)
        index = scan(path)
    else:
        headers = [h for f in source for h in read_header(f)]
        found = group_series(headers)
        index = SeriesIndex(root=Path(os.path.commonpath([str(f) for f in source])), series=found)
    # files attached to a series are reported by `_check_chosen` when that series is loaded
    attached = {d.path for s in index.series for d in s.damaged}
    unattached = [(path, reason) for path, reason in index.damaged if path not in attached]
    if unattached:
        listing = "; ".join(f"{path.name}: {reason}" for path, reason in unattached[:5])
        more = f" and {len(unattached) - 5} more" if len(unattached) > 5 else ""
        _warn(
            notes,
            f"{index.root}: {len(unattached)} CT image file(s) are damaged and left out ({listing}{more}). "
            "A series they belong to lacks those slices; fetch the files again.",
        )
    listing = "\n".join(f"  [{i}] {s!r} key={s.key}" for i, s in enumerate(index.series))
    if which is not None:
        try:
            return index[which]
        except (KeyError, IndexError):
            raise SeriesSelectionError(
                f"series={which!r}: {index.root} has no series with that "
                + ("number" if isinstance(which, int) else "key or (0020,000E) Series Instance UID")
                + f"; it holds {len(index.series)} series:\n{listing or '  (none)'}"
            ) from None
    candidates = index.volumes or index.series
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        reasons = "; ".join(f"{p.name}: {r}" for p, r in index.skipped[:5])
        raise SeriesSelectionError(
            f"no CT image series under {index.root}" + (f" (skipped: {reasons})" if reasons else "")
        )
    raise SeriesSelectionError(
        f"{index.root} holds {len(candidates)} image series"
        + (
            f" (and {len(index.series) - len(candidates)} localizer or single-image)"
            if len(index.series) > len(candidates)
            else ""
        )
        + "; pick one with "
        f"load_series(path, series=N) or load_series(ctexplore.scan(path)[N]):\n{listing}"
    )


def _single_file_series(path: Path) -> Series:
    found = group_series(read_header(path))
    if len(found) != 1:
        raise SeriesSelectionError(f"{path}: one file holds {len(found)} stacks; load them by scanning it")
    return found[0]


def _drop_duplicates(headers: list[SliceHeader], notes: list[str]) -> list[SliceHeader]:
    if len(headers) < 2 or headers[0].normal is None or any(h.position is None for h in headers):
        return headers  # `_geometry` names what is missing
    positions = np.array([h.position for h in headers]) @ headers[0].normal
    duplicate = np.diff(positions) < _DUPLICATE_MM
    if not duplicate.any():
        return headers
    kept = [headers[0]] + [h for h, dup in zip(headers[1:], duplicate) if not dup]
    if len(kept) == 1:
        raise GeometryError(
            f"{headers[0].path.parent}: all {len(headers)} images of series {headers[0].series_uid} sit at "
            f"one (0020,0032) Image Position (Patient) {positions[0]:.2f} mm along the normal; this is not a "
            "volume (repeated acquisitions of one slice?). Load the files one at a time."
        )
    pairs = [f"{a.path.name} = {b.path.name}" for a, b, dup in zip(headers[:-1], headers[1:], duplicate) if dup]
    _warn(
        notes,
        f"{headers[0].path.parent}: {int(duplicate.sum())} image(s) repeat a slice position already present "
        f"and were left out ({'; '.join(pairs)})",
    )
    return kept


def _geometry(headers: list[SliceHeader], notes: list[str]) -> dict[str, Any]:
    first = headers[0]
    where = f"{first.path.parent} (series {first.series_uid or 'with a blank UID'})"
    if first.orientation is None:
        raise GeometryError(
            f"{first.path}: no valid (0020,0037) Image Orientation (Patient); the slice directions are unknown"
        )
    _check_pixel_spacing(headers)
    unoriented = [h.path.name for h in headers if h.orientation is None]
    if unoriented:
        raise GeometryError(
            f"{where}: (0020,0037) Image Orientation (Patient) missing or invalid in {', '.join(unoriented[:5])}"
            f" ({len(unoriented)} of {len(headers)} images); those slices cannot be placed. Leave them out "
            "(pass a list of the other files) or fix their headers."
        )
    cosines = np.array([h.orientation for h in headers], dtype=np.float64)
    differing = np.flatnonzero(np.abs(cosines - cosines[0]).max(axis=1) > _ORIENTATION_ROUNDING)
    if differing.size:
        odd = headers[int(differing[0])]
        raise GeometryError(
            f"{where}: (0020,0037) Image Orientation (Patient) of {odd.path.name} "
            f"({'/'.join(f'{v:g}' for v in odd.orientation or ())}) differs from "
            f"{'/'.join(f'{v:g}' for v in first.orientation)} in {first.path.name} ({differing.size} of "
            f"{len(headers)} images differ); the slices do not form one volume. Leave the odd files out (pass a "
            "list of the others) or fix their headers."
        )
    missing = [h.path.name for h in headers if h.position is None]
    if missing:
        raise GeometryError(
            f"{where}: (0020,0032) Image Position (Patient) missing or not three finite numbers in "
            f"{', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            + f" ({len(missing)} of {len(headers)} images); the slices cannot be placed. Leave those files out "
            "(pass a list of the others) or fix their headers."
        )
    assert first.pixel_spacing is not None  # checked above
    row_dir, col_dir = _orthonormal_directions(first, notes)
    normal = slice_normal(row_dir, col_dir)
    ipp = np.array([h.position for h in headers], dtype=np.float64)
    positions = ipp @ normal
    affine = np.eye(4)
    affine[:3, 1] = col_dir * first.pixel_spacing[0]
    affine[:3, 2] = row_dir * first.pixel_spacing[1]
    affine[:3, 3] = ipp[0]
    if len(headers) == 1:
        thickness = first.slice_thickness or 1.0
        affine[:3, 0] = normal * thickness
        return {"affine": affine, "positions": positions, "uneven": False, "stack_unit": normal}
    stack = ipp[-1] - ipp[0]
    stack_unit = stack / np.linalg.norm(stack)
    # Every slice must lie on the straight line from the first to the last one.
    along = (ipp - ipp[0]) @ stack_unit
    off_line = np.linalg.norm(ipp - ipp[0] - np.outer(along, stack_unit), axis=1)
    if off_line.max() > _LINE_TOLERANCE_MM:
        bad = headers[int(off_line.argmax())].path
        raise GeometryError(
            f"{where}: slice origins do not lie on one line ({off_line.max():.2f} mm off at {bad.name}); "
            "these images do not form one volume"
        )
    steps = np.diff(positions)
    median = float(np.median(steps))
    uneven = bool(np.any(np.abs(steps - median) > _STEP_ATOL_MM + _STEP_RTOL * median))
    affine[:3, 0] = stack / (len(headers) - 1)
    return {"affine": affine, "positions": positions, "uneven": uneven, "stack_unit": stack_unit}


def _check_pixel_spacing(headers: list[SliceHeader]) -> None:
    for header in headers:
        spacing = header.pixel_spacing
        if spacing is None:
            raise GeometryError(
                f"{header.path}: no (0028,0030) Pixel Spacing (or not two finite numbers); the voxel size is unknown"
            )
        if not all(0 < value <= _MAX_PIXEL_SPACING_MM for value in spacing):
            raise GeometryError(
                f"{header.path}: (0028,0030) Pixel Spacing is {spacing[0]:g} \\ {spacing[1]:g} mm; each value must "
                f"be above 0 and at most {_MAX_PIXEL_SPACING_MM:g} mm. The header is damaged: fix it or leave the "
                "file out."
            )


def _orthonormal_directions(header: SliceHeader, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column directions of (0020,0037), made exactly orthonormal (the closest such pair).

    Decimal strings round the cosines, so a tiny departure is repaired silently; a
    larger one is repaired with a warning, and one that is no rounding is refused,
    because the shear it implies would survive into every resampled grid.
    """
    assert header.orientation is not None
    row = np.asarray(header.orientation[:3], dtype=np.float64)
    column = np.asarray(header.orientation[3:], dtype=np.float64)
    row_norm, column_norm = float(np.linalg.norm(row)), float(np.linalg.norm(column))
    cosine = float(row @ column) / (row_norm * column_norm)
    departure = max(abs(row_norm - 1), abs(column_norm - 1), abs(cosine))
    described = (
        f"(0020,0037) Image Orientation (Patient) {'/'.join(f'{v:g}' for v in header.orientation)}: row and "
        f"column directions have lengths {row_norm:.4f} and {column_norm:.4f} and are "
        f"{np.degrees(np.arccos(np.clip(cosine, -1, 1))):.2f} degrees apart"
    )
    if departure > _ORIENTATION_REPAIR:
        raise GeometryError(
            f"{header.path}: {described}. The two directions must be perpendicular unit vectors; this is too far "
            f"off (more than {_ORIENTATION_REPAIR:g}) to be decimal rounding, so the header is damaged. Fix it or "
            "leave the series out."
        )
    # Polar decomposition: the orthonormal pair nearest to the given one, correcting both equally.
    left, _, right = np.linalg.svd(np.stack([row, column], axis=1), full_matrices=False)
    repaired = left @ right
    if departure > _ORIENTATION_ROUNDING:
        _warn(
            notes,
            f"{header.path}: {described}; orthonormalised to the nearest perpendicular unit directions "
            f"({'/'.join(f'{v:.4f}' for v in repaired.T.ravel())}), so no shear enters the volume.",
        )
    return repaired[:, 0], repaired[:, 1]


def _check_memory(headers: list[SliceHeader], max_volume_gib: float | None) -> None:
    """Refuse before allocating or decoding when the header promises more pixels than memory allows."""
    if max_volume_gib is None:
        setting = os.environ.get(MAX_VOLUME_ENV, "")
        try:
            max_volume_gib = float(setting) if setting else _DEFAULT_MAX_VOLUME_GIB
        except ValueError:
            raise ValueError(f"{MAX_VOLUME_ENV}={setting!r} is not a number of GiB") from None
    first = headers[0]
    stored_bytes = max(first.bits_allocated // 8, 1)
    fractional = any(
        h.rescale_slope is not None
        and not float(h.rescale_slope).is_integer()
        or h.rescale_intercept is not None
        and not float(h.rescale_intercept).is_integer()
        for h in headers
    )
    per_pixel = stored_bytes + (4 if fractional else 0)
    needed = len(headers) * first.rows * first.columns * per_pixel
    if needed > max_volume_gib * 2**30:
        raise DecodeError(
            f"{first.path.parent}: series {first.series_uid or '(blank UID)'} would need {len(headers)} x "
            f"{first.rows} x {first.columns} pixels x {per_pixel} bytes = {needed / 2**30:.3g} GiB of memory "
            f"((0028,0010) Rows, (0028,0011) Columns, (0028,0100) Bits Allocated), above the limit "
            f"{max_volume_gib:g} GiB. If the header is right, raise the limit with load_series(..., "
            f"max_volume_gib=N) or the environment variable {MAX_VOLUME_ENV}; otherwise the header is damaged."
        )


def _resample_uneven(
    hu: np.ndarray,
    padding: np.ndarray | None,
    positions: np.ndarray,
    stack_unit: np.ndarray,
    affine: np.ndarray,
    fill_value: float,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """Linear interpolation along the stacking line onto a uniform grid spanning the same slab."""
    normal = affine_normal(affine)
    span = float(positions[-1] - positions[0])
    # The largest step not above the smallest one that also lands on the last slice.
    intervals = int(np.ceil(span / float(np.diff(positions).min()) - 1e-3))
    step = span / intervals
    targets = positions[0] + step * np.arange(intervals + 1)
    upper = np.clip(np.searchsorted(positions, targets, side="right"), 1, len(positions) - 1)
    lower = upper - 1
    weight = ((targets - positions[lower]) / (positions[upper] - positions[lower])).astype(np.float32)
    weight = weight[:, None, None]
    out = hu[lower].astype(np.float32) * (1 - weight) + hu[upper].astype(np.float32) * weight
    new_padding = None
    if padding is not None:
        new_padding = np.where(weight < 0.5, padding[lower], padding[upper])
        out[new_padding] = fill_value
    new_affine = affine.copy()
    # One step along the stacking line advances `step` mm along the normal.
    new_affine[:3, 0] = stack_unit * step / float(stack_unit @ normal)
    return out, new_padding, new_affine, targets


def _read_hu(headers: list[SliceHeader], fill_value: float) -> tuple[np.ndarray, np.ndarray | None]:
    _check_uniform_pixels(headers)
    return headers_to_hu(_read_stored(headers), headers, fill_value=fill_value)


_STACKING_ATTRIBUTES = {
    "rows": "(0028,0010) Rows",
    "columns": "(0028,0011) Columns",
    "bits_allocated": "(0028,0100) Bits Allocated",
    "bits_stored": "(0028,0101) Bits Stored",
    "pixel_representation": "(0028,0103) Pixel Representation",
    "samples_per_pixel": "(0028,0002) Samples per Pixel",
}


def _check_uniform_pixels(headers: list[SliceHeader]) -> None:
    first = headers[0]
    for header in headers[1:]:
        for key, tag in _STACKING_ATTRIBUTES.items():
            if getattr(header, key) != getattr(first, key):
                raise GeometryError(
                    f"{header.path}: {tag} is {getattr(header, key)} but {getattr(first, key)} in "
                    f"{first.path.name}; the images cannot be stacked. Load them as separate series "
                    "(pass a list of the files that match)."
                )
    if first.samples_per_pixel != 1 or first.photometric_interpretation not in ("MONOCHROME1", "MONOCHROME2"):
        raise DecodeError(
            f"{first.path}: (0028,0004) Photometric Interpretation {first.photometric_interpretation} with "
            f"{first.samples_per_pixel} samples per pixel is not a CT grey-scale image"
        )
    if first.bits_allocated not in (8, 16):
        raise DecodeError(
            f"{first.path}: (0028,0100) Bits Allocated {first.bits_allocated} is not supported for CT (8 or 16)"
        )


def _read_stored(headers: list[SliceHeader]) -> np.ndarray:
    """Stored values of every slice in one preallocated array."""
    first = headers[0]
    dtype = np.dtype(("i" if first.pixel_representation == 1 else "u") + str(first.bits_allocated // 8))
    out = np.empty((len(headers), first.rows, first.columns), dtype=dtype)
    native = [i for i, h in enumerate(headers) if h.pixel_offset is not None]
    # File reads release the GIL, so threads overlap them (and the page faults of `out`).
    in_threads(lambda i: _read_native(headers[i], out[i]), native)
    decoded: dict[Path, np.ndarray] = {}
    for index, header in enumerate(headers):
        if header.pixel_offset is None:
            if header.path not in decoded:
                decoded[header.path] = _decode(header, out.dtype)
            frames = decoded[header.path]
            out[index] = frames[header.frame] if frames.ndim == 3 else frames
    big = np.array([h.transfer_syntax_uid == "1.2.840.10008.1.2.2" and h.pixel_offset is not None for h in headers])
    if big.any():
        out[big] = out[big].byteswap()
    return out


def _read_native(header: SliceHeader, target: np.ndarray) -> None:
    buffer = target.data.cast("B")
    with open(header.path, "rb") as handle:
        handle.seek(header.pixel_offset)  # type: ignore[arg-type]
        got = handle.readinto(buffer)
    if got != buffer.nbytes:
        raise DecodeError(
            f"{header.path}: (7FE0,0010) Pixel Data is truncated: {got} of {buffer.nbytes} bytes present. "
            "The file was cut short (interrupted copy or download); fetch it again or leave it out."
        )


def _decode(header: SliceHeader, dtype: np.dtype) -> np.ndarray:
    """Decode compressed or deflated pixel data with pydicom's plugins, errors named."""
    import pydicom
    from pydicom.uid import UID

    syntax = UID(header.transfer_syntax_uid)
    _require_decoder(header, syntax)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(header.path, force=True)
            if not getattr(dataset.file_meta, "TransferSyntaxUID", None):
                dataset.file_meta.TransferSyntaxUID = syntax
            if syntax.is_encapsulated:
                _check_frame_sizes(header, dataset)
            array = dataset.pixel_array
    except DecodeError:
        raise
    # Rust plugins (pylibjpeg-rle) raise PanicException, a BaseException: it must cost one
    # file, not the run. Interrupts still stop the program.
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # decoders raise anything; the user needs the file and the syntax
        raise DecodeError(
            f"{header.path}: cannot decode (7FE0,0010) Pixel Data in transfer syntax {syntax.name} "
            f"({syntax}): {type(error).__name__}: {error}. The file may be corrupt, truncated, or hold "
            "another encoding than its (0002,0010) Transfer Syntax UID declares."
        ) from error
    expected = (header.rows, header.columns)
    if array.shape[-2:] != expected:
        raise DecodeError(
            f"{header.path}: decoded pixel data has shape {array.shape}, the header says {expected} "
            "((0028,0010) Rows, (0028,0011) Columns)"
        )
    return array.astype(dtype, copy=False)


def encoded_frame_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) an encoded JPEG, JPEG-LS or JPEG 2000 frame declares in its own header.

    Native decoders (GDCM, CharLS) abort the interpreter when the DICOM header promises
    another size than the codestream holds, so the size is compared before decoding.
    Returns None for codecs without dimensions in the frame (RLE) or unparsable frames.

    Examples
    --------
    >>> sof = bytes([0xFF, 0xD8, 0xFF, 0xF7, 0, 11, 16, 0, 65, 0, 48, 1])
    >>> encoded_frame_size(sof)
    (65, 48)
    >>> siz = b"\\xff\\x4f\\xff\\x51\\x00\\x29\\x00\\x00" + (48).to_bytes(4, "big") + (64).to_bytes(4, "big") + bytes(8)
    >>> encoded_frame_size(siz)
    (64, 48)
    >>> encoded_frame_size(b"RLE") is None
    True
    """
    j2k = frame.find(b"\xff\x4f\xff\x51")
    if j2k >= 0 and len(frame) >= j2k + 24:
        x, y, x0, y0 = (int.from_bytes(frame[j2k + 8 + 4 * k : j2k + 12 + 4 * k], "big") for k in range(4))
        return y - y0, x - x0
    if frame[:2] != b"\xff\xd8":
        return None
    position = 2
    # Walk the JPEG marker segments to the first start-of-frame (SOF0-15 except DHT/JPG/DAC, or SOF55).
    while position + 9 <= len(frame):
        if frame[position] != 0xFF:
            return None
        marker = frame[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        if marker in (0xF7,) or (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)):
            rows = int.from_bytes(frame[position + 5 : position + 7], "big")
            columns = int.from_bytes(frame[position + 7 : position + 9], "big")
            return rows, columns
        position += 2 + int.from_bytes(frame[position + 2 : position + 4], "big")
    return None


def _check_frame_sizes(header: SliceHeader, dataset: Any) -> None:
    from pydicom.encaps import generate_frames

    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    for frame in generate_frames(dataset.PixelData, number_of_frames=frames):
        size = encoded_frame_size(frame)
        if size is not None and size != (header.rows, header.columns):
            raise DecodeError(
                f"{header.path}: the encoded frame in (7FE0,0010) Pixel Data is {size[0]} x {size[1]} pixels, "
                f"but (0028,0010) Rows and (0028,0011) Columns say {header.rows} x {header.columns}. "
                "The header or the pixel data was altered; the file cannot be read safely. Leave it out "
                "or fix the header."
            )


def _require_decoder(header: SliceHeader, syntax: Any) -> None:
    from pydicom.pixels import get_decoder

    from ._imagecodecs_plugin import register

    register()  # the permissive decoder of 12-bit JPEG Extended, after pydicom's own plugins
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise DecodeError(
            f"{header.path}: no Python decoder exists for transfer syntax {syntax.name} ({syntax}) in "
            "(0002,0010) Transfer Syntax UID. Convert the file first, e.g. `gdcmconv --raw in.dcm out.dcm` "
            "or `dcmdjpeg in.dcm out.dcm`."
        ) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies)  # pydicom gives one sentence per plugin
        raise DecodeError(
            f"{header.path}: transfer syntax {syntax.name} ({syntax}) needs a decoder plugin that is not "
            f"installed ({missing}). Install the permissive plugins ctexplore depends on (`pip install "
            "pylibjpeg pylibjpeg-openjpeg pylibjpeg-rle pyjpegls python-gdcm pillow imagecodecs`)."
        )
