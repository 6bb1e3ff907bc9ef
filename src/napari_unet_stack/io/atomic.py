"""Atomic writes: outputs are made under a hidden temporary name beside the target and
renamed into place when complete, so a failed or interrupted write leaves no partial file
or zarr folder, and an existing output is replaced only by a complete new one.

Without overwriting, the final move is itself exclusive (`place`): an output that
appeared while this one was being written (another run writing the same name) is never
replaced, whatever was checked before the work started.

Temporary names are ``.<name>.<tag>-<12 hex digits>`` in the target's folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import os
import shutil
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["check_target", "check_writable", "place", "remove", "rename_noreplace", "replace", "temp_name", "write_atomically"]

#: renameat2's "fail if the target exists" flag and "relative to the working folder" fd (Linux)
_RENAME_NOREPLACE, _AT_FDCWD = 1, -100
#: errno values meaning "this kernel or file system cannot rename without replacing"
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, getattr(errno, "ENOTSUP", errno.EINVAL),
                getattr(errno, "EOPNOTSUPP", errno.EINVAL)}


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


def check_writable(path: Path) -> None:
    """Refuse a write to ``path`` whose folder takes no new file (permissions, a read-only
    file system), found by creating and removing a hidden file there, before any work.

    Raises
    ------
    PermissionError
        The folder takes no new file (the message names it and the system's reason).
    """
    probe = temp_name(Path(path), "probe")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as err:
        raise PermissionError(
            f"cannot write {str(path)!r}: folder {str(Path(path).parent)!r} is not writable ({err.strerror})"
        ) from err
    os.unlink(probe)


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


@functools.cache
def _renameat2():
    """libc's ``renameat2`` (Linux, glibc >= 2.28), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        func = libc.renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


def rename_noreplace(src: Path, dst: Path) -> bool:
    """Rename ``src`` to ``dst`` in one step that fails if ``dst`` exists (renameat2 with
    ``RENAME_NOREPLACE``); False where the system or file system cannot (nothing moved).

    Raises
    ------
    FileExistsError
        ``dst`` exists.
    """
    func = _renameat2()
    if func is None:
        return False
    if func(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(src), None, str(dst))


def _move_exclusively(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to the free name ``path``; FileExistsError (errno EEXIST or ENOTEMPTY
    from the system) if something is there at the moment of the move."""
    if rename_noreplace(tmp, path):
        return
    if os.path.lexists(path):
        raise FileExistsError(errno.EEXIST, "exists", str(path))
    if tmp.is_dir() and not tmp.is_symlink():
        os.rename(tmp, path)  # refuses an existing non-empty folder (and, on Windows, anything)
        return
    try:
        os.link(tmp, path)  # refuses any existing name
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system: the check above is the last word
        os.rename(tmp, path)
    else:
        os.unlink(tmp)


def place(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``path``: with ``overwrite`` as `replace` does, without
    it in one exclusive step, so an output that appeared meanwhile is kept.

    Raises
    ------
    FileExistsError
        ``overwrite`` is False and ``path`` exists now (``tmp`` is left for the caller to
        remove).
    """
    if overwrite:
        replace(tmp, path)
        return
    try:
        _move_exclusively(tmp, path)
    except OSError as err:
        if not isinstance(err, FileExistsError) and not (
                err.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR)
                and os.path.lexists(path)):
            raise
        raise FileExistsError(
            f"{str(path)!r} appeared while this output was being written (another run?); it was not "
            f"replaced: pass overwrite=True / --overwrite to replace it"
        ) from None


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
