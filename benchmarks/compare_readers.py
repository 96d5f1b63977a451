"""Reader correctness comparison: the same DICOM folders read by ctexplore and the tools people use.

Writes ``docs/comparison.md`` (one table: one row per case, one column per tool) and the
figures ``docs/images/comparison_*.png``. Cases are the phantom's known-truth series
written by `ctexplore.phantom` and the real series under ``$CTEXPLORE_TEST_DATA``.

Every tool runs in its own worker process, the way its documentation shows it, with its
defaults: a tool that crashes or hangs costs one cell, not the run. A tool that is not
installed is reported as "not installed". Each output is judged against a reference that
places every file's pixels where its own header says they are:

* phantom: the written truth (`WrittenSeries.expected_hu(quantized=True)`, exact);
* real data: pydicom by hand, file by file: ``pixel_array * slope + intercept`` of that
  file at the position of that file's (0020,0032) and (0020,0037).

How the judging works (details in the page's "How it is measured" section): each tool slice
is matched to the reference slice whose pixels it holds (correlation over the field of view,
after the one axis permutation/flip that fits). When every slice matches, the geometry error
is the largest distance between where the tool's affine puts a slice's four corner pixels and
where the headers put them, and the HU error is the largest difference inside the field of
view. When a tool resampled, its volume is sampled at the reference pixel centres (linear),
and on the phantom the geometry error is measured on the dense beads at known points.

Run from the repository root::

    python benchmarks/compare_readers.py            # full run, ~5-10 min on 2 cores
    python benchmarks/compare_readers.py --quick --out-md /tmp/c.md --images /tmp/img --json /tmp/c.json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import itertools
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TOOLS = ("ctexplore", "simpleitk", "dcm2niix", "dicom2nifti", "pydicom_tutorial", "monai_pydicom", "monai_itk")
TOOL_TITLES = {
    "ctexplore": "ctexplore",
    "simpleitk": "SimpleITK ImageSeriesReader",
    "dcm2niix": "dcm2niix",
    "dicom2nifti": "dicom2nifti",
    "pydicom_tutorial": "pydicom, tutorial way",
    "monai_pydicom": "MONAI PydicomReader",
    "monai_itk": "MONAI ITKReader",
}
# the module whose absence means "not installed" (dcm2niix: also the executable), also the distribution name
TOOL_REQUIRES = {
    "ctexplore": "ctexplore",
    "simpleitk": "SimpleITK",
    "dcm2niix": "dcm2niix",
    "dicom2nifti": "dicom2nifti",
    "pydicom_tutorial": "pydicom",
    "monai_pydicom": "monai",
    "monai_itk": "itk",
}
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
CASE_TIMEOUT_S = 300
BEAD_HU = 1600.0  # above the phantom's densest bone (1500 HU): only the dense beads
BEAD_SEARCH_MM = 40.0
MARKERS = ((30.0, -20.0, -35.0), (-35.0, 30.0, 0.0), (10.0, 45.0, 35.0), (-20.0, -50.0, 20.0))
SAME_VOXELS_R = 0.9999
SHIFT_SEARCH_MM = 6.0  # correlation above which a tool slice holds that reference slice's pixels


# ----------------------------------------------------------------------------------------------- cases


@dataclass
class Reference:
    """One series as the headers define it: HU of every pixel and the world position of every slice."""

    label: str
    hu: np.ndarray  # (slices, rows, cols) float32
    positions: np.ndarray  # (slices, 3) Image Position (Patient) of each slice, LPS mm
    row_step: np.ndarray  # (3,) LPS mm from one row to the next (column direction x row spacing)
    col_step: np.ndarray  # (3,) LPS mm from one column to the next
    padding: np.ndarray | None = None  # (slices, rows, cols) bool
    markers: tuple[tuple[float, float, float], ...] = ()

    @property
    def normal(self) -> np.ndarray:
        normal = np.cross(self.col_step, self.row_step)
        return normal / np.linalg.norm(normal)

    def world(self, slices: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return (
            self.positions[slices]
            + rows[..., None] * self.row_step[None, :] * 1.0
            + cols[..., None] * self.col_step[None, :] * 1.0
        )

    def valid(self) -> np.ndarray:
        return np.ones(self.hu.shape, bool) if self.padding is None else ~self.padding


@dataclass
class Case:
    name: str
    what: str  # what makes the case hard, one line
    folder: Path
    references: list[Reference]
    kind: str  # "phantom" or "real"
    exact: bool = False  # noise-free phantom: a correct reader has zero HU error
    must_refuse: bool = False  # not a volume: refusing is the right answer


def _reference_from_written(written: Any, label: str) -> Reference:
    orientation = written.orientation
    return Reference(
        label=label,
        hu=written.expected_hu(quantized=True),
        positions=np.asarray(written.image_positions, float),
        row_step=written.pixel_spacing[0] * orientation[3:],
        col_step=written.pixel_spacing[1] * orientation[:3],
        padding=written.expected_padding(),
        markers=written.markers,
    )


def phantom_cases(work: Path, quick: bool) -> list[Case]:
    """Write the known-truth series; each case is one folder."""
    from ctexplore.dicomwriter import SUPPORTED_TRANSFER_SYNTAXES
    from ctexplore.phantom import write_enhanced_series, write_series

    base: dict[str, Any] = dict(n_slices=24, matrix=64 if quick else 96, slice_spacing=5.0, markers=MARKERS)
    uniform = 5.0 * (np.arange(24) - 11.5)
    specs: list[tuple[str, str, dict[str, Any]]] = [
        ("plain", "axial, 5 mm, padding value -2000, names in order", {}),
        ("shuffled", "file names and Instance Numbers shuffled, unrelated to position", {"shuffle": True}),
        ("tilt +25", "gantry tilt +25 degrees (sheared grid)", {"gantry_tilt": 25.0, "shuffle": True}),
        ("tilt -25", "gantry tilt -25 degrees", {"gantry_tilt": -25.0, "shuffle": True}),
        (
            "uneven spacing",
            "2.5 mm slices at the skull base, 5 mm above",
            {"slice_positions": np.concatenate([-57.5 + 2.5 * np.arange(12), -27.5 + 5.0 * np.arange(17)])},
        ),
        ("missing slice", "one 5 mm slice missing in the middle", {"slice_positions": np.delete(uniform, 12)}),
        (
            "duplicate slice",
            "one slice stored twice (two files, same position)",
            {"slice_positions": np.sort(np.append(uniform, uniform[12]))},
        ),
        ("padding range", "padding value -2000 with range limit -1100", {"padding_range_limit": -1100}),
        (
            "per-slice rescale",
            "slope and intercept differ per slice",
            {
                "rescale_slope": [(0.5, 1.0, 2.0)[k % 3] for k in range(24)],
                "rescale_intercept": [(-1024.0, -1000.0, -2048.0)[k % 3] for k in range(24)],
                "padding_value": -4000,
            },
        ),
        ("signed 12-bit", "Bits Stored 12, signed, intercept 0", {"bits_stored": 12, "rescale_intercept": 0.0}),
        (
            "unsigned 12-bit",
            "Bits Stored 12, unsigned, intercept -1024, no padding tag",
            {"bits_stored": 12, "signed": False, "padding_value": None},
        ),
    ]
    for syntax in SUPPORTED_TRANSFER_SYNTAXES[1:]:
        specs.append((f"{syntax.name}", f"transfer syntax {syntax} ({syntax.name})", {"transfer_syntax": syntax}))
    if quick:
        keep = {"shuffled", "tilt +25", "missing slice", "per-slice rescale"}
        specs = [spec for spec in specs if spec[0] in keep]

    cases = []
    for index, (name, what, extra) in enumerate(specs):
        folder = work / "cases" / f"p{index:02d}"
        written = write_series(folder, seed=index, series_description=name.upper()[:60], **{**base, **extra})
        cases.append(Case(name, what, folder, [_reference_from_written(written, name)], "phantom", exact=True))

    if not quick:
        index = len(specs)
        folder = work / "cases" / f"p{index:02d}"
        written = write_enhanced_series(folder, seed=index, **base)
        reference = _reference_from_written(written, "enhanced")
        cases.append(
            Case(
                "Enhanced CT",
                "one multi-frame Enhanced CT Image Storage file",
                folder,
                [reference],
                "phantom",
                exact=True,
            )
        )
        index += 1
        folder = work / "cases" / f"p{index:02d}"
        thick = write_series(
            folder, seed=index, series_number=2, series_description="THICK 5MM", file_prefix="A", **base
        )
        thin = write_series(
            folder,
            seed=index,
            series_number=3,
            series_description="THIN 2.5MM TILT",
            file_prefix="B",
            study_uid=thick.study_uid,
            frame_of_reference_uid=thick.meta["frame_of_reference_uid"],
            **{**base, "n_slices": 40, "slice_spacing": 2.5, "matrix": 80, "gantry_tilt": 15.0, "shuffle": True},
        )
        cases.append(
            Case(
                "several series",
                "two series in one folder: 5 mm 96x96, and 2.5 mm 80x80 tilted 15 degrees",
                folder,
                [_reference_from_written(thick, "thick"), _reference_from_written(thin, "thin")],
                "phantom",
                exact=True,
            )
        )
    return cases


def _padding_mask(ds: Any, stored: np.ndarray) -> np.ndarray | None:
    if "PixelPaddingValue" not in ds:
        return None
    bits = int(ds.BitsStored)

    def as_stored(value: int) -> int:
        # a US-coded padding value on signed pixels is the two's complement (63536 = -2000)
        if int(ds.PixelRepresentation) == 1 and value >= 2 ** (bits - 1):
            return value - 2**16 if value >= 2**15 else value - 2**bits
        return value

    value = as_stored(int(ds.PixelPaddingValue))
    if "PixelPaddingRangeLimit" in ds:
        limit = as_stored(int(ds.PixelPaddingRangeLimit))
        return (stored >= min(value, limit)) & (stored <= max(value, limit))
    return stored == value


def reference_by_hand(files: list[Path], label: str) -> Reference:
    """Pydicom, file by file: each file's own rescale and its own position (PS3.3 C.7.6.2, C.11.1)."""
    import pydicom

    datasets = [pydicom.dcmread(f) for f in files]
    if len(datasets) == 1 and int(getattr(datasets[0], "NumberOfFrames", 1) or 1) > 1:
        return _reference_enhanced(datasets[0], label)
    orientation = np.array(datasets[0].ImageOrientationPatient, float)
    normal = np.cross(orientation[:3], orientation[3:])
    datasets.sort(key=lambda ds: float(np.dot(normal, np.array(ds.ImagePositionPatient, float))))
    spacing = np.array(datasets[0].PixelSpacing, float)
    hu, padding = [], []
    for ds in datasets:
        stored = ds.pixel_array
        hu.append(stored * float(getattr(ds, "RescaleSlope", 1.0)) + float(getattr(ds, "RescaleIntercept", 0.0)))
        padding.append(_padding_mask(ds, stored))
    mask = (
        None
        if all(p is None for p in padding)
        else np.stack([np.zeros(h.shape, bool) if p is None else p for p, h in zip(padding, hu)])
    )
    return Reference(
        label=label,
        hu=np.stack(hu).astype(np.float32),
        positions=np.array([ds.ImagePositionPatient for ds in datasets], float),
        row_step=spacing[0] * orientation[3:],
        col_step=spacing[1] * orientation[:3],
        padding=mask,
    )


