"""Hardening: hostile or damaged input gives our errors, never an abort, hang or wrong data."""

from __future__ import annotations

import subprocess
import sys

import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless

from ctexplore.errors import DecodeError
from ctexplore.phantom import write_series
from ctexplore.reader import load_series


def _write_or_skip(folder, syntax):
    try:
        return write_series(folder, n_slices=2, matrix=48, transfer_syntax=syntax)
    except (NotImplementedError, ValueError) as error:
        pytest.skip(f"phantom writer cannot encode {syntax.name}: {error}")


@pytest.mark.parametrize("syntax", [JPEGLSLossless, JPEG2000Lossless])
def test_rows_larger_than_encoded_frame_is_our_error_not_an_abort(tmp_path, syntax):
    written = _write_or_skip(tmp_path / "s", syntax)
    for path in written.files:
        dataset = pydicom.dcmread(path)
        dataset.Rows = 65
        dataset.save_as(path)
    # In a child process: before the check, GDCM aborted the interpreter (exit 134).
    code = (
        "import sys\nfrom ctexplore.reader import load_series\nfrom ctexplore.errors import DecodeError\n"
        f"try:\n    load_series({str(tmp_path / 's')!r})\nexcept DecodeError as e:\n    print(e); sys.exit(3)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert "(0028,0010) Rows" in result.stdout and "48 x 48" in result.stdout
    with pytest.raises(DecodeError, match=r"is 48 x 48 pixels"):
        load_series(tmp_path / "s")
