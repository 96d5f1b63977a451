"""The batch runner under stress, on real DICOM and real processes: fallback, dead workers, two runs, Ctrl-C."""

from __future__ import annotations

import csv
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ctexplore.batch import MANIFEST_COLUMNS, preprocess
from ctexplore.phantom import write_series
from ctexplore.pipeline import PreprocessOptions

FAST = PreprocessOptions(spacing=(4.0, 4.0, 4.0))
REPOSITORY = Path(__file__).resolve().parents[1]
SMALL = dict(n_slices=6, matrix=32, pixel_spacing=(6.0, 6.0), slice_spacing=6.0)
# Seconds of CPU a worker spends on the big series before a test stops it; the whole series takes several.
BUSY_CPU_S = 0.5
TIMEOUT_S = 180
# Slices of the big series: enough that it takes seconds however fast loading and resampling get
BIG_SLICES = 600


def read_manifest(folder: Path) -> dict[str, dict[str, str]]:
    """Manifest rows keyed by patient ID and series description."""
    with open(folder / "manifest.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert tuple(rows[0])[: len(MANIFEST_COLUMNS)] == MANIFEST_COLUMNS
    return {f"{row['patient_id']}/{row['series_description']}": row for row in rows}


def truncate(path: Path, by: int = 1000) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - by)


class TestFallback:
    @pytest.fixture(scope="class")
    def study(self, tmp_path_factory):
        """One study: a thin soft series with a truncated slice, a thin bone one, a thick soft one."""
        root = tmp_path_factory.mktemp("fallback")
        common = dict(matrix=32, pixel_spacing=(6.0, 6.0), patient_id="P1", study_uid="1.2.826.0.1.3680043.8.498.77")
        thin = write_series(
            root / "thin", n_slices=12, slice_spacing=2.5, series_number=2, series_description="THIN", **common
        )
        write_series(
            root / "bone",
            n_slices=12,
            slice_spacing=2.5,
            series_number=3,
            series_description="THIN BONE",
            convolution_kernel="H70h",
            file_prefix="B",
            **common,
        )
        write_series(
            root / "thick", n_slices=6, slice_spacing=5.0, series_number=4, series_description="THICK", **common
        )
        truncate(thin.files[5])
        return root, thin.files[5]

    def test_a_failed_choice_is_replaced_by_the_next_candidate_of_the_rule(self, study, tmp_path):
        root, broken = study
        summary = preprocess(root, tmp_path, rule="cq500", options=FAST, workers=1, progress=False)
        rows = read_manifest(tmp_path)
        thin, bone, thick = rows["P1/THIN"], rows["P1/THIN BONE"], rows["P1/THICK"]
        assert thin["status"] == "failed" and broken.name in thin["reason"] and not thin["output"]
        assert thick["status"] == "ok" and thick["reason"].startswith("replaces series 2 'THIN', which failed")
        assert (tmp_path / thick["output"]).is_file() and thick["output_shape"]
        assert bone["status"] == "skipped" and "sharp kernel" in bone["reason"]
        assert (summary.ok, summary.failed, summary.skipped) == (1, 1, 1)

    def test_a_rerun_tries_the_choice_again_and_keeps_the_replacement_done(self, study, tmp_path):
        root, _ = study
        preprocess(root, tmp_path, rule="cq500", options=FAST, workers=2, progress=False)
        summary = preprocess(root, tmp_path, rule="cq500", options=FAST, workers=2, progress=False)
        rows = read_manifest(tmp_path)
        assert rows["P1/THIN"]["status"] == "failed"
        assert rows["P1/THICK"]["status"] == "ok" and rows["P1/THICK"]["reason"].startswith("already done; replaces")
        assert summary.already_done == 1

    def test_without_another_candidate_the_failure_stands_alone(self, study, tmp_path):
        root, broken = study
        summary = preprocess(root, tmp_path, rule="description:^THIN$", options=FAST, workers=1, progress=False)
        rows = read_manifest(tmp_path)
        assert rows["P1/THIN"]["status"] == "failed" and broken.name in rows["P1/THIN"]["reason"]
        assert rows["P1/THICK"]["status"] == "skipped"
        assert (summary.ok, summary.failed) == (0, 1)


