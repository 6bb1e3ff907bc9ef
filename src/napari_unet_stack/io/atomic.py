"""Atomic writes: outputs are made under a hidden temporary name beside the target and
renamed into place when complete, so a failed or interrupted write leaves no partial file
or zarr folder, and an existing output is replaced only by a complete new one.

Temporary names are ``.<name>.<tag>-<12 hex digits>`` in the target's folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["check_target", "remove", "replace", "temp_name", "write_atomically"]


def temp_name(path: Path, tag: str = "tmp") -> Path:
    """A new hidden name beside ``path``: ``.<name>.<tag>-<random>``."""
    return path.parent / f".{path.name}.{tag}-{uuid.uuid4().hex[:12]}"


def check_target(path: Path, overwrite: bool) -> None:
    """Refuse a write to ``path`` before any work.

    Raises
    ------
    FileNotFoundError
        ``path``'s folder does not exist.
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    """
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists (pass overwrite=True / --overwrite to replace it)")


def remove(path: Path) -> None:
    """Delete the file, link or folder ``path``; nothing there is no error."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def replace(tmp: Path, path: Path) -> None:
    """Move the finished ``tmp`` to ``path``; an existing ``path`` is replaced atomically for
    files, and for folders moved aside first and put back if the move fails."""
    if not os.path.lexists(path) or (tmp.is_file() and path.is_file()):
        os.replace(tmp, path)
        return
    old = temp_name(path, "old")
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    remove(old)


def write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` for a hidden temporary file beside ``path``, flush it to disk,
    then rename it into place: ``path`` is either the old file or the complete new one.

    ``write`` creates the file itself, so it gets the user's usual permissions (umask).
    The temporary file is removed on any error, Ctrl-C included.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
    tmp = temp_name(path)
    try:
        write(str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        remove(tmp)
        raise
