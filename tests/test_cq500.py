"""The CQ500 contract: preprocess --rule cq500 --labels, report, scan --csv, on real DICOM files."""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import re
import threading
from collections import Counter
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ctexplore.cli import main
from ctexplore.datasets import ChecksumError, DownloadError
from ctexplore.labels import READS_PIN, cq500_labels, fetch_cq500_reads, patient_split
from ctexplore.phantom import write_series

FINDINGS = (
    "ICH",
    "IPH",
    "IVH",
    "SDH",
    "EDH",
    "SAH",
    "BleedLocation-Left",
    "BleedLocation-Right",
    "ChronicBleed",
    "Fracture",
    "CalvarialFracture",
    "OtherFracture",
    "MassEffect",
    "MidlineShift",
)

# Hand-counted: study 0 ICH votes 1,1,0 -> majority 1 (agreement 2); SDH 0,0,1 -> 0.
# Study 1: ICH 0,0,0 -> 0; SDH 1,1,1 -> 1 (agreement 3).
VOTES = {
    "CQ500-CT-0": {"ICH": (1, 1, 0), "SDH": (0, 0, 1)},
    "CQ500-CT-1": {"ICH": (0, 0, 0), "SDH": (1, 1, 1)},
}
EXPECTED_MAJORITY = {
    "CQ500-CT-0": {"ICH": "1", "SDH": "0", "IPH": "0"},
    "CQ500-CT-1": {"ICH": "0", "SDH": "1", "IPH": "0"},
}


def write_reads(path):
    header = ["name", "Category"] + [f"R{r}:{f}" for r in (1, 2, 3) for f in FINDINGS]
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        for name, votes in VOTES.items():
            cells = [name, "B1"]
            for r in range(3):
                cells += [votes.get(f, (0, 0, 0))[r] for f in FINDINGS]
            writer.writerow(cells)
    return path


@pytest.fixture(scope="module")
def cq500_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("cq500")
    for n in (0, 1):
        patient = f"CQ500CT{n} CQ500CT{n}"
        study = root / f"CQ500-CT-{n}" / "Unknown Study"
        common = dict(matrix=32, patient_id=patient, study_uid=f"1.2.826.0.1.{n}")
        write_series(
            study / "CT PLAIN THIN",
            n_slices=16,
            slice_spacing=1.0,
            series_number=2,
            series_description="CT PLAIN THIN",
            convolution_kernel="H30s",
            file_prefix="A",
            **common,
        )
        write_series(
            study / "CT BONE THIN",
            n_slices=16,
            slice_spacing=1.0,
            series_number=3,
            series_description="CT 0.625mm BONE",
            convolution_kernel="BONE",
            file_prefix="B",
            **common,
        )
        write_series(
            study / "CT POST CONTRAST",
            n_slices=20,
            slice_spacing=0.8,
            series_number=4,
            series_description="CT POST CONTRAST",
            convolution_kernel="STANDARD",
            file_prefix="C",
            **common,
        )
        write_series(
            study / "CT 5mm",
            n_slices=4,
            slice_spacing=5.0,
            series_number=5,
            series_description="CT 5mm",
            convolution_kernel="FC21",
            file_prefix="D",
            **common,
        )
    return root


def test_labels_match_hand_counted_votes(tmp_path):
    labels = cq500_labels(write_reads(tmp_path / "reads.csv"))
    assert labels.findings == FINDINGS
    assert labels.votes["CQ500-CT-0"]["ICH"] == (1, 1, 0)
    assert labels.agreement("CQ500-CT-0", "ICH") == 2
    assert labels.agreement("CQ500-CT-1", "SDH") == 3
    for name, expected in EXPECTED_MAJORITY.items():
        got = labels.majority(name)
        assert {f: str(got[f]) for f in expected} == expected
    split = patient_split(labels.votes, labels)
    assert split == patient_split(list(reversed(list(labels.votes))), labels)


def test_labels_reject_a_vote_that_is_not_0_or_1(tmp_path):
    path = tmp_path / "reads.csv"
    path.write_text("name,Category,R1:ICH\nCQ500-CT-0,B1,maybe\n")
    with pytest.raises(ValueError, match="line 2: R1:ICH is 'maybe'"):
        cq500_labels(path)


