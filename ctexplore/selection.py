"""Which series to take from each study: the explicit, recorded rules of the batch.

A study is one (0020,000D) *Study Instance UID* of one patient; `select_series`
applies a rule (terms such as ``thinnest``, ``axial``, ``noncontrast``,
``kernel:soft``, ``description:REGEX``, combined with ``&``; the preset
``cq500``) and says for every series it leaves out why.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .series import Series, SeriesIndex, scan

__all__ = [
    "Study",
    "KERNEL_CLASSES",
    "PRESETS",
    "find_studies",
    "kernel_class",
    "contrast_evidence",
    "is_contrast",
    "parse_rule",
    "ranked_candidates",
    "select_series",
    "series_label",
]


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


#: Reconstruction kernel names by vendor, each with its class: ``soft`` (soft
#: tissue / standard / brain) or ``sharp`` (bone, lung, high resolution).
#: Matched case-insensitively against (0018,1210) *Convolution Kernel*;
#: a name in none of them is ``unknown`` (and says so in the reason).
KERNEL_CLASSES: dict[str, tuple[tuple[str, str], ...]] = {
    "GE": (
        ("STANDARD", "soft"),
        ("SOFT", "soft"),
        ("BRAIN", "soft"),
        ("DETAIL", "soft"),
        ("BONEPLUS", "sharp"),
        ("BONE", "sharp"),
        ("LUNG", "sharp"),
        ("EDGE", "sharp"),
        ("CHEST", "sharp"),
    ),
    # Siemens: letter (H head, B body, J/Hr/Br Definition AS/Force) + number; <= 45 soft, >= 60 sharp
    "Siemens": ((r"[HBJQ]r?[1-4]\d[sfh]?", "soft"), (r"[HBJQ]r?[6-9]\d[sfhu]?", "sharp")),
    "Philips": (
        ("UA", "soft"),
        ("UB", "soft"),
        ("UC", "soft"),
        ("A", "soft"),
        ("B", "soft"),
        ("C", "soft"),
        ("YA", "sharp"),
        ("YB", "sharp"),
        ("YC", "sharp"),
        ("D", "sharp"),
        ("E", "sharp"),
        ("L", "sharp"),
    ),
    # Toshiba/Canon: FC1x-FC2x head/body soft, FC3x and FC5x-FC8x bone/lung
    "Toshiba": ((r"FC[0-2]\d", "soft"), (r"FC(?:3|5|6|7|8)\d", "sharp")),
}
_KERNEL_PATTERNS = [
    (re.compile(rf"(?:{name})", re.IGNORECASE), kind) for table in KERNEL_CLASSES.values() for name, kind in table
]
_CONTRAST_WORDS = re.compile(r"\bPOST\b|CONTRAST|\bC\+|\bCE\b|\bCECT\b|ARTERIAL|VENOUS|\bANGIO|\bCTA\b", re.IGNORECASE)
# (0018,0010) values that say no agent was given
_NO_AGENT = re.compile(r"NONE|NO|N/?A|NIL|-+|0", re.IGNORECASE)
_NONCONTRAST_WORDS = re.compile(r"PLAIN|NON[- ]?CON|WITHOUT|\bNC\b|\bC-|\bPRE\b", re.IGNORECASE)
# CQ500 descriptions spell bone/lung reconstructions out when the kernel tag is absent or generic
_SHARP_WORDS = re.compile(r"BONE|LUNG|SHARP|\bHR\b", re.IGNORECASE)

_RULE_HELP = (
    "'thinnest', 'all', 'axial', 'noncontrast', 'kernel:soft', 'kernel:sharp', 'kernel:REGEX', "
    "'slices:N', 'coverage:MM', 'description:REGEX', 'cq500', combined with '&'"
)
#: Named presets: plain, soft kernel, thinnest axial (CQ500 users' "plain thin" choice).
PRESETS = {"cq500": "axial & noncontrast & kernel:soft & thinnest"}


def kernel_class(kernel: str, description: str = "") -> str:
    """``'soft'``, ``'sharp'`` or ``'unknown'`` for a (0018,1210) *Convolution Kernel* name.

    The name is looked up in `KERNEL_CLASSES` (whole name, case-insensitive);
    when it is empty or not in the table, a description naming BONE or LUNG
    still makes it ``'sharp'``.

    Examples
    --------
    >>> kernel_class("H30s"), kernel_class("BONE"), kernel_class("FC64"), kernel_class("XYZ")
    ('soft', 'sharp', 'sharp', 'unknown')
    >>> kernel_class("", "CT 0.625mm BONE")
    'sharp'
    """
    name = kernel.strip()
    for pattern, kind in _KERNEL_PATTERNS:
        if name and pattern.fullmatch(name):
            return kind
    return "sharp" if _SHARP_WORDS.search(description) else "unknown"


def contrast_evidence(series: Series) -> str:
    """Why a series counts as contrast-enhanced, or ``""`` when nothing says so.

    (0018,0010) *Contrast/Bolus Agent* naming an agent (anything but empty,
    NONE, NO, N/A) is the strongest sign. Without it, words in the description
    or (0008,0008) *Image Type* such as POST, CONTRAST, C+, ARTERIAL, ANGIO
    mean contrast, unless the description also says PLAIN / NON CONTRAST /
    WITHOUT.

    Examples
    --------
    >>> import tempfile
    >>> import pydicom
    >>> from ctexplore import scan
    >>> from ctexplore.phantom import write_series
    >>> folder = tempfile.mkdtemp()
    >>> written = write_series(folder, n_slices=2, matrix=8, series_description="HEAD")
    >>> for path in written.files:
    ...     ds = pydicom.dcmread(path)
    ...     ds.ContrastBolusAgent = "OMNIPAQUE 350"
    ...     ds.save_as(path)
    >>> contrast_evidence(scan(folder)[0])
    "(0018,0010) Contrast/Bolus Agent 'OMNIPAQUE 350'"
    """
    agent = series.contrast_agent
    if agent and not _NO_AGENT.fullmatch(agent):
        return f"(0018,0010) Contrast/Bolus Agent {agent!r}"
    if _NONCONTRAST_WORDS.search(series.description):
        return ""
    for source, text in (
        ("description", series.description),
        ("(0008,0008) Image Type", "\\".join(series.first.image_type)),
    ):
        if _CONTRAST_WORDS.search(text):
            return f"{source} {text!r}"
    return ""


def is_contrast(series: Series) -> bool:
    """Whether a series is contrast-enhanced; `contrast_evidence` says why.

    Examples
    --------
    >>> import tempfile
    >>> from ctexplore import scan
    >>> from ctexplore.phantom import write_series
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_series(folder, n_slices=2, matrix=8, series_description="CT POST CONTRAST")
    >>> is_contrast(scan(folder)[0])
    True
    """
    return bool(contrast_evidence(series))


def _parse_term(term: str, rule: str) -> tuple[str, Any]:
    kind, _, argument = term.strip().partition(":")
    if kind in ("thinnest", "all", "axial", "noncontrast") and not argument:
        return kind, None
    if kind == "slices" and argument:
        try:
            count = int(argument)
        except ValueError:
            count = 0
        if count < 1:
            raise ValueError(f"rule {rule!r}: N in 'slices:N' must be a positive whole number")
        return kind, count
    if kind == "coverage" and argument:
        try:
            millimetres = float(argument)
        except ValueError:
            millimetres = -1.0
        if not millimetres > 0:
            raise ValueError(f"rule {rule!r}: MM in 'coverage:MM' must be a positive number of millimetres")
        return kind, millimetres
    if kind in ("description", "kernel") and argument:
        if kind == "kernel" and argument in ("soft", "sharp"):
            return kind, argument
        try:
            return kind, re.compile(argument, re.IGNORECASE)
        except re.error as error:
            raise ValueError(f"rule {rule!r}: invalid regular expression ({error})") from None
    raise ValueError(f"unknown series rule {rule!r}: use {_RULE_HELP}")


def parse_rule(rule: str) -> tuple[str, Any]:
    """Check a selection rule and split it into ``(kind, argument)``.

    Terms: ``"thinnest"`` (the series with the smallest slice spacing in each
    study, axial only), ``"all"``, ``"axial"``, ``"noncontrast"`` (see
    `is_contrast`), ``"kernel:soft"`` / ``"kernel:sharp"`` (see
    `kernel_class`) or ``"kernel:REGEX"``, ``"slices:N"`` (exactly N images),
    ``"coverage:MM"`` (at least MM millimetres from the first to the last
    slice, e.g. ``coverage:120`` for a whole head),
    ``"description:REGEX"`` (case-insensitive). Terms combine with ``&``
    (kind ``"and"``, argument the list of terms); ``"cq500"`` is the preset
    ``axial & noncontrast & kernel:soft & thinnest``.

    Examples
    --------
    >>> parse_rule("slices:120")
    ('slices', 120)
    >>> parse_rule("cq500")
    ('and', [('axial', None), ('noncontrast', None), ('kernel', 'soft'), ('thinnest', None)])
    >>> parse_rule("largest")
    Traceback (most recent call last):
    ...
    ValueError: unknown series rule 'largest': use 'thinnest', 'all', 'axial', 'noncontrast', 'kernel:soft', 'kernel:sharp', 'kernel:REGEX', 'slices:N', 'coverage:MM', 'description:REGEX', 'cq500', combined with '&'
    """
    expanded = PRESETS.get(rule.strip(), rule)
    terms = [_parse_term(term, rule) for term in expanded.split("&")]
    return terms[0] if len(terms) == 1 else ("and", terms)


def _slice_spacing(series: Series) -> float:
    spacing = series.spacing_summary[1]
    return np.inf if np.isnan(spacing) else spacing


def series_label(series: Series) -> str:
    """How messages name a series: its number and description."""
    return f"series {series.series_number} {series.description!r}"


def _term_rejects(series: Series, kind: str, argument: Any) -> str:
    """Why `series` fails one rule term, or "" when it passes."""
    if kind in ("thinnest", "axial") and series.plane != "axial":
        return f"{series.plane} series; rule '{kind}' takes axial series only"
    if kind == "slices" and series.n_images != argument:
        return f"{series.n_images} images; rule wants {argument}"
    if kind == "coverage":
        positions = series.slice_positions
        extent = float(np.ptp(positions)) if positions.size > 1 and not np.isnan(positions).any() else 0.0
        if extent < argument:
            return f"covers {extent:.3g} mm from first to last slice; rule wants at least {argument:g} mm"
    if kind == "description" and not argument.search(series.description):
        return f"description {series.description!r} does not match {argument.pattern!r}"
    if kind == "noncontrast" and (evidence := contrast_evidence(series)):
        return f"contrast-enhanced ({evidence}); rule wants non-contrast"
    if kind == "kernel":
        kernel = series.first.convolution_kernel
        if isinstance(argument, str):
            found = kernel_class(kernel, series.description)
            if found != argument:
                said = "not in the kernel table" if found == "unknown" else f"a {found} kernel"
                return f"kernel {kernel!r} is {said}; rule wants a {argument} kernel"
        elif not argument.search(kernel):
            return f"kernel {kernel!r} does not match {argument.pattern!r}"
    return ""


def select_series(
    series_list: Sequence[Series], rule: str = "thinnest"
) -> tuple[list[Series], list[tuple[Series, str]]]:
    """Choose series of one study by `rule` (see `parse_rule`), and say why the others are not chosen.

    Localizers and single images are never chosen. ``"thinnest"`` takes axial
    series only and picks the one with the smallest slice spacing (measured from
    positions, not (0018,0050) *Slice Thickness*); ties (e.g. two kernels at the
    same positions) go to the series with more images, then the lower
    (0020,0011) *Series Number*, then the UID. `ranked_candidates` gives the
    fallbacks in the same order.

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
    ranked, skipped = ranked_candidates(series_list, rule)
    if not ranked or not _wants_thinnest(rule):
        return ranked, skipped
    best = ranked[0]
    best_spacing = _slice_spacing(best)
    for series in ranked[1:]:
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