def _reference_enhanced(ds: Any, label: str) -> Reference:
    shared = ds.SharedFunctionalGroupsSequence[0]
    frames = ds.PerFrameFunctionalGroupsSequence

    def group(index: int, name: str) -> Any:
        item = frames[index]
        return getattr(item, name)[0] if name in item else getattr(shared, name)[0]

    orientation = np.array(group(0, "PlaneOrientationSequence").ImageOrientationPatient, float)
    spacing = np.array(group(0, "PixelMeasuresSequence").PixelSpacing, float)
    stored = ds.pixel_array
    slopes = [float(group(k, "PixelValueTransformationSequence").RescaleSlope) for k in range(len(frames))]
    intercepts = [float(group(k, "PixelValueTransformationSequence").RescaleIntercept) for k in range(len(frames))]
    positions = np.array([group(k, "PlanePositionSequence").ImagePositionPatient for k in range(len(frames))], float)
    hu = stored * np.array(slopes)[:, None, None] + np.array(intercepts)[:, None, None]
    normal = np.cross(orientation[:3], orientation[3:])
    order = np.argsort(positions @ normal, kind="stable")
    padding = _padding_mask(ds, stored)
    return Reference(
        label=label,
        hu=hu[order].astype(np.float32),
        positions=positions[order],
        row_step=spacing[0] * orientation[3:],
        col_step=spacing[1] * orientation[:3],
        padding=None if padding is None else padding[order],
    )


REAL_CASES = (
    (
        "head CT, GE (tilt + uneven)",
        "head-ct-ge",
        "real head CT, gantry tilt 18.5 degrees, steps 1.1 to 7 mm, padding -1500",
    ),
    (
        "kits: duplicate positions",
        "kits-duplicate-positions",
        "GE abdomen, the same slice twice, gaps 7.5 to 115 mm, padding stored as US 63536",
    ),
    (
        "tilt in IOP only",
        "geometry-headers/gantrytilting/001",
        "tilted 14 degrees in Image Orientation, no Gantry/Detector Tilt tag",
    ),
    ("missing slice (5 mm)", "geometry-headers/sliceincrement/001", "5 mm steps with one 10 mm gap"),
    ("missing slice (0.75 mm)", "geometry-headers/sliceincrement/002", "0.75 mm steps with one 1.5 mm gap"),
    ("not a volume", "geometry-headers/notavolume/001", "4 slices at one position: must be refused"),
    (
        "Philips implicit, unsigned",
        "lung-pet-ct-dx/Lung-PET-CT-Dx/Lung_Dx-A0001/04-04-2007-NA-Chest-07990/2.000000-5mm-40805",
        "implicit VR, unsigned 12-bit, 64 x 5 mm chest",
    ),
    (
        "Siemens chest B70f",
        "lung-pet-ct-dx/Lung-PET-CT-Dx/Lung_Dx-A0002/04-25-2007-NA-ThoraxAThoraxRoutine Adult-34834/"
        "2.000000-ThoraxRoutine  8.0.0  B70f-62919",
        "30 x 8 mm chest, sharp kernel",
    ),
    (
        "Enhanced CT (pydicom)",
        "single-files/pydicom/eCT_Supplemental.dcm",
        "2-frame Enhanced CT, geometry in functional groups",
    ),
)


def real_cases(data: Path, work: Path) -> list[Case]:
    """The real series; each folder is linked (never copied) into the work folder, the files stay read-only."""
    import pydicom

    cases = []
    for index, (name, relative, what) in enumerate(REAL_CASES):
        source = data / relative
        if not source.exists():
            continue
        folder = work / "cases" / f"r{index:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        files = [source] if source.is_file() else sorted(p for p in source.iterdir() if p.is_file())
        dicom_files = []
        for file in files:
            link = folder / file.name
            if not link.exists():
                link.symlink_to(file)
            if pydicom.misc.is_dicom(file):
                dicom_files.append(file)
        reference = reference_by_hand(dicom_files, name)
        cases.append(Case(name, what, folder, [reference], "real", must_refuse=relative.endswith("notavolume/001")))
    return cases


