"""CQ500 labels: ``reads.csv`` (three readers per finding), majority vote, agreement, and the join to studies.

``reads.csv`` has one row per study, ``name`` (``CQ500-CT-N``), ``Category``
and ``R1:ICH`` ... ``R3:MidlineShift`` (0/1 per reader and finding).
`fetch_cq500_reads` downloads it beside the CQ500 studies and pins its SHA-256
on first download (qure.ai publishes no checksum): every later call checks the
file against that pin, so a changed or corrupted copy is noticed.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Labels", "READS_PIN", "cq500_labels", "fetch_cq500_reads", "patient_split", "study_name"]

_READS_MAX_BYTES = 64 * 2**20  # reads.csv is about 100 kB: a bigger body is not that file

logger = logging.getLogger(__name__)

#: File beside the downloaded ``reads.csv`` that holds its pinned ``sha256:<hex>``.
READS_PIN = "reads.csv.sha256"


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


def fetch_cq500_reads(
    dest: str | os.PathLike[str] | None = None,
    *,
    base_url: str | None = None,
    known_hash: str | None = None,
    progress: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Download CQ500's ``reads.csv`` (once), verified against a pinned SHA-256; return its path.

    The file comes from ``<base_url>/reads.csv`` (default: ``$CTEXPLORE_CQ500_URL``,
    else `ctexplore.datasets.CQ500_BASE_URL`, where the study zips are) into
    `dest`. The hash it is checked against is `known_hash` when given, else the
    pin ``<dest>/reads.csv.sha256`` (`READS_PIN`). Without either (the first
    download), the SHA-256 of what arrived is written to the pin: trust on
    first use. Commit the pin's content next to your experiment (or pass it as
    `known_hash`) to make a download on another machine prove it got the same
    labels.

    Parameters
    ----------
    dest : path-like, optional
        Folder for ``reads.csv`` and its pin. Default: ``default_cache_dir() / "cq500"``.
    base_url : str, optional
    known_hash : str, optional
        ``"sha256:<hex>"``; overrides the pin.
    progress : bool, default False
    timeout : float, default 60
        Seconds to wait for the server.

    Raises
    ------
    DownloadError
        Offline or an HTTP error; the message names the URL.
    ChecksumError
        The file does not match the pin or `known_hash`; the message says which
        pin to check or delete.

    Examples
    --------
    >>> path = fetch_cq500_reads("/data/cq500")  # doctest: +SKIP
    >>> (path.parent / READS_PIN).read_text()  # doctest: +SKIP
    'sha256:...'
    """
    from ._atomic import atomic_target
    from .datasets import CQ500_BASE_URL, CQ500_URL_ENV, ChecksumError, _download, default_cache_dir

    root = Path(dest) if dest is not None else default_cache_dir() / "cq500"
    pin = root / READS_PIN
    pinned = pin.read_text(encoding="utf-8").strip() if pin.is_file() else None
    expected = known_hash or pinned
    url = f"{(base_url or os.environ.get(CQ500_URL_ENV) or CQ500_BASE_URL).rstrip('/')}/reads.csv"
    try:
        path = _download(
            url,
            root,
            "reads.csv",
            expected,
            progress=progress,
            timeout=timeout,
            max_bytes=_READS_MAX_BYTES,
            manual="download reads.csv yourself and give its path (--labels PATH, cq500_labels(PATH))",
        )
    except ChecksumError as error:
        where = "the known_hash given" if known_hash else f"the pin {pin} written at the first download"
        raise ChecksumError(
            f"{error} The hash came from {where}. If qure.ai changed reads.csv on purpose, delete {pin} "
            "(and the old reads.csv) to pin the new one."
        ) from None
    if expected is None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        root.mkdir(parents=True, exist_ok=True)
        with atomic_target(pin) as temporary:
            temporary.write_text(f"sha256:{digest}\n", encoding="utf-8")
        logger.info("pinned %s at sha256:%s in %s", url, digest, pin)
    return path


def cq500_labels(
    path: str | os.PathLike[str] | None = None,
    *,
    dest: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    known_hash: str | None = None,
) -> Labels:
    """Read a CQ500 ``reads.csv``, given as a path, or downloaded when `path` is None or ``"download"``.

    Downloads go through `fetch_cq500_reads` (with `dest`, `base_url` and
    `known_hash`), which pins the file's SHA-256 on first download.

    Raises
    ------
    ValueError
        The file has no ``name`` column, or a vote that is not 0 or 1 (the
        message names the file, line and column).

    Examples
    --------
    >>> import tempfile
    >>> path = tempfile.mktemp(suffix=".csv")
    >>> _ = open(path, "w").write("name,Category,R1:ICH,R2:ICH,R3:ICH\\nCQ500-CT-0,B1,1,0,1\\n")
    >>> labels = cq500_labels(path)
    >>> labels.majority("CQ500-CT-0"), labels.agreement("CQ500-CT-0", "ICH")
    ({'ICH': 1}, 2)
    """
    if path is None or str(path) == "download":
        path = fetch_cq500_reads(dest, base_url=base_url, known_hash=known_hash)
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


def patient_split(
    names: Iterable[str], labels: Labels, fractions: Sequence[float] = (0.7, 0.15, 0.15), stratify: str = "ICH"
) -> dict[str, str]:
    """Deterministic patient-level split into train/val/test, stratified by the majority of `stratify`.

    Examples
    --------
    >>> labels = Labels(("ICH",), {f"CQ500-CT-{i}": {"ICH": (i % 2,) * 3} for i in range(20)})
    >>> split = patient_split(labels.votes, labels)
    >>> sorted(set(split.values())), sum(v == "train" for v in split.values())
    (['test', 'train', 'val'], 14)
    """
    parts = ("train", "val", "test")
    names = list(names)
    if len(fractions) != len(parts) or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"fractions must be three non-negative numbers (train, val, test) summing to 1, not {fractions}"
        )
    if stratify not in labels.findings:
        raise ValueError(f"cannot stratify by {stratify!r}: reads.csv has the findings {list(labels.findings)}")
    unknown = [n for n in names if n not in labels.votes]
    if unknown:
        raise ValueError(f"{len(unknown)} name(s) have no row in reads.csv, e.g. {unknown[0]!r}")
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
