"""The project's own files agree: pyproject.toml and environment.yml name the same dependencies."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge splits dask[distributed] into two packages.
CONDA_EXTRA_NAMES = {"distributed", "pip", "python"}


def _name_and_spec(requirement: str) -> tuple[str, str]:
    match = re.match(r"\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)", requirement)
    assert match, requirement
    return match.group(1).lower().replace("_", "-"), match.group(3).replace(" ", "")


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements.extend(extra)
    return dict(_name_and_spec(r) for r in requirements)


def _conda_requirements() -> dict[str, str]:
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert environment["channels"] == ["conda-forge"]
    return dict(_name_and_spec(r) for r in environment["dependencies"] if isinstance(r, str))


def test_environment_yml_and_pyproject_name_the_same_packages_and_bounds():
    pip_side = _pyproject_requirements()
    conda_side = {k: v for k, v in _conda_requirements().items() if k not in CONDA_EXTRA_NAMES}
    assert set(conda_side) == set(pip_side), (
        f"only in pyproject.toml: {sorted(set(pip_side) - set(conda_side))}; "
        f"only in environment.yml: {sorted(set(conda_side) - set(pip_side))}"
    )
    for name, spec in pip_side.items():
        assert conda_side[name] == spec, f"{name}: pyproject says {spec!r}, environment.yml {conda_side[name]!r}"


def test_import_ctexplore_loads_no_heavy_module():
    code = (
        "import sys, ctexplore; "
        "heavy = [m for m in ('matplotlib', 'scipy', 'ipywidgets', 'pydicom', 'pylibjpeg', 'gdcm', 'nibabel') "
        "if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert output == ""


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = "python -m pytest"
    assert command in ci.splitlines()[-1]
    assert command in readme
