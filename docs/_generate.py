"""Write the API group pages from ``ctexplore.__all__`` and copy the executed tutorials.

Names are documented as ``ctexplore.NAME`` (never by module path: modules move, the
public names stay). A name the group table does not know lands on "Other public names",
so it is never left without a page.
"""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import ctexplore

# (page slug, title, why this step exists, names in the order a user meets them)
GROUPS: list[tuple[str, str, str, tuple[str, ...]]] = [
    (
        "find_series",
        "Find series",
        "Index a folder by header only: one entry per series (by Series Instance UID, not by "
        "folder), localizers marked, every skipped file with its reason.",
        ("scan", "SeriesIndex", "Series"),
    ),
    (
        "load",
        "Load a series",
        "Read one series into a `Volume`: slices ordered by position along the normal, spacing "
        "from positions, padding masked before the rescale.",
        ("load_series", "Volume", "AIR_HU", "stored_to_hu", "load_npz", "save_npz", "save_nifti"),
    ),
    (
        "hu_windows",
        "Hounsfield units and windows",
        "Display windows, normalisation and data-set zero-centring on HU arrays.",
        ("window", "WINDOWS", "resolve_window", "window_stack", "normalize", "zero_center", "dataset_mean"),
    ),
    (
        "geometry",
        "Geometry",
        "Tilt correction, resampling, cropping, masks and reorientation, each one interpolation at most.",
        ("correct_tilt", "resample", "crop_to_head", "body_mask", "reorient"),
    ),
    (
        "head",
        "Head CT: brain and blood",
        "The intracranial space from CT alone, skull stripping, and blood-range regions with volumes.",
        ("brain_mask", "skull_strip", "hyperdense_regions"),
    ),
    (
        "model_inputs",
        "Model inputs",
        "2.5D neighbour stacks, thick slabs (average, MIP, MinIP), and the acquired images behind each slice.",
        ("stack_2p5d", "thick_slabs", "source_slices"),
    ),
    (
        "plots",
        "Plots",
        "Pictures with positions in mm, orientation letters and HU colour bars.",
        ("plot_slice_grid", "plot_hu_histogram", "hu_histogram", "plot_orthogonal", "max_intensity_projection"),
    ),
    ("viewer", "Viewer", "The interactive slice browser for Jupyter.", ("view", "save_viewer_html")),
    (
        "batch",
        "Batch preprocessing",
        "The same pipeline over a whole data set, with a manifest of every series.",
        ("preprocess", "iter_volumes", "PreprocessOptions", "VolumeDataset", "cq500_labels", "write_report"),
    ),
    (
        "datasets",
        "Data sets and the phantom",
        "The built-in synthetic sample, the CQ500 fetcher, and the phantom writer that makes known-truth DICOM.",
        (
            "sample_study",
            "example_study",
            "sample_dataset",
            "fetch_cq500",
            "fetch_head_ct",
            "write_series",
            "write_study",
            "ImageFormation",
            "EllipsoidHead",
            "SliceGeometry",
            "Encoding",
            "ExportQuirks",
            "SeriesHeader",
        ),
    ),
    (
        "errors",
        "Errors and warnings",
        "What the loader raises or warns, each naming the file, the DICOM tag and the fix.",
        ("DicomError", "SeriesSelectionError", "GeometryError", "DecodeError", "GeometryWarning"),
    ),
]
OTHER = ("other", "Other public names", "Public names not yet placed in a group.")


def public_names() -> list[str]:
    """The documented names: ``ctexplore.__all__`` without the version string."""
    return [name for name in ctexplore.__all__ if not name.startswith("__")]


def grouped_names() -> list[tuple[str, str, str, list[str]]]:
    """Each group with the public names it holds; unknown names go to the last group."""
    public = public_names()
    placed: set[str] = set()
    groups = []
    for slug, title, blurb, names in GROUPS:
        present = [name for name in names if name in public]
        placed.update(present)
        groups.append((slug, title, blurb, present))
    leftover = [name for name in public if name not in placed]
    if leftover:
        groups.append((*OTHER, leftover))
    return [group for group in groups if group[3]]


def _directive(name: str) -> str:
    value = getattr(ctexplore, name)
    if inspect.isclass(value):
        if issubclass(value, BaseException):
            return "autoexception"
        return "autoclass"
    if callable(value):
        return "autofunction"
    return "autodata"


def _object_page(name: str) -> str:
    directive = _directive(name)
    options = "   :members:\n" if directive == "autoclass" else ""
    if directive == "autodata":
        options = "   :annotation:\n"
    return (
        f"# ctexplore.{name}\n\n```{{eval-rst}}\n.. currentmodule:: ctexplore\n\n"
        f".. {directive}:: {name}\n{options}```\n"
    )


def _write_if_changed(path: Path, text: str) -> None:
    # unchanged files keep their mtime, so incremental builds stay incremental
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def write_api_pages(folder: Path) -> None:
    """Write ``api/index.md``, one page per group and one page per public name."""
    folder.mkdir(exist_ok=True)
    wanted = {"index.md"}
    group_entries = []
    for slug, title, blurb, names in grouped_names():
        group_entries.append(f"{slug}")
        rows = "\n".join(f"   {name}" for name in names)
        toc = "\n".join(f"ctexplore.{name}" for name in names)
        page = (
            f"# {title}\n\n{blurb}\n\n```{{eval-rst}}\n.. currentmodule:: ctexplore\n\n"
            f".. autosummary::\n\n{rows}\n```\n\n```{{toctree}}\n:hidden:\n\n{toc}\n```\n"
        )
        _write_if_changed(folder / f"{slug}.md", page)
        wanted.add(f"{slug}.md")
        for name in names:
            _write_if_changed(folder / f"ctexplore.{name}.md", _object_page(name))
            wanted.add(f"ctexplore.{name}.md")
    index = (
        "# API reference\n\nEvery public name, importable as `ctexplore.NAME` "
        "(`import ctexplore as ct`), grouped in the order of the data flow: find the series, "
        "load it, turn it into display or model intensities, fix its geometry, look at it, "
        "then run the same over a data set.\n\n```{toctree}\n:maxdepth: 2\n\n" + "\n".join(group_entries) + "\n```\n"
    )
    _write_if_changed(folder / "index.md", index)
    for stale in folder.glob("*.md"):
        if stale.name not in wanted:
            stale.unlink()


def write_tutorial_pages(notebooks: Path, folder: Path) -> None:
    """Copy the executed ``notebooks/NN_*.ipynb`` into the site and write their index."""
    folder.mkdir(exist_ok=True)
    sources = sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    for source in sources:
        target = folder / source.name
        if not target.exists() or target.read_bytes() != source.read_bytes():
            shutil.copyfile(source, target)
    names = {source.name for source in sources}
    for stale in folder.glob("*.ipynb"):
        if stale.name not in names:
            stale.unlink()
    index = (
        "# Tutorials\n\nThe numbered notebooks, shown with the outputs they produced when they "
        "were last executed on the built-in sample study (the site does not re-run them). Run "
        "them yourself with `python notebooks/run_tutorials.py` or `jupyter lab notebooks/`.\n\n"
        "```{toctree}\n:maxdepth: 1\n\n" + "\n".join(source.stem for source in sources) + "\n```\n"
    )
    _write_if_changed(folder / "index.md", index)
