"""ctexplore: from a folder of CT DICOM files to correct Hounsfield-unit volumes.

The public names below are imported lazily, so ``import ctexplore`` stays fast:
matplotlib, scipy, ipywidgets and the pixel decoders load when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

# public name -> module that defines it, in the order of the data flow
_EXPORTS = {
    "DicomError": "errors",
    "SeriesSelectionError": "errors",
    "GeometryError": "errors",
    "DecodeError": "errors",
    "GeometryWarning": "errors",
    "Volume": "volume",
    "scan": "series",
    "SeriesIndex": "series",
    "Series": "series",
    "load_series": "reader",
    "stored_to_hu": "hounsfield",
    "AIR_HU": "volume",
    "window": "intensity",
    "resolve_window": "intensity",
    "WINDOWS": "intensity",
    "window_stack": "intensity",
    "normalize": "intensity",
    "zero_center": "intensity",
    "dataset_mean": "intensity",
    "correct_tilt": "geometry",
    "resample": "geometry",
    "crop_to_head": "geometry",
    "body_mask": "geometry",
    "reorient": "geometry",
    "save_npz": "export",
    "load_npz": "export",
    "save_nifti": "export",
    "plot_slice_grid": "plotting",
    "plot_hu_histogram": "plotting",
    "hu_histogram": "plotting",
    "plot_orthogonal": "plotting",
    "max_intensity_projection": "plotting",
    "brain_mask": "brain",
    "skull_strip": "brain",
    "hyperdense_regions": "brain",
    "stack_2p5d": "slabs",
    "thick_slabs": "slabs",
    "source_slices": "slabs",
    "VolumeDataset": "training",
    "view": "viewer",
    "save_viewer_html": "viewer",
    "preprocess": "batch",
    "iter_volumes": "pipeline",
    "PreprocessOptions": "pipeline",
    "sample_study": "datasets",
    "example_study": "datasets",
    "sample_dataset": "datasets",
    "fetch_cq500": "datasets",
    "cq500_labels": "labels",
    "write_report": "report",
    "fetch_head_ct": "fetch",
    "ImageFormation": "headmodel",
    "EllipsoidHead": "headmodel",
    "SliceGeometry": "phantom",
    "Encoding": "dicomwriter",
    "ExportQuirks": "phantom",
    "SeriesHeader": "phantom",
    "write_series": "phantom",
    "write_study": "phantom",
}

__all__ = sorted(_EXPORTS) + ["__version__"]
_SUBMODULES = frozenset(_EXPORTS.values()) | {"cli"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:  # `ctexplore.datasets.fetch_cq500` works after a plain `import ctexplore`
        return importlib.import_module(f"ctexplore.{name}")
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'ctexplore' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ctexplore.{module_name}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from .errors import DecodeError, DicomError, GeometryError, GeometryWarning, SeriesSelectionError
    from .volume import Volume
