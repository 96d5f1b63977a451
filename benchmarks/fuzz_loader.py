"""Corrupt one file of a 6-slice phantom series at random, then scan and load it; count what goes wrong.

Each trial copies the series, damages one file (a header value from a list of hostile ones,
truncation at a random byte, or random bytes flipped inside the header) and runs
`ctexplore.scan` and `ctexplore.load_series`. It counts

- crashes: any exception that is not a `ctexplore.DicomError` (numpy, pydicom, ZeroDivisionError ...);
- silent differences: a load that returns a volume other than the undamaged one (fewer slices,
  other HU or affine) without a single `GeometryWarning`.

Flipped bytes inside pixel data cannot be detected by any reader, so flips stay in the header.

    python benchmarks/fuzz_loader.py [--trials 600] [--seed 7]
"""

from __future__ import annotations

import argparse
import collections
import random
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pydicom

from ctexplore._fastheader import read_fast_header
from ctexplore.errors import DicomError, GeometryWarning
from ctexplore.phantom import write_series
from ctexplore.reader import load_series
from ctexplore.series import scan

HOSTILE_VALUES = {
    "RescaleSlope": ["nan", "inf", "0", "-1", "1e300", ""],
    "RescaleIntercept": ["nan", "-inf", "", "1e300"],
    "PixelSpacing": [[0, 0], [-1, 1], [1e9, 1e9], ["nan", 1], [1]],
    "ImageOrientationPatient": [
        [1, 0, 0, 1, 0, 0],
        [1, 0, 0, 0, 1],
        [0] * 6,
        ["nan"] * 6,
        [1, 0.04, 0, 0, 1, 0],
        [2, 0, 0, 0, 2, 0],
    ],
    "ImagePositionPatient": [["nan", 0, 0], [0, 0], [1e308, 0, 0], ["inf", 0, 0]],
    "Rows": [0, 1, 65535, 31],
    "Columns": [0, 65535, 33],
    "BitsAllocated": [0, 8, 12, 32, 64],
    "BitsStored": [0, 1, 17, 64],
    "HighBit": [0, 40],
    "PixelRepresentation": [2, 5],
    "SamplesPerPixel": [0, 3],
    "NumberOfFrames": [0, 2, 10**9],
    "SeriesInstanceUID": ["", "x"],
    "PixelPaddingValue": [65535, -32768],
}


def damage(victim: Path, rng: random.Random) -> str:
    """Damage one file in place; return what was done."""
    kind = rng.random()
    if kind < 0.5:
        dataset = pydicom.dcmread(victim)
        changes = []
        for _ in range(rng.randint(1, 2)):
            keyword = rng.choice(list(HOSTILE_VALUES))
            value = rng.choice(HOSTILE_VALUES[keyword])
            setattr(dataset, keyword, value)
            changes.append(f"{keyword}={value}")
        dataset.save_as(victim)
        return "tag " + " ".join(changes)
    data = bytearray(victim.read_bytes())
    if kind < 0.75:
        cut = rng.randint(0, len(data))
        victim.write_bytes(bytes(data[:cut]))
        return f"truncated at {cut}"
    header_end = read_fast_header(victim).pixel_offset - 12
    spots = sorted(rng.randint(132, header_end) for _ in range(rng.randint(1, 8)))
    for spot in spots:
        data[spot] = rng.randint(0, 255)
    victim.write_bytes(bytes(data))
    return f"bytes flipped at {spots}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    base = Path(tempfile.mkdtemp(prefix="ctexplore-fuzz-"))
    source = write_series(base / "source", n_slices=6, matrix=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        truth = load_series(source.folder)
    crashes: collections.Counter[str] = collections.Counter()
    silent: collections.Counter[str] = collections.Counter()
    outcomes: collections.Counter[str] = collections.Counter()
    try:
        for trial in range(args.trials):
            work = base / f"trial{trial}"
            shutil.copytree(source.folder, work)
            victim = rng.choice(sorted(work.iterdir()))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom warns about the invalid values it is asked to write
                try:
                    done = damage(victim, rng)
                except (OSError, ValueError, OverflowError):  # pydicom cannot encode that value (e.g. SS 65535)
                    outcomes["damage not writable, skipped"] += 1
                    shutil.rmtree(work)
                    continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    index = scan(work, workers=1)
                    repr(index)
                    volume = load_series(index[0]) if len(index.series) else None
                except DicomError:
                    outcomes["refused with a DicomError"] += 1
                    continue
                except Exception as error:  # what the harness counts: anything that is not our error
                    crashes[f"{done}: {type(error).__name__}: {str(error)[:120]}"] += 1
                    continue
                finally:
                    shutil.rmtree(work)
            warned = any(issubclass(w.category, GeometryWarning) for w in caught)
            if volume is None:
                outcomes["no series left"] += 1
            elif warned:
                outcomes["loaded with a warning"] += 1
            elif (
                volume.shape == truth.shape
                and np.array_equal(volume.hu, truth.hu)
                and np.allclose(volume.affine, truth.affine)
            ):
                outcomes["loaded, identical to the undamaged series"] += 1
            else:
                silent[f"{done}: {victim.name} -> shape {volume.shape}"] += 1
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"{args.trials} trials (seed {args.seed}) on a 6-slice 32x32 series")
    for outcome, count in outcomes.most_common():
        print(f"  {count:4d} {outcome}")
    print(f"  {sum(crashes.values()):4d} crashes (an exception other than DicomError)")
    print(f"  {sum(silent.values()):4d} silent differences (another volume, no warning)")
    for text, count in (crashes + silent).most_common(20):
        print(f"       {count:3d} x {text}")


if __name__ == "__main__":
    main()
