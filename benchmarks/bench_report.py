"""How long a data-set overview of a DICOM tree takes: `ctexplore report` vs reading every image.

Run: ``python benchmarks/bench_report.py``. Writes (once, cached under
$CTEXPLORE_BENCH_CACHE or /tmp/ctexplore-bench) a CQ500-shaped tree of 512x512
studies (a thin 120-slice soft-kernel series, a thick 24-slice one and a thin
bone-kernel one each), then, each case in a fresh process, times

- ``ctexplore report``: headers of every file, then at most 48 slices of the one
  series per study the ``cq500`` rule chooses, thumbnails, distributions, flags;
- the generic way (what a "trust but verify" notebook does): read every image
  of every series with pydicom, convert to HU, stack, then the same thumbnails
  and min/max/percentiles per series.

Peak memory is the growth of the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import CACHE
from _measure import in_subprocess, print_table, run_case

STUDIES = 3
TREE = CACHE / f"report-cq500-{STUDIES}"


def cq500_tree() -> Path:
    from ctexplore.phantom import write_series

    done = TREE / ".complete"
    if done.exists():
        return TREE
    for n in range(STUDIES):
        study = TREE / f"CQ500-CT-{n}" / "Unknown Study"
        common = dict(matrix=512, patient_id=f"CQ500CT{n} CQ500CT{n}", study_uid=f"1.2.826.0.1.77.{n}", seed=n)
        series = (
            ("CT PLAIN THIN", 120, 1.25, "H30s"),
            ("CT 5mm", 24, 5.0, "H30s"),
            ("CT 0.625mm BONE", 120, 1.25, "H70h"),
        )
        for number, (description, n_slices, spacing, kernel) in enumerate(series, start=2):
            write_series(
                study / description,
                n_slices=n_slices,
                slice_spacing=spacing,
                series_number=number,
                series_description=description,
                convolution_kernel=kernel,
                file_prefix="ABC"[number - 2],
                **common,
            )
    done.write_text("ok")
    return TREE


def ours(out: Path) -> None:
    from ctexplore.report import write_report

    write_report(TREE, out, rule="cq500")


def read_everything(out: Path) -> None:
    """Every image of every series folder through pydicom, stacked in HU, then thumbnails and statistics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pydicom

    out.mkdir(parents=True, exist_ok=True)
    for number, folder in enumerate(sorted({p.parent for p in TREE.rglob("*.dcm")})):
        slices = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
        slices.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
        hu = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in slices])
        stats = (hu.min(), hu.max(), np.percentile(hu, [1, 50, 99]))
        figure, axes = plt.subplots(1, 2, figsize=(4.2, 2.35))
        axes[0].imshow(hu[len(hu) // 2], cmap="gray", vmin=0, vmax=80)
        axes[1].imshow(hu[::-1, :, hu.shape[2] // 2], cmap="gray", vmin=0, vmax=80, aspect="auto")
        figure.savefig(out / f"thumb_{number:04d}.png")
        plt.close(figure)
        del hu, slices, stats


CASES = {
    "ctexplore report (48 slices per chosen)": ours,
    "pydicom, every image of every series": read_everything,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.case:
        import tempfile

        out = Path(tempfile.mkdtemp(prefix="bench-report-"))
        result = run_case(lambda: CASES[args.case](out), args.repeats)
        print(json.dumps({"case": args.case, **result}))
        return
    tree = cq500_tree()
    files = list(tree.rglob("*.dcm"))
    input_mib = sum(p.stat().st_size for p in files) / 2**20
    print(f"{STUDIES} CQ500-shaped studies, {len(files)} files of 512x512, {input_mib:.0f} MiB, warm page cache")
    rows = [in_subprocess(__file__, case, args.repeats) for case in CASES]
    print_table(rows, input_mib)
    ratio = rows[1]["median_s"] / rows[0]["median_s"]
    print(f"ctexplore report is {ratio:.1f}x faster than reading every image", file=sys.stdout)


if __name__ == "__main__":
    main()
