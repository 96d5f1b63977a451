"""Decoding the real 12-bit JPEG Extended frames: imagecodecs (BSD, the default) vs pylibjpeg-libjpeg (GPL extra).

Both decode the same frames in one run; the table gives the median time per 512 x 512 frame, and how far
each decoder's Hounsfield units are from the uncompressed original slice (the frames are lossy).

Run:  CTEXPLORE_TEST_DATA=../shared/data/ct python benchmarks/bench_jpeg12.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import get_decoder
from pydicom.uid import JPEGExtended12Bit

from ctexplore._imagecodecs_plugin import PLUGIN_LABEL, register


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    folder = Path(os.environ.get("CTEXPLORE_TEST_DATA", "../shared/data/ct")) / "single-files" / "transfer-syntaxes"
    files = sorted(folder.glob("*.51.dcm"))
    if not files:
        raise SystemExit(f"no 12-bit JPEG Extended files (*.51.dcm) in {folder}: set CTEXPLORE_TEST_DATA")
    register()
    decoder = get_decoder(JPEGExtended12Bit)
    original = pydicom.dcmread(folder / "CTImage.dcm_LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm")
    truth = original.pixel_array * float(original.RescaleSlope) + float(original.RescaleIntercept)
    datasets = [pydicom.dcmread(path) for path in files]
    frames = sum(int(getattr(dataset, "NumberOfFrames", 1)) for dataset in datasets)
    print(f"{len(files)} files, {frames} frames of 512 x 512, 12 bits stored; {args.repeats} repeats")
    print(f"{'decoder':<22}{'ms / frame':>12}{'mean |HU error|':>18}{'max |HU error|':>16}")
    for plugin in (PLUGIN_LABEL, "pylibjpeg"):
        if plugin not in decoder._available:
            print(f"{plugin:<22}{'not installed':>12}")
            continue
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for dataset in datasets:
                decoder.as_array(dataset, decoding_plugin=plugin)
            seconds.append(time.perf_counter() - start)
        single = next(d for d in datasets if "CTImage" in str(d.filename))
        stored, _ = decoder.as_array(single, decoding_plugin=plugin)
        hu = stored * float(single.RescaleSlope) + float(single.RescaleIntercept)
        error = np.abs(hu - truth)
        label = "imagecodecs (BSD)" if plugin == PLUGIN_LABEL else "libjpeg (GPL)"
        ms = 1000 * statistics.median(seconds) / frames
        print(f"{label:<22}{ms:>12.2f}{error.mean():>18.3f}{error.max():>16.1f}")


if __name__ == "__main__":
    main()
