"""Pickle safety: ``torch.load(weights_only=True)`` first, full unpickling only with ``trust``.

``weights_only`` refuses to build anything but tensors and plain containers (plus
``argparse.Namespace`` and numpy scalars, which the reference codes store). A file that
needs more is refused with `UnsafeCheckpointError` before any of its code runs, naming
what it would call or build; ``trust=True`` lifts that, for files from a trusted source.
"""

from __future__ import annotations

import argparse
import pickle
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import UnsafeCheckpointError, cannot_load, error_summary

__all__ = [
    "load_pickle",
    "numpy_scalar_globals",
    "offending_global",
    "pickle_globals",
    "scanned_offender",
]

_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")
_UNSAFE_HINTS = ("Can only create new object", "Can only build", "reduce for unrecognized function")
#: what a damaged or unrelated file makes torch.load raise
_UNPICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    RuntimeError,
    KeyError,
    IndexError,
    ValueError,
    TypeError,
    AssertionError,
    OverflowError,
    MemoryError,
    zipfile.BadZipFile,
)


def numpy_scalar_globals() -> list:
    """What numpy scalars need to unpickle (no code runs: a dtype and the value's bytes)."""
    core = getattr(np, "_core", None) or np.core
    dtypes = [type(np.dtype(t)) for t in "?bBhHiIlLqQefdgFDG"]
    return [core.multiarray.scalar, np.dtype, *dtypes]


def offending_global(message: str) -> str | None:
    """What a ``weights_only`` refusal says the file would call or build; None if it is
    not such a refusal (the file is damaged instead)."""
    match = _GLOBAL_RE.search(message)
    if match:
        return match.group(1)
    for hint in _UNSAFE_HINTS:
        if hint in message:
            return message.splitlines()[-1].strip() if "\n" in message else message.strip()
    return None


#: globals a torch.save pickle names that build data, not behaviour (what the scan allows)
_DATA_GLOBALS = {
    "collections.OrderedDict",
    "argparse.Namespace",
    "_codecs.encode",
    "torch.Size",
    "torch.device",
    "builtins.set",
    "builtins.frozenset",
    "builtins.bytearray",
    "builtins.complex",
}
_STRING_OPS = {
    "UNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
}


def _is_data_global(name: str) -> bool:
    module, _, attr = name.rpartition(".")
    if name in _DATA_GLOBALS or name.startswith("torch._utils._rebuild_"):
        return True
    if module == "torch" and (
        attr.endswith("Storage") or isinstance(getattr(torch, attr, None), torch.dtype)
    ):
        return True
    if module == "numpy.dtypes":
        return True
    return module.startswith("numpy") and attr in ("scalar", "dtype", "_reconstruct", "ndarray")


def pickle_globals(stream) -> list[str]:
    """The ``module.name`` globals a pickle (or several in a row, as torch's legacy format
    writes) imports, read off its opcodes by `pickletools` (nothing is unpickled); stops
    at the first bytes that are not a pickle."""
    found: list[str] = []
    for _ in range(8):
        memo: dict = {}
        pushed: list = []
        try:
            for op, arg, _pos in pickletools.genops(stream):
                kind = op.name
                if kind in ("GLOBAL", "INST"):
                    found.append(str(arg).replace(" ", "."))
                elif kind == "STACK_GLOBAL":
                    parts = pushed[-2:]
                    ok = len(parts) == 2 and all(isinstance(p, str) for p in parts)
                    found.append(".".join(parts) if ok else "<a computed global>")
                elif kind == "MEMOIZE":
                    memo[len(memo)] = pushed[-1] if pushed else None
                elif kind in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = pushed[-1] if pushed else None
                elif kind in ("GET", "BINGET", "LONG_BINGET"):
                    pushed.append(memo.get(arg))
                else:
                    pushed.append(arg if kind in _STRING_OPS else None)
        except (ValueError, EOFError, KeyError, IndexError, TypeError):
            break
    return found


def scanned_offender(path: Path) -> str | None:
    """The first global of the file's pickle (a raw pickle, or ``data.pkl`` in a zip
    archive) that is not plain data; None when all are or the file cannot be scanned."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    return None
                with archive.open(name) as stream:
                    found = pickle_globals(stream)
        else:
            with open(path, "rb") as stream:
                found = pickle_globals(stream)
    except (OSError, zipfile.BadZipFile):
        return None
    return next((name for name in found if not _is_data_global(name)), None)


def _unreadable(path: Path, err: BaseException):
    return cannot_load(path, f"not a readable checkpoint ({error_summary(err)})")


def load_pickle(path: Path, trust: bool) -> Any:
    """``torch.load`` of ``path`` on the CPU, safely unless ``trust``.

    Raises `UnsafeCheckpointError` (nothing was run) when the file needs full unpickling
    and ``trust`` is False, `CheckpointError` for files torch cannot read; permission and
    missing-file errors pass through.
    """
    try:
        with torch.serialization.safe_globals([argparse.Namespace, *numpy_scalar_globals()]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's safe unpickler reads protocol 2; newer ones fail on an opcode, so scan them
        offending = offending_global(str(err)) or scanned_offender(path)
        if offending is None:
            raise _unreadable(path, err) from err
        if not trust:
            raise UnsafeCheckpointError(
                f"refusing to load {str(path)!r}: unpickling it would call or build `{offending}`, which "
                f"can run arbitrary code. Nothing from the file was executed. Pass trust=True to "
                f"load_model only if you trust the file and where it came from."
            ) from err
    except _UNPICKLE_ERRORS as err:
        raise _unreadable(path, err) from err
    except OSError as err:  # torch's zip reader reports some truncations as EINVAL
        if isinstance(err, (PermissionError, FileNotFoundError)):
            raise
        raise _unreadable(path, err) from err
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (AttributeError, ImportError) as err:
        raise cannot_load(
            path,
            f"it pickles a class that cannot be imported here ({error_summary(err)}); import or define "
            f"that class before loading, or save its state_dict instead",
        ) from err
    except _UNPICKLE_ERRORS as err:
        raise _unreadable(path, err) from err
