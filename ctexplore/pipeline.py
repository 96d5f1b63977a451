"""Preprocess one series: the options, the per-volume step, and the output's name and record.

`PreprocessOptions` says what to do; `preprocess_volume` resamples a volume onto
an orthogonal grid (gantry tilt corrected in the same interpolation) and derives
the model input; `preprocess_series` writes one file per series, named by patient
and series (`output_name`) so that nothing overwrites anything, with a sidecar
recording options and sources so a rerun can tell what is done. The data-set
runner is `ctexplore.batch.preprocess`; `iter_volumes` streams the same chosen
series one `Volume` at a time, for a notebook.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from .errors import DicomError
from .selection import Study, find_studies, parse_rule, select_series, series_label
from .series import Series, SeriesIndex
from .volume import Volume

__all__ = [
    "Study",
    "PreprocessOptions",
    "find_studies",
    "parse_rule",
    "select_series",
    "output_name",
    "preprocess_volume",
    "preprocess_series",
    "iter_volumes",
]


# ---------------------------------------------------------------------------- studies and rules


# ---------------------------------------------------------------------------- options and naming


class _DefaultSpacing(tuple[float, float, float]):
    """The default 1 mm spacing, told apart from an explicit ``spacing=(1, 1, 1)`` given with a shape."""


_DEFAULT_SPACING = _DefaultSpacing((1.0, 1.0, 1.0))


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
    window : str, (center, width), or None
        One display window (a preset name from `ctexplore.WINDOWS` or a
        ``(center, width)`` pair in HU) stored as the ``processed`` array.
    windows : sequence of str or (center, width), or None
        Several windows stored as a channels-first ``processed`` stack
        (`ctexplore.window_stack`), e.g. ``("brain", "subdural", "soft_tissue")``.
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
    skull_strip : bool, default False
        Set everything outside the intracranial space (`ctexplore.brain_mask`)
        to -1000 HU, after resampling and before slabs and windows.
    slab : (mm, mode) or None
        Thick slabs along the (tilt-corrected) slice normal
        (`ctexplore.thick_slabs`): ``mm`` thick, ``mode`` ``'mean'``
        (average), ``'max'`` (MIP) or ``'min'`` (MinIP); a bare number means
        ``'mean'``. The stored HU are the slabs.
    stack_2p5d : int or None
        2.5D input (`ctexplore.stack_2p5d`): each output slice with this many
        neighbours on each side as channels, times the window(s) (or HU if
        none), stored as ``processed`` of shape ``(channels, slices, rows,
        cols)`` (``processed[:, s]`` is slice ``s``'s input); needs format 'npz'.

    Every output records, per output slice, the SOP Instance UIDs of the
    acquired images that made it (``meta['slice_sources']`` in the
    provenance, `ctexplore.source_slices`), so slice-level labels follow the
    slices through tilt correction, resampling and slabs.

    Examples
    --------
    >>> PreprocessOptions(shape=(64, 128, 128)).spacing is None
    True
    >>> PreprocessOptions(window="brain", format="nifti")
    Traceback (most recent call last):
    ...
    ValueError: format 'nifti' stores Hounsfield units only; use format 'npz' for window, windows or normalize
    >>> PreprocessOptions(window=(40, 80)).window
    (40.0, 80.0)
    >>> PreprocessOptions(window=("brain", "bone"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: window=('brain', 'bone'): one window is ...; give several as windows=(...) for a channel stack
    >>> PreprocessOptions(slab=5).slab, PreprocessOptions(slab=(10, "max"), stack_2p5d=1).slab
    ((5.0, 'mean'), (10.0, 'max'))
    """

    spacing: tuple[float, float, float] | None = _DEFAULT_SPACING
    shape: tuple[int, int, int] | None = None
    window: str | tuple[float, float] | None = None
    windows: tuple[str | tuple[float, float], ...] | None = None
    normalize: tuple[float, float] | None = None
    crop: bool = False
    order: int = 1
    format: Literal["npz", "nifti"] = "npz"
    on_uneven: Literal["raise", "resample"] = "raise"
    hu_dtype: Literal["int16", "float32"] = "int16"
    compress: bool = True
    skull_strip: bool = False
    slab: tuple[float, str] | float | None = None
    stack_2p5d: int | None = None

    def __post_init__(self) -> None:
        if self.shape is not None:
            if self.spacing is not None and not isinstance(self.spacing, _DefaultSpacing):
                raise ValueError(
                    f"give either spacing or shape, not both (got spacing={self.spacing}, shape={self.shape})"
                )
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
        from .intensity import resolve_window

        if self.window is not None:
            if not isinstance(self.window, str) and any(isinstance(w, str) for w in self.window):
                raise ValueError(
                    f"window={self.window!r}: one window is a preset name or (center, width); "
                    "give several as windows=(...) for a channel stack"
                )
            resolve_window(self.window)
            if not isinstance(self.window, str):
                self._set("window", resolve_window(self.window))
        if self.windows is not None:
            if isinstance(self.windows, str) or len(self.windows) == 0:
                raise ValueError(f"windows must be a sequence of windows, one per channel, got {self.windows!r}")
            settings = [resolve_window(w) for w in self.windows]
            self._set("windows", tuple(w if isinstance(w, str) else s for w, s in zip(self.windows, settings)))
        if self.normalize is not None:
            low, high = (float(v) for v in self.normalize)
            if not high > low:
                raise ValueError(f"normalize needs low < high, got {self.normalize}")
            self._set("normalize", (low, high))
        if sum(x is not None for x in (self.window, self.windows, self.normalize)) > 1:
            raise ValueError("give one of window, windows or normalize")
        if self.format not in ("npz", "nifti"):
            raise ValueError(f"format must be 'npz' or 'nifti', not {self.format!r}")
        if self.format == "nifti" and (self.window, self.windows, self.normalize) != (None, None, None):
            raise ValueError(
                "format 'nifti' stores Hounsfield units only; use format 'npz' for window, windows or normalize"
            )
        if self.on_uneven not in ("raise", "resample"):
            raise ValueError(f"on_uneven must be 'raise' or 'resample', not {self.on_uneven!r}")
        if self.hu_dtype not in ("int16", "float32"):
            raise ValueError(f"hu_dtype must be 'int16' or 'float32', not {self.hu_dtype!r}")
        if self.order not in (0, 1, 2, 3, 4, 5):
            raise ValueError(f"order must be an interpolation order 0..5, not {self.order!r}")
        self._check_model_inputs()

    def _check_model_inputs(self) -> None:
        from .slabs import SLAB_MODES

        if self.slab is not None:
            slab: Any = self.slab
            thickness, mode = (slab, "mean") if isinstance(slab, (int, float)) else tuple(slab)
            if not (np.isfinite(float(thickness)) and float(thickness) > 0):
                raise ValueError(f"slab thickness must be positive millimetres, got {thickness!r}")
            if mode not in SLAB_MODES:
                raise ValueError(f"slab mode must be one of {sorted(SLAB_MODES)} (mean, MIP, MinIP), not {mode!r}")
            self._set("slab", (float(thickness), str(mode)))
        if self.stack_2p5d is not None:
            if isinstance(self.stack_2p5d, bool) or int(self.stack_2p5d) != self.stack_2p5d or self.stack_2p5d < 0:
                raise ValueError(
                    f"stack_2p5d is the neighbours on each side, a whole number >= 0, not {self.stack_2p5d!r}"
                )
            self._set("stack_2p5d", int(self.stack_2p5d))
            if self.format != "npz":
                raise ValueError("stack_2p5d is stored as the 'processed' array; use format 'npz'")

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
        # fsencode: file names need not be UTF-8 (surrogate escapes would not encode).
        digest.update(os.fsencode(path) + f"\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return {"series_key": series.key, "n_images": series.n_images, "files_sha1": digest.hexdigest()}


def output_record(series: Series, options: PreprocessOptions) -> dict[str, Any]:
    """The ``options`` stored in an output's provenance; a rerun redoes the output when it differs."""
    return {"pipeline": options.to_dict(), "source": _source_fingerprint(series)}


def _sidecar(output: Path) -> Path:
    return output.with_name(output.name.removesuffix(".nii.gz") + ".json")


def recorded_options(output: Path) -> Any:
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


def remove_stale_temporaries(output: Path) -> None:
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
    from .brain import skull_strip
    from .geometry import correct_tilt, crop_to_head, resample
    from .intensity import normalize, window, window_stack
    from .slabs import source_slices, stack_2p5d, stack_channel_names, thick_slabs
    from .volume import AIR_HU

    options = options or PreprocessOptions()
    if options.crop and options.shape is not None:
        volume = crop_to_head(volume)
    if options.spacing is not None or options.shape is not None:
        volume = resample(volume, spacing=options.spacing, shape=options.shape, order=options.order)
    else:
        volume = correct_tilt(volume, order=options.order)
    if options.crop and options.shape is None:
        volume = crop_to_head(volume)
    if options.skull_strip:
        volume = skull_strip(volume, fill=AIR_HU)
    if options.slab is not None:
        thickness, mode = cast(tuple[float, Literal["mean", "max", "min"]], options.slab)  # normalised on creation
        volume = thick_slabs(volume, thickness, mode)
    meta = dict(volume.meta)
    if "sop_instance_uids" in meta and "slice_sources" not in meta:
        meta["slice_sources"] = source_slices(volume)
    processed = None
    if options.stack_2p5d is not None:
        windows = _processed_windows(options)
        processed = stack_2p5d(volume.hu, options.stack_2p5d, windows)
        meta["processed_axes"] = "channel, slice, row, col"
        meta["processed_channels"] = stack_channel_names(windows, options.stack_2p5d)
    elif options.window is not None:
        processed = window(volume.hu, options.window)
        meta["processed_axes"] = "slice, row, col"
    elif options.windows is not None:
        processed = window_stack(volume.hu, options.windows)
        meta["processed_axes"] = "channel, slice, row, col"
        meta["processed_channels"] = stack_channel_names(options.windows, 0)
    elif options.normalize is not None:
        processed = normalize(volume.hu, *options.normalize)
        meta["processed_axes"] = "slice, row, col"
    return replace(volume, meta=meta), processed


def _processed_windows(options: PreprocessOptions) -> list[str | tuple[float, float]] | None:
    """The windows a 2.5D stack is made of: the window(s), or the normalize range as a window, or none (HU)."""
    if options.windows is not None:
        return list(options.windows)
    if options.window is not None:
        return [options.window]
    if options.normalize is not None:
        low, high = options.normalize
        return [((low + high) / 2, high - low)]
    return None


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
    record = record if record is not None else output_record(series, options)
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


# ---------------------------------------------------------------------------- the batch


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


_MOVED_TO_BATCH = {"preprocess", "ManifestRow", "Summary", "MANIFEST_COLUMNS", "ALREADY_DONE"}


def __getattr__(name: str) -> Any:
    # The runner lives in `ctexplore.batch` (which imports this module); these names stay importable here.
    if name in _MOVED_TO_BATCH:
        from . import batch

        return getattr(batch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