# ----------------------------------------------------------------------------------------------- tools
# Each reader returns a list of (label, hu array, affine) with the affine mapping the array's
# numpy index to patient LPS mm, and appends what the tool said to `said`.


def read_ctexplore(folder: Path, out: Path, said: list[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    import ctexplore as ct

    index = ct.scan(folder)
    for path, reason in index.skipped:
        said.append(f"skipped {path.name}: {reason}")
    outputs = []
    for series in index.series:
        try:
            volume = ct.load_series(series)
        except ct.GeometryError as error:
            if "uneven" not in str(error):
                raise
            said.append(f"refused: {error}")
            volume = ct.load_series(series, on_uneven="resample")
            said.append("read again with on_uneven='resample', as the message says")
        outputs.append((series.description, volume.hu.astype(np.float32), volume.affine))
    if not outputs:
        raise RuntimeError("scan found no image series")
    return outputs


def read_simpleitk(folder: Path, out: Path, said: list[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    ids = reader.GetGDCMSeriesIDs(str(folder))
    if not ids:
        raise RuntimeError("GetGDCMSeriesIDs found no series")
    outputs = []
    for uid in ids:
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), uid))
        image = reader.Execute()
        array = sitk.GetArrayFromImage(image).astype(np.float32)
        dimension = image.GetDimension()
        if dimension == 4 and array.shape[0] == 1:  # a multi-frame file comes back as (1, z, y, x)
            array = array[0]
            said.append(f"returned a 4-D image of size {image.GetSize()}")
        elif dimension != 3:
            raise RuntimeError(f"returned a {dimension}-D image of size {image.GetSize()}")
        outputs.append((uid, array, _itk_affine(image.GetOrigin(), image.GetSpacing(), image.GetDirection())))
    return outputs


def _itk_affine(origin: Any, spacing: Any, direction: Any) -> np.ndarray:
    """ITK index (i, j, k) -> LPS; the numpy array is indexed (k, j, i)."""
    dimension = len(origin)
    direction = np.array(direction, float).reshape(dimension, dimension)[:3, :3]
    origin, spacing = origin[:3], spacing[:3]
    affine = np.eye(4)
    for axis, itk_axis in enumerate((2, 1, 0)):
        affine[:3, axis] = direction[:, itk_axis] * spacing[itk_axis]
    affine[:3, 3] = origin
    return affine


def _read_nifti_folder(out: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    import nibabel as nib

    outputs = []
    for path in sorted(out.glob("*.nii*")):
        image = nib.load(str(path))
        data = np.asarray(image.dataobj, dtype=np.float32)
        while data.ndim > 3 and data.shape[-1] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            continue
        outputs.append((path.name, data, LPS_FROM_RAS @ image.affine))
    return outputs


def read_dcm2niix(folder: Path, out: Path, said: list[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    import dcm2niix  # noqa: F401  (the pip package that ships the executable)

    executable = shutil.which("dcm2niix")
    if executable is None:
        raise RuntimeError("dcm2niix executable not on PATH")
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [executable, "-z", "n", "-b", "n", "-f", "%s_%d", "-o", str(out), str(folder)],
        capture_output=True,
        text=True,
        timeout=CASE_TIMEOUT_S,
        check=False,
    )
    for line in (done.stdout + done.stderr).splitlines():
        if any(word in line for word in ("Warning", "Error", "Unable", "tilt", "Tilt", "equidistant", "Slice")):
            said.append(line.strip())
    outputs = _read_nifti_folder(out)
    if not outputs:
        raise RuntimeError(f"dcm2niix wrote no NIfTI (exit {done.returncode})")
    return outputs


def read_dicom2nifti(folder: Path, out: Path, said: list[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    import dicom2nifti

    out.mkdir(parents=True, exist_ok=True)
    dicom2nifti.convert_directory(str(folder), str(out), compression=False, reorient=True)
    outputs = _read_nifti_folder(out)
    if not outputs:
        raise RuntimeError("convert_directory wrote no NIfTI")
    return outputs


def read_pydicom_tutorial(folder: Path, out: Path, said: list[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The widely copied Kaggle preprocessing tutorial: sort on z, stack, rescale, spacing from two slices."""
    import pydicom

    slices = [
        pydicom.dcmread(str(folder / name)) for name in os.listdir(folder) if pydicom.misc.is_dicom(folder / name)
    ]
    slices.sort(key=lambda x: float(x.ImagePositionPatient[2]))
    try:
        slice_thickness = np.abs(slices[0].ImagePositionPatient[2] - slices[1].ImagePositionPatient[2])
    except (IndexError, AttributeError):
        slice_thickness = np.abs(slices[0].SliceLocation - slices[1].SliceLocation)
    image = np.stack([s.pixel_array for s in slices])
    image = image.astype(np.int16)
    image[image == -2000] = 0
    for slice_number in range(len(slices)):
        intercept = slices[slice_number].RescaleIntercept
        slope = slices[slice_number].RescaleSlope
        if slope != 1:
            image[slice_number] = slope * image[slice_number].astype(np.float64)
            image[slice_number] = image[slice_number].astype(np.int16)
        image[slice_number] += np.int16(intercept)
    # the tutorial keeps spacing only; its volume sits axis-aligned at the first slice
    # array axes (slice, row, col) run along z, y, x
    row_spacing, col_spacing = map(float, slices[0].PixelSpacing)
    affine = np.zeros((4, 4))
    affine[2, 0], affine[1, 1], affine[0, 2], affine[3, 3] = float(slice_thickness), row_spacing, col_spacing, 1.0
    affine[:3, 3] = np.array(slices[0].ImagePositionPatient, float)
    return [("stack", image.astype(np.float32), affine)]


def read_monai(folder: Path, reader_name: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    from monai.data import ITKReader, PydicomReader

    reader = PydicomReader() if reader_name == "pydicom" else ITKReader()
    image = reader.read(str(folder))
    data, meta = reader.get_data(image)
    array = np.asarray(data, dtype=np.float32)
    return [(reader_name, array, LPS_FROM_RAS @ np.asarray(meta["affine"], float))]


READERS = {
    "ctexplore": read_ctexplore,
    "simpleitk": read_simpleitk,
    "dcm2niix": read_dcm2niix,
    "dicom2nifti": read_dicom2nifti,
    "pydicom_tutorial": read_pydicom_tutorial,
    "monai_pydicom": lambda folder, out, said: read_monai(folder, "pydicom"),
    "monai_itk": lambda folder, out, said: read_monai(folder, "itk"),
}


def installed(tool: str) -> tuple[bool, str]:
    """Whether the tool can run here, and if not, why (found without importing: torch takes seconds)."""
    module = TOOL_REQUIRES[tool]
    if importlib.util.find_spec(module) is None:
        return False, f"No module named {module!r} (pip install {module})"
    if tool == "dcm2niix" and shutil.which("dcm2niix") is None:
        return False, "the dcm2niix executable is not on PATH"
    return True, ""


@contextlib.contextmanager
def _captured_stderr(path: Path):
    """Send file descriptor 2 (C++ libraries print their warnings there) into `path`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "w") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def worker(jobs: list[list[str]], results: Path) -> None:
    """Run (tool, case name, folder) jobs in this process; one result folder per tool and case."""
    for tool, name, folder in jobs:
        target = results / tool / name
        target.mkdir(parents=True, exist_ok=True)
        said: list[str] = []
        log = io.StringIO()
        handler = logging.StreamHandler(log)
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)
        record: dict[str, Any] = {"status": "read"}
        start = time.perf_counter()
        with _captured_stderr(target / "stderr.txt"), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                outputs = READERS[tool](Path(folder), target / "out", said)
            except Exception as error:  # a tool's failure is the measurement
                outputs = []
                record = {
                    "status": "refused",
                    "error": f"{type(error).__name__}: {error}",
                    "trace": traceback.format_exc()[-2000:],
                }
        logging.getLogger().removeHandler(handler)
        record["seconds"] = time.perf_counter() - start
        said += [f"{w.category.__name__}: {w.message}" for w in caught]
        said += [line for line in log.getvalue().splitlines() if line.strip()]
        said += [line for line in (target / "stderr.txt").read_text(errors="replace").splitlines() if line.strip()]
        record["said"] = said
        record["outputs"] = [label for label, _, _ in outputs]
        np.savez(
            target / "outputs.npz",
            **{f"hu{k}": hu for k, (_, hu, _) in enumerate(outputs)},
            **{f"affine{k}": a for k, (_, _, a) in enumerate(outputs)},
        )
        (target / "result.json").write_text(json.dumps(record))
        shutil.rmtree(target / "out", ignore_errors=True)


def run_tools(tools: tuple[str, ...], cases: list[Case], results: Path) -> None:
    """Run a worker for these tools (one process: one import); when it dies or hangs, record it and go on."""
    remaining = [
        (tool, case) for tool in tools for case in cases if not (results / tool / case.name / "result.json").exists()
    ]
    while remaining:
        jobs = json.dumps([(tool, case.name, str(case.folder)) for tool, case in remaining])
        command = [sys.executable, __file__, "--worker", jobs, "--results", str(results)]
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=CASE_TIMEOUT_S * len(remaining), env=env, check=False
            )
            failure = f"worker exited {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1]}"
        except subprocess.TimeoutExpired:
            failure = f"no answer within {CASE_TIMEOUT_S} s"
        remaining = [
            (tool, case) for tool, case in remaining if not (results / tool / case.name / "result.json").exists()
        ]
        if remaining:
            tool, stuck = remaining.pop(0)
            target = results / tool / stuck.name
            target.mkdir(parents=True, exist_ok=True)
            (target / "result.json").write_text(
                json.dumps({"status": "crashed", "error": failure, "said": [], "outputs": []})
            )


# ----------------------------------------------------------------------------------------------- judging


@dataclass
class Verdict:
    """One tool on one reference series."""

    geometry_mm: float = float("nan")
    hu_error: float = float("nan")
    mode: str = ""  # "same voxels", "resampled", "no output"
    notes: list[str] = field(default_factory=list)


def _transforms(shape: tuple[int, ...], target: tuple[int, ...]):
    """Axis permutations and in-plane flips that give the array the reference's in-plane shape."""
    for perm in itertools.permutations(range(3)):
        new_shape = tuple(shape[p] for p in perm)
        if new_shape[1:] != tuple(target[1:]):
            continue
        for flip_rows, flip_cols in itertools.product((False, True), repeat=2):
            yield perm, (False, flip_rows, flip_cols)


def _apply(
    array: np.ndarray, affine: np.ndarray, perm: tuple[int, ...], flips: tuple[bool, ...]
) -> tuple[np.ndarray, np.ndarray]:
    out = np.transpose(array, perm)
    index_map = np.zeros((4, 4))
    index_map[3, 3] = 1.0
    for axis, flipped in enumerate(flips):
        index_map[perm[axis], axis] = -1.0 if flipped else 1.0
        if flipped:
            index_map[perm[axis], 3] = out.shape[axis] - 1
            out = np.flip(out, axis)
    return out, affine @ index_map


def _normalised(slices: np.ndarray, mask: np.ndarray) -> np.ndarray:
    values = slices[:, mask].astype(np.float64)
    values -= values.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return values / np.where(norms > 0, norms, np.inf)


def judge(reference: Reference, hu: np.ndarray, affine: np.ndarray) -> Verdict:
    """Compare one tool output with one reference series."""
    step = max(1, reference.hu.shape[1] // 128)
    valid_all = reference.valid().all(axis=0)
    sample = np.zeros(valid_all.shape, bool)
    sample[::step, ::step] = True
    sample &= valid_all
    ref_norm = _normalised(reference.hu, sample)
    best: tuple[float, Any] = (-2.0, None)
    for perm, flips in _transforms(hu.shape, reference.hu.shape):
        array, moved = _apply(hu, affine, perm, flips)
        correlation = _normalised(array, sample) @ ref_norm.T
        score = float(correlation.max(axis=1).mean())
        if score > best[0]:
            best = (score, (array, moved, correlation))
    if best[1] is not None:
        array, moved, correlation = best[1]
        if (correlation.max(axis=1) >= SAME_VOXELS_R).all():
            # slices whose pixels are identical (air above the head, a stored duplicate) cannot be told
            # apart by their data: among those, the one nearest to where the tool put the slice
            tied = correlation >= correlation.max(axis=1, keepdims=True) - 1e-9
            distance = _corner_distances(reference, moved, len(array))
            match = np.where(tied, distance, np.inf).argmin(axis=1)
            return _judge_same_voxels(reference, array, moved, match)
    return _judge_resampled(reference, hu, affine)


def _corner_distances(reference: Reference, affine: np.ndarray, n_slices: int) -> np.ndarray:
    """(tool slices, reference slices): largest corner distance between the tool's slice and each file's."""
    rows, cols = _corners(*reference.hu.shape[1:])
    claimed = np.stack([(affine @ np.stack([np.full(4, s), rows, cols, np.ones(4)]))[:3].T for s in range(n_slices)])
    truth = np.stack([reference.world(np.full(4, k), rows, cols) for k in range(len(reference.hu))])
    return np.linalg.norm(claimed[:, None] - truth[None], axis=-1).max(axis=-1)


def _corners(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    return np.array([0, 0, rows - 1, rows - 1]), np.array([0, cols - 1, 0, cols - 1])


def _judge_same_voxels(reference: Reference, array: np.ndarray, affine: np.ndarray, match: np.ndarray) -> Verdict:
    verdict = Verdict(mode="same voxels")
    rows, cols = _corners(*reference.hu.shape[1:])
    valid = reference.valid()
    geometry, hu_error, padding_values = 0.0, 0.0, []
    for s, k in enumerate(match):
        claimed = (affine @ np.stack([np.full(4, s), rows, cols, np.ones(4)]))[:3].T
        truth = reference.world(np.full(4, k), rows, cols)
        geometry = max(geometry, float(np.linalg.norm(claimed - truth, axis=1).max()))
        difference = np.abs(array[s][valid[k]].astype(np.float64) - reference.hu[k][valid[k]])
        hu_error = max(hu_error, float(difference.max(initial=0.0)))
        if reference.padding is not None and reference.padding[k].any():
            padding_values.append(array[s][reference.padding[k]])
    verdict.geometry_mm, verdict.hu_error = geometry, hu_error
    position = np.round(reference.positions @ reference.normal, 2)
    wanted = np.unique(position)
    got = position[match]
    if len(got) > len(np.unique(got)):
        verdict.notes.append(f"kept {len(got) - len(np.unique(got))} duplicate slice(s)")
    lost = len(wanted) - len(np.unique(got))
    if lost:
        verdict.notes.append(f"dropped {lost} of {len(wanted)} positions")
    if padding_values:
        values = np.concatenate(padding_values)
        low, high = float(values.min()), float(values.max())
        verdict.notes.append(
            f"padding read as {low:.0f} HU" if low == high else f"padding read as {low:.0f}..{high:.0f} HU"
        )
    return verdict


def _sample(hu: np.ndarray, affine: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of the tool's array at LPS points; False where outside it."""
    from scipy.ndimage import map_coordinates

    index = (np.linalg.inv(affine) @ np.c_[points, np.ones(len(points))].T)[:3]
    inside = np.all((index > -0.5) & (index < np.array(hu.shape)[:, None] - 0.5), axis=0)
    values = map_coordinates(hu, index, order=1, mode="nearest")
    return values, inside


def _judge_resampled(reference: Reference, hu: np.ndarray, affine: np.ndarray) -> Verdict:
    verdict = Verdict(mode="resampled")
    step = max(1, reference.hu.shape[1] // 128)
    k, r, c = np.nonzero(reference.valid()[:, ::step, ::step])
    r, c = r * step, c * step
    points = reference.world(k, r, c)
    values, inside = _sample(hu, affine, points)
    if inside.mean() < 0.5:
        verdict.notes.append(f"covers {100 * inside.mean():.0f}% of the series")
    if not inside.any():
        verdict.mode = "elsewhere"
        verdict.notes.append("no voxel where the headers put the series")
        verdict.geometry_mm = _geometry_from_density(reference, hu, affine)
        return verdict
    difference = np.abs(values[inside] - reference.hu[k, r, c][inside])
    verdict.hu_error = float(np.median(difference))
    grid = "x".join(map(str, hu.shape))
    percentile = np.percentile(difference, 99)
    verdict.notes.append(f"new grid {grid}; |dHU| median {np.median(difference):.0f}, 99th pct {percentile:.0f}")
    verdict.geometry_mm = _geometry_from_density(reference, hu, affine)
    return verdict


def _geometry_from_density(reference: Reference, hu: np.ndarray, affine: np.ndarray) -> float:
    """Phantom: distance between bead centroids, the tool's affine vs the headers; real data: a shift search."""
    if not reference.markers:
        return _shift_search(reference, hu, affine)
    k, r, c = np.nonzero(reference.hu > BEAD_HU)
    truth_values, truth_world = reference.hu[k, r, c], reference.world(k, r, c)
    index = np.nonzero(hu > BEAD_HU)
    tool_values = hu[index]
    tool_world = (affine @ np.vstack([*index, np.ones(len(tool_values))]))[:3].T
    errors = []
    for marker in np.array(reference.markers):
        truth = _centroid(truth_values, truth_world, marker)
        tool = _centroid(tool_values, tool_world, marker)
        errors.append(np.inf if tool is None or truth is None else float(np.linalg.norm(tool - truth)))
    return max(errors)


def _shift_search(reference: Reference, hu: np.ndarray, affine: np.ndarray) -> float:
    """Real data: the LPS translation (mm) that best lines the tool's volume up with the headers' pixels.

    Coordinate descent over x, y, z in 0.25 mm steps within +-SHIFT_SEARCH_MM, minimising the mean
    absolute HU difference at the reference pixel centres; a shift at the limit reports infinity.
    """
    step = max(1, reference.hu.shape[1] // 64)
    k, r, c = np.nonzero(reference.valid()[:, ::step, ::step])
    r, c = r * step, c * step
    points, values = reference.world(k, r, c), reference.hu[k, r, c]
    shift = np.zeros(3)
    offsets = np.arange(-SHIFT_SEARCH_MM, SHIFT_SEARCH_MM + 1e-9, 0.25)
    for _ in range(2):
        for axis in range(3):
            costs = []
            for offset in offsets:
                trial = shift.copy()
                trial[axis] = offset
                sampled, inside = _sample(hu, affine, points + trial)
                costs.append(np.abs(sampled[inside] - values[inside]).mean() if inside.mean() > 0.5 else np.inf)
            shift[axis] = offsets[int(np.argmin(costs))]
    if np.any(np.abs(shift) >= SHIFT_SEARCH_MM):
        return np.inf
    return float(np.linalg.norm(shift))


def _centroid(values: np.ndarray, world: np.ndarray, near: np.ndarray) -> np.ndarray | None:
    """HU-weighted centre of the bead voxels (values above BEAD_HU) within BEAD_SEARCH_MM of `near`."""
    chosen = np.linalg.norm(world - near, axis=1) < BEAD_SEARCH_MM
    if not chosen.any():
        return None
    weight = values[chosen] - BEAD_HU
    return (world[chosen] * weight[:, None]).sum(axis=0) / weight.sum()


# ----------------------------------------------------------------------------------------------- the page


def _short(text: str, length: int = 110) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= length else text[: length - 1] + "…"


def _clean(line: str, folder: Path) -> str:
    line = line.replace(str(folder), "FOLDER")
    line = re.sub(r" ?\(0x[0-9a-f]+\)", "", line)
    return re.sub(r" ?\(?\b\d+\.\d+\.[\d.]{8,}\)?", "", line)  # UIDs


def _messages(record: dict[str, Any], folder: Path) -> list[str]:
    """What the tool said, without banners, source locations, object addresses, UIDs and our scratch path."""
    noise = (
        "Chris Rorden",
        "Conversion required",
        "Found ",
        "Compress",
        "dcm2niix",
        "DeprecationWarning",
        "FutureWarning",
    )
    unique: list[str] = []
    for line in record.get("said", []):
        if any(word in line for word in noise) or line.startswith(("WARNING: In ", "-----")):
            continue
        line = _clean(line, folder)
        if _short(line, 60) not in (_short(u, 60) for u in unique):
            unique.append(line)
    return unique


def _preference(verdict: Verdict) -> tuple[bool, bool, float, float]:
    """Of several outputs for one series (dcm2niix's tilt-corrected copy), judge the most correct one."""
    geometry = np.nan_to_num(verdict.geometry_mm, nan=np.inf)
    return (not geometry <= 1.0, verdict.mode != "same voxels", geometry, np.nan_to_num(verdict.hu_error, nan=np.inf))


def evaluate(case: Case, tool: str, results: Path) -> dict[str, Any]:
    """Everything the table's cell says, for one case and one tool."""
    record = json.loads((results / tool / case.name / "result.json").read_text())
    cell: dict[str, Any] = {
        "status": record["status"],
        "said": _messages(record, case.folder),
        "series_found": len(record["outputs"]),
    }
    if record["status"] != "read":
        cell["error"] = _clean(record.get("error", ""), case.folder)
        return cell
    stored = np.load(results / tool / case.name / "outputs.npz")
    outputs = [(stored[f"hu{k}"], stored[f"affine{k}"]) for k in range(len(record["outputs"]))]
    owners = _owners(case.references, [affine for _, affine in outputs])
    verdicts = []
    for index, reference in enumerate(case.references):
        candidates = [
            (judge(reference, hu, affine), label)
            for (hu, affine), owner, label in zip(outputs, owners, record["outputs"])
            if owner == index
        ]
        candidates.sort(key=lambda pair: _preference(pair[0]))
        if not candidates:
            verdicts.append(Verdict(mode="missed", notes=[f"no output for {reference.label}"]))
            continue
        best = candidates[0][0]
        for other, label in candidates[1:]:  # dcm2niix's second copy (tilt-corrected or equidistant)
            best.notes.append(f"its other file {label}: geometry {_number(other.geometry_mm, 'mm')}")
        verdicts.append(best)
    found = [v for v in verdicts if v.mode != "missed"] or verdicts
    cell["geometry_mm"] = max(v.geometry_mm for v in found)
    cell["hu_error"] = max(v.hu_error for v in found)
    cell["modes"] = sorted({v.mode for v in verdicts})
    cell["notes"] = [note for v in verdicts for note in v.notes]
    cell["references"] = len(case.references)
    return cell


def _owners(references: list[Reference], affines: list[np.ndarray]) -> list[int]:
    """Which series each output stands for: the one whose voxel size it has (several series in one folder)."""
    if len(references) == 1:
        return [0] * len(affines)

    def voxel(reference: Reference) -> np.ndarray:
        steps = np.diff(reference.positions @ reference.normal)
        step = float(np.median(steps[steps > 1e-3])) if (steps > 1e-3).any() else 0.0
        return np.sort([step, np.linalg.norm(reference.row_step), np.linalg.norm(reference.col_step)])

    sizes = [voxel(reference) for reference in references]
    return [
        int(np.argmin([np.abs(np.sort(np.linalg.norm(a[:3, :3], axis=0)) - size).sum() for size in sizes]))
        for a in affines
    ]


def _number(value: float, unit: str) -> str:
    if value is None or np.isnan(value):
        return "n/a"
    if np.isinf(value):
        return f"beyond search range {unit}"
    if value < 0.005:
        return f"0 {unit}"
    return f"{value:.2f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def grade(cell: dict[str, Any], case: Case) -> str:
    """ok (right), warn (read, with a caveat), bad (read but wrong), refused, absent (not installed)."""
    if cell["status"] == "not installed":
        return "absent"
    if case.must_refuse:
        return "ok" if cell["status"] != "read" else "bad"
    if cell["status"] != "read":
        return "refused"
    geometry, hu = cell["geometry_mm"], cell["hu_error"]
    same_voxels = [mode for mode in cell["modes"] if mode != "missed"] == ["same voxels"]
    if not np.isfinite(geometry) or geometry > 1.0 or (same_voxels and hu > 5):
        return "bad"
    if same_voxels and hu < 0.5 and geometry < 0.05 and "missed" not in cell["modes"]:
        return "ok"
    return "warn"


# words, not emoji: they read the same in every font, in a terminal and on the site
# (a marker that _escape turns into bold after escaping the tools' own text)
SYMBOL = {"ok": "§right§", "warn": "§caveat§", "bad": "§wrong§", "refused": "§refused§", "absent": "—"}


def cell_text(cell: dict[str, Any], case: Case) -> str:
    grade_name = grade(cell, case)
    if cell["status"] == "not installed":
        return "— not installed"
    said = cell["said"]
    if cell["status"] != "read":
        reason = cell.get("error", "")
        verb = f"{cell['status']}, as it should" if case.must_refuse else cell["status"]
        text = f"{SYMBOL[grade_name]} {verb}: {_short(reason, 150)}"
        if said:
            text += f"<br>said: {_short(said[0])}"
        return text
    found = cell["series_found"]
    wanted = cell["references"]
    parts = [
        f"{SYMBOL[grade_name]} {found} volume{'s' if found != 1 else ''}"
        + (f" for {wanted} series" if wanted > 1 else ""),
        f"geometry {_number(cell['geometry_mm'], 'mm')}",
    ]
    if [mode for mode in cell["modes"] if mode != "missed"] == ["same voxels"]:
        parts.append(f"HU max {_number(cell['hu_error'], 'HU')}")
    else:
        parts.append(f"resampled, HU median {_number(cell['hu_error'], 'HU')}")
    text = " · ".join(parts)
    if cell["notes"]:
        text += "<br>" + "; ".join(_short(n, 80) for n in dict.fromkeys(cell["notes"]))
    if said:
        said = sorted(said, key=lambda line: line.startswith("skipped "))  # what went wrong before what was skipped
        shown = (
            [_short(line, 60) for line in said[:1]] if grade_name == "ok" else [_short(line, 90) for line in said[:2]]
        )
        text += "<br>said: " + " / ".join(shown)
    return text


def _escape(text: str) -> str:
    return (
        text.replace("|", "\\|")
        .replace("*", "\\*")
        .replace("_", "\\_")
        .replace("`", "'")
        .replace("<0", "&lt;0")
        .replace("\n", " ")
        .replace("§", "**")
    )


def _machine() -> str:
    cpu = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{cpu or platform.processor()}, nproc {os.cpu_count()}, Python {platform.python_version()}"


def _versions(tools: list[str]) -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for tool in tools:
        try:
            versions[tool] = metadata.version(TOOL_REQUIRES[tool])  # each module is its distribution's name
        except metadata.PackageNotFoundError:
            versions[tool] = "not installed"
    if "monai_pydicom" in tools and versions["monai_pydicom"] != "not installed":
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions["monai_pydicom"] += f" (torch {metadata.version('torch')})"
    return versions


def _failure(cell: dict[str, Any], case: Case) -> str:
    """A few words for the list of failures."""
    if cell["status"] != "read":
        error = cell.get("error", "")
        if "wrote no NIfTI" in error and cell["said"]:
            return "wrote no NIfTI: " + _short(cell["said"][0], 70)
        return _short(error or "no message", 90)
    if case.must_refuse:
        return "stacked slices that share one position into a volume"
    if not np.isfinite(cell["geometry_mm"]):
        return "the volume is not where the headers put it"
    if cell["geometry_mm"] > 1.0:
        return f"geometry off by {_number(cell['geometry_mm'], 'mm')}"
    return f"HU off by {_number(cell['hu_error'], 'HU')}"


def write_page(
    cases: list[Case],
    cells: dict[tuple[str, str], dict[str, Any]],
    absent: dict[str, str],
    out_md: Path,
    images: Path,
    command: str,
    seconds: float,
) -> None:
    from ctexplore._atomic import atomic_target

    versions = _versions(list(TOOLS))
    header = "| case | " + " | ".join(TOOL_TITLES[t] for t in TOOLS) + " |"
    rule = "|" + "---|" * (len(TOOLS) + 1)
    rows = []
    for case in cases:
        label = f"**{_escape(case.name)}**<br>{_escape(case.what)}<br>({case.kind})"
        rows.append(
            "| " + label + " | " + " | ".join(_escape(cell_text(cells[case.name, tool], case)) for tool in TOOLS) + " |"
        )
    grades = {tool: [grade(cells[case.name, tool], case) for case in cases] for tool in TOOLS}
    summary = [
        f"| {TOOL_TITLES[tool]} | {versions[tool]} | "
        + (
            f"not installed: {_escape(_short(absent[tool], 120))}"
            if tool in absent
            else _escape(", ".join(f"{grades[tool].count(g)} {SYMBOL[g]}" for g in ("ok", "warn", "bad", "refused")))
        )
        + " |"
        for tool in TOOLS
    ]
    failures = []
    for tool in TOOLS:
        if tool in absent:
            continue
        wrong = [
            f"{SYMBOL[grade(cells[case.name, tool], case)]} {case.name} ({_failure(cells[case.name, tool], case)})"
            for case in cases
            if grade(cells[case.name, tool], case) in ("bad", "refused")
        ]
        failures.append(
            f"* **{TOOL_TITLES[tool]}**: " + ("; ".join(wrong) if wrong else "nothing wrong in these cases") + "."
        )
    text = f"""---
html_theme.sidebar_secondary.remove: true
---

# Reader comparison

Generated by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {seconds:.0f} s
({_escape(_machine())}). Do not edit by hand: rerun the script.

The same folders of DICOM files, read by ctexplore and by the tools people use to read CT,
each called the way its documentation shows, with its defaults. Phantom cases are written by
`ctexplore.phantom` with a known truth (noise-free, so a correct reader's HU error is exactly 0);
real cases are the scanner files of `../shared/data/ct`, judged against pydicom used by hand file
by file (each file's own rescale, each file's own position).

## Summary

**right**: geometry within 0.05 mm and HU within 0.5 HU of the truth ·
**caveat**: read, with an error worth knowing (resampled, a series missed, HU off by less than 5, or
geometry off by less than 1 mm) · **wrong**: read, but geometry off by more than 1 mm or HU by more
than 5 · **refused**: refused or crashed (the message is in the cell) · —: not installed

| tool | version | cases |
|---|---|---|
{chr(10).join(summary)}

![Summary: one square per case and tool](images/comparison_summary.png)

Where each tool went wrong (geometry error, HU error, or what it refused with):

{chr(10).join(failures)}

## The table

Each cell: the verdict, how many volumes (or NIfTI files) the tool returned (and for how many
series, when the folder holds several), the geometry error, the HU error, what we noticed and what
the tool said. Scroll sideways for every tool.

{header}
{rule}
{chr(10).join(rows)}

## What the geometry error looks like

The tilted phantom (+25 degrees) as each tool placed it: a sagittal cut through the volume at the
patient position where the dense beads are, drawn in patient coordinates (mm) from each tool's own
affine. The crosses are where the beads really are. A tool that drops the tilt shears the head;
a tool that sorts slices by Instance Number scrambles it.

![Tilted phantom as placed by each tool](images/comparison_tilt.png)

The same at -25 degrees. dcm2niix's uncorrected file ignores the shear; its tilt-corrected copy
(`_Tilt_1`) is the one the table reports when it is closer.

![Phantom tilted -25 degrees as placed by each tool](images/comparison_tilt_negative.png)

The phantom with one missing slice (near z = 0), zoomed on the bead at z = 35 mm above the gap.
The tutorial takes the spacing of its first two slices and stacks every
slice above the gap 5 mm too low; ITK-based readers and MONAI's PydicomReader spread the gap over
the whole series (mean spacing), up to 2.5 mm off. ctexplore refuses, names the positions, and
with `on_uneven='resample'` interpolates onto a uniform grid; dcm2niix writes an equidistant copy.

![Missing slice as placed by each tool](images/comparison_missing.png)

## How it is measured

* **Did it read, outputs.** A raised exception or a process that died is "refused" or
  "crashed" with the message. ctexplore is called as `scan(folder)` then `load_series` per
  series; when it refuses an uneven series it is called again with `on_uneven='resample'`, the
  remedy its message names. SimpleITK reads every series `GetGDCMSeriesIDs` finds. dcm2niix runs
  as `dcm2niix -z n -b n -f %s_%d -o OUT FOLDER`; dicom2nifti as `convert_directory`; both are
  read back with nibabel (RAS turned into LPS). The pydicom tutorial is the widely copied Kaggle
  preprocessing kernel (sort on `ImagePositionPatient[2]`, `pixel_array` stacked as int16,
  `image[image == -2000] = 0`, per-slice slope and intercept, spacing from the first two slices;
  it keeps no orientation, so its volume is placed axis-aligned at the first slice). MONAI's
  readers are `PydicomReader().read(folder)` and `ITKReader().read(folder)` with `get_data`.
* **Geometry error (mm).** Each slice of the tool's volume is matched to the reference slice
  whose pixels it holds (Pearson correlation ≥ {SAME_VOXELS_R} inside the field of view, after
  the one axis permutation and in-plane flip that fits best). Then the error is the largest
  distance, over every slice and its four corner pixels, between where the tool's affine puts
  the pixel and where the file's (0020,0032) *Image Position (Patient)*, (0020,0037) *Image
  Orientation (Patient)* and (0028,0030) *Pixel Spacing* put it. A tool that resampled (no slice
  holds a file's pixels any more) is measured on density instead: on the phantom the centroid of
  each dense bead (> {BEAD_HU:.0f} HU) at four known points, in the tool's coordinates, against
  the same centroid on the written grid; on real data the centroid of bone (> 300 HU).
* **HU error.** Same voxels: the largest absolute difference from the reference inside the field
  of view (padding pixels excluded; what the tool put there is noted as "padding read as").
  Resampled: the tool's volume is interpolated (linear) at the reference pixel centres and the
  median absolute difference is reported with the 99th percentile in the notes; interpolation
  across bone edges makes that percentile large even for a careful resampler.
* **Installing the tools.** SimpleITK, dcm2niix (the PyPI package ships the executable) and
  dicom2nifti are in the project's `test` extra, so CI runs their columns. MONAI needs torch: here
  the CPU-only wheel (`torch 2.13.0+cpu`), then `pip install monai itk` (`ITKReader` needs the
  `itk` package, not SimpleITK). They are left out of the extras because a plain `pip install monai`
  pulls the CUDA build of torch; where they are absent their columns say "not installed".
* **What it said.** Python warnings, log records, and the text the tool printed on stderr (or
  dcm2niix's lines with a warning), shortened; tool banners are left out.

Tool versions: {", ".join(f"{TOOL_TITLES[t]} {versions[t]}" for t in TOOLS)}.
"""
    out_md.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(out_md) as target:
        Path(target).write_text(text, encoding="utf-8")


# ----------------------------------------------------------------------------------------------- figures


def _summary_text(cell: dict[str, Any], name: str, case: Case) -> str:
    if cell["status"] != "read":
        return f"{cell['status']} (right)" if case.must_refuse and name == "ok" else cell["status"]
    if case.must_refuse:
        return "read it"
    geometry = cell["geometry_mm"]
    if name == "ok":
        return "ok"
    if not np.isfinite(geometry):
        return "lost"
    if geometry >= 0.05:
        return f"{geometry:.1f} mm"
    if cell["modes"] != ["same voxels"]:
        return "resampled"
    hu = cell["hu_error"]
    return f"{hu:.1f} HU" if hu < 10 else f"{hu:.0f} HU"


def plot_summary(cases: list[Case], cells: dict[tuple[str, str], dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from ctexplore._atomic import atomic_target

    colours = {"ok": "#2e9d4a", "warn": "#f0b429", "bad": "#d64545", "refused": "#7a1f1f", "absent": "#d0d0d0"}
    labels = {
        "ok": "right",
        "warn": "read, with a caveat",
        "bad": "read but wrong",
        "refused": "refused / crashed",
        "absent": "not installed",
    }
    figure, axes = plt.subplots(figsize=(1.25 * len(TOOLS) + 3.2, 0.34 * len(cases) + 1.8))
    for row, case in enumerate(cases):
        for column, tool in enumerate(TOOLS):
            cell = cells[case.name, tool]
            name = grade(cell, case)
            axes.add_patch(plt.Rectangle((column, row), 0.94, 0.88, color=colours[name]))
            axes.text(
                column + 0.47,
                row + 0.44,
                _summary_text(cell, name, case),
                ha="center",
                va="center",
                fontsize=7.5,
                color="white" if name in ("bad", "ok", "refused") else "black",
            )
    axes.set_xlim(0, len(TOOLS))
    axes.set_ylim(len(cases), 0)
    axes.set_xticks(np.arange(len(TOOLS)) + 0.47)
    axes.set_xticklabels([TOOL_TITLES[t].replace(" ", "\n", 1) for t in TOOLS], fontsize=8)
    axes.xaxis.tick_top()
    axes.set_yticks(np.arange(len(cases)) + 0.44)
    axes.set_yticklabels([f"{c.name} ({c.kind})" for c in cases], fontsize=8)
    axes.tick_params(length=0)
    for spine in axes.spines.values():
        spine.set_visible(False)
    axes.legend(
        handles=[Patch(color=colours[k], label=labels[k]) for k in colours],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.01),
        ncol=5,
        fontsize=8,
        frameon=False,
    )
    axes.set_title("Reader comparison: cell text is the geometry error (mm) or the HU error", fontsize=10, pad=34)
    figure.tight_layout()
    with atomic_target(path) as target:
        figure.savefig(target, dpi=110, format="png")
    plt.close(figure)


def plot_world_cut(case: Case, results: Path, path: Path, title: str, zoom_mm: float | None = None) -> None:
    """A sagittal cut (constant x) through each tool's output, placed by the tool's own affine.

    `zoom_mm`: show only this half-width around the bead, sampled every 0.5 mm.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ctexplore._atomic import atomic_target

    reference = case.references[0]
    x = MARKERS[2][0]
    markers = [m for m in MARKERS if abs(m[0] - x) < 1e-6]
    if zoom_mm is None:
        extent = (-110.0, 110.0, -90.0, 90.0)
        step = 1.0
    else:
        centre_y, centre_z = MARKERS[2][1], MARKERS[2][2]
        extent = (centre_y - zoom_mm, centre_y + zoom_mm, centre_z - zoom_mm, centre_z + zoom_mm)
        step = 0.5
    y, z = np.meshgrid(np.arange(extent[0], extent[1], step), np.arange(extent[2], extent[3], step))
    points = np.c_[np.full(y.size, x), y.ravel(), z.ravel()]
    panels: list[tuple[str, np.ndarray | None, str]] = []
    slices, rows, cols = np.indices(reference.hu.shape)
    truth_world = reference.world(slices.ravel(), rows.ravel(), cols.ravel())
    panels.append(("truth (headers)", _nearest_on_plane(reference.hu.ravel(), truth_world, points, y.shape), ""))
    for tool in TOOLS:
        record_path = results / tool / case.name / "result.json"
        record = (
            json.loads(record_path.read_text()) if record_path.exists() else {"status": "not installed", "outputs": []}
        )
        if record["status"] != "read":
            panels.append((TOOL_TITLES[tool], None, record["status"]))
            continue
        stored = np.load(results / tool / case.name / "outputs.npz")
        hu, affine = stored["hu0"], stored["affine0"]
        best = min(
            range(len(record["outputs"])),
            key=lambda k: np.nan_to_num(
                judge(reference, stored[f"hu{k}"], stored[f"affine{k}"]).geometry_mm, nan=np.inf
            ),
        )
        hu, affine = stored[f"hu{best}"], stored[f"affine{best}"]
        index = np.rint(np.linalg.inv(affine) @ np.c_[points, np.ones(len(points))].T)[:3].astype(int)
        inside = np.all((index >= 0) & (index < np.array(hu.shape)[:, None]), axis=0)
        image = np.full(len(points), np.nan, np.float32)
        image[inside] = hu[tuple(index[:, inside])]
        panels.append((TOOL_TITLES[tool], image.reshape(y.shape), ""))
    columns = 4
    figure, axes = plt.subplots(2, columns, figsize=(13, 6.4), constrained_layout=True)
    shown = None
    for axis, (name, image, status) in zip(axes.ravel(), panels):
        axis.set_title(name, fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
        if image is None:
            axis.text(0.5, 0.5, status, ha="center", va="center", transform=axis.transAxes, fontsize=11)
            axis.set_facecolor("#eeeeee")
            continue
        # y runs anterior (-) to posterior (+): anterior on the left; head (+z) at the top
        axis.set_facecolor("#cfe0f0")
        shown = axis.imshow(image, cmap="gray", vmin=-100, vmax=200, origin="lower", extent=extent)
        for marker in markers:
            axis.plot(marker[1], marker[2], "+", color="#ff3030", markersize=14, markeredgewidth=2)
        axis.text(0.02, 0.5, "A", transform=axis.transAxes, color="yellow", fontsize=11, va="center", weight="bold")
        axis.text(0.95, 0.5, "P", transform=axis.transAxes, color="yellow", fontsize=11, va="center", weight="bold")
        axis.text(0.5, 0.93, "S", transform=axis.transAxes, color="yellow", fontsize=11, ha="center", weight="bold")
        axis.text(0.5, 0.02, "I", transform=axis.transAxes, color="yellow", fontsize=11, ha="center", weight="bold")
    for axis in axes.ravel()[len(panels) :]:
        axis.set_visible(False)
    if shown is not None:
        bar = figure.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.7)
        bar.set_label("HU (window -100 to 200)")
    figure.suptitle(
        f"{title}: sagittal cut at x = {x:.0f} mm (LPS), placed by each tool's affine\n"
        "+ true bead position; pale blue: outside the tool's volume",
        fontsize=11,
    )
    with atomic_target(path) as target:
        figure.savefig(target, dpi=90, format="png")
    plt.close(figure)


def _nearest_on_plane(values: np.ndarray, world: np.ndarray, points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    from scipy.spatial import cKDTree

    distance, index = cKDTree(world).query(points, distance_upper_bound=3.0)
    image = np.full(len(points), np.nan, np.float32)
    found = np.isfinite(distance)
    image[found] = values[index[found]]
    return image.reshape(shape)


# ----------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="four small phantom cases, every installed tool")
    parser.add_argument(
        "--data",
        type=Path,
        default=os.environ.get("CTEXPLORE_TEST_DATA"),
        help="real data folder (default: $CTEXPLORE_TEST_DATA)",
    )
    parser.add_argument("--out-md", type=Path, default=ROOT / "docs" / "comparison.md")
    parser.add_argument("--images", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--json", type=Path, help="also write every cell's figures as JSON here")
    parser.add_argument(
        "--work",
        type=Path,
        help="scratch folder, kept; tool results already in it are reused (default: a temporary one)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker), args.results)
        return 0

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="compare-readers-") as scratch:
        work = args.work or Path(scratch)
        cases = phantom_cases(work, args.quick)
        if args.quick:
            print("--quick: phantom cases only")
        elif args.data and Path(args.data).exists():
            cases += real_cases(Path(args.data), work)
        else:
            print("no real data (set CTEXPLORE_TEST_DATA or --data): phantom cases only")
        results = work / "results"
        absent = {}
        for tool in TOOLS:
            available, why = installed(tool)
            if not available:
                absent[tool] = why
                print(f"{tool}: not installed ({why})")

        def timed(group: tuple[str, ...]) -> None:
            group_start = time.perf_counter()
            run_tools(group, cases, results)
            print(f"{' + '.join(group)}: {len(cases)} cases in {time.perf_counter() - group_start:.1f} s", flush=True)

        # MONAI's two readers share one process (importing torch takes most of their time) and start first
        present = [tool for tool in TOOLS if tool not in absent]
        monai = tuple(tool for tool in present if tool.startswith("monai"))
        groups = ([monai] if monai else []) + [(tool,) for tool in present if tool not in monai]
        with ThreadPoolExecutor(max_workers=max(3, os.cpu_count() or 1)) as pool:
            list(pool.map(timed, groups))
        print(f"tools done at {time.perf_counter() - start:.0f} s", flush=True)
        cells = {}
        for case in cases:
            for tool in TOOLS:
                cells[case.name, tool] = (
                    {"status": "not installed", "said": [], "series_found": 0, "error": absent[tool]}
                    if tool in absent
                    else evaluate(case, tool, results)
                )
        args.images.mkdir(parents=True, exist_ok=True)
        plot_summary(cases, cells, args.images / "comparison_summary.png")
        by_name = {case.name: case for case in cases}
        plot_world_cut(by_name["tilt +25"], results, args.images / "comparison_tilt.png", "Gantry tilt +25 degrees")
        missing = args.images / "comparison_missing.png"
        plot_world_cut(
            by_name["missing slice"], results, missing, "One missing slice (zoomed on the bead)", zoom_mm=22.0
        )
        if "tilt -25" in by_name:
            title = "Gantry tilt -25 degrees"
            plot_world_cut(by_name["tilt -25"], results, args.images / "comparison_tilt_negative.png", title)
        command = "python benchmarks/compare_readers.py" + (" --quick" if args.quick else "")
        write_page(cases, cells, absent, args.out_md, args.images, command, time.perf_counter() - start)
        if args.json:
            table = {
                case.name: {
                    "kind": case.kind,
                    "exact": case.exact,
                    "tools": {
                        tool: {**cells[case.name, tool], "grade": grade(cells[case.name, tool], case)} for tool in TOOLS
                    },
                }
                for case in cases
            }
            with contextlib.suppress(FileExistsError):
                args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(table, indent=1, default=float))
    print(f"wrote {args.out_md} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
