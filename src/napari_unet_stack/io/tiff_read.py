"""Reading TIFF (plain, ImageJ, OME, BigTIFF): lazily, with the pixel sizes the file carries.

Uncompressed contiguous data are memory-mapped; compressed or tiled data are read page by
page through tifffile's zarr store. A truncated or corrupt file is an error, not fewer
slices than the file holds.
"""

from __future__ import annotations

import logging
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from .axes import canonical_unit, normalize_axes
from .image import ImageData
from .tiff_write import LABELS_SOFTWARE
from .zarr_chunks import CheckedZarr

__all__ = ["read_tiff"]


def read_tiff(path: Path, series: int) -> ImageData:
    """Open series ``series`` of the TIFF file ``path`` (see the module docstring).

    Raises
    ------
    ValueError
        ``path`` is a folder, holds no image or not that series, or is truncated or corrupt.
    """
    import tifffile

    if path.is_dir():
        raise ValueError("it is a folder")
    with _TiffDamage() as damage:
        tif = tifffile.TiffFile(path)
    try:
        with damage:
            if not tif.series:
                raise ValueError("the file holds no image")
            if not 0 <= series < len(tif.series):
                raise ValueError(f"series {series} does not exist (the file has {len(tif.series)})")
            s = tif.series[series]
            if s.dataoffset is None:  # (contiguous data: a truncation shows in its end, below)
                len(tif.pages)  # index them all: a broken chain of pages shows here
        damage.check(tif, s)
        axes = normalize_axes(s.axes)
        fmt, scale, units = _sizes(tif, series)
        scale = {k: v for k, v in scale.items() if k in axes}
        units = {k: v for k, v in units.items() if k in scale}
        labels = tif.pages.first.software == LABELS_SOFTWARE
        name = _ome_name(tif, series)
        data, handles = _pixels(path, tif, s, series)  # (closes a memory-mapped file)
        return ImageData(data, axes, scale, units, format=fmt, labels=labels, name=name,
                         _handles=handles)
    except BaseException:
        tif.close()
        raise


def _pixels(path: Path, tif, s, series: int) -> tuple[Any, list]:
    """The series' pixels, memory-mapped or through tifffile's zarr store, and the handles
    to close with the image (the file itself is closed here when memory-mapped)."""
    import tifffile

    if s.dataoffset is not None and not s.is_multifile:
        data: Any = tifffile.memmap(path, series=series, mode="r")
        handles: list = []
        tif.close()
    else:
        import zarr

        page_ndim = len(s.keyframe.shape)
        data = CheckedZarr(zarr.open(s.aszarr(), mode="r"), path, pages=tuple(s.shape[:len(s.shape) - page_ndim]))
        handles = [tif]
    if tuple(data.shape) != tuple(s.shape):
        data = data.reshape(s.shape) if isinstance(data, np.ndarray) else data
    return data, handles


def _sizes(tif, series: int) -> tuple[str, dict, dict]:
    """The file's flavour (``'tiff'``, ``'ome-tiff'``, ``'imagej-tiff'``), pixel sizes, units."""
    if tif.is_ome:
        return ("ome-tiff", *_ome_tiff_sizes(tif.ome_metadata, series))
    if tif.is_imagej:
        return ("imagej-tiff", *_imagej_sizes(tif))
    return ("tiff", *_shaped_sizes(tif, series))


def _shaped_sizes(tif, series: int) -> tuple[dict, dict]:
    """Pixel sizes in tifffile's own JSON description (``metadata={'axes', 'scale', 'units'}``)."""
    shaped = (tif.shaped_metadata or ()) if tif.is_shaped else ()
    meta = shaped[series] if series < len(shaped) else {}
    axes, sizes, names = meta.get("axes"), meta.get("scale"), meta.get("units")
    if not isinstance(axes, str) or not isinstance(sizes, dict):
        return {}, {}
    letters = set(normalize_axes(axes))
    scale = {str(k).upper(): float(v) for k, v in sizes.items()
             if str(k).upper() in letters and isinstance(v, (int, float)) and v > 0}
    units = {str(k).upper(): canonical_unit(v) for k, v in (names if isinstance(names, dict) else {}).items()
             if str(k).upper() in scale and v}
    return scale, units


