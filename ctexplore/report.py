"""A one-page, self-contained HTML overview of a CT data set (``ctexplore report``).

Before training on hundreds of studies, look at all of them at once ("trust but
verify"): one thumbnail per chosen series, how slice thickness, spacing, tilt,
slice counts, scanners and kernels are spread, and every series with a quirk.

The report reads either

- a `ctexplore.preprocess` output folder (it holds ``manifest.csv``): one row
  per series as the manifest records it; thumbnails and HU checks come from
  the written ``.npz`` volumes; or
- a DICOM tree: headers only (`ctexplore.scan`), the series of each study
  chosen by a rule (`ctexplore.selection`), and at most `SAMPLE_SLICES` evenly
  spread slices of each chosen series read for its thumbnails and HU checks.
  Nothing is written into the tree: the report goes to a separate folder.

It writes ``report.html`` (pictures embedded as ``data:`` URIs: it opens
offline, mailed or copied anywhere), the same PNGs under ``report/`` and the
flags as ``report/flags.csv`` (patient, series, flag) for scripts.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .reader import _DUPLICATE_MM, _STEP_ATOL_MM, _STEP_RTOL
from .series import Series
from .volume import AIR_HU, Volume

__all__ = ["SAMPLE_SLICES", "SeriesFacts", "hu_flags", "write_report"]

#: Slices read per chosen series of a DICOM tree: enough for a mid-sagittal thumbnail and the HU checks.
SAMPLE_SLICES = 48

_TILT_FLAG_DEG = 0.5
# HU of the CT scale of a 12-bit scanner: air clamps at -1024, the top of 4096 values is 3071
_CT_SCALE_HU = (-1024.0, 3071.0)
_BELOW_SCALE_MARGIN_HU = 26.0  # noise around a clamped -1024 stays above -1050
_AIR_TOLERANCE_HU = 100.0
_DARK_HU = -500.0  # voxels below this are air (or lung); a head CT has plenty outside the head
_WRAPPED_HU = 2500.0  # air of a wrapped 12-bit image reads 3096 HU
_MAX_CHECKED_VOXELS = 2_000_000
_THUMB_LETTERS_COLOR = "#ffeb3b"


@dataclass
class SeriesFacts:
    """What the report says about one series: where it is from, its geometry, and its flags."""

    patient: str
    description: str
    series_number: int | None
    images: int
    status: str  # "chosen" / "not chosen" (DICOM tree) or the manifest's ok / skipped / failed
    reason: str = ""
    kernel: str = ""
    thickness_mm: float | None = None
    spacing_mm: float | None = None
    tilt_deg: float | None = None
    model: str = ""
    contrast: str = ""  # the evidence for contrast enhancement (`ctexplore.selection.contrast_evidence`)
    flags: list[str] = field(default_factory=list)
    thumbnail: bytes | None = None

    @property
    def chosen(self) -> bool:
        return self.status in ("chosen", "ok")

    @property
    def label(self) -> str:
        return f"{self.patient} s{self.series_number if self.series_number is not None else '?'} {self.description}"


# ---------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------


def hu_flags(hu: np.ndarray, padding: np.ndarray | None = None) -> list[str]:
    """HU sanity of a volume (or a few slices of it): air, the CT scale, the 12-bit wrap-around, padding.

    - **padding**: how much of the image is pixel padding (left out of the other checks);
    - **air not near -1000 HU**: the voxels below -500 HU (outside air) should
      centre on -1000; when they do not, or there are none, (0028,1052)
      *Rescale Intercept* or (0028,1053) *Rescale Slope* is wrong;
    - **values outside the scanner range**: below -1024 HU (nothing is less
      dense than air: an undeclared padding value) or above 3071 HU (the top
      of the 12-bit scale: metal, or a wrong rescale);
    - **12-bit unsigned wrap-around** (known from public CT sets such as
      RSNA ICH): negative HU stored modulo 4096 with intercept 0, so outside
      air reads about +3096 HU.

    Examples
    --------
    >>> import numpy as np
    >>> head = np.full((4, 32, 32), -1000, np.int16)
    >>> head[:, 8:24, 8:24] = 40
    >>> hu_flags(head)
    []
    >>> [flag.split(":")[0] for flag in hu_flags(head + 1024)]  # intercept 0 where -1024 was meant
    ['air not near -1000 HU']
    >>> int((head % 4096)[0, 0, 0]), [flag.split(":")[0] for flag in hu_flags(head % 4096)]
    (3096, ['12-bit unsigned wrap-around', 'values outside the scanner range'])
    """
    flags = []
    values = np.asarray(hu)
    if values.size > _MAX_CHECKED_VOXELS and values.ndim == 3:  # every k-th slice: no copy of a whole volume
        step = values.size // _MAX_CHECKED_VOXELS + 1
        values = values[::step]
        padding = None if padding is None else padding[::step]
    if padding is not None and padding.any():
        flags.append(
            f"pixel padding covers {padding.mean():.0%} of the checked voxels (outside the scan field); "
            "left out of the HU checks"
        )
        values = values[~padding]
    values = values.ravel()
    if values.size == 0:
        return flags + ["every checked voxel is padding: no image to check"]
    low, high = _CT_SCALE_HU
    # air: below -500 HU but not below the scale (those are flagged on their own)
    dark = (values < _DARK_HU) & (values >= low - _BELOW_SCALE_MARGIN_HU)
    wrapped = float(np.mean(values >= _WRAPPED_HU))
    if wrapped > 0.1 and dark.mean() < 0.005:
        flags.append(
            f"12-bit unsigned wrap-around: {wrapped:.0%} of the voxels read >= {_WRAPPED_HU:g} HU and almost none "
            "below -500 HU, so outside air reads about +3096 HU: negative HU were stored modulo 4096 with "
            "(0028,1052) Rescale Intercept near 0 ((0028,0101) Bits Stored 12, (0028,0103) Pixel Representation "
            "0). Fix before use: HU = ((stored + 1000) mod 4096) - 1000"
        )
    elif dark.mean() < 0.005:
        flags.append(
            f"air not near -1000 HU: only {dark.mean():.1%} of the voxels read below -500 HU (lowest "
            f"{values.min():.0f} HU), though outside air fills much of a CT image: check (0028,1052) Rescale "
            "Intercept and (0028,1053) Rescale Slope"
        )
    else:
        air = float(np.median(values[dark]))
        if abs(air - AIR_HU) > _AIR_TOLERANCE_HU:
            flags.append(
                f"air not near -1000 HU: the voxels below -500 HU centre on {air:.0f} HU; check (0028,1052) "
                "Rescale Intercept and (0028,1053) Rescale Slope"
            )
    below = values < low - _BELOW_SCALE_MARGIN_HU
    if below.any():
        flags.append(
            f"values outside the scanner range: {below.mean():.1%} of the voxels below {low:g} HU (lowest "
            f"{values.min():.0f} HU) and not marked as padding: an undeclared (0028,0120) Pixel Padding Value?"
        )
    above = values > high
    if above.mean() > 0.001:
        flags.append(
            f"values outside the scanner range: {above.mean():.1%} of the voxels above {high:g} HU, the top of the "
            f"12-bit CT scale (highest {values.max():.0f} HU): metal, or a wrong rescale"
        )
    return flags


def _rescale_flag(slopes: Sequence[float], intercepts: Sequence[float]) -> list[str]:
    pairs = sorted({(float(s), float(i)) for s, i in zip(slopes, intercepts)})
    if len(pairs) < 2:
        return []
    shown = ", ".join(f"{s:g}/{i:g}" for s, i in pairs[:4]) + (" ..." if len(pairs) > 4 else "")
    return [
        f"varying rescale: {len(pairs)} different (0028,1053) Rescale Slope / (0028,1052) Rescale Intercept pairs "
        f"({shown}); each slice is converted with its own"
    ]


def _geometry_flags(steps: np.ndarray, tilt: float) -> list[str]:
    flags = []
    if abs(tilt) > _TILT_FLAG_DEG:
        flags.append(f"gantry tilt {tilt:.1f} deg (measured from positions): correct it before resampling")
    duplicates = int(np.sum(np.abs(steps) < _DUPLICATE_MM))
    if duplicates:
        flags.append(f"duplicates: {duplicates} image(s) repeat a slice position (the reader drops them)")
    steps = steps[np.abs(steps) >= _DUPLICATE_MM]
    if steps.size > 1:
        median = float(np.median(steps))
        if np.any(np.abs(steps - median) > _STEP_ATOL_MM + _STEP_RTOL * median):  # what the reader calls uneven
            flags.append(
                f"uneven spacing: slice steps from {steps.min():.3g} to {steps.max():.3g} mm (missing slices or a "
                "change of spacing)"
            )
    return flags


# ---------------------------------------------------------------------------
# pictures
# ---------------------------------------------------------------------------


def _png(figure: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", facecolor=figure.get_facecolor())
    return buffer.getvalue()


def _thumbnail(volume: Volume, title: str) -> bytes:
    """Mid-axial and mid-sagittal planes in the brain window, with orientation letters."""
    from matplotlib.figure import Figure

    from .planes import plane_geometry, slice_image, window_setting
    from .plotting import _mark_edges, _show_plane

    center, width, label = window_setting("brain")
    figure = Figure(figsize=(4.2, 2.35), dpi=100, facecolor="black")
    axes = figure.subplots(1, 2)
    for ax, plane in zip(axes, ("axial", "sagittal")):
        geometry = plane_geometry(volume, plane)
        _show_plane(ax, slice_image(volume.hu, geometry, geometry.n_slices // 2), geometry, center, width)
        _mark_edges(ax, plane)
        ax.set_facecolor("black")
        ax.set_title(f"mid-{plane}", color="white", fontsize=7, pad=2)
    figure.suptitle(f"{title}  ({label} HU)", color="white", fontsize=7, y=0.98)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.84, wspace=0.04)
    return _png(figure)


def _distribution_panel(ax: Any, values: list[Any], chosen: list[bool], title: str, numeric: bool) -> None:
    pairs = [(v, c) for v, c in zip(values, chosen) if v is not None and v != ""]
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title, fontsize=9)
    ax.set_ylabel("series", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if not pairs:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        return
    if numeric:
        data = np.array([float(v) for v, _ in pairs])
        picked = np.array([c for _, c in pairs])
        if len(np.unique(np.round(data, 2))) > 12:
            bins = np.histogram_bin_edges(data, bins=20)
            ax.hist([data[picked], data[~picked]], bins=bins, stacked=True, color=["#1565c0", "#90caf9"])
            return
        keys = [f"{v:g}" for v in sorted(set(np.round(data, 2).tolist()))]
        names = [f"{v:g}" for v in np.round(data, 2)]
    else:
        counts = Counter(str(v) for v, _ in pairs)
        keys = [k for k, _ in counts.most_common(9)]
        names = [str(v) if str(v) in keys else "other" for v, _ in pairs]
        if "other" in names:
            keys.append("other")
        picked = np.array([c for _, c in pairs])
    positions = np.arange(len(keys))
    ours = [sum(1 for n, c in zip(names, picked) if n == k and c) for k in keys]
    rest = [sum(1 for n, c in zip(names, picked) if n == k and not c) for k in keys]
    ax.bar(positions, ours, color="#1565c0")
    ax.bar(positions, rest, bottom=ours, color="#90caf9")
    shown = [key if len(key) <= 24 else key[:23] + "\u2026" for key in keys]
    ax.set_xticks(positions, shown, rotation=0 if numeric else 35, ha="center" if numeric else "right")


def _distributions(facts: list[SeriesFacts]) -> bytes:
    """Slice thickness, spacing, tilt, slice counts, scanner model and kernel, chosen series stacked first."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from .selection import kernel_class

    chosen = [f.chosen for f in facts]
    figure = Figure(figsize=(10.5, 6.6), dpi=100)
    axes = figure.subplots(2, 3).ravel()
    panels: tuple[tuple[str, list[Any], bool], ...] = (
        ("slice thickness (0018,0050) [mm]", [f.thickness_mm for f in facts], True),
        ("slice spacing, median step [mm]", [f.spacing_mm for f in facts], True),
        ("gantry tilt [deg]", [None if f.tilt_deg is None else round(f.tilt_deg, 1) for f in facts], True),
        ("slice count [images]", [f.images for f in facts], True),
        ("scanner model", [f.model or "(not recorded)" for f in facts], False),
        (
            "reconstruction kernel (class)",
            [f"{f.kernel or '(none)'} ({kernel_class(f.kernel, f.description)})" for f in facts],
            False,
        ),
    )
    for ax, (title, values, numeric) in zip(axes, panels):
        _distribution_panel(ax, values, chosen, title, numeric)
    figure.legend(
        handles=[Patch(color="#1565c0", label="chosen / ok"), Patch(color="#90caf9", label="other series")],
        loc="upper right",
        fontsize=8,
    )
    figure.suptitle(f"{len(facts)} series", fontsize=10, x=0.02, ha="left")
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.2, top=0.88, wspace=0.28, hspace=0.8)
    return _png(figure)


