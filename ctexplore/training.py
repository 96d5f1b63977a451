"""A map-style data set over a ``ctexplore preprocess`` output folder, for training loops.

No torch import here: `VolumeDataset` is plain Python with ``len`` and ``ds[i]``,
which is all ``torch.utils.data.DataLoader`` needs::

    loader = torch.utils.data.DataLoader(ct.VolumeDataset("OUT"), batch_size=2, num_workers=2)

(install torch yourself, e.g. ``pip install torch``; ctexplore does not depend on it).
"""

from __future__ import annotations

import csv
import os
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["VolumeDataset", "load_npz_array"]

_LABEL_KEYS = ("series_uid", "study_uid", "patient_id")
_IMAGE_LABEL_KEY = "sop_instance_uid"  # image-level labels (RSNA style), for slices=True


def load_npz_array(path: str | os.PathLike[str], name: str) -> np.ndarray:
    """One array of an ``.npz`` file, memory-mapped when it is stored uncompressed.

    ``np.load(..., mmap_mode='r')`` ignores `mmap_mode` for ``.npz``; an entry
    written with ``compress=False`` (``ctexplore preprocess --no-compress``) is
    a plain ``.npy`` inside the zip, so it can be mapped at its offset and only
    the pages a training step touches are read. Compressed entries are read
    whole.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from ctexplore.export import save_npz
    >>> from ctexplore.volume import Volume
    >>> path = save_npz(Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4)),
    ...                 tempfile.mkdtemp() + "/v.npz", compress=False)
    >>> hu = load_npz_array(path, "hu")
    >>> type(hu).__name__, int(hu[1, 2, 3])
    ('memmap', 23)
    """
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{name}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            with archive.open(info) as member:
                return np.lib.format.read_array(member, allow_pickle=False)
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
        name_length = int.from_bytes(local[26:28], "little")
        extra_length = int.from_bytes(local[28:30], "little")
        handle.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(handle)
        offset = handle.tell()
    if dtype.hasobject:
        raise ValueError(f"{path}: entry {name!r} holds Python objects; refusing to load it")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _read_labels(labels: Any) -> tuple[str | None, dict[str, Any]]:
    """Labels as (key column, {key: value}); a CSV's first column names the key."""
    if labels is None:
        return None, {}
    if isinstance(labels, (str, os.PathLike)):
        with open(labels, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames:
                raise ValueError(f"{labels}: empty labels file; its first column must be one of {_LABEL_KEYS}")
            key = reader.fieldnames[0]
            if key not in (*_LABEL_KEYS, _IMAGE_LABEL_KEY):
                raise ValueError(
                    f"{labels}: first column is {key!r}; it must be one of {(*_LABEL_KEYS, _IMAGE_LABEL_KEY)}"
                )
            return key, {row[key]: {k: v for k, v in row.items() if k != key} for row in reader}
    if isinstance(labels, Mapping):
        return None, dict(labels)
    raise TypeError(f"labels must be a CSV path or a mapping, not {type(labels).__name__}")


class VolumeDataset:
    """Map-style data set over the outputs of ``ctexplore preprocess``.

    Parameters
    ----------
    output_dir : path-like
        The preprocess output folder: ``manifest.csv`` and the ``.npz`` files
        it names. Rows without an output (skipped, failed) are left out.
    labels : CSV path or mapping, optional
        Per-series labels. A CSV's first column is ``series_uid``, ``study_uid``
        or ``patient_id`` and its other columns are the labels; a mapping is
        looked up by series UID, then study UID, then patient ID.
    transform : callable, optional
        ``transform(array) -> array``, applied to each item's array.
    slices : bool, default False
        One item per output slice instead of per series: ``(channels, rows,
        cols)``, for 2D and 2.5D networks (``--stack-2p5d``). The record adds
        ``slice_index`` and ``sop_instance_uids``, the acquired images that
        made the slice (`ctexplore.source_slices`), backslash-separated as a
        DICOM multi-valued attribute (so the default collate batches them);
        labels whose first column
        is ``sop_instance_uid`` (image-level, as RSNA's) become the slice's
        labels, each the maximum over those images (a slab or an
        interpolated slice is positive when any image it draws on is).

    Notes
    -----
    ``ds[i]`` returns ``(array, record)``: the ``processed`` array if the
    output has one (windows as channels), else ``hu``, as float32 with a
    channel axis first, and the manifest row as a dict plus ``labels`` (``{}``
    when the series has none, so the default collate works) and ``path``. Outputs written with
    ``--no-compress`` (``compress=False``) are memory-mapped; compressed ones
    are read whole per item (with ``slices=True`` that is the whole volume for
    each slice: write with ``--no-compress``). The object holds only paths,
    rows and slice records, so it pickles to worker processes.

    Examples
    --------
    >>> import pickle, tempfile
    >>> import ctexplore as ct
    >>> from ctexplore.phantom import write_series
    >>> source, out = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> _ = write_series(source, n_slices=8, matrix=32)
    >>> _ = ct.preprocess(source, out, options=ct.PreprocessOptions(spacing=4.0), workers=1, progress=False)
    >>> ds = ct.VolumeDataset(out)
    >>> array, record = ds[0]
    >>> len(ds), array.dtype, array.ndim, record["status"]
    (1, dtype('float32'), 4, 'ok')
    >>> len(pickle.loads(pickle.dumps(ds)))
    1
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        labels: Any = None,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        *,
        slices: bool = False,
    ) -> None:
        self.output_dir = Path(output_dir)
        manifest = self.output_dir / "manifest.csv"
        if not manifest.is_file():
            raise FileNotFoundError(
                f"{manifest} not found: is {self.output_dir} a `ctexplore preprocess` output folder?"
            )
        with open(manifest, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.DictReader(handle) if row.get("output")]
        missing = [row["output"] for row in rows if not (self.output_dir / row["output"]).is_file()]
        if missing:
            raise FileNotFoundError(f"{manifest} names outputs that do not exist: {missing[:5]}")
        self.rows = rows
        self.label_key, self.labels = _read_labels(labels)
        if self.label_key == _IMAGE_LABEL_KEY and not slices:
            raise ValueError(f"{labels}: image-level labels (first column {_IMAGE_LABEL_KEY}) need slices=True")
        self.transform = transform
        self.slices = slices
        self.layouts = [_layout(self.output_dir / row["output"]) for row in rows]
        # (output, slice) of every item when slices=True
        self.items = [(i, s) for i, layout in enumerate(self.layouts) for s in range(layout["n_slices"])]

    def __len__(self) -> int:
        return len(self.items) if self.slices else len(self.rows)

    def _labels_of(self, row: Mapping[str, str]) -> Any:
        keys = (self.label_key,) if self.label_key else _LABEL_KEYS
        for key in keys:
            if row.get(key) in self.labels:
                return self.labels[row[key]]
        return {}

    def _image_labels(self, uids: list[str]) -> dict[str, float]:
        found = [self.labels[uid] for uid in uids if uid in self.labels]
        columns = dict.fromkeys(column for labels in found for column in labels)
        result = {}
        for column in columns:
            try:
                result[column] = max(float(labels[column]) for labels in found if labels.get(column) not in (None, ""))
            except ValueError:
                raise ValueError(
                    f"image-level label {column!r} of images {uids[:3]} is not a number; slices take the "
                    "maximum over their images, so image-level labels must be numbers (0/1)"
                ) from None
        return result

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        output, slice_index = self.items[index] if self.slices else (index % len(self.rows), None)
        row = self.rows[output]
        layout = self.layouts[output]
        path = self.output_dir / row["output"]
        data = load_npz_array(path, layout["name"])
        axes = layout["axes"]
        if slice_index is None:
            array = np.array(data, dtype=np.float32)  # a writable copy; the memmap stays read-only
            array = array[np.newaxis] if array.ndim == 3 else array
        else:
            taken = data[:, slice_index] if axes.startswith("channel") else data[slice_index]
            array = np.array(taken, dtype=np.float32)
            array = array[np.newaxis] if array.ndim == 2 else array
        if self.transform is not None:
            array = self.transform(array)
        record = dict(row, labels=self._labels_of(row), path=str(path))
        if slice_index is not None:
            uids = layout["slice_sources"][slice_index] if layout["slice_sources"] else []
            # one string, as a DICOM multi-valued attribute: the default collate batches strings, not ragged lists
            record.update(slice_index=slice_index, sop_instance_uids="\\".join(uids))
            if self.label_key == _IMAGE_LABEL_KEY:
                record["labels"] = self._image_labels(uids)
        return array, record


def _layout(path: Path) -> dict[str, Any]:
    """Which array an item reads, its axes, its slice count and each slice's source images (from the provenance)."""
    import json

    if not path.name.endswith(".npz"):
        raise ValueError(f"{path}: VolumeDataset reads .npz outputs; run `ctexplore preprocess` with --format npz")
    with zipfile.ZipFile(path) as archive:
        name = "processed" if "processed.npy" in archive.namelist() else "hu"
        with archive.open(f"{name}.npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape = read_header(member)[0]
        meta = {}
        if "provenance.npy" in archive.namelist():
            with archive.open("provenance.npy") as member:
                meta = json.loads(str(np.lib.format.read_array(member, allow_pickle=False))).get("meta", {})
    default = "slice, row, col" if len(shape) == 3 else "channel, slice, row, col"
    axes = meta.get("processed_axes", default) if name == "processed" else "slice, row, col"
    n_slices = shape[0] if axes.startswith("slice") else shape[1]
    return {"name": name, "axes": axes, "n_slices": int(n_slices), "slice_sources": meta.get("slice_sources")}
