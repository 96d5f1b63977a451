"""The ``ctexplore`` command line: exit statuses, summary line, options reaching the pipeline."""

from __future__ import annotations

import csv
import re
import subprocess
import sys

import pytest
from batch_data import write_dataset

from ctexplore.cli import main
from ctexplore.export import load_npz

SUMMARY = re.compile(r"^(\d+) ok, (\d+) skipped, (\d+) failed", re.MULTILINE)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def clean_dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("clean"), broken=False)


def manifest(folder):
    with open(folder / "manifest.csv", newline="") as stream:
        return {row["series_description"]: row for row in csv.DictReader(stream)}


def test_python_m_ctexplore_exits_1_and_summarises_when_a_series_fails(dataset, tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "ctexplore",
            "preprocess",
            str(dataset.root),
            str(tmp_path / "out"),
            "--spacing",
            "4",
            "--no-progress",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 1, completed.stderr
    assert SUMMARY.search(completed.stdout).groups() == ("2", "2", "1")
    assert dataset.truncated_file.name in completed.stderr  # the failure is named, not only counted


def test_all_ok_exits_0(clean_dataset, tmp_path, capsys):
    assert main(["preprocess", str(clean_dataset.root), str(tmp_path), "--spacing", "4", "--no-progress"]) == 0
    assert SUMMARY.search(capsys.readouterr().out).groups() == ("2", "2", "0")


def test_options_reach_the_output_file(clean_dataset, tmp_path):
    status = main(
        [
            "preprocess",
            str(clean_dataset.root),
            str(tmp_path),
            "--shape",
            "8",
            "16",
            "16",
            "--window",
            "brain",
            "subdural",
            "--rule",
            "description:thin",
            "--no-progress",
            "--workers",
            "1",
        ]
    )
    assert status == 0
    rows = manifest(tmp_path)
    assert rows["CT TILT"]["status"] == "skipped"
    volume, extras = load_npz(tmp_path / rows["CT THIN"]["output"])
    assert volume.shape == (8, 16, 16) and extras["processed"].shape == (2, 8, 16, 16)


def test_rerun_reports_already_done(clean_dataset, tmp_path, capsys):
    arguments = ["preprocess", str(clean_dataset.root), str(tmp_path), "--spacing", "4", "--no-progress"]
    main(arguments)
    capsys.readouterr()
    assert main(arguments) == 0
    assert "(2 already done" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra",
    [
        ["--rule", "largest"],
        ["--spacing", "1", "2"],
        ["--window", "purple"],
        ["--spacing", "1", "--shape", "1", "2", "3"],
    ],
)
def test_usage_errors_exit_2_without_writing(clean_dataset, tmp_path, capsys, extra):
    out = tmp_path / "out"
    assert main(["preprocess", str(clean_dataset.root), str(out), "--no-progress", *extra]) == 2
    assert "error" in capsys.readouterr().err
    assert not out.exists()


def test_output_inside_input_exits_2(clean_dataset, capsys):
    assert main(["preprocess", str(clean_dataset.root), str(clean_dataset.root / "out"), "--no-progress"]) == 2
    assert "inside the input" in capsys.readouterr().err