def test_preprocess_cq500_rule_and_labels_fill_the_manifest(cq500_tree, tmp_path):
    out = tmp_path / "out"
    reads = write_reads(tmp_path / "reads.csv")
    status = main(
        [
            "preprocess",
            str(cq500_tree),
            str(out),
            "--rule",
            "cq500",
            "--labels",
            str(reads),
            "--spacing",
            "2",
            "--workers",
            "1",
            "--no-progress",
        ]
    )
    assert status == 0
    with open(out / "manifest.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 8
    for column in ("status", "reason", "warnings", "output_shape", "output_spacing", "tilt_deg", "kernel", *FINDINGS):
        assert column in rows[0]
    for row in rows:
        chosen = row["series_description"] == "CT PLAIN THIN"
        assert row["status"] == ("ok" if chosen else "skipped"), row
        name = row["output"].split("/")[0] if chosen else None
        patient = "CQ500-CT-0" if row["patient_id"].startswith("CQ500CT0") else "CQ500-CT-1"
        assert {f: row[f] for f in EXPECTED_MAJORITY[patient]} == EXPECTED_MAJORITY[patient]
        if chosen:
            assert name and row["output_shape"] and row["output_spacing"] == "2x2x2"
    reasons = {row["series_description"]: row["reason"] for row in rows}
    assert "sharp kernel" in reasons["CT 0.625mm BONE"]
    assert "contrast" in reasons["CT POST CONTRAST"]
    assert "not the thinnest" in reasons["CT 5mm"]

    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert page.count("<figure ") == 2 and "data:image/png;base64," in page
    pictures = sorted(p.name for p in (out / "report").iterdir())
    assert pictures[:2] == ["distributions.png", "flags.csv"] and len(pictures) == 4  # a thumbnail per chosen series
    assert "CQ500CT0 CQ500CT0 s2 CT PLAIN THIN" in page


def test_scan_csv_and_json_have_patient_and_folder(cq500_tree, tmp_path):
    assert main(["scan", str(cq500_tree), "--csv", str(tmp_path / "s.csv"), "--json", str(tmp_path / "s.json")]) == 0
    with open(tmp_path / "s.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 8
    assert {row["patient"] for row in rows} == {"CQ500CT0 CQ500CT0", "CQ500CT1 CQ500CT1"}
    assert all("CQ500-CT-" in row["folder"] for row in rows)
    assert len(json.loads((tmp_path / "s.json").read_text())) == 8


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def reads_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/served (reads.csv goes there); yields its URL and folder."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    httpd.shutdown()
    httpd.server_close()


class TestReadsDownload:
    def test_first_download_pins_the_hash_and_the_labels_are_read(self, reads_server, tmp_path):
        url, served = reads_server
        data = write_reads(served / "reads.csv").read_bytes()
        dest = tmp_path / "cache"
        labels = cq500_labels("download", dest=dest, base_url=url)
        assert labels.agreement("CQ500-CT-0", "ICH") == 2 and labels.majority("CQ500-CT-1")["SDH"] == 1
        assert (dest / READS_PIN).read_text() == f"sha256:{hashlib.sha256(data).hexdigest()}\n"
        assert (dest / "reads.csv").read_bytes() == data

    def test_a_changed_file_on_the_server_is_refused_against_the_pin(self, reads_server, tmp_path):
        url, served = reads_server
        write_reads(served / "reads.csv")
        dest = tmp_path / "cache"
        first = fetch_cq500_reads(dest, base_url=url)
        pin = (dest / READS_PIN).read_text()
        # The cached copy is corrupted and the server now holds other votes: neither matches the pin.
        first.write_text("name,Category,R1:ICH\nCQ500-CT-0,B1,0\n")
        (served / "reads.csv").write_text("name,Category,R1:ICH\nCQ500-CT-0,B1,1\n")
        with pytest.raises(ChecksumError, match=f"delete {dest / READS_PIN}"):
            fetch_cq500_reads(dest, base_url=url)
        assert (dest / READS_PIN).read_text() == pin  # the pin is not moved to the new file

    def test_known_hash_overrides_the_pin(self, reads_server, tmp_path):
        url, served = reads_server
        data = write_reads(served / "reads.csv").read_bytes()
        good = f"sha256:{hashlib.sha256(data).hexdigest()}"
        assert fetch_cq500_reads(tmp_path / "a", base_url=url, known_hash=good).read_bytes() == data
        with pytest.raises(ChecksumError, match="known_hash given"):
            fetch_cq500_reads(tmp_path / "b", base_url=url, known_hash="sha256:" + "0" * 64)
        assert not (tmp_path / "b" / "reads.csv").exists()

    def test_server_without_the_file_names_the_url(self, reads_server, tmp_path):
        url, _ = reads_server
        with pytest.raises(DownloadError, match=f"{url}/reads.csv"):
            fetch_cq500_reads(tmp_path / "c", base_url=url, timeout=5)
        assert not (tmp_path / "c" / READS_PIN).exists()


def test_patient_split_is_stratified_and_refuses_bad_input(tmp_path):
    labels = cq500_labels(write_reads(tmp_path / "reads.csv"))
    many = type(labels)(labels.findings, {f"CQ500-CT-{i}": labels.votes[f"CQ500-CT-{i % 2}"] for i in range(40)})
    split = patient_split(iter(many.votes), many)  # an iterator is read once
    assert len(split) == 40
    for ich in (0, 1):
        group = [n for n in split if many.majority(n)["ICH"] == ich]
        assert Counter(split[n] for n in group) == {"train": 14, "val": 3, "test": 3}
    with pytest.raises(ValueError, match="summing to 1"):
        patient_split(many.votes, many, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="cannot stratify by 'XYZ'"):
        patient_split(many.votes, many, stratify="XYZ")
    with pytest.raises(ValueError, match="no row in reads.csv, e.g. 'CQ500-CT-999'"):
        patient_split(["CQ500-CT-999"], many)


def test_report_on_the_raw_tree_chooses_by_the_cq500_rule(cq500_tree, tmp_path):
    assert main(["report", str(cq500_tree), "--out", str(tmp_path / "r"), "--rule", "cq500"]) == 0
    page = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    captions = re.findall(r"<figcaption>([^<&]*)", page)
    assert sorted(c.strip() for c in captions) == [
        "CQ500CT0 CQ500CT0 s2 CT PLAIN THIN",
        "CQ500CT1 CQ500CT1 s2 CT PLAIN THIN",
    ]
    assert page.count("<td>description &#x27;CT POST CONTRAST&#x27;</td>") == 2  # the contrast evidence column
    assert "4 chosen" not in page and "2 chosen, 6 not chosen" in page
