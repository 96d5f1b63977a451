"""Tutorials 01-06 run top to bottom on a real head CT named by $CTEXPLORE_EXAMPLE.

The notebooks are committed executed on the built-in sample (nbval checks those
outputs); here they are executed afresh by a real kernel on the GE HiSpeed patient
scan of ``../shared/data/ct/head-ct-ge`` (tilted, uneven spacing, no ground truth),
so every cell that leans on the sample's truth must cope without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
import test_fetch
from nbclient import NotebookClient

import ctexplore
from ctexplore import datasets
from ctexplore.fetch import BASE_URL_ENV

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
REAL_STUDY_NOTEBOOKS = sorted(NOTEBOOKS.glob("0[1-6]_*.ipynb"))

pytestmark = pytest.mark.realdata
server = test_fetch.server  # the local HTTP server that serves the real GE files


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def real_study(ct_data: Path) -> Path:
    study = ct_data / "head-ct-ge"
    if not study.is_dir():
        pytest.skip(f"{study} is absent")
    return study


class TestExampleStudy:
    """`datasets.example_study`: the one place the tutorials' study is chosen."""

    def test_unset_is_the_built_in_sample_with_its_truth(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        monkeypatch.delenv(datasets.EXAMPLE_ENV, raising=False)
        monkeypatch.delenv("CTEXPLORE_CQ500_STUDY", raising=False)
        monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path))
        study = datasets.example_study()
        assert study == tmp_path / "sample" / datasets.SAMPLE_PATIENT_ID / datasets.STUDY_FOLDER
        assert len(ctexplore.scan(study).volumes) >= 2
        assert list((study.parent / datasets.TRUTH_FOLDER).glob("*_labels.npz"))

    def test_a_folder_is_taken_as_it_is(self, real_study: Path, monkeypatch: pytest.MonkeyPatch):
        monkeypatch.setenv(datasets.EXAMPLE_ENV, str(real_study))
        assert datasets.example_study() == real_study
        assert ctexplore.example_study(real_study) == real_study

    def test_a_fetcher_key_downloads_the_real_study(
        self, server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real_study: Path
    ):
        httpd, _, url = server
        monkeypatch.setenv(datasets.EXAMPLE_ENV, "ge-hispeed-head")
        monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "cache"))
        monkeypatch.setenv(BASE_URL_ENV, url)
        study = datasets.example_study()
        assert study.is_relative_to(tmp_path / "cache")
        assert sorted(p.name for p in study.glob("*.dcm")) == sorted(p.name for p in real_study.glob("*.dcm"))
        assert len(httpd.paths) == 28

    def test_a_wrong_name_says_what_to_set(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
        monkeypatch.setenv(datasets.EXAMPLE_ENV, str(tmp_path / "no-such-study"))
        with pytest.raises(FileNotFoundError, match="no-such-study.*ge-hispeed-head.*CTEXPLORE_EXAMPLE"):
            datasets.example_study()


def test_tutorials_01_to_06_are_found() -> None:
    assert [p.name[:2] for p in REAL_STUDY_NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("notebook", REAL_STUDY_NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_real_study(
    notebook: Path, real_study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the kernel inherits this environment: the study and this checkout's package (05 also writes the
    # sample data set, into the user cache that nbval's run of the committed notebooks fills anyway)
    monkeypatch.setenv(datasets.EXAMPLE_ENV, str(real_study))
    checkout = str(Path(ctexplore.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [checkout, os.environ.get("PYTHONPATH")])))
    before = _listing(real_study)

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the failing cell

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "correct" in text, "the hidden exercise checks must pass on the real study too"
    assert _listing(real_study) == before, "a tutorial wrote into the study folder"
