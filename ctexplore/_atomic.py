"""Write a file or a folder atomically: it appears complete under its name or not at all.

Every writer in ctexplore (arrays, NIfTI, sidecars, the batch manifest, DICOM files)
goes through `atomic_target`: a uniquely named temporary file in the target's folder
(so two writers never collide) is renamed over the target when writing succeeds.
Whole folders (the sample data, unpacked archives) go through `atomic_folder`, the
same scheme for a directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_folder", "atomic_target"]


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _file_mode() -> int:
    """Permissions a plain ``open(path, "w")`` would give: 0o666 minus the umask."""
    return 0o666 & ~_umask()


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


@contextmanager
def atomic_folder(path: str | os.PathLike[str], *, replace_existing: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; rename it to `path` when the block succeeds.

    A folder cannot be renamed over a non-empty one, so with `replace_existing` an
    existing `path` is first moved aside and deleted after the rename; without it an
    existing `path` raises FileExistsError. If another process renames the same
    folder into place first, theirs is kept.
    """
    target = Path(path)
    if target.exists() and not replace_existing:
        raise FileExistsError(f"{target} already exists; remove it or choose another folder")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"folder {target.parent} does not exist; create it first")
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial"))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; outputs are shared like any folder
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.{os.getpid()}.old")
            os.replace(target, old)
        try:
            os.replace(staging, target)
        except OSError:
            if not target.is_dir():  # another process finished the same folder first: keep theirs
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