# ---------------------------------------------------------------------------
# facts from a DICOM tree or from a preprocess output folder
# ---------------------------------------------------------------------------


def _scanner_model(path: Path) -> str:
    """(0008,0070) Manufacturer and (0008,1090) Manufacturer's Model Name of one file, or ""."""
    import pydicom

    try:
        dataset = pydicom.dcmread(
            path, stop_before_pixels=True, specific_tags=["Manufacturer", "ManufacturerModelName"]
        )
    except (OSError, ValueError, pydicom.errors.InvalidDicomError):
        return ""
    return " ".join(str(dataset.get(k, "")).strip() for k in ("Manufacturer", "ManufacturerModelName")).strip()


def _sample(series: Series) -> Volume:
    """At most `SAMPLE_SLICES` evenly spread slices of a series, read into a Volume."""
    from .reader import load_series

    step = -(-series.n_images // SAMPLE_SLICES)
    subset = Series(series.uid, series.key, series.headers[::step]) if step > 1 else series
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # uneven spacing and duplicates are flagged from the headers
        return load_series(subset, on_uneven="resample")


def _facts_from_tree(root: Path, rule: str) -> tuple[list[SeriesFacts], list[tuple[Path, str]]]:
    from .hounsfield import rescale_intercept, rescale_slope
    from .selection import contrast_evidence, find_studies, select_series
    from .series import scan

    index = scan(root)
    facts: list[SeriesFacts] = []
    for study in find_studies(index):
        chosen, skipped = select_series(study.series, rule)
        reasons = {id(series): reason for series, reason in skipped}
        first_of_study = len(facts)
        for series in study.series:
            if series.is_localizer:
                continue
            headers = series.headers
            item = SeriesFacts(
                patient=series.patient_id,
                description=series.description,
                series_number=series.series_number,
                images=series.n_images,
                status="chosen" if series in chosen else "not chosen",
                reason=reasons.get(id(series), ""),
                kernel=series.first.convolution_kernel,
                thickness_mm=series.slice_thickness,
                spacing_mm=None if np.isnan(series.spacing_summary[1]) else series.spacing_summary[1],
                tilt_deg=series.tilt,
                model=_scanner_model(series.first.path),
                contrast=contrast_evidence(series),
            )
            item.flags += _geometry_flags(np.diff(series.slice_positions), series.tilt)
            item.flags += _rescale_flag([rescale_slope(h) for h in headers], [rescale_intercept(h) for h in headers])
            if item.chosen:
                try:
                    volume = _sample(series)
                except (OSError, ValueError) as error:  # DicomError and its kinds are ValueErrors
                    item.flags.append(f"could not read its pixels: {error}")
                else:
                    item.flags += hu_flags(volume.hu, volume.padding)
                    item.thumbnail = _thumbnail(volume, item.label)
            facts.append(item)
        if not chosen and len(facts) > first_of_study:
            facts[first_of_study].flags.append(
                f"no series of this study passes the rule {rule!r}: the study would get no output; the reason "
                "for each series is in the table below"
            )
    return facts, index.skipped


def _float(text: str | float | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _facts_from_output(folder: Path) -> list[SeriesFacts]:
    from .export import load_npz

    with open(folder / "manifest.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    facts = []
    for row in rows:
        item = SeriesFacts(
            patient=row.get("patient_id", ""),
            description=row.get("series_description", ""),
            series_number=int(row["series_number"]) if (row.get("series_number") or "").isdigit() else None,
            images=int(row.get("n_images") or 0),
            status=row.get("status", ""),
            reason=row.get("reason", ""),
            kernel=row.get("kernel", ""),
            tilt_deg=_float(row.get("tilt_deg")),
        )
        if item.tilt_deg is not None and abs(item.tilt_deg) > _TILT_FLAG_DEG:
            item.flags.append(f"gantry tilt {item.tilt_deg:.1f} deg (measured from positions)")
        if row.get("warnings"):
            item.flags.append(row["warnings"])
        if item.status == "failed":
            item.flags.append(f"failed: {item.reason}")
        output = row.get("output", "")
        if item.status == "ok" and output.endswith(".npz"):
            try:
                volume, _ = load_npz(folder / output)
            except (OSError, ValueError) as error:
                item.flags.append(f"could not read the output {output}: {error}")
            else:
                meta = volume.meta
                item.thickness_mm = _float(meta.get("slice_thickness"))
                positions = np.asarray(meta.get("slice_positions") or [], dtype=np.float64)
                item.spacing_mm = float(np.median(np.diff(positions))) if positions.size > 1 else None
                item.flags += _rescale_flag(meta.get("rescale_slope") or [], meta.get("rescale_intercept") or [])
                item.flags += hu_flags(volume.hu, volume.padding)
                item.model = _scanner_model(volume.files[0]) if volume.files else ""
                item.thumbnail = _thumbnail(volume, item.label)
        elif item.status == "ok":
            item.flags.append(f"output {output} is not .npz: not opened, so no thumbnail and no HU checks")
        facts.append(item)
    return facts


# ---------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------


def _img(png: bytes, alt: str, element_id: str = "") -> str:
    ident = f' id="{element_id}"' if element_id else ""
    return f'<img{ident} alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _page(title: str, summary: str, facts: list[SeriesFacts], distributions: bytes, skipped: int) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "<td></td>"
        if isinstance(value, float):
            return f"<td>{value:.3g}</td>"
        return f"<td>{html.escape(str(value))}</td>"

    tiles = "".join(
        f'<figure class="{"flagged" if f.flags else "clean"}">{_img(f.thumbnail, f.label)}'
        f"<figcaption>{html.escape(f.label)}{' &#9888; ' + str(len(f.flags)) + ' flag(s)' if f.flags else ''}"
        "</figcaption></figure>"
        for f in facts
        if f.thumbnail is not None
    )
    flag_rows = "".join(
        f"<tr>{cell(f.patient)}{cell(f'{f.series_number} {f.description}')}{cell(flag)}</tr>"
        for f in facts
        for flag in f.flags
    )
    series_rows = "".join(
        f'<tr class="{"chosen" if f.chosen else "other"}">{cell(f.patient)}{cell(f.series_number)}'
        f"{cell(f.description)}{cell(f.images)}{cell(f.thickness_mm)}{cell(f.spacing_mm)}{cell(f.tilt_deg)}"
        f"{cell(f.kernel)}{cell(f.contrast)}{cell(f.model)}{cell(f.status)}{cell(f.reason)}</tr>"
        for f in facts
    )
    n_flagged = sum(1 for f in facts if f.flags)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:sans-serif;margin:1em;max-width:1400px}} h2{{margin-top:1.4em}}
figure{{display:inline-block;margin:3px;border:2px solid #ddd;background:#000}} figure.flagged{{border-color:#e53935}}
figcaption{{font-size:11px;color:#fff;padding:2px 4px;max-width:420px}} #mosaic img{{width:420px}}
#distributions{{max-width:100%}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}} tr.other{{color:#666}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p id="summary">{html.escape(summary)}</p>
<h2>Chosen series: mid-axial and mid-sagittal, brain window (level 40, width 80 HU)</h2>
<p>Letters mark the patient's sides (R/L right/left, A/P anterior/posterior, S/I superior/inferior). A red border
means the series has flags (listed below).</p>
<div id="mosaic">{tiles or "<p>no series chosen</p>"}</div>
<h2>Distributions</h2>
{_img(distributions, "distributions of slice thickness, spacing, tilt, slice count, scanner and kernel", "distributions")}
<h2>Flags ({n_flagged} of {len(facts)} series)</h2>
<table id="flags"><tr><th>patient</th><th>series</th><th>flag</th></tr>{flag_rows}</table>
<h2>Every series</h2>
<table id="series"><tr><th>patient</th><th>#</th><th>description</th><th>images</th><th>thickness mm</th>
<th>spacing mm</th><th>tilt deg</th><th>kernel</th><th>contrast</th><th>scanner</th><th>status</th><th>reason</th></tr>{series_rows}</table>
<p>{skipped} file(s) were not CT images or could not be read (see <code>ctexplore scan</code> for the list).</p>
</body></html>
"""


def write_report(
    folder: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *, rule: str = "thinnest"
) -> Path:
    """Write ``report.html`` (its PNGs and ``flags.csv`` under ``report/``) for a data set; return its path.

    Parameters
    ----------
    folder : path-like
        A `ctexplore.preprocess` output folder (holding ``manifest.csv``), or
        a DICOM tree.
    out : path-like, optional
        Where to write. Default: `folder` itself for an output folder; a DICOM
        tree needs `out` (nothing is ever written into an input folder).
    rule : str, default "thinnest"
        For a DICOM tree: which series of each study to show (see
        `ctexplore.selection.parse_rule`, e.g. ``"cq500"``).

    Returns
    -------
    pathlib.Path
        ``<out>/report.html``.

    Raises
    ------
    FileNotFoundError
        `folder` does not exist.
    ValueError
        A DICOM tree without `out`, `out` inside the tree, or an invalid `rule`.

    Examples
    --------
    >>> import tempfile
    >>> from ctexplore.phantom import write_series
    >>> data, out = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> _ = write_series(data, n_slices=6, matrix=32, patient_id="CQ500-CT-1", gantry_tilt=15)
    >>> page = write_report(data, out)
    >>> page.name, "gantry tilt 15.0 deg" in page.read_text()
    ('report.html', True)
    """
    from ._atomic import atomic_target
    from .selection import parse_rule

    source = Path(folder)
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a folder: give a preprocess output folder or a DICOM tree")
    parse_rule(rule)
    if (source / "manifest.csv").is_file():
        target = Path(out) if out is not None else source
        facts, skipped = _facts_from_output(source), 0
        skipped_list = source / "skipped_files.csv"
        if skipped_list.is_file():
            skipped = max(0, len(skipped_list.read_text(encoding="utf-8").splitlines()) - 1)
        kind = "preprocess output (manifest.csv and the written volumes)"
    else:
        if out is None:
            raise ValueError(
                f"{source} has no manifest.csv, so it is read as a DICOM tree; give an output folder for the "
                "report (ctexplore report DIR --out FOLDER): nothing is written into an input folder"
            )
        target = Path(out)
        resolved = target.resolve()
        if resolved == source.resolve() or source.resolve() in resolved.parents:
            raise ValueError(f"report folder {target} is inside the DICOM tree {source}: choose a folder outside it")
        found, skipped_files = _facts_from_tree(source, rule)
        facts, skipped = found, len(skipped_files)
        kind = f"DICOM tree (headers, rule {rule!r}, at most {SAMPLE_SLICES} slices read per chosen series)"
    pictures = target / "report"
    pictures.mkdir(parents=True, exist_ok=True)
    distributions = _distributions(facts)
    written = {"distributions.png": distributions}
    for number, item in enumerate(facts):
        if item.thumbnail is not None:
            written[f"thumb_{number:04d}.png"] = item.thumbnail
    for name, png in written.items():
        with atomic_target(pictures / name) as temporary:
            temporary.write_bytes(png)
    with (
        atomic_target(pictures / "flags.csv") as temporary,
        open(temporary, "w", newline="", encoding="utf-8") as stream,
    ):
        writer = csv.writer(stream)
        writer.writerow(["patient", "series_number", "series_description", "status", "flag"])
        writer.writerows([f.patient, f.series_number, f.description, f.status, flag] for f in facts for flag in f.flags)
    patients = len({f.patient for f in facts})
    status = Counter(f.status for f in facts)
    summary = (
        f"{source}: {kind}. {patients} patient(s), {len(facts)} series (localizers left out): "
        + ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
        + "."
    )
    page = _page(f"ctexplore report: {source.name}", summary, facts, distributions, skipped)
    report = target / "report.html"
    with atomic_target(report) as temporary:
        temporary.write_text(page, encoding="utf-8")
    return report
