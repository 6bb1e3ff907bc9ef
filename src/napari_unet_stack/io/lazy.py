"""`as_dask`: an image as a dask array whose tasks open the file by its path.

Each process keeps a few files open (the most recently used), so the tasks of one array
do not reopen the file for every chunk; a file changed on disk is reopened.
"""

from __future__ import annotations

import os
import threading
import uuid

import numpy as np

from .formats import stem_of
from .image import ImageData
from .read import read_image

__all__ = ["as_dask"]

_READERS: dict[tuple, ImageData] = {}
_READERS_LOCK = threading.Lock()
_MAX_READERS = 16  # open files kept per process


def _cached_reader(path: str, series: int, level: int) -> ImageData:
    stat = os.stat(path)
    key = (os.path.abspath(path), series, level, stat.st_mtime_ns, stat.st_size)
    with _READERS_LOCK:
        image = _READERS.pop(key, None)
        if image is None:
            for old in [k for k in _READERS if k[:3] == key[:3]]:
                _READERS.pop(old).close()
            image = read_image(path, series=series, level=level)
        _READERS[key] = image  # most recently used last
        while len(_READERS) > _MAX_READERS:
            _READERS.pop(next(iter(_READERS))).close()
        return image


def _read_block(path: str, series: int, level: int, block_info=None):
    location = block_info[None]["array-location"]
    image = _cached_reader(path, series, level)
    return np.asarray(image.data[tuple(slice(a, b) for a, b in location)])


def as_dask(image: ImageData, *, slices_per_chunk: int = 1, series: int = 0, level: int = 0):
    """A dask array of ``image`` with one chunk per ``slices_per_chunk`` slices of the first
    axis (the rest of each chunk whole, up to the last two axes).

    Each task opens the file by its path (once per process, cached), so the array can be
    computed by dask.distributed workers that share the file system; nothing of the
    file's content travels in the task graph.
    """
    import dask.array as da

    if image.path is None:
        raise ValueError("as_dask needs an ImageData read from a file")
    if slices_per_chunk < 1:
        raise ValueError(f"`slices_per_chunk` must be >= 1, got {slices_per_chunk}")
    shape = image.shape
    if len(shape) <= 2:
        chunks = tuple((n,) for n in shape)
    else:
        first = _split(shape[0], slices_per_chunk)
        chunks = (first, *((n,) for n in shape[1:]))
    return da.map_blocks(
        _read_block, os.path.abspath(image.path), series, level, chunks=chunks, dtype=image.dtype,
        meta=np.empty((0,) * len(shape), image.dtype),
        name=f"read-{stem_of(image.path)}-{uuid.uuid4().hex[:8]}",
    )


def _split(n: int, step: int) -> tuple[int, ...]:
    full, rest = divmod(n, step)
    return (step,) * full + ((rest,) if rest else ())