def _ome_name(tif, series: int) -> str | None:
    """The OME-XML ``Image Name`` of the series, if any."""
    if not tif.is_ome or not tif.ome_metadata:
        return None
    images = [el for el in ET.fromstring(tif.ome_metadata).iter() if _local(el.tag) == "Image"]
    return images[min(series, len(images) - 1)].get("Name") if images else None


class _TiffDamage(logging.Handler):
    """What tifffile reports (and works around) in a truncated or corrupt file.

    tifffile logs a page beyond the end of the file, or ImageJ / OME metadata that do not
    fit the pages, and then shows what it could read: fewer slices than the file holds,
    without an error. Used as a context manager around tifffile's reading (it records
    this thread's messages); `check` raises ValueError for what was recorded, and for
    pixel data that would lie past the end of the file.
    """

    SIGNS = ("invalid page offset", "invalid offset to page", "invalid next page", "corrupted file")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.thread == self.thread and any(sign in message for sign in self.SIGNS):
            self.messages.append(message.rsplit("> ", 1)[-1])

    def __enter__(self) -> _TiffDamage:
        logging.getLogger("tifffile").addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger("tifffile").removeHandler(self)

    def check(self, tif, s) -> None:
        size = tif.filehandle.size
        end = s.dataoffset + s.nbytes if s.dataoffset is not None else self._pages_end(s)
        if end > size:
            self.messages.append(f"its pixel data end at byte {end} but the file has {size}")
        if self.messages:
            raise ValueError(f"the file is truncated or corrupt ({self.messages[0]})")

    def _pages_end(self, s) -> int:
        """Where the last byte of the series' pages lies (a missing page is recorded)."""
        pages: list = []
        try:
            pages.extend(s.pages)
        except IndexError:  # the series' metadata count more pages than the file holds
            pages.append(None)
        if any(page is None for page in pages):
            self.messages.append("pages of the image are missing")
        return max((int(o) + int(n) for page in pages if page is not None
                    for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)), default=0)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _ome_tiff_sizes(xml: str | None, series: int) -> tuple[dict, dict]:
    scale: dict[str, float] = {}
    units: dict[str, str] = {}
    if not xml:
        return scale, units
    root = ET.fromstring(xml)
    images = [el for el in root.iter() if _local(el.tag) == "Image"]
    if not images:
        return scale, units
    image = images[min(series, len(images) - 1)]
    pixels = next((el for el in image if _local(el.tag) == "Pixels"), None)
    if pixels is None:
        return scale, units
    for letter in "XYZ":
        size = pixels.get(f"PhysicalSize{letter}")
        if size is not None:
            scale[letter] = float(size)
            units[letter] = canonical_unit(pixels.get(f"PhysicalSize{letter}Unit", "µm"))
    step = pixels.get("TimeIncrement")
    if step is not None:
        scale["T"] = float(step)
        units["T"] = canonical_unit(pixels.get("TimeIncrementUnit", "s"))
    return scale, units


def _imagej_sizes(tif) -> tuple[dict, dict]:
    meta = tif.imagej_metadata or {}
    page = tif.pages.first
    scale: dict[str, float] = {}
    units: dict[str, str] = {}
    unit = canonical_unit(meta.get("unit")) if meta.get("unit") else None
    for letter, tag in (("X", "XResolution"), ("Y", "YResolution")):
        value = page.tags.get(tag)
        if value is None:
            continue
        num, den = value.value
        if num and den and (num, den) != (1, 1):
            scale[letter] = den / num
            if unit:
                units[letter] = unit
    if "spacing" in meta:
        scale["Z"] = float(meta["spacing"])
        if unit:
            units["Z"] = unit
    if meta.get("finterval"):
        scale["T"] = float(meta["finterval"])
        units["T"] = canonical_unit(meta.get("tunit") or "s")
    return scale, units
