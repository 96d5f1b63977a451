"""CQ500 labels: ``reads.csv`` (three readers per finding), majority vote, agreement, and the join to studies.

``reads.csv`` has one row per study, ``name`` (``CQ500-CT-N``), ``Category``
and ``R1:ICH`` ... ``R3:MidlineShift`` (0/1 per reader and finding).
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Labels", "cq500_labels", "patient_split", "study_name"]


@dataclass(frozen=True)
class Labels:
    """Per study name: the readers' votes, majority (0/1) and agreement (readers voting 1) per finding."""

    findings: tuple[str, ...]
    votes: dict[str, dict[str, tuple[int, ...]]]

    def agreement(self, name: str, finding: str) -> int:
        return sum(self.votes[name][finding])

    def majority(self, name: str) -> dict[str, int]:
        return {f: int(2 * sum(v) > len(v)) for f, v in self.votes[name].items()}


def study_name(text: str) -> str | None:
    """The ``CQ500-CT-N`` name in a patient ID or folder name (``CQ500CT12 CQ500CT12`` too), or None.

    Examples
    --------
    >>> study_name("CQ500CT12 CQ500CT12"), study_name("/data/CQ500-CT-7/Unknown Study"), study_name("X")
    ('CQ500-CT-12', 'CQ500-CT-7', None)
    """
    match = re.search(r"CQ500[-_ ]?CT[-_ ]?(\d+)", text, re.IGNORECASE)
    return f"CQ500-CT-{int(match.group(1))}" if match else None


def cq500_labels(path: str | os.PathLike[str]) -> Labels:
    """Read a CQ500 ``reads.csv``.

    Examples
    --------
    >>> import tempfile
    >>> path = tempfile.mktemp(suffix=".csv")
    >>> _ = open(path, "w").write("name,Category,R1:ICH,R2:ICH,R3:ICH\\nCQ500-CT-0,B1,1,0,1\\n")
    >>> labels = cq500_labels(path)
    >>> labels.majority("CQ500-CT-0"), labels.agreement("CQ500-CT-0", "ICH")
    ({'ICH': 1}, 2)
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        columns = reader.fieldnames or []
        if "name" not in columns:
            raise ValueError(f"{path}: no 'name' column; is this CQ500's reads.csv?")
        findings = tuple(dict.fromkeys(c.split(":", 1)[1] for c in columns if re.match(r"R\d+:", c)))
        readers = sorted({c.split(":", 1)[0] for c in columns if re.match(r"R\d+:", c)})
        votes: dict[str, dict[str, tuple[int, ...]]] = {}
        for line, row in enumerate(reader, start=2):
            name = study_name(row["name"]) or row["name"]
            per: dict[str, tuple[int, ...]] = {}
            for finding in findings:
                values = []
                for r in readers:
                    cell = (row.get(f"{r}:{finding}") or "").strip()
                    if cell not in ("0", "1"):
                        raise ValueError(f"{path} line {line}: {r}:{finding} is {cell!r}, expected 0 or 1")
                    values.append(int(cell))
                per[finding] = tuple(values)
            votes[name] = per
    return Labels(findings, votes)


def patient_split(names, labels: Labels, fractions=(0.7, 0.15, 0.15), stratify: str = "ICH") -> dict[str, str]:
    """Deterministic patient-level split into train/val/test, stratified by the majority of `stratify`.

    Examples
    --------
    >>> labels = Labels(("ICH",), {f"CQ500-CT-{i}": {"ICH": (i % 2,) * 3} for i in range(20)})
    >>> split = patient_split(labels.votes, labels)
    >>> sorted(set(split.values())), sum(v == "train" for v in split.values())
    (['test', 'train', 'val'], 14)
    """
    parts = ("train", "val", "test")
    out: dict[str, str] = {}
    for value in (0, 1):
        group = sorted(
            (n for n in names if labels.majority(n)[stratify] == value),
            key=lambda n: hashlib.sha1(n.encode()).hexdigest(),
        )
        edges = [round(len(group) * sum(fractions[: i + 1])) for i in range(len(parts))]
        for index, name in enumerate(group):
            out[name] = parts[next(i for i, edge in enumerate(edges) if index < edge)]
    return out
