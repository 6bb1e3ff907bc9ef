"""Reader contribution: OME-Zarr, zarr, OME-TIFF and ImageJ TIFF with their scale, units and
axis names; the plugin's own label outputs as Labels layers.

Files are read with `napari_unet_stack.io.read_image`. A file marked as labels (written by
the plugin's writer, or with ``write_image(..., labels=True)`` as ``unet-stack predict``
does: OME-Zarr ``image-label`` metadata or this package's TIFF Software tag) becomes a
Labels layer, read into memory so that it can be painted (above `LABELS_IN_MEMORY` bytes it
stays on disk, read-only). Everything else becomes an Image layer, read lazily (a dask array
reading the file by its path), split into one layer per channel when the file has a ``C``
axis (one RGB(A) layer for 8-bit pictures with 3 or 4 channels last). A TIFF without OME or ImageJ metadata (and not marked as labels) and other formats are
left to other readers: `get_reader` returns None.

Like the rest of ``napari_unet_stack`` outside the widgets, nothing here imports napari or Qt:
the layers are returned as napari's (data, kwargs, layer type) tuples.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LABELS_IN_MEMORY", "get_reader", "read_layers"]

#: labels up to this size are read into memory (paintable); larger ones stay on disk
LABELS_IN_MEMORY = 2 * 1024**3

LayerData = tuple[Any, dict, str]


def _one_path(path: str | os.PathLike | Sequence) -> Path | None:
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None  # several files: a stack, napari's own readers build it
        path = path[0]
    return Path(os.fspath(path))


def get_reader(path: str | os.PathLike | Sequence) -> Callable[..., list[LayerData]] | None:
    """`read_layers` when ``path`` is a zarr store or an OME / ImageJ / labels TIFF, else None.

    Parameters
    ----------
    path : str, Path or list of one of them

    Returns
    -------
    callable or None
    """
    one = _one_path(path)
    if one is None or not _is_ours(one):
        return None
    return read_layers


def _is_ours(path: Path) -> bool:
    from ..io import is_zarr_dir, kind_of

    kind = kind_of(path)
    if kind in ("zarr", "ome-zarr") or (kind is None and path.is_dir()):
        return is_zarr_dir(path)
    if kind in ("tiff", "ome-tiff") and path.is_file():
        return kind == "ome-tiff" or _has_metadata(path)
    return False


def _has_metadata(path: Path) -> bool:
    """Whether a TIFF has OME or ImageJ metadata or is marked as labels (a damaged or
    unreadable one is ours too: `read_layers` says what is wrong with it)."""
    import tifffile

    from ..io.tiff_write import LABELS_SOFTWARE

    try:
        with tifffile.TiffFile(path) as tif:
            return bool(tif.is_ome or tif.is_imagej or tif.pages.first.software == LABELS_SOFTWARE)
    except (OSError, ValueError, IndexError, KeyError, TypeError):
        return True


def read_layers(path: str | os.PathLike | Sequence) -> list[LayerData]:
    """The layer ``path`` holds: Labels for the plugin's label outputs, otherwise Image.

    Parameters
    ----------
    path : str, Path or list of one of them

    Returns
    -------
    list of (data, kwargs, layer type)
        kwargs hold ``name``, ``scale``, ``units``, ``axis_labels`` (and ``channel_axis``
        for an image with channels, or ``rgb``).

    Raises
    ------
    ValueError
        The file is not a readable image (the message names it).
    OSError
        Part of the file is damaged (a zarr chunk, ...).
    """
    from ..io import as_dask, default_axes, read_image, stem_of

    one = _one_path(path)
    if one is None:
        raise ValueError("the napari-unet-stack reader opens one file or zarr store at a time")
    image = read_image(one)
    try:
        axes = image.axes or default_axes(image.ndim)
        kwargs: dict[str, Any] = {"name": image.name or stem_of(one)}
        if image.labels:
            kwargs.update(_geometry(image, axes, skip=None))
            small = int(np.prod(image.shape, dtype=np.int64)) * image.dtype.itemsize <= LABELS_IN_MEMORY
            data = np.array(image.data[...]) if small else as_dask(image)
            return [(data, kwargs, "labels")]
        channel = image.channel_axis
        kwargs.update(_geometry(image, axes, skip=channel))
        if _is_rgb(image, channel):
            kwargs["rgb"] = True
        elif channel is not None:
            kwargs["channel_axis"] = channel
        return [(as_dask(image), kwargs, "image")]
    finally:
        image.close()  # (the dask array reopens the file by its path)


def _is_rgb(image, channel: int | None) -> bool:
    """An 8-bit image whose last axis holds 3 or 4 channels: one RGB(A) layer, as napari shows it."""
    return (channel is not None and channel == image.ndim - 1 and image.shape[-1] in (3, 4)
            and image.dtype == np.uint8)


def _geometry(image, axes: str, skip: int | None) -> dict[str, tuple]:
    """napari's ``scale``, ``units`` and ``axis_labels`` of the layer's axes (all but ``skip``)."""
    letters = [a for i, a in enumerate(axes) if i != skip]
    return {
        "scale": tuple(float(image.scale.get(a, 1.0)) for a in letters),
        "units": tuple(_napari_unit(image.units.get(a)) for a in letters),
        "axis_labels": tuple(a.lower() for a in letters),
    }


def _napari_unit(unit: str | None) -> str:
    """``unit`` when napari (pint) knows it, else ``'pixel'``."""
    if not unit:
        return "pixel"
    import pint

    try:
        pint.get_application_registry().Unit(unit)
    except (pint.errors.UndefinedUnitError, ValueError, AttributeError, TypeError):
        return "pixel"
    return unit
