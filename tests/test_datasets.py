"""Tests for ctexplore.datasets: CQ500 download against a real local HTTP server, and sample data."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
import shutil
import socket
import stat
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import examples
from scipy import ndimage

from ctexplore import load_series, scan
from ctexplore.datasets import (
    DATASET_FINDINGS,
    ChecksumError,
    DownloadError,
    UnsafeArchiveError,
    cq500_name,
    cq500_url,
    fetch_cq500,
    safe_extract_zip,
    sample_dataset,
    sample_study,
)
from ctexplore.headmodel import LABELS, LESIONS, TISSUE_HU
from ctexplore.phantom import SAMPLE_BONE_IMAGE_FORMATION, SAMPLE_IMAGE_FORMATION
from ctexplore.selection import kernel_class

DICOM_BYTES = Path(examples.get_path("ct")).read_bytes()  # a real CT slice shipped with pydicom


# ---------------------------------------------------------------------------
# a real HTTP server on 127.0.0.1 serving zips made here
# ---------------------------------------------------------------------------


class _RangeHandler(SimpleHTTPRequestHandler):
    """Serves files with ETag and Range/If-Range support; can cut a body short once."""

    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        record = {"path": self.path, "range": self.headers.get("Range"), "sent": 0}
        self.server.requests.append(record)
        if not path.is_file():
            self.send_error(404, "File not found")
            return
        data = path.read_bytes()
        etag = f'"{hashlib.md5(data).hexdigest()}"'
        start, status = 0, 200
        requested = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if requested and self.headers.get("If-Range") in (None, etag):
            start, status = int(requested.group(1)), 206
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if self.server.cut_after is not None:
            body = body[: self.server.cut_after]
            self.server.cut_after = None
            self.close_connection = True
        self.wfile.write(body)
        record["sent"] = len(body)


class _Server(ThreadingHTTPServer):
    requests: list[dict]
    cut_after: int | None


class LocalServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(_RangeHandler, directory=str(root))
        self.httpd = _Server(("127.0.0.1", 0), handler)
        self.httpd.requests = []
        self.httpd.cut_after = None
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cq500"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def requests(self) -> list[dict]:
        return self.httpd.requests

    def cut_next_response_after(self, n_bytes: int) -> None:
        self.httpd.cut_after = n_bytes

    def publish(self, name: str, entries: dict[str, bytes]) -> bytes:
        """Put a zip named ``name`` with ``entries`` on the server; return its bytes."""
        data = make_zip(entries)
        (self.root / "cq500").mkdir(exist_ok=True)
        (self.root / "cq500" / name).write_bytes(data)
        return data


@pytest.fixture
def server(tmp_path: Path):
    served = tmp_path / "served"
    served.mkdir()
    local = LocalServer(served)
    local.thread.start()
    yield local
    local.httpd.shutdown()
    local.httpd.server_close()


def make_zip(entries: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def cq500_entries(top: str | None, n_files: int = 2) -> dict[str, bytes]:
    prefix = f"{top}/" if top else ""
    return {f"{prefix}Unknown Study/CT 5mm/CT{i:06d}.dcm": DICOM_BYTES for i in range(n_files)}


def fetch(server: LocalServer, patients, dest: Path, **kwargs) -> list[Path]:
    return fetch_cq500(patients, dest, base_url=server.url, progress=False, timeout=5, **kwargs)


def leftovers(dest: Path) -> list[str]:
    """Staging folders, partial files, zips and download folders left in ``dest``."""
    suffixes = (".partial", ".part", ".zip", ".downloads")
    return sorted(p.name for p in dest.rglob("*") if p.name.endswith(suffixes))


# ---------------------------------------------------------------------------
# fetch_cq500
# ---------------------------------------------------------------------------


class TestFetchCq500:
    @pytest.mark.parametrize("top", ["CQ500CT1 CQ500CT1", "CQ500-CT-1", None])
    def test_unpacks_into_cq500_layout_whatever_the_zip_top_folder(self, server, tmp_path, top):
        server.publish("CQ500-CT-1.zip", cq500_entries(top))
        dest = tmp_path / "cq500"

        folders = fetch(server, [1], dest)

        assert folders == [dest / "CQ500-CT-1"]
        series = dest / "CQ500-CT-1" / "Unknown Study" / "CT 5mm"
        assert sorted(p.name for p in series.iterdir()) == ["CT000000.dcm", "CT000001.dcm"]
        assert pydicom.dcmread(series / "CT000000.dcm").Modality == "CT"
        assert sorted(p.name for p in dest.iterdir()) == ["CQ500-CT-1"]  # no zip, no .downloads left

    def test_accepts_names_and_numbers_and_returns_folders_in_order_asked(self, server, tmp_path):
        for n in (3, 12):
            server.publish(f"CQ500-CT-{n}.zip", cq500_entries(f"CQ500CT{n} CQ500CT{n}", n_files=1))

        folders = fetch(server, ["CQ500CT12", 3, "CQ500-CT-12"], tmp_path)

        assert [f.name for f in folders] == ["CQ500-CT-12", "CQ500-CT-3"]
        assert all((f / "Unknown Study" / "CT 5mm" / "CT000000.dcm").is_file() for f in folders)

    def test_second_call_makes_no_request(self, server, tmp_path):
        server.publish("CQ500-CT-1.zip", cq500_entries("CQ500CT1 CQ500CT1"))
        fetch(server, 1, tmp_path)
        n_requests = len(server.requests)

        again = fetch(server, 1, tmp_path)

        assert again == [tmp_path / "CQ500-CT-1"]
        assert len(server.requests) == n_requests == 1

    def test_keep_zips_keeps_a_verified_zip_that_is_not_downloaded_again(self, server, tmp_path):
        dest = tmp_path / "dest"
        data = server.publish("CQ500-CT-1.zip", cq500_entries("CQ500CT1 CQ500CT1"))
        fetch(server, 1, dest, keep_zips=True)
        kept = dest / ".downloads" / "CQ500-CT-1.zip"
        assert kept.read_bytes() == data
        # The unpacked folder is lost, the zip is not: unpack it again without a request.
        shutil.rmtree(dest / "CQ500-CT-1")

        fetch(server, 1, dest, keep_zips=True)

        assert len(server.requests) == 1
        assert (dest / "CQ500-CT-1" / "Unknown Study" / "CT 5mm" / "CT000001.dcm").is_file()

    def test_matching_known_hash_is_accepted(self, server, tmp_path):
        data = server.publish("CQ500-CT-1.zip", cq500_entries("CQ500CT1 CQ500CT1"))
        digest = hashlib.sha256(data).hexdigest()

        folders = fetch(server, [1], tmp_path, known_hashes={1: f"sha256:{digest}"})

        assert (folders[0] / "Unknown Study").is_dir()

    def test_hash_mismatch_raises_and_keeps_nothing(self, server, tmp_path):
        dest = tmp_path / "dest"
        server.publish("CQ500-CT-1.zip", cq500_entries("CQ500CT1 CQ500CT1"))
        wrong = "sha256:" + "0" * 64

        with pytest.raises(ChecksumError, match="CQ500-CT-1.zip"):
            fetch(server, [1], dest, known_hashes={"CQ500-CT-1": wrong})

        assert not (dest / "CQ500-CT-1").exists()
        assert leftovers(dest) == []

    def test_unknown_hash_is_reported_ready_to_pin(self, server, tmp_path, capsys):
        data = server.publish("CQ500-CT-1.zip", cq500_entries("CQ500CT1 CQ500CT1"))

        fetch_cq500([1], tmp_path, base_url=server.url, progress=True, timeout=5)

        digest = hashlib.sha256(data).hexdigest()
        assert f"known_hashes={{'CQ500-CT-1': 'sha256:{digest}'}}" in capsys.readouterr().err

    @pytest.mark.parametrize(
        "evil_entry",
        ["../evil.txt", "CQ500CT66 CQ500CT66/../../evil.txt", "..\\evil.txt", "ABSOLUTE"],
    )
    def test_zip_escaping_destination_is_refused_and_nothing_written(self, server, tmp_path, evil_entry):
        outside = tmp_path / "evil.txt"
        if evil_entry == "ABSOLUTE":
            evil_entry = str(outside)
        entries = cq500_entries("CQ500CT66 CQ500CT66")
        entries[evil_entry] = b"gotcha"
        server.publish("CQ500-CT-66.zip", entries)
        dest = tmp_path / "data" / "cq500"

        with pytest.raises(UnsafeArchiveError, match=re.escape(repr(evil_entry))):
            fetch(server, [66], dest)

        assert not (dest / "CQ500-CT-66").exists()
        assert not outside.exists()
        assert [p for p in tmp_path.rglob("evil.txt")] == []
        assert leftovers(dest) == []  # the malicious zip is not kept either

    def test_zip_with_symlink_is_refused(self, server, tmp_path):
        data = make_zip(cq500_entries("CQ500CT7 CQ500CT7"), symlinks=("CQ500CT7 CQ500CT7/Unknown Study/link",))
        (server.root / "cq500").mkdir()
        (server.root / "cq500" / "CQ500-CT-7.zip").write_bytes(data)

        with pytest.raises(UnsafeArchiveError, match="symbolic link"):
            fetch(server, [7], tmp_path)

        assert not (tmp_path / "CQ500-CT-7").exists()

    def test_file_that_is_not_a_zip_is_deleted_with_a_clear_error(self, server, tmp_path):
        dest = tmp_path / "dest"
        (server.root / "cq500").mkdir()
        (server.root / "cq500" / "CQ500-CT-5.zip").write_bytes(b"<html>Access denied</html>")

        with pytest.raises(DownloadError, match="not a readable zip.*call again"):
            fetch(server, [5], dest)

        assert leftovers(dest) == []

    def test_missing_patient_raises_download_error_naming_url_and_status(self, server, tmp_path):
        with pytest.raises(DownloadError, match=r"CQ500-CT-999\.zip answered HTTP 404") as caught:
            fetch(server, [999], tmp_path)

        assert caught.value.url == f"{server.url}/CQ500-CT-999.zip"

    def test_unreachable_server_raises_connection_error_naming_url_and_remedy(self, tmp_path):
        with socket.socket() as probe:  # a port nobody listens on once closed
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        url = f"http://127.0.0.1:{port}/cq500"

        with pytest.raises(ConnectionError) as caught:
            fetch_cq500([1], tmp_path, base_url=url, progress=False, timeout=5)

        message = str(caught.value)
        assert isinstance(caught.value, DownloadError)
        assert f"{url}/CQ500-CT-1.zip" in message
        assert "offline" in message and "CTEXPLORE_CQ500_URL" in message
        assert not (tmp_path / "CQ500-CT-1").exists()

    def test_interrupted_download_resumes_with_a_range_request(self, server, tmp_path):
        dest = tmp_path / "dest"
        data = server.publish("CQ500-CT-1.zip", cq500_entries("CQ500CT1 CQ500CT1", n_files=16))
        half = len(data) // 2
        server.cut_next_response_after(half)

        with pytest.raises(DownloadError, match="was cut after .* calling again resumes it") as caught:
            fetch(server, [1], dest)
        assert "offline" not in str(caught.value)
        part = dest / ".downloads" / "CQ500-CT-1.zip.part"
        received = part.stat().st_size
        assert 0 < received <= half  # whole chunks up to where the connection broke
        assert not (dest / "CQ500-CT-1").exists()  # a partial zip is never unpacked

        fetch(server, [1], dest)

        assert server.requests[-1]["range"] == f"bytes={received}-"
        assert server.requests[-1]["sent"] == len(data) - received
        unpacked = dest / "CQ500-CT-1" / "Unknown Study" / "CT 5mm" / "CT000015.dcm"
        assert unpacked.read_bytes() == DICOM_BYTES
        assert leftovers(dest) == []

    def test_resume_starts_over_when_the_file_changed_on_the_server(self, server, tmp_path):
        old = server.publish("CQ500-CT-1.zip", cq500_entries("CQ500CT1 CQ500CT1", n_files=16))
        server.cut_next_response_after(len(old) // 2)
        with pytest.raises(DownloadError):
            fetch(server, [1], tmp_path)
        new = server.publish("CQ500-CT-1.zip", cq500_entries("CQ500CT1 CQ500CT1", n_files=3))

        fetch(server, [1], tmp_path, known_hashes={1: "sha256:" + hashlib.sha256(new).hexdigest()})

        assert server.requests[-1]["range"] is not None  # it tried to resume ...
        assert server.requests[-1]["sent"] == len(new)  # ... and If-Range made it whole
        series = tmp_path / "CQ500-CT-1" / "Unknown Study" / "CT 5mm"
        assert len(list(series.iterdir())) == 3

    def test_environment_variable_sets_the_base_url(self, server, tmp_path, monkeypatch):
        server.publish("CQ500-CT-2.zip", cq500_entries("CQ500CT2 CQ500CT2", n_files=1))
        monkeypatch.setenv("CTEXPLORE_CQ500_URL", server.url + "/")

        fetch_cq500(2, tmp_path, progress=False, timeout=5)

        assert server.requests[0]["path"] == "/cq500/CQ500-CT-2.zip"


class TestNames:
    def test_url_uses_argument_then_environment_then_default(self, monkeypatch):
        monkeypatch.delenv("CTEXPLORE_CQ500_URL", raising=False)
        assert cq500_url(108).endswith("/CQ500-CT-108.zip")
        monkeypatch.setenv("CTEXPLORE_CQ500_URL", "http://mirror/cq")
        assert cq500_url("CQ500CT108") == "http://mirror/cq/CQ500-CT-108.zip"
        assert cq500_url(1, base_url="http://other") == "http://other/CQ500-CT-1.zip"

    @pytest.mark.parametrize("bad", ["108a", "CT-108", "../CQ500-CT-1", -1, True])
    def test_rejects_what_is_not_a_cq500_patient(self, bad):
        with pytest.raises((ValueError, TypeError)):
            cq500_name(bad)


# ---------------------------------------------------------------------------
# safe_extract_zip
# ---------------------------------------------------------------------------


class TestSafeExtractZip:
    @pytest.mark.parametrize(
        ("entry", "reason"),
        [
            ("/etc/evil", "absolute"),
            ("C:/evil.txt", "absolute"),
            ("c:evil.txt", "absolute"),
            ("\\\\server\\share\\evil.txt", "absolute"),
            ("a/../../evil.txt", r"'\.\.'"),
            ("a\\..\\..\\evil.txt", r"'\.\.'"),
            ("a/file.txt:stream", "':'"),
        ],
    )
    def test_refuses_entries_that_may_escape(self, tmp_path, entry, reason):
        archive = tmp_path / "a.zip"
        archive.write_bytes(make_zip({"a/ok.txt": b"fine", entry: b"gotcha"}))

        with pytest.raises(UnsafeArchiveError, match=reason):
            safe_extract_zip(archive, tmp_path / "out")

        assert not (tmp_path / "out").exists()
        assert [p.name for p in tmp_path.iterdir()] == ["a.zip"]

    def test_refuses_archive_larger_than_max_bytes(self, tmp_path):
        archive = tmp_path / "bomb.zip"
        archive.write_bytes(make_zip({"zeros.bin": bytes(1_000_000)}))

        with pytest.raises(UnsafeArchiveError, match="max_bytes"):
            safe_extract_zip(archive, tmp_path / "out", max_bytes=100_000)

        assert not (tmp_path / "out").exists()

    def test_refuses_duplicate_entries(self, tmp_path):
        archive = tmp_path / "dup.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("a/x.txt", "one")
            with pytest.warns(UserWarning, match="Duplicate name"):
                zf.writestr("a/x.txt", "two")

        with pytest.raises(UnsafeArchiveError, match="twice"):
            safe_extract_zip(archive, tmp_path / "out")

        assert sorted(p.name for p in tmp_path.iterdir()) == ["dup.zip"]

    def test_keeps_top_folder_unless_asked_and_never_strips_the_study_folder(self, tmp_path):
        archive = tmp_path / "a.zip"
        archive.write_bytes(make_zip(cq500_entries("top", n_files=1)))
        study_only = tmp_path / "b.zip"
        study_only.write_bytes(make_zip(cq500_entries(None, n_files=1)))

        kept = safe_extract_zip(archive, tmp_path / "kept")
        stripped = safe_extract_zip(archive, tmp_path / "stripped", strip_top_folder=True)
        study = safe_extract_zip(study_only, tmp_path / "study", strip_top_folder=True)

        assert (kept / "top" / "Unknown Study" / "CT 5mm" / "CT000000.dcm").is_file()
        assert (stripped / "Unknown Study" / "CT 5mm" / "CT000000.dcm").is_file()
        assert (study / "Unknown Study" / "CT 5mm" / "CT000000.dcm").is_file()

    def test_refuses_existing_destination(self, tmp_path):
        archive = tmp_path / "a.zip"
        archive.write_bytes(make_zip({"x.txt": b"x"}))
        (tmp_path / "out").mkdir()

        with pytest.raises(FileExistsError):
            safe_extract_zip(archive, tmp_path / "out")


# ---------------------------------------------------------------------------
# sample_study / sample_dataset
# ---------------------------------------------------------------------------


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def tree_mtimes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sample")
    sample_study(root)
    return root


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory) -> Path:
    return sample_dataset(tmp_path_factory.mktemp("dataset"), n_patients=3)


class TestSampleStudy:
    def test_returns_the_study_folder_in_cq500_layout(self, sample_root):
        assert sample_study(sample_root) == sample_root / "PHANTOM-001" / "Unknown Study"

    def test_one_folder_holds_thin_thick_tilted_and_localizer_series(self, sample_root):
        index = scan(sample_root / "PHANTOM-001" / "Unknown Study")

        localizers = [s for s in index.series if s.is_localizer]
        axial = [s for s in index.series if not s.is_localizer]
        assert len(localizers) == 1
        assert len({s.uid for s in axial}) == len(axial) == 3
        assert len({s.files[0].parent for s in index.series}) == 1  # one folder, told apart by UID
        spacings = sorted(round(s.spacing_summary[1], 2) for s in axial if abs(s.tilt) < 0.1)
        assert spacings == [2.5, 5.0]  # a thin and a thick series
        assert [round(s.tilt) for s in axial if abs(s.tilt) > 0.1] == [20]
        assert len({s.patient_id for s in index.series}) == 1
        assert index.skipped  # non-image files sit beside the images, as in a real export

    def test_sample_folder_is_shared_like_any_folder_the_user_makes(self, sample_root, tmp_path):
        plain = tmp_path / "made-by-mkdir"
        plain.mkdir()
        # the staging folder comes from mkdtemp (0700); the finished one follows the umask
        assert (sample_root / "PHANTOM-001").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
        assert not [p for p in sample_root.iterdir() if p.name.startswith(".")]

    def test_same_arguments_write_identical_bytes(self, sample_root, tmp_path):
        sample_study(tmp_path)

        assert tree_bytes(tmp_path) == tree_bytes(sample_root)

    def test_second_call_rewrites_nothing(self, sample_root):
        before = tree_mtimes(sample_root)

        sample_study(sample_root)

        assert tree_mtimes(sample_root) == before

    def test_refuses_to_overwrite_a_folder_it_did_not_write(self, tmp_path):
        mine = tmp_path / "PHANTOM-001" / "notes.txt"
        mine.parent.mkdir()
        mine.write_text("my own work")

        with pytest.raises(FileExistsError, match="overwrite=True"):
            sample_study(tmp_path)

        assert mine.read_text() == "my own work"

    def test_overwrite_replaces_the_folder(self, tmp_path):
        stale = tmp_path / "PHANTOM-001" / "notes.txt"
        stale.parent.mkdir()
        stale.write_text("old")

        study = sample_study(tmp_path, overwrite=True)

        assert not stale.exists()
        assert len(scan(study).series) == 4

    def test_sample_from_another_version_is_written_again(self, sample_root, tmp_path):
        shutil.copytree(sample_root, tmp_path, dirs_exist_ok=True)
        marker = tmp_path / "PHANTOM-001" / ".ctexplore-sample.json"
        recorded = json.loads(marker.read_text())
        marker.write_text(json.dumps({**recorded, "phantom_sha256": "from an older ctexplore"}))
        leftover = tmp_path / "PHANTOM-001" / "Unknown Study" / "OLD.dcm"
        leftover.write_bytes(b"older sample")

        sample_study(tmp_path)

        assert json.loads(marker.read_text()) == recorded
        assert not leftover.exists()
        assert tree_bytes(tmp_path) == tree_bytes(sample_root)
        assert [p.name for p in tmp_path.iterdir()] == ["PHANTOM-001"]  # no staging or old copy left

    def test_interrupted_write_leaves_nothing_that_counts_as_cached(self, tmp_path):
        from ctexplore.datasets import _write_cached

        def crash_half_way(folder: Path) -> None:
            (folder / "Unknown Study").mkdir()
            (folder / "Unknown Study" / "S1_0001.dcm").write_bytes(DICOM_BYTES)
            raise KeyboardInterrupt  # what a user's Ctrl-C does mid-write

        with pytest.raises(KeyboardInterrupt):
            _write_cached(tmp_path / "PHANTOM-001", {"kind": "sample_study"}, crash_half_way, overwrite=False)

        assert list(tmp_path.iterdir()) == []
        study = sample_study(tmp_path)
        assert len(scan(study).series) == 4


class TestSampleDataset:
    def test_writes_cq500_layout_one_folder_per_series(self, dataset_root):
        layout = {
            patient.name: sorted(p.name for p in (patient / "Unknown Study").iterdir())
            for patient in sorted(dataset_root.iterdir())
        }

        assert layout == {
            "CQ500-CT-0": ["CT 5mm", "CT PLAIN THIN"],
            "CQ500-CT-1": ["CT 5mm", "CT BONE", "CT PLAIN THIN"],
            "CQ500-CT-2": ["CT 5mm", "CT PLAIN THIN"],
        }

    def test_patients_differ_as_real_ones_do(self, dataset_root):
        def series(patient: str) -> dict[str, object]:
            return {s.description: s for s in scan(dataset_root / patient).series}

        one, two = series("CQ500-CT-1"), series("CQ500-CT-2")
        # two candidate series of the same shape: the thin one and the bone kernel
        assert one["CT BONE"].uid != one["CT PLAIN THIN"].uid
        assert one["CT BONE"].n_images == one["CT PLAIN THIN"].n_images
        assert one["CT BONE"].slice_positions.tolist() == one["CT PLAIN THIN"].slice_positions.tolist()
        assert round(two["CT PLAIN THIN"].tilt) == 20
        assert round(two["CT 5mm"].tilt) == 0
        assert {s.study_uid for s in two.values()} == {two["CT 5mm"].study_uid}
        assert {s.patient_id for s in two.values()} == {"CQ500-CT-2"}

    def test_second_call_rewrites_nothing_and_first_patients_are_reused(self, dataset_root, tmp_path):
        before = tree_mtimes(dataset_root)

        assert sample_dataset(dataset_root, n_patients=3) == dataset_root

        assert tree_mtimes(dataset_root) == before

    def test_same_arguments_write_identical_bytes(self, dataset_root, tmp_path):
        sample_dataset(tmp_path, n_patients=1)

        assert tree_bytes(tmp_path / "CQ500-CT-0") == tree_bytes(dataset_root / "CQ500-CT-0")

    def test_each_patient_shows_its_findings_and_the_volumes_are_the_label_counts(self, dataset_root):
        assert DATASET_FINDINGS[0] == ("subdural haemorrhage",) and DATASET_FINDINGS[1] == ()
        for index in range(3):
            patient = dataset_root / f"CQ500-CT-{index}"
            series = scan(patient).volumes
            truths = {truth["series_uid"]: (path, truth) for path, truth in ground_truth(patient)}
            assert set(truths) == {s.uid for s in series}  # one truth per series, none for anything else
            for one in series:
                path, truth = truths[one.uid]
                assert truth["description"] == one.description
                with np.load(path.with_name(path.name.replace("_lesions.json", "_labels.npz"))) as saved:
                    labels = saved["labels"]
                assert labels.shape == (one.n_images, one.headers[0].rows, one.headers[0].columns)
                rows, cols = one.headers[0].pixel_spacing
                voxel_ml = rows * cols * one.spacing_summary[1] / 1000
                counts = np.bincount(labels.ravel(), minlength=len(LABELS))
                for lesion in LESIONS:
                    assert truth["volumes_ml"][lesion] == pytest.approx(counts[LABELS[lesion]] * voxel_ml, rel=1e-9)
                present = {lesion for lesion, ml in truth["volumes_ml"].items() if ml > 0}
                assert present == set(DATASET_FINDINGS[index]), (patient.name, one.description)

    def test_lesions_are_bright_where_the_truth_puts_them(self, dataset_root):
        patient = dataset_root / "CQ500-CT-2"
        thin = next(s for s in scan(patient).volumes if s.description == "CT PLAIN THIN")
        path = next(path for path, truth in ground_truth(patient) if truth["series_uid"] == thin.uid)
        with np.load(path.with_name(path.name.replace("_lesions.json", "_labels.npz"))) as saved:
            labels = saved["labels"]
        hu = load_series(thin).hu  # the acquired (sheared) grid, as the labels are
        bleed = hu[labels == LABELS["intraparenchymal haemorrhage"]]
        white = hu[labels == LABELS["white matter"]]
        assert bleed.size > 100
        assert np.median(bleed) > np.median(white) + 25  # 65 HU clot in 28 HU white matter, blurred at its rim

    def test_truth_files_sit_outside_the_study_and_a_scan_lists_them_as_skipped(self, dataset_root):
        patient = dataset_root / "CQ500-CT-0"
        truth_files = sorted((patient / "ground-truth").iterdir())
        assert len(truth_files) == 4  # labels and volumes of the thin and the thick series
        assert not list((patient / "Unknown Study").rglob("*.npz"))
        skipped = dict(scan(patient).skipped)
        assert sorted(skipped) == truth_files  # recorded, never dropped silently, and nothing else is skipped
        assert all("not a DICOM image" in reason for reason in skipped.values())

    def test_noise_in_uniform_brain_is_what_the_image_formation_asks(self, dataset_root):
        patient = dataset_root / "CQ500-CT-0"
        for one in scan(patient).volumes:
            path = next(path for path, truth in ground_truth(patient) if truth["series_uid"] == one.uid)
            with np.load(path.with_name(path.name.replace("_lesions.json", "_labels.npz"))) as saved:
                labels = saved["labels"]
            # deep white matter: no other tissue within the slice profile and the in-plane blur
            deep = ndimage.binary_erosion(labels == LABELS["white matter"], structure=np.ones((3, 5, 5)))
            hu = load_series(one).hu[deep]
            assert deep.sum() > 10_000
            assert abs(float(hu.mean()) - TISSUE_HU[LABELS["white matter"]]) < 1.0
            assert float(hu.std()) == pytest.approx(SAMPLE_IMAGE_FORMATION.noise_sd, rel=0.1)

    def test_bone_series_has_a_sharp_kernel_sharper_edges_and_more_noise(self, dataset_root):
        patient = dataset_root / "CQ500-CT-1"
        series = {s.description: s for s in scan(patient).volumes}
        soft, bone = series["CT PLAIN THIN"], series["CT BONE"]
        assert kernel_class(bone.headers[0].convolution_kernel) == "sharp"
        assert kernel_class(soft.headers[0].convolution_kernel) == "soft"
        truths = {truth["series_uid"]: path for path, truth in ground_truth(patient)}
        with np.load(str(truths[soft.uid]).replace("_lesions.json", "_labels.npz")) as saved:
            labels = saved["labels"]  # same grid for both: same positions, same labels
        soft_hu, bone_hu = load_series(soft).hu, load_series(bone).hu
        deep = ndimage.binary_erosion(labels == LABELS["white matter"], structure=np.ones((3, 5, 5)))
        assert float(bone_hu[deep].std()) == pytest.approx(SAMPLE_BONE_IMAGE_FORMATION.noise_sd, rel=0.1)
        assert float(bone_hu[deep].std()) > 3 * float(soft_hu[deep].std())
        # the thin cortical tables keep more of their 1600 HU when the kernel blurs less
        tables = labels == LABELS["cortical bone"]
        assert float(bone_hu[tables].mean()) > float(soft_hu[tables].mean()) + 50


def ground_truth(patient: Path) -> list[tuple[Path, dict]]:
    """The lesion-volume JSON files of a sample patient, with their content."""
    return [(path, json.loads(path.read_text())) for path in sorted((patient / "ground-truth").glob("*_lesions.json"))]
