"""Fault injection: corrupt DICOM series, kill batches, attack the fetchers; count what goes wrong.

Every case runs in a child process with a time limit and an address-space cap
(``resource.setrlimit`` in the child), so an abort, a hang or a memory bomb costs one
case and is counted, never the harness. Families:

``series``
    Structured and random corruptions of synthetic series (explicit little endian,
    RLE, JPEG-LS, JPEG 2000) and, where ``CTEXPLORE_TEST_DATA`` is set, of the real GE
    head CT (copied to a temporary folder): truncation, flipped bytes, absurd
    Rows/Columns/Bits/frames, NaN and inf numbers, broken orientation and spacing,
    wrong transfer syntax, sequence bombs, compressed frames whose size disagrees with
    the header for every codec, header memory bombs. The child runs ``scan`` and
    ``load_series`` on every series. A *crash* is an exception that is not a
    `ctexplore.DicomError` (numpy's own errors included); *silent* is a series loaded
    with NaN/inf HU or without a slice of a damaged file and no warning; *accounted*
    means every file ended in a series or in the skipped list with a reason.
``batch``
    A data set of 40+ studies (a few broken) preprocessed cleanly once; then runs
    killed with SIGKILL at several points and rerun: the outputs must be
    byte-identical to the clean run. Then two concurrent runs into one output folder.
``fetch``
    A local HTTP server attacking ``fetch_cq500`` and ``fetch_head_ct``: zip-slip,
    absolute paths, links, zip bombs, truncation, checksum mismatch, off-host
    redirects, a 1 byte/s trickle, an endless body, gzip encoding.

Usage::

    python benchmarks/fault_injection.py --quick      # a few minutes
    python benchmarks/fault_injection.py              # the full set (longer)
    python benchmarks/fault_injection.py --only fetch series

Prints one line per failing case and the counts per family; exits 1 when any case
crashed, hung, aborted, ran out of memory, lost a series or differed after resuming.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import http.server
import io
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEMORY_CAP = 3 * 1024**3  # address space per child; numpy, scipy and GDCM need ~1 GiB of it to import
FILE_SIZE_CAP = 64 * 1024**2  # largest file a child may write: an unbounded download stops here, not the disk
CASE_TIMEOUT = 60.0
CODECS = {
    "explicit": "1.2.840.10008.1.2.1",
    "rle": "1.2.840.10008.1.2.5",
    "jpegls": "1.2.840.10008.1.2.4.80",
    "j2k": "1.2.840.10008.1.2.4.90",
}

# ---------------------------------------------------------------------------------------------
# corruptions: (name, target files, what to do); header edits go through pydicom, the rest on bytes
# ---------------------------------------------------------------------------------------------

HEADER_EDITS: dict[str, dict[str, object]] = {
    "rows-0": {"Rows": 0},
    "rows-1": {"Rows": 1},
    "rows-65": {"Rows": 65},
    "rows-65535": {"Rows": 65535},
    "columns-0": {"Columns": 0},
    "columns-63": {"Columns": 63},
    "columns-65535": {"Columns": 65535},
    "bits-allocated-0": {"BitsAllocated": 0},
    "bits-allocated-1": {"BitsAllocated": 1},
    "bits-allocated-8": {"BitsAllocated": 8},
    "bits-allocated-64": {"BitsAllocated": 64},
    "bits-stored-0": {"BitsStored": 0},
    "bits-stored-17": {"BitsStored": 17},
    "high-bit-40": {"HighBit": 40},
    "pixel-representation-2": {"PixelRepresentation": 2},
    "samples-0": {"SamplesPerPixel": 0},
    "samples-3": {"SamplesPerPixel": 3},
    "frames-0": {"NumberOfFrames": "0"},
    "frames-2e9": {"NumberOfFrames": "2000000000"},
    "frames-negative": {"NumberOfFrames": "-1"},
    "slope-nan": {"RescaleSlope": "NaN"},
    "slope-inf": {"RescaleSlope": "inf"},
    "slope-0": {"RescaleSlope": "0"},
    "intercept-nan": {"RescaleIntercept": "NaN"},
    "intercept-minus-inf": {"RescaleIntercept": "-inf"},
    "intercept-missing": {"RescaleIntercept": None},
    "spacing-0": {"PixelSpacing": ["0", "0"]},
    "spacing-negative": {"PixelSpacing": ["-1", "-1"]},
    "spacing-1e9": {"PixelSpacing": ["1e9", "1e9"]},
    "spacing-nan": {"PixelSpacing": ["NaN", "NaN"]},
    "spacing-missing": {"PixelSpacing": None},
    "orientation-parallel": {"ImageOrientationPatient": ["1", "0", "0", "1", "0", "0"]},
    "orientation-zero": {"ImageOrientationPatient": ["0"] * 6},
    "orientation-not-unit": {"ImageOrientationPatient": ["1", "0", "0", "0", "2", "0"]},
    "orientation-sheared": {"ImageOrientationPatient": ["1", "0.3", "0", "0", "1", "0"]},
    "orientation-nan": {"ImageOrientationPatient": ["NaN"] * 6},
    "position-nan": {"ImagePositionPatient": ["NaN", "0", "0"]},
    "position-missing": {"ImagePositionPatient": None},
    "position-inf": {"ImagePositionPatient": ["0", "0", "inf"]},
    "thickness-negative": {"SliceThickness": "-5"},
    "syntax-jpegls-on-raw": {"_syntax": "1.2.840.10008.1.2.4.80"},
    "syntax-explicit-on-compressed": {"_syntax": "1.2.840.10008.1.2.1"},
    "syntax-big-endian": {"_syntax": "1.2.840.10008.1.2.2"},
    "syntax-unknown": {"_syntax": "1.2.3.4.5"},
    "sequence-deep": {"_sequence": "deep"},
    "sequence-wide": {"_sequence": "wide"},
}
# frame-size disagreements, tried on every codec
CODEC_EDITS = ["rows-65", "columns-63", "rows-65535", "bits-allocated-8", "frames-2e9", "samples-3"]
BYTE_EDITS = ["truncate", "truncate-header", "flip", "flip-header", "zero-block", "empty"]
TARGETS = ["middle", "first", "last", "all"]


def _declare_syntax(path: Path, uid: str) -> None:
    """Rewrite the file meta to declare ``uid`` while the data set's bytes stay as they were."""
    import pydicom
    from pydicom.filewriter import write_file_meta_info

    data = path.read_bytes()
    meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
    body = data[132 + 12 + int.from_bytes(data[140:144], "little") :]
    meta.TransferSyntaxUID = uid
    buffer = io.BytesIO()
    buffer.write(data[:128] + b"DICM")
    write_file_meta_info(pydicom.filebase.DicomFileLike(buffer), meta, enforce_standard=True)
    path.write_bytes(buffer.getvalue() + body)


