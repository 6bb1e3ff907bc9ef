"""`CheckedZarr`: a zarr array whose damaged chunks are one error naming the store and chunk
(or, for a compressed TIFF read through tifffile's zarr store, the file and the page).

zarr decodes a chunk when it is read, so a corrupt chunk file shows deep inside zarr and
numcodecs (``RuntimeError: Zstd decompression error``, a Blosc error, a reshape error for a
truncated uncompressed chunk) long after the store was opened. `CheckedZarr` reads
through the array and, when a read fails, reads the chunks of the selection one by one:
the first that fails is reported as an OSError naming the store and the chunk's key
(``cannot read chunk '1.0.0' of zarr store 'a.zarr': damaged compressed data (...)``). A read
that fails for another reason (an index out of range, ...) keeps its own error.
"""

from __future__ import annotations

import itertools
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..validation import first_line

__all__ = ["CheckedZarr"]

#: what zarr and numcodecs raise for a chunk they cannot decode
_DECODE_ERRORS = (RuntimeError, ValueError, OSError, TypeError, EOFError, KeyError, zlib.error)


class CheckedZarr:
    """A read-only view of the zarr array ``array`` of the store at ``store``.

    Indexing (``data[i]``, ``data[a:b]``, ``data[...]``) and ``np.asarray`` read through the
    array; every other attribute (``shape``, ``dtype``, ``chunks``, ``attrs``, ...) is the
    array's own.

    Parameters
    ----------
    array : zarr.Array
    store : Path
        The zarr store (folder) the array belongs to, or the TIFF file, as messages name it.
    pages : tuple of int, optional
        For a TIFF: the shape of the axes before each page's (a damaged chunk is then named
        by its page number).
    """

    def __init__(self, array: Any, store: Path, pages: tuple[int, ...] | None = None) -> None:
        self.array = array
        self.store = Path(store)
        self.pages = pages

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("array", "store", "pages"):  # unpickling: not yet set
            raise AttributeError(name)
        return getattr(self.array, name)

    @property
    def ndim(self) -> int:
        return len(self.array.shape)

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.asarray(self[...])
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"CheckedZarr({self.array!r}, store={str(self.store)!r})"

    def __getitem__(self, key: Any) -> Any:
        try:
            return self.array[key]
        except _DECODE_ERRORS as err:
            damaged = self._damaged_chunk(key)
            if damaged is None:
                raise
            coords, cause = damaged
            what = "damaged compressed data" if self._compressed() else "damaged data"
            raise OSError(f"cannot read {self._where(coords)}: {what} ({first_line(cause)})") from err

    def _compressed(self) -> bool:
        """Whether the chunks are compressed (TIFF pages read through zarr always are)."""
        array = self.array
        return self.pages is not None or bool(getattr(array, "compressors", None) or getattr(array, "compressor", None))

    def _where(self, coords: tuple[int, ...]) -> str:
        """The damaged chunk as messages name it."""
        if self.pages is not None:
            try:
                page = int(np.ravel_multi_index(coords[: len(self.pages)], self.pages)) if self.pages else 0
            except ValueError:  # a series whose pages do not match its shape
                return f"a page of TIFF file {str(self.store)!r}"
            return f"page {page} of TIFF file {str(self.store)!r}"
        return f"chunk {self._chunk_key(coords)!r} of zarr store {str(self.store)!r}"

    def _damaged_chunk(self, key: Any) -> tuple[tuple[int, ...], BaseException] | None:
        """The first chunk of the selection ``key`` that cannot be read, and why; None when
        each reads (or ``key`` is not a plain selection of ints and slices)."""
        shape = tuple(int(n) for n in self.array.shape)
        chunks = tuple(int(c) for c in self.array.chunks)
        ranges = _index_ranges(key, shape)
        if ranges is None:
            return None
        per_axis = [sorted({i // c for i in r}) for r, c in zip(ranges, chunks, strict=True)]
        for coords in itertools.product(*per_axis):
            box = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(coords, chunks, shape, strict=True))
            try:
                self.array[box]
            except _DECODE_ERRORS as err:
                return coords, err
        return None

    def _chunk_key(self, coords: tuple[int, ...]) -> str:
        """The chunk's file name inside the store (``'1.0.0'``, ``'0/1/0/0'``, ``'c/1/0'``)."""
        encode = getattr(getattr(self.array, "metadata", None), "encode_chunk_key", None)
        if callable(encode):  # zarr 3
            key = str(encode(coords))
        else:  # zarr 2: the separator is in the array's .zarray
            meta_file = self.store / str(self.array.path or "") / ".zarray"
            try:
                separator = json.loads(meta_file.read_text()).get("dimension_separator") or "."
            except (OSError, ValueError):
                separator = "."
            key = separator.join(str(i) for i in coords)
        prefix = str(getattr(self.array, "path", "") or "").strip("/")
        return f"{prefix}/{key}" if prefix else key


def _index_ranges(key: Any, shape: tuple[int, ...]) -> list[range] | None:
    """The indices ``key`` (ints, slices, one Ellipsis) selects on each axis; None otherwise."""
    key = key if isinstance(key, tuple) else (key,)
    dots = [i for i, k in enumerate(key) if k is Ellipsis]
    if len(dots) > 1:
        return None
    if dots:
        at = dots[0]
        key = key[:at] + (slice(None),) * (len(shape) - len(key) + 1) + key[at + 1:]
    if len(key) > len(shape):
        return None
    key = key + (slice(None),) * (len(shape) - len(key))
    ranges = []
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, slice):
            ranges.append(range(*k.indices(n)))
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool) and -n <= k < n:
            ranges.append(range(int(k) % n, int(k) % n + 1))
        else:
            return None
    return ranges
