"""Writing zarr (format 2): a plain array with its axes and pixel sizes in the attributes,
or OME-Zarr (NGFF 0.4), a group with one full-resolution array ``0``.

Works with zarr 2 and zarr 3. The array returned is also the scratch space `create_image`
converts TIFF and ``.npy`` outputs from.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

__all__ = ["LABELS_KEY", "create_zarr", "default_chunks", "ngff_multiscales", "settle_zarr_io",
           "zarr_major"]

#: the attribute that marks labels (OME-Zarr's ``image-label``; also on plain arrays)
LABELS_KEY = "image-label"


def zarr_major() -> int:
    """The installed zarr's major version."""
    import zarr

    return int(zarr.__version__.split(".")[0])


def default_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """One slice of the leading axes, the last two whole up to 4096 x 4096."""
    lead = (1,) * (len(shape) - 2)
    return (*lead, *(min(n, 4096) for n in shape[-2:]))


def create_zarr(path: Path, shape, dtype, chunks, *, compress: bool, ome: bool,
                axes: str, scale: dict, units: dict, name: str = "image", labels: bool = False):
    """A new zarr array at ``path`` (replacing what is there), filled with zeros.

    Parameters
    ----------
    path : Path
        Made absolute: the array may be pickled to workers with another working folder.
    shape, dtype, chunks
        Of the array.
    compress : bool
        The zarr library's default compressor, or none.
    ome : bool
        An OME-Zarr group with the array as ``0`` and ``multiscales`` metadata; otherwise a
        plain array with ``_ARRAY_DIMENSIONS``, ``pixel_size`` and ``pixel_unit`` attributes.
    axes, scale, units
        As checked by `napari_unet_stack.io.axes.clean_metadata`.
    name : str
        The OME-Zarr image's name (``multiscales`` ``name``).
    labels : bool
        Mark the image as labels: OME-Zarr ``image-label`` metadata (`LABELS_KEY`) on the
        group, or the same attribute on a plain array.
    """
    path = Path(os.path.abspath(path))
    marks = {LABELS_KEY: {"version": "0.4"}} if labels else {}
    if ome:
        group, arr = _create_ome(path, shape, dtype, chunks, compress)
        group.attrs.update({"multiscales": [ngff_multiscales(axes, scale, units, name)], **marks})
        return arr
    import zarr

    kw = _compressor_kw(compress)
    if zarr_major() >= 3:
        arr = zarr.create_array(store=str(path), shape=shape, chunks=chunks, dtype=dtype,
                                fill_value=0, zarr_format=2, **kw)
    else:
        arr = zarr.open_array(str(path), mode="w", shape=shape, chunks=chunks, dtype=dtype,
                              fill_value=0, **kw)
    attrs: dict[str, Any] = {"_ARRAY_DIMENSIONS": [a.lower() for a in axes]}
    if scale:
        attrs["pixel_size"] = scale
    if units:
        attrs["pixel_unit"] = units
    arr.attrs.update({**attrs, **marks})
    return arr


def _create_ome(path: Path, shape, dtype, chunks, compress: bool) -> tuple[Any, Any]:
    """An OME-Zarr group at ``path`` and its array ``0`` (chunk keys ``0/1/2``, as NGFF wants)."""
    import zarr

    kw = _compressor_kw(compress)
    if zarr_major() >= 3:
        group = zarr.open_group(store=str(path), mode="w", zarr_format=2)
        arr = group.create_array("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
                                 chunk_key_encoding={"name": "v2", "separator": "/"}, **kw)
    else:
        group = zarr.open_group(store=str(path), mode="w")
        arr = group.create_dataset("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
                                   dimension_separator="/", **kw)
    return group, arr


def _compressor_kw(compress: bool) -> dict[str, Any]:
    if compress:
        return {}
    return {"compressors": None} if zarr_major() >= 3 else {"compressor": None}


def ngff_multiscales(axes: str, scale: dict, units: dict, name: str = "image") -> dict:
    """The OME-Zarr 0.4 ``multiscales`` entry of a one-level image with these axes and sizes."""
    kinds = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
    axes_meta = []
    for letter in axes:
        entry: dict[str, Any] = {"name": letter.lower(), "type": kinds.get(letter, "space")}
        if letter in units and letter != "C":
            entry["unit"] = units[letter]
        axes_meta.append(entry)
    factors = [float(scale.get(letter, 1.0)) for letter in axes]
    return {
        "version": "0.4",
        "name": str(name),
        "axes": axes_meta,
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": factors}]}],
    }


def settle_zarr_io(timeout: float = 10.0) -> None:
    """Wait for the zarr writes still in flight.

    zarr 3 writes in its own I/O thread while the caller waits; a KeyboardInterrupt (Ctrl-C)
    ends the wait, not the writes, which would put chunks back into a temporary output
    after it was removed. zarr 2 writes in the caller's thread: nothing to wait for.
    """
    import asyncio

    try:
        from zarr.core import sync
    except ImportError:
        return
    loop = (getattr(sync, "loop", None) or [None])[0]
    if loop is None or loop.is_closed() or not loop.is_running():
        return

    async def drain() -> None:
        me = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not me and not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(drain(), loop).result(timeout + 1.0)