@pytest.fixture(scope="module")
def big_dataset(tmp_path_factory):
    """Patient BIG: `BIG_SLICES` full-size 512 x 512 slices (several seconds of work); S1, S2: tiny series."""
    root = tmp_path_factory.mktemp("big")
    write_series(
        root / "BIG", n_slices=BIG_SLICES, matrix=512, pixel_spacing=(0.45, 0.45), slice_spacing=0.8, patient_id="BIG"
    )
    for number in (1, 2):
        write_series(root / f"S{number}", patient_id=f"S{number}", seed=number, **SMALL)
    return root


def start_cli(source: Path, output: Path, *extra: str) -> subprocess.Popen[str]:
    """``python -m ctexplore preprocess`` as a user runs it, in its own process."""
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    command = [sys.executable, "-m", "ctexplore", "preprocess", str(source), str(output), "--no-progress", *extra]
    return subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_no_core_files
    )


def _no_core_files() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a worker stopped with SIGABRT leaves no core file here


def wait_until(condition, what: str, timeout: float = TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def busy_worker(run: subprocess.Popen[str]) -> psutil.Process | None:
    """A worker process of `run` (a child of its fork server) that has been computing for a while."""
    for process in psutil.Process(run.pid).children(recursive=True):
        try:
            parent = process.parent()
            is_worker = parent is not None and parent.pid != run.pid and "forkserver" in " ".join(parent.cmdline())
            times = process.cpu_times()
            if is_worker and times.user + times.system > BUSY_CPU_S:
                return process
        except psutil.NoSuchProcess:
            continue
    return None


def finish(run: subprocess.Popen[str]) -> tuple[int, str, str]:
    stdout, stderr = run.communicate(timeout=TIMEOUT_S)
    return run.returncode, stdout, stderr


def outputs(folder: Path, pattern: str) -> list[Path]:
    """Finished outputs (pathlib's glob also matches the hidden temporary files being written)."""
    return [p for p in folder.glob(pattern) if not p.name.startswith(".")]


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.is_file()]


class TestDeadWorker:
    @pytest.mark.parametrize(("signum", "name"), [(signal.SIGKILL, "SIGKILL"), (signal.SIGABRT, "SIGABRT")])
    def test_a_worker_killed_mid_series_costs_only_that_series(self, big_dataset, tmp_path, signum, name):
        run = start_cli(big_dataset, tmp_path, "--workers", "1")
        worker = wait_until(lambda: busy_worker(run), "a worker busy with the big series")
        worker.send_signal(signum)
        code, stdout, stderr = finish(run)
        assert code == 1, stderr  # a series failed; the run itself went to the end
        rows = read_manifest(tmp_path)
        big = rows["BIG/PHANTOM HEAD"]
        assert big["status"] == "failed" and not big["output"]
        assert f"worker process {worker.pid} died: signal {int(signum)} ({name})" in big["reason"]
        assert f"{BIG_SLICES} files in {big_dataset / 'BIG'}" in big["reason"]
        # the lone worker died: its replacement did the rest
        assert rows["S1/PHANTOM HEAD"]["status"] == rows["S2/PHANTOM HEAD"]["status"] == "ok"
        assert "2 ok, 0 skipped, 1 failed" in stdout
        assert not outputs(tmp_path, "BIG/*.npz")


class TestTwoRuns:
    def test_a_second_run_into_the_same_output_is_refused_naming_the_first(self, big_dataset, tmp_path):
        first = start_cli(big_dataset, tmp_path, "--workers", "1")
        wait_until(lambda: busy_worker(first), "the first run at work")
        second = start_cli(big_dataset, tmp_path, "--workers", "1")
        code, _, stderr = finish(second)
        assert code == 2
        assert f"output folder {tmp_path} is in use by another ctexplore preprocess run (process {first.pid}" in stderr
        code, stdout, stderr = finish(first)
        assert code == 0, stderr
        assert "3 ok, 0 skipped, 0 failed" in stdout
        assert {row["status"] for row in read_manifest(tmp_path).values()} == {"ok"}
        assert not leftovers(tmp_path)

    def test_the_lock_dies_with_its_run(self, big_dataset, tmp_path):
        first = start_cli(big_dataset, tmp_path, "--workers", "1")
        wait_until(lambda: busy_worker(first), "the first run at work")
        first.kill()
        finish(first)
        summary = preprocess(big_dataset, tmp_path, options=FAST, workers=2, progress=False)
        assert summary.ok == 3