def test_missing_input_exits_2(tmp_path, capsys):
    assert main(["preprocess", str(tmp_path / "nowhere"), str(tmp_path / "out"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_scan_prints_series_and_skipped_files(dataset, capsys):
    assert main(["scan", str(dataset.root)]) == 0
    out = capsys.readouterr().out
    assert "CT THIN" in out and "CT TILT" in out
    assert "README.txt" in out and "\n1 file skipped:" in out


def test_sample_writes_a_data_set_that_preprocesses(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "data"), "--patients", "1"]) == 0
    assert (tmp_path / "data" / "CQ500-CT-0" / "Unknown Study").is_dir()
    assert main(["preprocess", str(tmp_path / "data"), str(tmp_path / "out"), "--spacing", "6", "--no-progress"]) == 0
    assert SUMMARY.search(capsys.readouterr().out).groups() == ("1", "1", "0")


def test_folder_without_ct_series_exits_1_and_says_so(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("no images here\n")
    assert main(["preprocess", str(tmp_path / "data"), str(tmp_path / "out"), "--no-progress"]) == 1
    assert "no CT series found" in capsys.readouterr().err


def test_unwritable_output_exits_2_with_the_reason(clean_dataset, tmp_path, capsys):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert main(["preprocess", str(clean_dataset.root), str(blocked / "out"), "--no-progress"]) == 2
    assert "a-file" in capsys.readouterr().err


def test_hu_dtype_float32_keeps_interpolated_values(clean_dataset, tmp_path):
    assert (
        main(
            [
                "preprocess",
                str(clean_dataset.root),
                str(tmp_path),
                "--spacing",
                "4",
                "--hu-dtype",
                "float32",
                "--no-progress",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    volume, extras = load_npz(tmp_path / manifest(tmp_path)["CT THIN"]["output"])
    assert volume.hu.dtype == "float32" and extras["provenance"]["options"]["pipeline"]["hu_dtype"] == "float32"


def test_preprocess_help_states_exit_statuses_and_resume(capsys):
    assert main(["preprocess", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit status: 0 all done, 1 a series failed" in text and "already done" in text
    assert "--hu-dtype {int16,float32}" in text


# ---- newcomer traps (issue #12 item 12) ----------------------------------------------------------


def test_version_prints_the_package_version(capsys):
    import ctexplore

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ctexplore {ctexplore.__version__}"


def test_an_existing_file_as_output_gets_a_clear_message(clean_dataset, tmp_path, capsys):
    target = tmp_path / "out.npz"
    target.write_text("mine")
    assert main(["preprocess", str(clean_dataset.root), str(target), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"OUTPUT {target} is an existing file, not a folder" in err and "Errno" not in err
    assert target.read_text() == "mine"


def test_an_existing_file_as_sample_dest_gets_a_clear_message(tmp_path, capsys):
    target = tmp_path / "data"
    target.write_text("mine")
    assert main(["sample", str(target), "--patients", "1"]) == 2
    err = capsys.readouterr().err
    assert "DEST" in err and "is an existing file, not a folder" in err and "Errno" not in err


def test_a_folder_as_scan_table_file_gets_a_clear_message(dataset, tmp_path, capsys):
    assert main(["scan", str(dataset.root), "--csv", str(tmp_path)]) == 2
    assert f"--csv {tmp_path} is an existing folder" in capsys.readouterr().err


def test_failure_messages_name_the_flag_not_the_python_argument(tmp_path, capsys):
    from ctexplore.phantom import write_series

    write_series(
        tmp_path / "data" / "P1" / "CT UNEVEN",
        n_slices=6,
        matrix=32,
        slice_positions=[0.0, 5.0, 10.0, 20.0, 25.0, 30.0],
        patient_id="P1",
        series_description="CT UNEVEN",
    )
    arguments = ["preprocess", str(tmp_path / "data"), str(tmp_path / "out"), "--spacing", "4", "--no-progress"]
    assert main([*arguments, "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "use --on-uneven resample" in err, err
    assert "on_uneven=" not in err
    assert main([*arguments, "--workers", "1", "--on-uneven", "resample"]) == 0  # the advice works


def test_scan_of_an_empty_folder_exits_1_with_a_hint(tmp_path, capsys):
    assert main(["scan", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no image series found" in err and "no files at all" in err and "sub-folders are searched" in err


def test_scan_of_a_folder_without_images_exits_1_and_counts_in_good_grammar(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no images here\n")
    assert main(["scan", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "1 file skipped:" in captured.out and "1 files" not in captured.out
    assert "(1 file, none a DICOM image)" in captured.err


def test_workers_run_from_the_folder_holding_a_clone_named_ctexplore(clean_dataset, tmp_path):
    """There the clone shadows the installed package as a namespace package; workers used to fail with
    ``ImportError: cannot import name '__version__' from 'ctexplore' (unknown location)``."""
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "ctexplore").symlink_to(root)
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    probe = subprocess.run(
        [sys.executable, "-c", "import ctexplore.cli; print(ctexplore.cli.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
    )
    if probe.returncode or not Path(probe.stdout.strip()).resolve().is_relative_to(root):
        pytest.skip(f"this checkout is not the installed ctexplore ({probe.stdout.strip() or probe.stderr[-200:]})")
    completed = subprocess.run(
        [sys.executable, "-m", "ctexplore", "preprocess", str(clean_dataset.root), "out", "--spacing", "4"]
        + ["--workers", "2", "--no-progress"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert SUMMARY.search(completed.stdout).groups() == ("2", "2", "0")
