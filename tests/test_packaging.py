"""The project's own files agree: pyproject.toml, environment.yml, the README and CI name the same things."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
# PyPI name -> conda-forge name, where they differ
CONDA_FORGE_NAMES = {"python-gdcm": "gdcm", "playwright": "playwright-python", "simpleitk": "simpleitk"}
# conda-forge splits dask[distributed] into two packages
CONDA_EXTRAS = {"dask": ["distributed"]}
# not on conda-forge: installed by the environment's pip section
PIP_ONLY = {"pyjpegls"}
# optional extras an environment for the tutorials and tests leaves out on purpose
LEFT_OUT_OF_ENVIRONMENT = {"pylibjpeg-libjpeg"}  # GPL-3.0; gdcm and imagecodecs decode the same syntaxes


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements(texts) -> dict[str, Requirement]:
    requirements = [Requirement(text) for text in texts]
    return {requirement.name.lower().replace("_", "-"): requirement for requirement in requirements}


def _pip_side() -> dict[str, Requirement]:
    project = _pyproject()["project"]
    texts = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        texts.extend(extra)
    return _requirements(texts)


def _environment() -> dict:
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert environment["channels"] == ["conda-forge"]
    return environment


def _conda_side() -> tuple[dict[str, SpecifierSet], dict[str, Requirement]]:
    """conda-forge packages (name -> bounds) and the pip section's requirements."""
    conda: dict[str, SpecifierSet] = {}
    pip: dict[str, Requirement] = {}
    for entry in _environment()["dependencies"]:
        if isinstance(entry, dict):
            pip.update(_requirements(entry["pip"]))
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", entry)
        assert match, entry
        conda[match.group(1).lower()] = SpecifierSet(match.group(2).replace(" ", ""))
    return conda, pip


def test_environment_yml_names_every_pyproject_dependency_by_its_conda_forge_name_with_the_same_bounds():
    conda, pip = _conda_side()
    expected_conda: dict[str, SpecifierSet] = {}
    for name, requirement in _pip_side().items():
        if name in LEFT_OUT_OF_ENVIRONMENT:
            continue
        if name in PIP_ONLY:
            assert name in pip and pip[name].specifier == requirement.specifier, f"{name} belongs in the pip section"
            continue
        expected_conda[CONDA_FORGE_NAMES.get(name, name)] = requirement.specifier
        for extra in CONDA_EXTRAS.get(name, []):
            expected_conda[extra] = requirement.specifier
    expected_conda["python"] = SpecifierSet(_pyproject()["project"]["requires-python"])
    conda.pop("pip")
    assert set(conda) == set(expected_conda), (
        f"missing from environment.yml: {sorted(set(expected_conda) - set(conda))}; "
        f"not in pyproject.toml: {sorted(set(conda) - set(expected_conda))}"
    )
    for name, specifier in expected_conda.items():
        assert conda[name] == specifier, f"{name}: pyproject says {specifier}, environment.yml {conda[name]}"
    assert set(pip) == PIP_ONLY


def test_environment_yml_uses_no_pypi_only_name():
    conda, _ = _conda_side()
    wrong = {name for name in conda if name in CONDA_FORGE_NAMES and CONDA_FORGE_NAMES[name] != name}
    assert not wrong | (set(conda) & PIP_ONLY), f"PyPI names on conda-forge: {sorted(wrong | (set(conda) & PIP_ONLY))}"


def test_every_tool_targets_the_declared_python():
    config = _pyproject()
    minimum = re.fullmatch(r">=\s*(3\.\d+)", config["project"]["requires-python"]).group(1)
    assert sys.version_info >= tuple(map(int, minimum.split(".")))
    assert config["tool"]["ruff"]["target-version"] == "py" + minimum.replace(".", "")
    assert config["tool"]["mypy"]["python_version"] == minimum
    # the suite itself needs what it declares: tomllib (this module's import) is 3.11+
    assert tuple(map(int, minimum.split("."))) >= (3, 11)


def test_the_gpl_decoder_is_an_extra_not_a_requirement():
    project = _pyproject()["project"]
    assert "pylibjpeg-libjpeg" not in _requirements(project["dependencies"])
    assert "pylibjpeg-libjpeg" in _requirements(project["optional-dependencies"]["libjpeg"])
    for extra in ("notebooks", "dask", "docs"):
        assert "pylibjpeg-libjpeg" not in _requirements(project["optional-dependencies"][extra])


_DECODE_WITHOUT_LIBJPEG = """
import sys, importlib.metadata as metadata
from pathlib import Path
# as if pylibjpeg-libjpeg were not installed: its module cannot be imported, its plugin entry points are gone
sys.modules["libjpeg"] = None
_entry_points = metadata.entry_points
def entry_points(**selection):
    return metadata.EntryPoints(ep for ep in _entry_points(**selection) if not ep.value.startswith("libjpeg"))
metadata.entry_points = entry_points
import numpy as np
from pylibjpeg.utils import get_pixel_data_decoders
assert not any("libjpeg" in plugins for plugins in get_pixel_data_decoders(version=2).values())
import ctexplore
out = Path(sys.argv[1])
for number, path in enumerate(sys.argv[2:]):
    np.save(out / f"{number}.npy", ctexplore.load_series(path).hu)
"""


