"""Writing TIFF: ImageJ hyperstack when ImageJ can hold the image, OME-TIFF otherwise.

ImageJ holds uint8, uint16 and float32 with axes in ``TZCYX`` order under 4 GB; every other
image, and every ``.ome.tif``, is OME-TIFF (BigTIFF above 4 GB). Pages are written one at a
time from the source array, so the image need not fit in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LABELS_SOFTWARE", "check_compression", "write_tiff"]

#: the Software tag of the first page of a labels TIFF this package writes (`read_tiff` and
#: the napari reader open such a file as labels)
LABELS_SOFTWARE = "napari-unet-stack labels"

#: ImageJ can hold these dtypes; everything else is written as OME-TIFF
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
_IMAGEJ_ORDER = "TZCYXS"
#: classic TIFF offsets are 32 bit; keep a margin for tags and descriptions
_BIGTIFF_BYTES = 2**32 - 2**25

_OME_SYMBOLS = {
    "micrometer": "µm", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm", "meter": "m",
    "angstrom": "Å", "second": "s", "millisecond": "ms", "microsecond": "µs", "minute": "min",
    "hour": "h",
}  # fmt: skip
_IMAGEJ_UNITS = {"micrometer": "um", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm",
                 "meter": "m", "angstrom": "A"}


def check_compression(compression: str | None) -> None:
    """Fail before any work when a TIFF codec is unavailable (all but zlib need imagecodecs).

    Raises
    ------
    ValueError
        ``compression`` needs the imagecodecs package, which is not installed.
    """
    if compression in (None, "none", "zlib", "deflate", "adobe_deflate"):
        return
    import importlib.util

    if importlib.util.find_spec("imagecodecs") is None:
        raise ValueError(f"TIFF compression {compression!r} needs the imagecodecs package "
                         f"(pip install imagecodecs); 'zlib' works without it")


def _is_imagej_order(axes: str) -> bool:
    positions = [_IMAGEJ_ORDER.find(a) for a in axes]
    return all(p >= 0 for p in positions) and positions == sorted(positions)


def write_tiff(path: Path, src, axes: str, scale: dict, units: dict, *, ome: bool,
               compression: str | None, labels: bool = False, name: str | None = None) -> None:
    """Write the array ``src`` to ``path`` page by page, with its axes and pixel sizes.

    Parameters
    ----------
    path : Path
        Written directly (the caller writes to a temporary name and renames it).
    src : array_like
        Indexable by its leading axes (a zarr array, a memmap, ...).
    axes, scale, units
        As checked by `napari_unet_stack.io.axes.clean_metadata`.
    ome : bool
        OME-TIFF even when ImageJ could hold the image.
    compression : str or None
        tifffile's compression name; None or ``'none'`` for none.
    labels : bool
        Mark the file as labels (`LABELS_SOFTWARE` in the Software tag).
    name : str, optional
        The image's name (OME-TIFF ``Image Name``; ImageJ has no place for it).
    """
    import tifffile

    shape = tuple(int(s) for s in src.shape)
    dtype = np.dtype(src.dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    big = nbytes > _BIGTIFF_BYTES
    imagej = not ome and dtype in _IMAGEJ_DTYPES and _is_imagej_order(axes) and not big
    kwargs = _imagej_kwargs(axes, scale, units) if imagej else _ome_kwargs(axes, scale, units, big)
    if compression and compression != "none":
        kwargs["compression"] = compression
    if labels:
        kwargs["software"] = LABELS_SOFTWARE
    if name and not imagej:
        kwargs["metadata"]["Name"] = str(name)
    lead = shape[:-2]

    def pages() -> Iterator[np.ndarray]:
        for index in np.ndindex(*lead):
            yield np.ascontiguousarray(np.asarray(src[index]), dtype=dtype)

    if lead:
        tifffile.imwrite(path, pages(), shape=shape, dtype=dtype, **kwargs)
    else:
        tifffile.imwrite(path, np.asarray(src[...]), **kwargs)


def _imagej_kwargs(axes: str, scale: dict, units: dict) -> dict[str, Any]:
    """tifffile's keywords for an ImageJ hyperstack: spacing, frame interval, resolution."""
    meta: dict[str, Any] = {"axes": axes}
    if "Z" in scale:
        meta["spacing"] = scale["Z"]
    if "T" in scale:
        meta["finterval"] = scale["T"]
    unit = next((units[a] for a in "XYZ" if a in units), None)
    if unit:
        meta["unit"] = _IMAGEJ_UNITS.get(unit, unit)
    kwargs: dict[str, Any] = {"imagej": True, "metadata": meta}
    if "X" in scale or "Y" in scale:
        kwargs["resolution"] = (1.0 / scale.get("X", 1.0), 1.0 / scale.get("Y", scale.get("X", 1.0)))
    return kwargs


def _ome_kwargs(axes: str, scale: dict, units: dict, big: bool) -> dict[str, Any]:
    """tifffile's keywords for an OME-TIFF: physical sizes and time increment with units."""
    meta: dict[str, Any] = {"axes": axes}
    for letter in "XYZ":
        if letter in scale:
            meta[f"PhysicalSize{letter}"] = scale[letter]
            if letter in units:
                meta[f"PhysicalSize{letter}Unit"] = _OME_SYMBOLS.get(units[letter], units[letter])
    if "T" in scale:
        meta["TimeIncrement"] = scale["T"]
        if "T" in units:
            meta["TimeIncrementUnit"] = _OME_SYMBOLS.get(units["T"], units["T"])
    return {"ome": True, "metadata": meta, "bigtiff": big}