class TestInterrupt:
    def test_ctrl_c_records_finished_series_ok_and_the_rest_not_run(self, big_dataset, tmp_path):
        run = start_cli(big_dataset, tmp_path, "--workers", "2")
        wait_until(lambda: len(outputs(tmp_path, "S*/*.npz")) == 2, "the two small outputs")
        wait_until(lambda: busy_worker(run), "the big series at work")
        helpers = psutil.Process(run.pid).children(recursive=True)
        run.send_signal(signal.SIGINT)
        code, _, stderr = finish(run)
        assert code == 130, stderr
        rows = read_manifest(tmp_path)
        assert rows["S1/PHANTOM HEAD"]["status"] == rows["S2/PHANTOM HEAD"]["status"] == "ok"
        big = rows["BIG/PHANTOM HEAD"]
        assert big["status"] == "failed" and big["reason"].startswith("not run")
        assert not leftovers(tmp_path)  # the stopped worker removed its temporary file
        _, alive = psutil.wait_procs(helpers, timeout=10)
        assert not alive  # no worker (nor the fork server) outlives its run

    def test_an_output_finished_but_not_yet_collected_at_ctrl_c_is_recorded_ok(self, big_dataset, tmp_path):
        run = start_cli(big_dataset, tmp_path, "--workers", "1")
        wait_until(lambda: busy_worker(run), "the big series at work")
        run.send_signal(signal.SIGSTOP)  # the parent sleeps while its worker finishes and answers
        try:
            wait_until(lambda: outputs(tmp_path, "BIG/*.npz"), "the big output")
            time.sleep(0.5)
            run.send_signal(signal.SIGINT)  # handled first thing on waking, before the answer is read
        finally:
            run.send_signal(signal.SIGCONT)
        code, _, stderr = finish(run)
        assert code == 130, stderr
        rows = read_manifest(tmp_path)
        big = rows["BIG/PHANTOM HEAD"]
        assert big["status"] == "ok", big["reason"]
        assert big["reason"] == "output complete; the batch stopped before its result was collected"
        assert (tmp_path / big["output"]).is_file() and big["output_shape"] == f"{round(BIG_SLICES * 0.8)}x230x230"
        assert rows["S1/PHANTOM HEAD"]["reason"].startswith("not run")


class TestResume:
    def test_a_nifti_image_left_without_its_sidecar_is_redone_not_taken_as_done(self, tmp_path):
        # what a crash between writing the image and its sidecar leaves: a new image, no sidecar
        source, out = tmp_path / "in", tmp_path / "out"
        write_series(source / "s", patient_id="P1", **SMALL)
        first = PreprocessOptions(spacing=(4.0, 4.0, 4.0), format="nifti")
        second = PreprocessOptions(spacing=(6.0, 6.0, 6.0), format="nifti")
        preprocess(source, out, options=first, workers=1, progress=False)
        preprocess(source, out, options=second, workers=1, progress=False)
        (image,) = outputs(out, "P1/*.nii.gz")
        sidecars = outputs(out, "P1/*.json")
        assert len(sidecars) == 1
        sidecars[0].unlink()
        summary = preprocess(source, out, options=first, workers=1, progress=False)
        assert summary.already_done == 0 and summary.ok == 1
        import nibabel

        assert nibabel.load(image).header.get_zooms() == pytest.approx((4.0, 4.0, 4.0))


def test_the_sample_data_sets_ground_truth_is_listed_as_skipped_files_and_the_bone_series_left_out(tmp_path):
    from ctexplore.datasets import TRUTH_FOLDER, sample_dataset

    root = sample_dataset(tmp_path / "sample", n_patients=2)
    summary = preprocess(root, tmp_path / "out", rule="cq500", options=FAST, workers=1, progress=False)

    truth_files = sorted(root.glob(f"*/{TRUTH_FOLDER}/*"))
    assert len(truth_files) == 4 + 6  # patient 0: thin and thick; patient 1 also the bone series
    with open(tmp_path / "out" / "skipped_files.csv", newline="") as stream:
        listed = {Path(row["path"]): row["reason"] for row in csv.DictReader(stream)}
    assert sorted(listed) == truth_files  # every truth file, each with its reason, and nothing else
    assert all("not a DICOM image" in reason for reason in listed.values())
    assert summary.skipped_files == [(path, listed[path]) for path, _ in summary.skipped_files]
    rows = read_manifest(tmp_path / "out")
    assert rows["CQ500-CT-1/CT BONE"]["status"] == "skipped"
    assert "sharp kernel" in rows["CQ500-CT-1/CT BONE"]["reason"]
    assert {key for key, row in rows.items() if row["status"] == "ok"} == {
        "CQ500-CT-0/CT PLAIN THIN",
        "CQ500-CT-1/CT PLAIN THIN",
    }