def _nest_sequences(path: Path, depth: int) -> None:
    """Insert a (0040,A730) Content Sequence nested ``depth`` deep, in raw explicit VR little endian."""
    data = path.read_bytes()
    opening = b"\x40\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    closing = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    pixel = data.rfind(b"\xe0\x7f\x10\x00")
    path.write_bytes(data[:pixel] + opening * depth + closing * depth + data[pixel:])


def _edit_header(path: Path, edit: dict[str, object]) -> None:
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    if "_syntax" in edit:
        return _declare_syntax(path, str(edit["_syntax"]))
    if edit.get("_sequence") == "deep":
        return _nest_sequences(path, 20_000)
    dataset = pydicom.dcmread(path)
    for keyword, value in edit.items():
        if keyword == "_sequence":  # wide: one sequence of many items
            item = Dataset()
            item.CodeValue = "X"
            dataset.ContentSequence = Sequence([item] * 50_000)
        elif value is None:
            if keyword in dataset:
                delattr(dataset, keyword)
        elif keyword in dataset:
            dataset[keyword].value = value
        else:
            setattr(dataset, keyword, value)
    dataset.save_as(path, enforce_file_format=False)
    return None


def _edit_bytes(path: Path, edit: str, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    if edit == "truncate":
        data = data[: rng.randrange(len(data) // 2, len(data) - 1)]
    elif edit == "truncate-header":
        data = data[: rng.randrange(132, 600)]
    elif edit == "flip":
        for _ in range(rng.randrange(1, 40)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif edit == "flip-header":
        for _ in range(rng.randrange(1, 10)):
            data[rng.randrange(128, min(len(data), 1200))] ^= 0xFF
    elif edit == "zero-block":
        start = rng.randrange(128, len(data) - 64)
        data[start : start + 64] = bytes(64)
    elif edit == "empty":
        data = bytearray()
    path.write_bytes(bytes(data))


def corrupt(folder: Path, edit: str, target: str, rng: random.Random) -> list[str]:
    """Apply one corruption to the chosen files of a series folder; return the names touched."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    chosen = {
        "middle": [files[len(files) // 2]],
        "first": [files[0]],
        "last": [files[-1]],
        "all": files,
    }[target]
    for path in chosen:
        if edit in HEADER_EDITS:
            _edit_header(path, HEADER_EDITS[edit])
        else:
            _edit_bytes(path, edit, rng)
    return [p.name for p in chosen]


# ---------------------------------------------------------------------------------------------
# child side: one case, results as one JSON line on stdout
# ---------------------------------------------------------------------------------------------


def child_load(folder: str) -> dict:
    import warnings

    import numpy as np

    import ctexplore as ct

    result: dict = {"errors": Counter(), "unexpected": [], "silent": [], "series": 0, "loaded": 0}
    total = sum(1 for p in Path(folder).rglob("*") if p.is_file())
    try:
        index = ct.scan(folder)
    except Exception as error:  # scan must never raise on a readable folder
        result["unexpected"].append(f"scan: {type(error).__name__}: {error}"[:300])
        return result
    in_series = sum(len(series.files) for series in index.series)
    result["accounted"] = in_series + len(index.skipped) == total
    result["files"] = total
    for series in index.series:
        result["series"] += 1
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                volume = ct.load_series(series)
            except ct.DicomError as error:
                result["errors"][type(error).__name__] += 1
                continue
            except MemoryError:
                result["errors"]["MemoryError"] += 1
                result["unexpected"].append("MemoryError: memory not bounded before allocating")
                continue
            except BaseException as error:  # noqa: B036 - a Rust panic is a BaseException
                result["unexpected"].append(
                    f"{type(error).__name__}: {error} @ {traceback.extract_tb(error.__traceback__)[-1].name}"[:300]
                )
                continue
        result["loaded"] += 1
        if not np.isfinite(volume.hu).all():
            result["silent"].append(f"{series.description}: NaN/inf HU loaded without error")
        if volume.shape[0] < len(series.files) and not caught:
            result["silent"].append(
                f"{series.description}: {volume.shape[0]} of {len(series.files)} slices, no warning"
            )
    result["errors"] = dict(result["errors"])
    return result


def child_fetch(spec: dict) -> dict:
    from ctexplore.datasets import fetch_cq500
    from ctexplore.fetch import fetch_head_ct

    dest = Path(spec["dest"])
    try:
        if spec["fetcher"] == "cq500":
            fetch_cq500(
                [1],
                dest,
                base_url=spec["url"],
                known_hashes=spec.get("hashes"),
                progress=False,
                timeout=spec.get("timeout", 3),
            )
        else:
            fetch_head_ct("ge-hispeed-head", dest, base_url=spec["url"], timeout=spec.get("timeout", 3))
    except Exception as error:
        return {"error": type(error).__name__, "message": str(error)[:400]}
    return {"error": None, "message": ""}


def run_child(payload: dict, timeout: float = CASE_TIMEOUT) -> dict:
    """Run one case in a capped child; classify how it ended."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_CAP, FILE_SIZE_CAP))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails with EFBIG instead
        os.setsid()

    environment = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", json.dumps(payload)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=cap,
        env=environment,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return {"outcome": "hang"}
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    if process.returncode < 0 or process.returncode == 134:
        return {"outcome": "abort", "detail": f"signal {-process.returncode}: {err.strip()[-300:]}", "rss": rss}
    if "MemoryError" in err and process.returncode:
        return {"outcome": "memory", "detail": err.strip()[-300:], "rss": rss}
    try:
        result = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"outcome": "crash", "detail": err.strip()[-400:], "rss": rss}
    result["outcome"] = "done"
    result["rss"] = rss
    return result


# ---------------------------------------------------------------------------------------------
# family: series corruptions
# ---------------------------------------------------------------------------------------------


def write_bases(work: Path) -> dict[str, Path]:
    from ctexplore.phantom import write_series

    bases = {}
    for name, syntax in CODECS.items():
        folder = work / "bases" / name
        write_series(folder, n_slices=6, matrix=64, transfer_syntax=syntax, series_description=f"BASE {name}")
        bases[name] = folder
    real = Path(os.environ.get("CTEXPLORE_TEST_DATA", "/nonexistent")) / "head-ct-ge"
    if real.is_dir():
        shutil.copytree(real, work / "bases" / "real-ge", ignore=shutil.ignore_patterns("*.txt", "*.md", "LICENSE*"))
        bases["real-ge"] = work / "bases" / "real-ge"
    return bases


def series_cases(bases: dict[str, Path], quick: bool, seed: int) -> list[tuple[str, str, str]]:
    cases = []
    targets = ["middle", "all"] if quick else TARGETS
    for edit in HEADER_EDITS:
        for target in targets:
            cases.append(("explicit", edit, target))
    for codec in ("rle", "jpegls", "j2k"):
        for edit in CODEC_EDITS:
            cases.append((codec, edit, "all" if quick else "middle"))
            if not quick:
                cases.append((codec, edit, "all"))
    for edit in BYTE_EDITS:
        for target in ["middle", "last"] if quick else TARGETS:
            cases.append(("explicit", edit, target))
    rng = random.Random(seed)
    names = [name for name in bases if name != "real-ge"]
    for _ in range(20 if quick else 200):
        cases.append((rng.choice(names), rng.choice(list(HEADER_EDITS) + BYTE_EDITS * 4), rng.choice(TARGETS)))
    if "real-ge" in bases:
        real_edits = ["rows-65", "slope-nan", "spacing-0", "orientation-sheared", "truncate", "flip", "frames-2e9"]
        for edit in real_edits if quick else list(HEADER_EDITS) + BYTE_EDITS:
            cases.append(("real-ge", edit, "middle"))
            if edit == "truncate":
                cases.append(("real-ge", edit, "first"))
    return cases


def family_series(work: Path, quick: bool, seed: int, jobs: int) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    bases = write_bases(work)
    cases = series_cases(bases, quick, seed)
    print(f"series: {len(cases)} cases on {', '.join(bases)}", flush=True)

    def one(numbered: tuple[int, tuple[str, str, str]]) -> tuple[tuple[str, str, str], dict]:
        number, (base, edit, target) = numbered
        folder = work / "cases" / f"{number:04d}"
        shutil.copytree(bases[base], folder)
        try:
            touched = corrupt(folder, edit, target, random.Random(seed + number))
        except Exception as error:  # the corruption itself could not be written: not a finding
            return (base, edit, target), {"outcome": "not-written", "detail": str(error)[:200]}
        result = run_child({"kind": "load", "folder": str(folder)})
        result["touched"] = len(touched)
        shutil.rmtree(folder, ignore_errors=True)
        return (base, edit, target), result

    counts: Counter = Counter()
    max_rss = 0
    with ThreadPoolExecutor(jobs) as pool:
        for (base, edit, target), result in pool.map(one, enumerate(cases)):
            outcome = result["outcome"]
            max_rss = max(max_rss, result.get("rss", 0))
            counts["cases"] += 1
            if outcome == "not-written":
                counts["not written"] += 1
                continue
            if outcome != "done":
                counts[outcome] += 1
                print(f"  {outcome:7} {base}/{edit}/{target}: {result.get('detail', '')[:240]}", flush=True)
                continue
            counts["series"] += result["series"]
            counts["series loaded"] += result["loaded"]
            counts["clean errors"] += sum(result["errors"].values())
            if result["unexpected"]:
                counts["crash"] += len(result["unexpected"])
                print(f"  crash   {base}/{edit}/{target}: {result['unexpected'][0][:240]}", flush=True)
            if result["silent"]:
                counts["silent"] += len(result["silent"])
                print(f"  silent  {base}/{edit}/{target}: {result['silent'][0][:240]}", flush=True)
            if not result.get("accounted", False):
                counts["files unaccounted"] += 1
                print(f"  lost    {base}/{edit}/{target}: a file is in no series and not skipped", flush=True)
            else:
                counts["cases accounted"] += 1
    counts["max rss MiB"] = max_rss // 1024**2
    return dict(counts)


# ---------------------------------------------------------------------------------------------
# family: batch kill -9 and concurrent runs
# ---------------------------------------------------------------------------------------------


def write_batch_dataset(root: Path, studies: int) -> None:
    from ctexplore.phantom import write_series

    for number in range(studies):
        patient = f"CQ500-CT-{number}"
        folder = root / patient / "Unknown Study" / "CT PLAIN"
        written = write_series(
            folder,
            n_slices=8,
            matrix=48,
            pixel_spacing=(4.0, 4.0),
            patient_id=patient,
            series_description="CT PLAIN",
            study_uid=f"1.2.826.0.1.3680043.8.498.{number + 1}",
            seed=number,
            file_prefix="CT",
        )
        if number % 13 == 5:  # a faulty study: truncated slice
            victim = written.files[3]
            victim.write_bytes(victim.read_bytes()[:-500])
        elif number % 13 == 9:  # a faulty study: NaN slope
            _edit_header(written.files[2], {"RescaleSlope": "NaN"})


def _preprocess_command(data: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ctexplore",
        "preprocess",
        str(data),
        str(out),
        "--spacing",
        "4",
        "--workers",
        "2",
        "--no-progress",
    ]


def _digest_outputs(out: Path) -> dict[str, str]:
    """sha256 of every output array and the manifest's per-series columns (not its timings)."""
    digests = {
        str(path.relative_to(out)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(out.rglob("*"))
        if path.is_file() and path.suffix in (".npz", ".nii", ".gz")
    }
    manifest = out / "manifest.csv"
    if manifest.exists():
        import csv

        with open(manifest, newline="") as stream:
            rows = sorted(
                (row.get("series_uid", ""), row.get("status", ""), row.get("output", ""))
                for row in csv.DictReader(stream)
            )
        digests["manifest rows"] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return digests


def family_batch(work: Path, quick: bool) -> dict:
    studies = 40 if quick else 60
    data = work / "batch-data"
    write_batch_dataset(data, studies)
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    counts: Counter = Counter()
    start = time.perf_counter()
    clean = subprocess.run(_preprocess_command(data, work / "clean"), capture_output=True, text=True, env=environment)
    clean_seconds = time.perf_counter() - start
    reference = _digest_outputs(work / "clean")
    print(
        f"batch: {studies} studies, clean run {clean_seconds:.1f} s, exit {clean.returncode}, "
        f"{sum(1 for k in reference if k.endswith('.npz'))} outputs",
        flush=True,
    )
    if clean.returncode not in (0, 1):
        counts["crash"] += 1
        print(f"  crash   clean run: {clean.stderr.strip()[-300:]}")
    points = [0.2, 0.35, 0.5, 0.65, 0.8] if quick else [0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95]
    for fraction in points:
        out = work / f"killed-{fraction}"
        process = subprocess.Popen(
            _preprocess_command(data, out),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=environment,
            start_new_session=True,
        )
        time.sleep(clean_seconds * fraction)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        rerun = subprocess.run(_preprocess_command(data, out), capture_output=True, text=True, env=environment)
        counts["kill points"] += 1
        if rerun.returncode not in (0, 1):
            counts["crash"] += 1
            print(f"  crash   rerun after kill at {fraction:.0%}: {rerun.stderr.strip()[-300:]}")
        if _digest_outputs(out) == reference:
            counts["resumed == clean"] += 1
        else:
            differing = sorted(set(_digest_outputs(out).items()) ^ set(reference.items()))[:3]
            print(f"  differ  kill at {fraction:.0%}: {differing}")
        shutil.rmtree(out, ignore_errors=True)
    # two runs into one output folder at once
    for trial in range(2 if quick else 5):
        out = work / f"concurrent-{trial}"
        first = subprocess.Popen(
            _preprocess_command(data, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
        )
        time.sleep(0.2 * trial)
        second = subprocess.Popen(
            _preprocess_command(data, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
        )
        results = [first.communicate(), second.communicate()]
        counts["concurrent trials"] += 1
        texts = " ".join(out_ + err for out_, err in results)
        if "FileNotFoundError" in texts or "Traceback" in texts:
            counts["concurrent interference"] += 1
            print(f"  interfere concurrent trial {trial}: {texts.strip()[-300:]}")
        final = subprocess.run(_preprocess_command(data, out), capture_output=True, text=True, env=environment)
        if _digest_outputs(out) == reference and final.returncode in (0, 1):
            counts["concurrent == clean"] += 1
        else:
            print(f"  differ  concurrent trial {trial}: outputs after a rerun differ from the clean run")
        shutil.rmtree(out, ignore_errors=True)
    return dict(counts)


# ---------------------------------------------------------------------------------------------
# family: fetcher attacks
# ---------------------------------------------------------------------------------------------


def _zip(entries: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16  # a symbolic link
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def _declared_bomb() -> bytes:
    """Five small entries whose central directory declares 4 GiB each (20 GiB in all)."""
    data = bytearray(_zip({f"CQ500CT1 CQ500CT1/Unknown Study/CT/{k}.dcm": b"x" * 100 for k in range(5)}))
    position = 0
    while (position := data.find(b"PK\x01\x02", position)) >= 0:
        data[position + 24 : position + 28] = (0xFFFFFFFE).to_bytes(4, "little")  # uncompressed size
        position += 4
    return bytes(data)


GOOD_ZIP = _zip({"CQ500CT1 CQ500CT1/Unknown Study/CT 5mm/CT000000.dcm": b"\0" * 2000})
ZIP_ATTACKS = {
    "zip-slip": _zip({"CQ500CT1 CQ500CT1/../../evil.txt": b"gotcha"}),
    "zip-absolute": _zip({"/tmp/ctexplore-evil.txt": b"gotcha"}),
    "zip-backslash": _zip({"CQ500CT1 CQ500CT1\\..\\..\\evil.txt": b"gotcha"}),
    "zip-link": _zip({"CQ500CT1 CQ500CT1/a.dcm": b"x"}, links=("CQ500CT1 CQ500CT1/passwd",)),
    "zip-bomb": _declared_bomb(),
    "zip-garbage": b"PK\x03\x04" + os.urandom(5000),
}
HTTP_ATTACKS = ["truncated", "checksum", "redirect-offhost", "trickle", "endless", "gzip", "huge-length", "reset"]


class _AttackHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        mode = self.path.strip("/").split("/")[0]
        zeros = bytes(64 * 1024)
        try:
            if mode in ZIP_ATTACKS or mode == "checksum":
                body = ZIP_ATTACKS.get(mode, GOOD_ZIP)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif mode == "truncated":
                self.send_response(200)
                self.send_header("Content-Length", str(len(GOOD_ZIP) + 100000))
                self.end_headers()
                self.wfile.write(GOOD_ZIP[:500])
            elif mode == "reset":
                self.send_response(200)
                self.send_header("Content-Length", str(10**6))
                self.end_headers()
                self.wfile.write(zeros[:1000])
                self.wfile.flush()
                import struct

                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif mode == "redirect-offhost":
                self.send_response(302)
                port = self.server.server_address[1]
                self.send_header("Location", f"http://localhost:{port}/checksum/CQ500-CT-1.zip")
                self.end_headers()
            elif mode == "trickle":
                self.send_response(200)
                self.send_header("Content-Length", str(10**6))
                self.end_headers()
                for _ in range(60):  # 30 s: longer than a case may take
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(0.5)
            elif mode in ("endless", "huge-length"):
                self.send_response(200)
                if mode == "huge-length":
                    self.send_header("Content-Length", str(10**12))
                self.end_headers()
                sent = 0
                while sent < 4 * FILE_SIZE_CAP:  # far beyond what a bounded client accepts; children stop at the cap
                    self.wfile.write(zeros)
                    sent += len(zeros)
            elif mode == "gzip":
                body = gzip.compress(bytes(64 * 1024**2))  # 64 MiB of zeros in ~64 KB
                self.send_response(200)
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)
        except (BrokenPipeError, ConnectionResetError):
            pass


def family_fetch(work: Path) -> dict:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AttackHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    counts: Counter = Counter()
    attacks = [("cq500", name) for name in [*ZIP_ATTACKS, *HTTP_ATTACKS]]
    attacks += [("head-ct", name) for name in HTTP_ATTACKS]
    print(f"fetch: {len(attacks)} attacks against a local server", flush=True)
    try:
        for fetcher, attack in attacks:
            sandbox = work / "fetch" / f"{fetcher}-{attack}"
            dest = sandbox / "dest"
            dest.mkdir(parents=True)
            spec = {"kind": "fetch", "fetcher": fetcher, "url": f"{base}/{attack}", "dest": str(dest), "timeout": 3}
            if attack == "checksum":
                spec["hashes"] = {"CQ500-CT-1": "sha256:" + "0" * 64}
            result = run_child(spec, timeout=25)
            counts["attacks"] += 1
            written = sum(p.stat().st_size for p in sandbox.rglob("*") if p.is_file() and not p.is_symlink())
            escaped = [p for p in sandbox.rglob("*") if not p.is_relative_to(dest)] + [
                p for p in (Path("/tmp/ctexplore-evil.txt"), work / "fetch" / "evil.txt") if p.exists()
            ]
            problems = []
            if result["outcome"] != "done":
                problems.append(f"{result['outcome']}: {result.get('detail', '')[:200]}")
            elif result["error"] is None:
                problems.append("accepted")
            elif result["error"] not in ("DownloadError", "ChecksumError", "UnsafeArchiveError"):
                problems.append(f"{result['error']}: {result['message'][:200]}")
            message = result.get("message", "")
            if attack in ("gzip", "endless", "huge-length") and "resume" in message:
                problems.append(f"advises resuming: {message[:160]}")
            if attack in ("truncated", "reset") and "offline" in message:
                problems.append(f"a cut connection called offline: {message[:160]}")
            if written > FILE_SIZE_CAP // 2 or "File too large" in result.get("message", ""):
                problems.append(f"unbounded: wrote {written >> 20} MiB, up to the harness's file-size cap")
            if escaped:
                problems.append(f"wrote outside dest: {escaped[:2]}")
            if problems:
                counts["failed"] += 1
                print(f"  failed  {fetcher}/{attack}: {'; '.join(problems)}", flush=True)
            else:
                counts["refused cleanly"] += 1
            shutil.rmtree(sandbox, ignore_errors=True)
    finally:
        server.shutdown()
        server.server_close()
    return dict(counts)


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes: fewer random cases and kill points")
    parser.add_argument("--only", nargs="+", choices=("series", "batch", "fetch"), help="run these families only")
    parser.add_argument("--seed", type=int, default=12, help="seed of the random corruptions (default 12)")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        payload = json.loads(args.child)
        result = child_load(payload["folder"]) if payload["kind"] == "load" else child_fetch(payload)
        print(json.dumps(result, default=str))
        return 0
    import warnings

    warnings.filterwarnings("ignore", module="pydicom")  # the corruptions are invalid values on purpose
    families = args.only or ["series", "batch", "fetch"]
    report = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ctexplore-faults-") as scratch:
        work = Path(scratch)
        if "fetch" in families:
            report["fetch"] = family_fetch(work)
        if "series" in families:
            report["series"] = family_series(work, args.quick, args.seed, args.jobs)
        if "batch" in families:
            report["batch"] = family_batch(work, args.quick)
    print(
        f"\nfault injection ({'quick' if args.quick else 'full'}, seed {args.seed}, "
        f"{time.perf_counter() - start:.0f} s):"
    )
    for family, counts in report.items():
        print(f"  {family:7} " + ", ".join(f"{key}: {value}" for key, value in counts.items()))
    bad = sum(
        counts.get(key, 0)
        for counts in report.values()
        for key in (
            "crash",
            "hang",
            "abort",
            "memory",
            "silent",
            "files unaccounted",
            "failed",
            "concurrent interference",
        )
    )
    batch = report.get("batch", {})
    bad += batch.get("kill points", 0) - batch.get("resumed == clean", 0)
    bad += batch.get("concurrent trials", 0) - batch.get("concurrent == clean", 0)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
