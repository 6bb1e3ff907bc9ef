"""NumPy ``.npy``: read memory-mapped, written slice by slice (no axes or pixel sizes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .image import ImageData

__all__ = ["read_npy", "write_npy"]


def read_npy(path: Path) -> ImageData:
    """``path`` memory-mapped, read-only (pickled object arrays are refused)."""
    if path.is_dir():
        raise ValueError("it is a folder")
    return ImageData(np.load(path, mmap_mode="r", allow_pickle=False), format="npy")


def write_npy(path: Path, src) -> None:
    """Copy the array ``src`` (anything indexable by its first axis) to ``path``, slice by slice."""
    shape = tuple(int(s) for s in src.shape)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(src.dtype), shape=shape)
    try:
        for index in np.ndindex(*shape[:1]):
            mm[index] = np.asarray(src[index])
        mm.flush()
    finally:
        del mm
