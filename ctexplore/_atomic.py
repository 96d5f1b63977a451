"""Write a file atomically: it appears complete under its name or not at all.

Every writer in ctexplore (arrays, NIfTI, sidecars, the batch manifest) goes
through `atomic_target`: a uniquely named temporary file in the target's folder
(so two writers never collide) is renamed over the target when writing succeeds.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_target"]


def _file_mode() -> int:
    """Permissions a plain ``open(path, "w")`` would give: 0o666 minus the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask



@contextmanager
def atomic_target(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` when the block succeeds."""
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a folder; give a file name to write")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"folder {target.parent} does not exist; create it first")
    suffix = "".join(target.suffixes[-2:]) if target.name.endswith(".gz") else target.suffix
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=suffix)
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        os.chmod(temporary_path, _file_mode())  # mkstemp makes 0600; outputs are shared like any file
        os.replace(temporary_path, target)
    finally:
        temporary_path.unlink(missing_ok=True)
