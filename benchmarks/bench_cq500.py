"""CQ500-shaped data set: `ctexplore preprocess --rule cq500` with 1 and 2 workers beside the script a user writes.

Each study is laid out as CQ500 ships it (``CQ500-CT-N/Unknown Study/<series>``)
with full-size 512 x 512 slices: a thin plain series (``--slices``, default
250, 0.625 mm, soft kernel), a thick plain one (5 mm), a thin bone-kernel one
(2.5 mm, H70h) and a coronal localizer. The tree is written once with the
phantom writer and cached.

Compared, in one run, each as its own process (peak memory polled from
/proc, or each worker's own VmHWM):

- ``ctexplore``: `ctexplore.preprocess` with ``rule="cq500"`` (what
  ``ctexplore preprocess IN OUT --rule cq500 --workers N`` runs): header scan of
  every series, choice of the plain thin soft-kernel series, HU, 1 mm
  isotropic resampling, compressed ``.npz`` with affine and provenance.
- the naive script: for each study the folder the user knows is the thin one,
  SimpleITK ``ImageSeriesReader``, ``scipy.ndimage.zoom`` to 1 mm (order 1) and
  ``np.save`` (no choice of series, no checks, no compression).
- ``dcm2niix`` on the same folder (conversion to NIfTI only, no resampling),
  when the ``dcm2niix`` executable is installed (pip package ``dcm2niix``).

Run:  python benchmarks/bench_cq500.py [--studies 12] [--slices 250] [--workers 1 2]
Quick: python benchmarks/bench_cq500.py --studies 3 --slices 60
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import CACHE

MIB = 1024 * 1024
THIN = "CT PLAIN THIN"
SLICE = dict(matrix=512, pixel_spacing=(0.45, 0.45), noise=5.0, shuffle=True)


def write_tree(studies: int, slices: int) -> Path:
    """The CQ500-shaped tree, written once into the benchmark cache.

    The first study is written by the phantom writer; the others are its files
    relabelled (patient, study, series, instance and frame-of-reference UIDs),
    which is much faster than rasterising the head model again for each.
    """
    root = CACHE / f"cq500-{studies}x{slices}"
    done = root / ".complete"
    recipe = repr((SLICE, slices))
    if done.exists() and done.read_text() == recipe:
        return root
    shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    template = root / "CQ500-CT-1" / "Unknown Study"
    _write_study(template, "CQ500-CT-1", slices)
    for number in range(2, studies + 1):
        _relabel_study(template, root / f"CQ500-CT-{number}" / "Unknown Study", f"CQ500-CT-{number}")
    done.write_text(recipe)
    print(f"wrote {studies} studies in {time.perf_counter() - start:.0f} s into {root}", flush=True)
    return root


def _write_study(study: Path, patient: str, slices: int) -> None:
    from ctexplore.phantom import write_localizer, write_series

    thin_mm = 0.625
    span = slices * thin_mm
    ids = dict(patient_id=patient, study_uid="1.2.826.0.1.3680043.8.498.901", seed=1)
    first = dict(first_position_z=-span / 2, **ids, **SLICE)
    write_series(
        study / THIN, n_slices=slices, slice_spacing=thin_mm, series_number=2, series_description=THIN, **first
    )
    thick = max(2, round(span / 5.0))
    write_series(
        study / "CT PLAIN", n_slices=thick, slice_spacing=5.0, series_number=3, series_description="CT PLAIN", **first
    )
    write_series(
        study / "CT BONE",
        n_slices=max(2, round(span / 2.5)),
        slice_spacing=2.5,
        series_number=4,
        series_description="CT 2.5mm BONE",
        convolution_kernel="H70h",
        **first,
    )
    write_localizer(study / "SCOUT", matrix=512, pixel_spacing=0.5, **ids)


def _relabel_study(template: Path, study: Path, patient: str) -> None:
    import pydicom
    from pydicom.uid import generate_uid

    new_uids: dict[str, str] = {}

    def renamed(uid: str) -> str:
        return new_uids.setdefault(uid, generate_uid())

    for source in sorted(template.rglob("*.dcm")):
        dataset = pydicom.dcmread(source)
        dataset.PatientID = dataset.PatientName = patient
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
            if keyword in dataset:
                setattr(dataset, keyword, renamed(getattr(dataset, keyword)))
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        target = study / source.relative_to(template)
        target.parent.mkdir(parents=True, exist_ok=True)
        dataset.save_as(target, enforce_file_format=True)


OURS = """
import json, sys
from ctexplore.batch import preprocess
from ctexplore.pipeline import PreprocessOptions
if __name__ == "__main__":
    source, output, workers, compress = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    options = PreprocessOptions(compress=compress)
    summary = preprocess(source, output, rule="cq500", options=options, workers=workers, progress=False)
    chosen = sorted({row.series_description for row in summary.rows if row.status == "ok"})
    peaks = sorted(summary.worker_peak_rss_bytes.values())
    print(json.dumps({"ok": summary.ok, "failed": summary.failed, "chosen": chosen, "worker_peaks": peaks}))
