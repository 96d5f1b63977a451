"""A small CQ500-like data set written with the phantom writer, for the pipeline and CLI tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ctexplore.phantom import write_localizer, write_series

STUDY = "Unknown Study"
#: LPS point (mm) of a dense bead in the tilted series.
MARKER_MM = (20.0, -30.0, 10.0)


@dataclass(frozen=True)
class BatchData:
    root: Path
    truncated_file: Path | None


def write_dataset(root: Path, *, broken: bool = True) -> BatchData:
    """Three (or two) patients in the CQ500 layout.

    - ``CQ500-CT-1``: a thin (2.5 mm) and a thick (5 mm) axial series, a coronal
      localizer and a README.txt in the study folder.
    - ``CQ500-CT-2``: one series with 20 degrees of gantry tilt and a marker bead.
    - ``CQ500-CT-3`` (when `broken`): one series with a truncated slice file.
    """
    small = dict(matrix=48, pixel_spacing=(4.0, 4.0), file_prefix="CT")
    study = root / "CQ500-CT-1" / STUDY
    p1 = dict(patient_id="CQ500-CT-1", study_uid="1.2.826.0.1.3680043.8.498.1")
    write_series(
        study / "CT THIN",
        n_slices=16,
        slice_spacing=2.5,
        series_number=2,
        series_description="CT THIN",
        seed=1,
        **p1,
        **small,
    )
    write_series(
        study / "CT 5mm",
        n_slices=8,
        slice_spacing=5.0,
        series_number=3,
        series_description="CT 5mm",
        seed=2,
        **p1,
        **small,
    )
    write_localizer(study / "SCOUT", matrix=32, pixel_spacing=8.0, **p1)
    (study / "README.txt").write_text("exported by a scanner\n")

    write_series(
        root / "CQ500-CT-2" / STUDY / "CT TILT",
        n_slices=12,
        slice_spacing=5.0,
        gantry_tilt=20.0,
        markers=[MARKER_MM],
        series_number=2,
        series_description="CT TILT",
        seed=3,
        patient_id="CQ500-CT-2",
        study_uid="1.2.826.0.1.3680043.8.498.2",
        **small,
    )
    truncated = None
    if broken:
        written = write_series(
            root / "CQ500-CT-3" / STUDY / "CT PLAIN",
            n_slices=8,
            slice_spacing=5.0,
            series_number=2,
            series_description="CT PLAIN",
            seed=4,
            patient_id="CQ500-CT-3",
            study_uid="1.2.826.0.1.3680043.8.498.3",
            **small,
        )
        truncated = written.files[4]
        size = truncated.stat().st_size
        with open(truncated, "r+b") as handle:
            handle.truncate(size - 1000)
    return BatchData(root, truncated)