def test_every_transfer_syntax_decodes_without_the_gpl_decoder(tmp_path):
    """The permissive plugins decode what libjpeg decodes: bit for bit, but for 12-bit JPEG Extended's inverse DCT.

    ISO/IEC 10918-2 lets two conforming DCT decoders differ by one stored value per pixel; libjpeg-turbo
    (imagecodecs) and pylibjpeg-libjpeg do, on a few percent of the pixels. Everything else is lossless or
    decoded by the same library family, and must match exactly.
    """
    import numpy as np
    import pydicom
    from pydicom.uid import JPEG2000Lossless, JPEGExtended12Bit, JPEGLSLossless, RLELossless

    from ctexplore import load_series
    from ctexplore.phantom import write_series

    series = []
    for syntax in (JPEGLSLossless, JPEG2000Lossless, RLELossless):
        write_series(tmp_path / syntax.name, n_slices=1, matrix=32, transfer_syntax=syntax)
        series.append(tmp_path / syntax.name)
    # real files of every JPEG process pydicom decodes (the phantom writer cannot encode JPEG 1, 2-4 or 14)
    real = Path(os.environ.get("CTEXPLORE_TEST_DATA", "/nonexistent")) / "single-files" / "transfer-syntaxes"
    for uid in ("4.50", "4.51", "4.57", "4.70", "4.80", "4.81", "4.90", "4.91", "5"):
        series.extend(real.glob(f"CTImage.dcm_*1.2.840.10008.1.2.{uid}.dcm"))
    series.extend(real.glob("CT0012*.51.dcm"))  # 12-bit JPEG Extended, 2 frames in fragments, no offset table
    decoded = tmp_path / "decoded"
    decoded.mkdir()
    run = subprocess.run(
        [sys.executable, "-c", _DECODE_WITHOUT_LIBJPEG, str(decoded), *map(str, series)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert len(list(decoded.iterdir())) == len(series)
    for number, path in enumerate(series):
        without_libjpeg = np.load(decoded / f"{number}.npy")
        with_libjpeg = load_series(path).hu
        assert without_libjpeg.shape == with_libjpeg.shape, path.name
        header = pydicom.dcmread(next(path.iterdir()) if path.is_dir() else path, stop_before_pixels=True)
        if header.file_meta.TransferSyntaxUID == JPEGExtended12Bit:
            slope = abs(float(getattr(header, "RescaleSlope", 1)))
            stored_difference = np.rint(np.abs(without_libjpeg.astype(np.float64) - with_libjpeg) / slope)
            assert stored_difference.max() <= 1, path.name
            assert 0.9 < np.mean(stored_difference == 0), path.name
            continue
        np.testing.assert_array_equal(without_libjpeg, with_libjpeg, err_msg=path.name)


def test_import_ctexplore_loads_no_heavy_module():
    code = (
        "import sys, ctexplore; "
        "heavy = [m for m in ('matplotlib', 'scipy', 'ipywidgets', 'pydicom', 'pylibjpeg', 'gdcm', 'nibabel') "
        "if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert output == ""


def test_submodules_are_reachable_after_import_ctexplore():
    code = "import ctexplore; print(ctexplore.datasets.fetch_cq500.__name__, ctexplore.fetch.fetch_head_ct.__name__)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["fetch_cq500", "fetch_head_ct"]


def _commands(script: str) -> list[list[str]]:
    """The simple shell commands of a script or code block (split at '&&' and ';'), comments dropped."""
    commands = []
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        command: list[str] = []
        for word in [*lexer, "&&"]:
            if word in ("&&", ";", "||"):
                if command:
                    commands.append(command)
                command = []
            elif word != "--quiet":
                command.append(word)
    return commands


def test_ci_runs_the_readme_install_and_test_commands_exactly():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.DOTALL)
    readme_commands = [command for block in blocks for command in _commands(block)]
    test_step = next(i for i, command in enumerate(readme_commands) if command[:3] == ["python", "-m", "pytest"])
    install = readme_commands[test_step - 1]
    assert install[:4] == ["python", "-m", "pip", "install"]
    ci_commands = _commands((ROOT / ".ci" / "run").read_text())
    assert ci_commands[-1] == readme_commands[test_step], "CI's last command is the README's test command"
    assert install in ci_commands, f"CI does not install as the README says: {shlex.join(install)}"


def test_run_tutorials_leaves_no_temporary_folders(tmp_path):
    """A tutorial run used to leave ~12 MB of mkdtemp folders behind per run."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    environment = {**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, str(ROOT / "notebooks" / "run_tutorials.py"), "--only", "01", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out" / "01_dicom_file.html").is_file()
    assert sorted(scratch.iterdir()) == []
