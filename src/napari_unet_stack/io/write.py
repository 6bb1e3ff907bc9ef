"""`create_image` and `write_image`: outputs of any supported format, written atomically.

`create_image` hands out an on-disk zarr array to write into slice by slice; TIFF and
``.npy`` outputs are converted from it at the end, one page at a time, so results larger
than memory can be written. `scratch_array` (`disk_array`) is on-disk working space beside an output
(e.g. labels decoded in place before the final dtype is known), never left behind. Every output is made under a temporary name and renamed into
place when complete (see `napari_unet_stack.io.atomic`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import atomic, npy, tiff_write, zarr_write
from .axes import clean_metadata
from .formats import output_format, stem_of

__all__ = ["create_image", "disk_array", "scratch_array", "write_image"]

_TIFF = ("tiff", "ome-tiff")


@contextlib.contextmanager
def create_image(
    path: str | os.PathLike,
    shape: Sequence[int],
    dtype: Any,
    *,
    axes: str | None = None,
    scale: Mapping[str, float] | None = None,
    units: Mapping[str, str] | None = None,
    compression: str | None = "zlib",
    chunks: Sequence[int] | None = None,
    overwrite: bool = False,
    labels: bool = False,
    name: str | None = None,
) -> Iterator[Any]:
    """Context manager: a writable on-disk zarr array that becomes ``path`` on success.

    Write into the array (slice by slice, or from dask.distributed workers that share the
    file system); when the ``with`` block ends without an exception the result is
    finalized (TIFF and ``.npy`` converted page by page, metadata written) under a
    temporary name in ``path``'s folder and renamed to ``path``. On any exception,
    including KeyboardInterrupt, everything temporary is removed and ``path`` is left as
    it was.

    Parameters
    ----------
    path : str or Path
        Destination; the format comes from the extension (see `output_format`).
    shape, dtype
        Of the array; the dtype is kept in every format.
    axes : str, optional
        Letters from ``TCZYX`` (default: ``YX`` last, then ``Z``, ``T``).
    scale, units : dict, optional
        Pixel size and unit per axis letter.
    compression : str or None
        TIFF compression (``'zlib'``, ``'zstd'``, ``'lzw'``, None); zarr outputs use the
        zarr library's default compressor unless None.
    chunks : tuple of int, optional
        zarr chunks (default: one slice, at most 4096 x 4096).
    overwrite : bool
        Replace an existing ``path`` (only once the new one is complete).
    labels : bool
        Mark the output as labels (OME-Zarr ``image-label``, a TIFF Software tag): the
        plugin's napari reader opens it as a Labels layer.
    name : str, optional
        The image's name in OME-Zarr and OME-TIFF metadata (default: ``path``'s stem).

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False, checked before the work and again, in
        one exclusive step, when the result is moved into place.
    FileNotFoundError
        ``path``'s folder does not exist.
    """
    path = Path(path)
    kind = output_format(path)
    atomic.check_target(path, overwrite)
    shape = tuple(int(s) for s in shape)
    dtype = np.dtype(dtype)
    if dtype.kind not in "uifb":
        raise TypeError(f"cannot write images of dtype {dtype}")
    axes, scale, units = clean_metadata(shape, axes, scale, units)
    if kind in _TIFF:
        tiff_write.check_compression(compression)
    chunks = tuple(chunks) if chunks is not None else zarr_write.default_chunks(shape)
    tmp = atomic.temp_name(path)
    scratch = atomic.temp_name(path, "scratch") if kind in (*_TIFF, "npy") else None
    try:
        arr = zarr_write.create_zarr(
            scratch if scratch is not None else tmp, shape, dtype, chunks,
            compress=scratch is None and compression is not None, ome=kind == "ome-zarr",
            axes=axes, scale=scale, units=units, name=name or stem_of(path), labels=labels,
        )
        yield arr
        if kind in _TIFF:
            tiff_write.write_tiff(tmp, arr, axes, scale, units, ome=kind == "ome-tiff",
                                  compression=compression, labels=labels, name=name or stem_of(path))
        elif kind == "npy":
            npy.write_npy(tmp, arr)
        atomic.place(tmp, path, overwrite)
    except BaseException:
        zarr_write.settle_zarr_io()  # before removing what those writes go to
        raise
    finally:
        if scratch is not None:
            atomic.remove(scratch)
        if os.path.lexists(tmp):
            atomic.remove(tmp)


def write_image(
    path: str | os.PathLike,
    data: Any,
    *,
    axes: str | None = None,
    scale: Mapping[str, float] | None = None,
    units: Mapping[str, str] | None = None,
    compression: str | None = "zlib",
    overwrite: bool = False,
    labels: bool = False,
    name: str | None = None,
) -> Path:
    """Write an array (numpy, memmap, zarr or dask) to ``path``, slice by slice, atomically.

    The format comes from the extension (see `napari_unet_stack.io` for the table) and
    the parameters are those of `create_image`. Returns the path written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from napari_unet_stack.io import read_image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> labels = np.zeros((3, 32, 32), np.uint16)
    >>> _ = write_image(folder / "labels.tif", labels, axes="ZYX", scale={"Z": 2.0, "Y": 0.5, "X": 0.5},
    ...                 units={"X": "um", "Y": "um", "Z": "um"})
    >>> with read_image(folder / "labels.tif") as back:
    ...     back.axes, str(back.dtype), back.scale["Z"], back.units["X"]
    ('ZYX', 'uint16', 2.0, 'micrometer')
    """
    shape = tuple(int(s) for s in data.shape)
    with create_image(path, shape, data.dtype, axes=axes, scale=scale, units=units,
                      compression=compression, overwrite=overwrite, labels=labels, name=name) as out:
        if len(shape) <= 2:
            out[...] = np.asarray(data)
        else:
            for i in range(shape[0]):
                out[i] = np.asarray(data[i])
    return Path(path)


def disk_array(path: str | os.PathLike, shape: Sequence[int], dtype: Any) -> Any:
    """A new uncompressed on-disk zarr array (zeros) at ``path``, one slice of the leading
    axes per chunk (reading or writing a slice holds one slice): working space, which the
    caller removes (`scratch_array` does)."""
    shape = tuple(int(s) for s in shape)
    axes, _, _ = clean_metadata(shape, None, None, None)
    return zarr_write.create_zarr(Path(path), shape, np.dtype(dtype), zarr_write.default_chunks(shape),
                                  compress=False, ome=False, axes=axes, scale={}, units={})


@contextlib.contextmanager
def scratch_array(beside: str | os.PathLike, shape: Sequence[int], dtype: Any) -> Iterator[Any]:
    """Context manager: a `disk_array` under a hidden temporary name in ``beside``'s folder
    (the output's file system), removed when the ``with`` block ends, however it ends
    (KeyboardInterrupt included). dask.distributed workers that see the folder can write
    into it.
    """
    tmp = atomic.temp_name(Path(beside), "scratch")
    try:
        yield disk_array(tmp, shape, dtype)
    except BaseException:
        zarr_write.settle_zarr_io()  # before removing what those writes go to
        raise
    finally:
        atomic.remove(tmp)
