"""Which series to take from each study: the explicit, recorded rules of the batch.

A study is one (0020,000D) *Study Instance UID* of one patient; `select_series`
applies a rule (``thinnest``, ``all``, ``description:REGEX``, ``kernel:REGEX``)
and says for every series it leaves out why.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .series import Series, SeriesIndex, scan

__all__ = ["Study", "find_studies", "parse_rule", "select_series", "series_label"]


# Slice spacings closer than this are a tie for the "thinnest" rule.
_SPACING_TIE_MM = 0.01


@dataclass(frozen=True)
class Study:
    """The series of one patient's study, in scan order."""

    patient_id: str
    study_uid: str
    series: tuple[Series, ...]


def find_studies(source: str | os.PathLike[str] | SeriesIndex) -> list[Study]:
    """Group the series under a folder (or of an index) by patient and study.

    One `ctexplore.scan` reads the headers of the whole tree (in parallel for
    large trees); studies are then (0010,0020) *Patient ID* and (0020,000D)
    *Study Instance UID*, whatever the folder layout.

    Examples
    --------
    >>> import tempfile
    >>> from ctexplore.phantom import write_series
    >>> root = tempfile.mkdtemp()
    >>> for patient in ("P1", "P2"):
    ...     _ = write_series(f"{root}/{patient}/a", n_slices=3, matrix=16, patient_id=patient)
    >>> [(study.patient_id, len(study.series)) for study in find_studies(root)]
    [('P1', 1), ('P2', 1)]
    """
    index = source if isinstance(source, SeriesIndex) else scan(source)
    groups: dict[tuple[str, str], list[Series]] = {}
    for series in index.series:
        groups.setdefault((series.patient_id, series.study_uid), []).append(series)
    return [Study(patient, study, tuple(members)) for (patient, study), members in groups.items()]


def parse_rule(rule: str) -> tuple[str, Any]:
    """Check a selection rule and split it into ``(kind, argument)``.

    Rules: ``"thinnest"`` (the axial series with the smallest slice spacing in
    each study), ``"all"``, ``"slices:N"`` (series of exactly N images, the
    blog post's rule), ``"description:REGEX"`` (series whose (0008,103E)
    *Series Description* matches, case-insensitive).

    Examples
    --------
    >>> parse_rule("slices:120")
    ('slices', 120)
    >>> parse_rule("largest")
    Traceback (most recent call last):
    ...
    ValueError: unknown series rule 'largest': use 'thinnest', 'all', 'slices:N' or 'description:REGEX'
    """
    kind, _, argument = rule.partition(":")
    if kind in ("thinnest", "all") and not argument:
        return kind, None
    if kind == "slices" and argument:
        try:
            count = int(argument)
        except ValueError:
            count = 0
        if count < 1:
            raise ValueError(f"rule {rule!r}: N in 'slices:N' must be a positive whole number")
        return kind, count
    if kind == "description" and argument:
        try:
            return kind, re.compile(argument, re.IGNORECASE)
        except re.error as error:
            raise ValueError(f"rule {rule!r}: invalid regular expression ({error})") from None
    raise ValueError(
        f"unknown series rule {rule!r}: use 'thinnest', 'all', 'slices:N' or 'description:REGEX'"
    )


def _slice_spacing(series: Series) -> float:
    spacing = series.spacing_summary[1]
    return np.inf if np.isnan(spacing) else spacing


def series_label(series: Series) -> str:
    """How messages name a series: its number and description."""
    return f"series {series.series_number} {series.description!r}"


def select_series(
    series_list: Sequence[Series], rule: str = "thinnest"
) -> tuple[list[Series], list[tuple[Series, str]]]:
    """Choose series of one study by `rule` (see `parse_rule`), and say why the others are not chosen.

    Localizers and single images are never chosen. ``"thinnest"`` takes axial
    series only and picks the one with the smallest slice spacing (measured from
    positions, not (0018,0050) *Slice Thickness*); ties (e.g. two kernels at the
    same positions) go to the series with more images, then the lower
    (0020,0011) *Series Number*, then the UID.

    Returns
    -------
    chosen : list of Series
    skipped : list of (Series, reason)

    Examples
    --------
    >>> import tempfile
    >>> from ctexplore import scan
    >>> from ctexplore.phantom import write_series
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_series(folder, n_slices=8, slice_spacing=2.5, matrix=16, series_number=2,
    ...                  series_description="THIN", file_prefix="A")
    >>> _ = write_series(folder, n_slices=4, slice_spacing=5.0, matrix=16, series_number=3,
    ...                  series_description="THICK", file_prefix="B")
    >>> chosen, skipped = select_series(scan(folder).series)
    >>> [s.description for s in chosen], skipped[0][1]
    (['THIN'], "not the thinnest: 5 mm slices; chose series 2 'THIN' with 2.5 mm")
    """
    kind, argument = parse_rule(rule)
    chosen: list[Series] = []
    skipped: list[tuple[Series, str]] = []
    candidates: list[Series] = []
    for series in series_list:
        if series.is_localizer:
            skipped.append((series, "localizer (scout image), not a volume"))
        elif series.n_images < 2:
            skipped.append((series, "single image, not a volume"))
        elif kind == "thinnest" and series.plane != "axial":
            skipped.append((series, f"{series.plane} series; rule 'thinnest' takes axial series only"))
        elif kind == "slices" and series.n_images != argument:
            skipped.append((series, f"{series.n_images} images; rule wants {argument}"))
        elif kind == "description" and not argument.search(series.description):
            skipped.append((series, f"description {series.description!r} does not match {argument.pattern!r}"))
        else:
            candidates.append(series)
    if kind != "thinnest" or not candidates:
        return candidates, skipped

    def preference(series: Series) -> tuple[float, int, int, str]:
        spacing = round(_slice_spacing(series) / _SPACING_TIE_MM) if np.isfinite(_slice_spacing(series)) else np.inf
        return (spacing, -series.n_images, series.series_number or 0, series.key)

    best = min(candidates, key=preference)
    best_spacing = _slice_spacing(best)
    for series in candidates:
        if series is best:
            continue
        spacing = _slice_spacing(series)
        if abs(spacing - best_spacing) < _SPACING_TIE_MM:
            reason = (
                f"same slice spacing ({spacing:.3g} mm) as {series_label(best)}, chosen by the tie-break "
                "(more images, then lower series number)"
            )
        else:
            reason = f"not the thinnest: {spacing:.3g} mm slices; chose {series_label(best)} with {best_spacing:.3g} mm"
        skipped.append((series, reason))
    return [best], skipped
