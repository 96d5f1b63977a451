"""Shared fixtures: the real scanner data beside the project, and phantom series."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ct_data() -> Path:
    """``../shared/data/ct`` as named by CTEXPLORE_TEST_DATA; skips where it is absent."""
    value = os.environ.get("CTEXPLORE_TEST_DATA")
    if not value:
        pytest.skip("CTEXPLORE_TEST_DATA is not set: real scanner data not available")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"CTEXPLORE_TEST_DATA={value} is not a folder")
    return path
