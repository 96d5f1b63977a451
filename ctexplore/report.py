"""A one-page, self-contained HTML overview of a preprocessed data set (``ctexplore report OUT``).

Reads ``OUT/manifest.csv`` and the chosen outputs, writes ``OUT/report.html``
(pictures embedded, so it opens offline anywhere) and the PNGs under
``OUT/report/``: a mosaic of every chosen series (brain window, mid-axial and
mid-sagittal), counts of kernels and slice counts, and the flagged series.
"""

from __future__ import annotations

import base64
import csv
import html
import os
from collections import Counter
from pathlib import Path

import numpy as np

__all__ = ["write_report"]

_BRAIN = (40.0, 80.0)  # level, width in HU


def _brain_png(image: np.ndarray, path: Path) -> bytes:
    import matplotlib.image

    level, width = _BRAIN
    scaled = np.clip((image.astype(np.float32) - (level - width / 2)) / width, 0, 1)
    matplotlib.image.imsave(path, scaled, cmap="gray", vmin=0, vmax=1)
    return path.read_bytes()


def _flags(row: dict[str, str]) -> list[str]:
    flags = []
    if row.get("warnings"):
        flags.append(row["warnings"])
    try:
        if abs(float(row.get("tilt_deg") or 0)) > 0.5:
            flags.append(f"gantry tilt {row['tilt_deg']} deg")
    except ValueError:
        pass
    if row.get("status") == "failed":
        flags.append(f"failed: {row.get('reason', '')}")
    return flags


def write_report(folder: str | os.PathLike[str]) -> Path:
    """Write ``FOLDER/report.html`` for a `ctexplore.preprocess` output folder; return its path.

    Examples
    --------
    >>> import tempfile
    >>> from ctexplore.phantom import write_series
    >>> from ctexplore.batch import preprocess
    >>> from ctexplore.pipeline import PreprocessOptions
    >>> data, out = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> _ = write_series(data, n_slices=4, matrix=16, patient_id="CQ500-CT-1")
    >>> _ = preprocess(data, out, options=PreprocessOptions(spacing=(4, 4, 4)), workers=1, progress=False)
    >>> write_report(out).name
    'report.html'
    """
    from ._atomic import atomic_target

    folder = Path(folder)
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: run 'ctexplore preprocess IN {folder}' first")
    with open(manifest, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    pictures = folder / "report"
    pictures.mkdir(exist_ok=True)
    tiles, flagged = [], []
    for number, row in enumerate(rows):
        if _flags(row):
            flagged.append(row)
        if row["status"] != "ok" or not row["output"].endswith(".npz"):
            continue
        with np.load(folder / row["output"], allow_pickle=False) as data:
            hu = data["hu"]
        cells = []
        for view, image in (("axial", hu[hu.shape[0] // 2]), ("sagittal", hu[::-1, :, hu.shape[2] // 2])):
            png = _brain_png(image, pictures / f"{number:04d}_{view}.png")
            cells.append(f'<img alt="{view}" src="data:image/png;base64,{base64.b64encode(png).decode()}">')
        title = html.escape(f"{row['patient_id']} s{row['series_number']} {row['series_description']}")
        tiles.append(
            f"<figure>{''.join(cells)}<figcaption>{title}<br>{html.escape(row.get('output_shape', ''))} "
            f"@ {html.escape(row.get('output_spacing', ''))} mm</figcaption></figure>"
        )

    def counts(column: str) -> str:
        items = Counter(row.get(column, "") for row in rows).most_common()
        return "".join(f"<tr><td>{html.escape(str(k) or '(none)')}</td><td>{v}</td></tr>" for k, v in items)

    status = Counter(row["status"] for row in rows)
    flag_rows = "".join(
        f"<tr><td>{html.escape(r['patient_id'])}</td><td>{html.escape(r['series_description'])}</td>"
        f"<td>{html.escape('; '.join(_flags(r)))}</td></tr>"
        for r in flagged
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ctexplore report: {html.escape(folder.name)}</title>
<style>body{{font-family:sans-serif;margin:1em}} figure{{display:inline-block;margin:4px}}
img{{width:160px;image-rendering:pixelated}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 6px}}</style>
</head><body>
<h1>Data set report</h1>
<p id="status">{status.get("ok", 0)} ok, {status.get("skipped", 0)} skipped, {status.get("failed", 0)} failed series</p>
<h2>Chosen series (brain window W80 L40: mid-axial, mid-sagittal)</h2>
<div id="mosaic">{"".join(tiles)}</div>
<h2>Kernels</h2><table id="kernels"><tr><th>kernel</th><th>series</th></tr>{counts("kernel")}</table>
<h2>Slice counts</h2><table id="slices"><tr><th>images</th><th>series</th></tr>{counts("slice_count")}</table>
<h2>Flags</h2><table id="flags"><tr><th>patient</th><th>series</th><th>flag</th></tr>{flag_rows}</table>
</body></html>
"""
    target = folder / "report.html"
    with atomic_target(target) as temporary:
        temporary.write_text(page, encoding="utf-8")
    return target