def _terms(rule: str) -> list[tuple[str, Any]]:
    kind, argument = parse_rule(rule)
    return argument if kind == "and" else [(kind, argument)]


def _wants_thinnest(rule: str) -> bool:
    return any(kind == "thinnest" for kind, _ in _terms(rule))


def ranked_candidates(
    series_list: Sequence[Series], rule: str = "thinnest"
) -> tuple[list[Series], list[tuple[Series, str]]]:
    """All series that pass every term of `rule`, best first, and the others with the reason.

    For a rule with ``thinnest`` the order is the preference of `select_series`
    (so the second is the fallback when the first cannot be read); otherwise
    scan order.

    Examples
    --------
    >>> import tempfile
    >>> from ctexplore import scan
    >>> from ctexplore.phantom import write_series
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_series(folder, n_slices=8, slice_spacing=2.5, matrix=16, series_number=2,
    ...                  series_description="THIN BONE", convolution_kernel="H70h", file_prefix="A")
    >>> _ = write_series(folder, n_slices=4, slice_spacing=5.0, matrix=16, series_number=3,
    ...                  series_description="THICK", file_prefix="B")
    >>> ranked, skipped = ranked_candidates(scan(folder).series, "cq500")
    >>> [s.description for s in ranked], skipped[0][1]
    (['THICK'], "kernel 'H70h' is a sharp kernel; rule wants a soft kernel")
    """
    terms = _terms(rule)
    skipped: list[tuple[Series, str]] = []
    candidates: list[Series] = []
    for series in series_list:
        if series.is_localizer:
            skipped.append((series, "localizer (scout image), not a volume"))
            continue
        if series.n_images < 2:
            skipped.append((series, "single image, not a volume"))
            continue
        reasons = [r for r in (_term_rejects(series, kind, argument) for kind, argument in terms) if r]
        if reasons:
            skipped.append((series, "; ".join(reasons)))
        else:
            candidates.append(series)
    if not any(kind == "thinnest" for kind, _ in terms):
        return candidates, skipped

    def preference(series: Series) -> tuple[float, int, int, str]:
        spacing = round(_slice_spacing(series) / _SPACING_TIE_MM) if np.isfinite(_slice_spacing(series)) else np.inf
        return (spacing, -series.n_images, series.series_number or 0, series.key)

    return sorted(candidates, key=preference), skipped