"""

NAIVE = """
import sys
from pathlib import Path
import numpy as np
import SimpleITK as sitk
from scipy import ndimage
source, output = Path(sys.argv[1]), Path(sys.argv[2])
for study in sorted(source.glob("CQ500-CT-*/Unknown Study")):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(study / "CT PLAIN THIN")))
    image = reader.Execute()
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    zooms = np.array(image.GetSpacing())[::-1]  # z, y, x in mm -> 1 mm
    np.save(output / f"{study.parent.name}.npy", ndimage.zoom(hu, zooms, order=1))
"""


def _high_water_mark(pid: int) -> int:
    """Largest VmHWM (own peak since exec) of a running process and its descendants, in bytes."""
    import psutil

    try:
        processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    peak = 0
    for process in processes:
        try:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except OSError:
            continue
    return peak


def run(command: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS of the largest process in its tree (bytes) and its stdout; fails loudly.

    The peak is polled from /proc every 5 ms (wait4's ru_maxrss would count the
    benchmark's own memory, copied at fork, before the command's exec).
    """
    with tempfile.TemporaryFile("w+") as stdout:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, text=True)
        peak = 0
        while process.poll() is None:
            peak = max(peak, _high_water_mark(process.pid))
            time.sleep(0.005)
        wall = time.perf_counter() - start
        stderr = process.stderr.read() if process.stderr else ""
        if process.returncode != 0:
            raise RuntimeError(f"{command[:3]} exited {process.returncode}: {stderr[-2000:]}")
        stdout.seek(0)
        return wall, peak, stdout.read()


def measure_ours(root: Path, workers: int, compress: bool = True) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as output:
        command = [sys.executable, "-c", OURS, str(root), output, str(workers), "1" if compress else "0"]
        wall, tree_peak, stdout = run(command)
    result = json.loads(stdout.strip().splitlines()[-1])
    if result["failed"] or result["chosen"] != [THIN]:
        raise RuntimeError(f"ctexplore did not take exactly the thin plain series of every study: {result}")
    # the workers report their own exact VmHWM; the tree's largest process may also be the parent
    peak = max(result["worker_peaks"])
    return {"wall": wall, "peak": peak, "tree_peak": tree_peak, "processes": workers, "ok": result["ok"]}


def measure_naive(root: Path) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as output:
        wall, peak, _ = run([sys.executable, "-c", NAIVE, str(root), output])
    return {"wall": wall, "peak": peak, "processes": 1}


def measure_dcm2niix(root: Path) -> dict[str, object] | None:
    try:
        import dcm2niix  # the pip package: its console script is a Python wrapper around this binary

        executable: str | None = dcm2niix.bin
    except ImportError:
        executable = shutil.which("dcm2niix")
    if executable is None:
        return None
    walls, peaks = [], []
    with tempfile.TemporaryDirectory() as output:
        start = time.perf_counter()
        for study in sorted(root.glob("CQ500-CT-*/Unknown Study")):
            target = Path(output, study.parent.name)
            target.mkdir()
            wall, peak, _ = run([executable, "-z", "n", "-b", "n", "-o", str(target), str(study / THIN)])
            walls.append(wall)
            peaks.append(peak)
        total = time.perf_counter() - start
    return {"wall": total, "peak": max(peaks), "processes": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=12)
    parser.add_argument("--slices", type=int, default=250, help="slices of the thin series (default 250)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    root = write_tree(args.studies, args.slices)
    files = sum(1 for p in root.rglob("*.dcm"))
    size = sum(p.stat().st_size for p in root.rglob("*.dcm")) / MIB
    print(
        f"{args.studies} studies, 4 series each (thin {args.slices} x 512^2, thick 5 mm, bone 2.5 mm, localizer): "
        f"{files} files, {size:.0f} MiB; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rows: list[tuple[str, dict[str, object]]] = []
    for workers in args.workers:
        rows.append((f"ctexplore preprocess --rule cq500 --workers {workers}", measure_ours(root, workers)))
    most = max(args.workers)
    rows.append((f"  the same, --workers {most} --no-compress", measure_ours(root, most, compress=False)))
    rows.append(("naive: SimpleITK read + ndimage.zoom + np.save", measure_naive(root)))
    converted = measure_dcm2niix(root)
    if converted is not None:
        rows.append(("dcm2niix -z n (convert only, no resampling)", converted))
    else:
        print("dcm2niix not installed (pip install dcm2niix): its row is left out")
    header = f"{'method':52s} {'wall s':>7s} {'studies/min':>12s} {'peak MiB per worker':>20s}"
    print(f"\n{header} {'largest process MiB':>20s}")
    for name, row in rows:
        wall = float(row["wall"])  # type: ignore[arg-type]
        peak = float(row["peak"]) / MIB  # type: ignore[arg-type]
        largest = float(row.get("tree_peak", row["peak"])) / MIB  # type: ignore[arg-type]
        print(f"{name:52s} {wall:7.1f} {args.studies / wall * 60:12.1f} {peak:20.0f} {largest:20.0f}")
    print(
        "\nwall: the whole process, interpreter start included. Peak per worker: ctexplore's workers report their "
        "own VmHWM; the others are one process (dcm2niix: the largest of its per-series runs). Largest process: "
        "polled over the whole process tree (for ctexplore the parent, its fork server or a worker)."
    )


if __name__ == "__main__":
    main()
