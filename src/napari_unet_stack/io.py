"""Reading and writing image stacks: TIFF (ImageJ, OME, BigTIFF), zarr / OME-Zarr and .npy.

Reading is lazy where the format allows it: uncompressed contiguous TIFF and ``.npy`` are
memory-mapped, compressed or tiled TIFF is read page by page through tifffile's zarr
store, zarr is read chunk by chunk. Whatever the format, `read_image` returns an
`ImageData`: the array (indexable slice by slice, what the inference engine needs), its
axes (``"ZYX"``, ``"TCZYX"``, ...; letters from ``TCZYX``) and the pixel sizes and units
the file carries (OME-XML, ImageJ metadata, OME-Zarr ``multiscales``).

Writing (`write_image`, `create_image`) picks the format from the extension:

=======================  ==================================================================
``.tif``, ``.tiff``      ImageJ hyperstack when ImageJ can hold it (uint8, uint16 or
                         float32, axes in TZCYX order, under 4 GB); OME-TIFF otherwise
``.ome.tif(f)``          OME-TIFF (any dtype; BigTIFF above 4 GB)
``.zarr``                a plain zarr array (zarr format 2) with ``_ARRAY_DIMENSIONS`` and
                         the pixel sizes in its attributes
``.ome.zarr``            OME-Zarr (NGFF 0.4): a group with one full-resolution array ``0``
``.npy``                 NumPy (no axes or pixel sizes)
=======================  ==================================================================

Every output is written under a temporary name in the destination's folder and renamed
into place when complete, so a failed or interrupted run never leaves a partial file or
zarr folder (an existing output is replaced only by a complete new one).
`create_image` hands out an on-disk zarr array to write into slice by slice (TIFF and
``.npy`` are converted from it at the end, one page at a time), so results larger than
memory can be written.

Pixel sizes are ``{axis letter: size}`` and units ``{axis letter: unit}`` with units in
the OME-Zarr (UDUNITS) spelling: ``"micrometer"``, ``"nanometer"``, ``"second"``, ...
"""

from __future__ import annotations

import contextlib
import glob
import logging
import math
import os
import shutil
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ImageData",
    "as_dask",
    "create_image",
    "default_axes",
    "find_images",
    "output_format",
    "read_image",
    "write_image",
]

#: extensions (lower case) of each format; longest first where they overlap
_EXTENSIONS = {
    "ome-zarr": (".ome.zarr",),
    "ome-tiff": (".ome.tif", ".ome.tiff", ".ome.btf"),
    "zarr": (".zarr",),
    "tiff": (".tif", ".tiff", ".btf", ".tf8", ".tf2"),
    "npy": (".npy",),
}
_ORDER = ("ome-zarr", "ome-tiff", "zarr", "tiff", "npy")
IMAGE_EXTENSIONS = tuple(ext for kind in _ORDER for ext in _EXTENSIONS[kind])

#: ImageJ can hold these dtypes; everything else is written as OME-TIFF
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
_IMAGEJ_ORDER = "TZCYXS"
#: classic TIFF offsets are 32 bit; keep a margin for tags and descriptions
_BIGTIFF_BYTES = 2**32 - 2**25

_UNIT_ALIASES = {
    "micrometer": ("micrometer", "micrometre", "micron", "microns", "um", "µm", "μm", "\\u00B5m"),
    "nanometer": ("nanometer", "nanometre", "nm"),
    "millimeter": ("millimeter", "millimetre", "mm"),
    "centimeter": ("centimeter", "centimetre", "cm"),
    "meter": ("meter", "metre", "m"),
    "angstrom": ("angstrom", "å", "Å"),
    "second": ("second", "seconds", "s", "sec"),
    "millisecond": ("millisecond", "milliseconds", "ms"),
    "microsecond": ("microsecond", "microseconds", "us", "µs"),
    "minute": ("minute", "minutes", "min"),
    "hour": ("hour", "hours", "h"),
}
_UNITS = {alias.lower(): name for name, aliases in _UNIT_ALIASES.items() for alias in aliases}
_OME_SYMBOLS = {
    "micrometer": "µm", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm", "meter": "m",
    "angstrom": "Å", "second": "s", "millisecond": "ms", "microsecond": "µs", "minute": "min",
    "hour": "h",
}  # fmt: skip
_IMAGEJ_UNITS = {"micrometer": "um", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm",
                 "meter": "m", "angstrom": "A"}


def canonical_unit(unit: Any) -> str | None:
    """A unit in the OME-Zarr spelling (``'um'`` -> ``'micrometer'``); unknown ones kept as is.

    >>> canonical_unit("µm"), canonical_unit("micron"), canonical_unit("pixel")
    ('micrometer', 'micrometer', 'pixel')
    """
    if unit is None:
        return None
    text = str(unit).strip()
    if not text:
        return None
    return _UNITS.get(text.lower(), text)


# ----------------------------------------------------------------------------- ImageData
@dataclass
class ImageData:
    """An image read from disk: a lazily readable array plus what the file says about it.

    Attributes
    ----------
    data : array_like
        numpy memmap, zarr array or in-memory array; ``data[i]`` reads one slice.
    axes : str or None
        One letter per dimension from ``TCZYX`` (None when the format has no axes).
    scale : dict
        Pixel size per axis letter (only the axes the file gives a size for).
    units : dict
        Unit per axis letter, OME-Zarr spelling (``'micrometer'``).
    path : Path or None
    format : str
        ``'tiff'``, ``'imagej-tiff'``, ``'ome-tiff'``, ``'zarr'``, ``'ome-zarr'`` or ``'npy'``.
    """

    data: Any
    axes: str | None = None
    scale: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    format: str = "array"
    _handles: list = field(default_factory=list, repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    @property
    def ndim(self) -> int:
        return len(self.data.shape)

    @property
    def channel_axis(self) -> int | None:
        """Index of the ``C`` axis, if the file names one."""
        if self.axes and "C" in self.axes:
            return self.axes.index("C")
        return None

    def close(self) -> None:
        while self._handles:
            self._handles.pop().close()

    def __enter__(self) -> ImageData:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def default_axes(ndim: int, channel_axis: int | None = None) -> str:
    """Axes for an array that carries none: ``YX`` last, then ``Z``, ``T``; ``C`` where given.

    >>> default_axes(3), default_axes(4, channel_axis=-1), default_axes(3, channel_axis=0)
    ('ZYX', 'ZYXC', 'CYX')
    """
    n_spatial = ndim - (channel_axis is not None)
    if n_spatial < 2:
        raise ValueError(f"an image needs at least 2 spatial axes, got {ndim} dimension(s)")
    letters = "TZYX"[-n_spatial:] if n_spatial <= 4 else "Q" * (n_spatial - 4) + "TZYX"
    if channel_axis is None:
        return letters
    ax = channel_axis % ndim
    return letters[:ax] + "C" + letters[ax:]


def _normalize_axes(axes: str) -> str:
    """tifffile's axes (``S`` samples, ``I``/``Q`` unknown, ...) to letters from ``TCZYX``."""
    out = []
    for letter in axes.upper():
        out.append("C" if letter == "S" else letter)
    for i, letter in enumerate(out):
        if letter not in "TCZYX":
            for candidate in "ZTC":
                if candidate not in out:
                    out[i] = candidate
                    break
    return "".join(out)


# ----------------------------------------------------------------------------- formats
def _kind_of(path: Path) -> str | None:
    name = path.name.lower()
    for kind in _ORDER:
        if name.endswith(_EXTENSIONS[kind]):
            return kind
    return None


def _is_zarr_dir(path: Path) -> bool:
    return path.is_dir() and any((path / f).exists() for f in (".zarray", ".zgroup", "zarr.json"))


def output_format(path: str | os.PathLike) -> str:
    """The output format chosen by ``path``'s extension, or ValueError naming the choices.

    >>> output_format("a/labels.ome.tif"), output_format("x.zarr")
    ('ome-tiff', 'zarr')
    """
    kind = _kind_of(Path(path))
    if kind is None:
        raise ValueError(
            f"cannot tell the output format of {str(path)!r} from its extension: use one of "
            f"{', '.join(IMAGE_EXTENSIONS)}"
        )
    return kind


def extension_of(path: str | os.PathLike) -> str:
    """The format extension of ``path`` (``'.ome.tif'``, ``'.zarr'``, ...) or ``''``."""
    name = Path(path).name.lower()
    for ext in sorted(IMAGE_EXTENSIONS, key=len, reverse=True):
        if name.endswith(ext):
            return ext
    return ""


def stem_of(path: str | os.PathLike) -> str:
    """``path``'s name without its format extension (``'a.ome.tif'`` -> ``'a'``)."""
    name = Path(path).name
    return name[: len(name) - len(extension_of(path))] if extension_of(path) else Path(path).stem


# ----------------------------------------------------------------------------- finding inputs
def find_images(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Expand files, folders and glob patterns into a list of image paths.

    A zarr folder counts as one image; any other folder contributes the images directly
    inside it (sorted, hidden files skipped). Patterns (``*``, ``?``, ``[``) are expanded
    with `glob` (``**`` recursive). Duplicates are dropped, order is kept.

    Raises
    ------
    FileNotFoundError
        An input does not exist, a pattern matches nothing, or a folder holds no images.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: list[Path] = []
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        if path.exists():
            if path.is_dir() and not _is_zarr_dir(path) and _kind_of(path) not in ("zarr", "ome-zarr"):
                inside = sorted(
                    p for p in path.iterdir()
                    if not p.name.startswith(".") and _kind_of(p) is not None
                    and (p.is_file() or _is_zarr_dir(p))
                )
                if not inside:
                    raise FileNotFoundError(
                        f"folder {text!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
                    )
                found.extend(inside)
            else:
                found.append(path)
        elif glob.has_magic(text):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
            matches = [m for m in matches if (m.is_file() or _is_zarr_dir(m)) and _kind_of(m) is not None]
            if not matches:
                raise FileNotFoundError(f"no images match {text!r}")
            found.extend(matches)
        else:
            raise FileNotFoundError(f"no such file or folder: {text!r}")
    unique: dict[str, Path] = {}
    for p in found:
        unique.setdefault(os.path.abspath(p), p)
    return list(unique.values())


# ----------------------------------------------------------------------------- reading
def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def read_image(path: str | os.PathLike, *, series: int = 0, level: int = 0) -> ImageData:
    """Open an image file or zarr store lazily.

    Parameters
    ----------
    path : str or Path
        TIFF (plain, ImageJ, OME, BigTIFF), zarr array or group, OME-Zarr, or ``.npy``.
    series : int
        TIFF series (OME-TIFF files may hold several images).
    level : int
        OME-Zarr resolution level (0 is full resolution).

    Returns
    -------
    ImageData
        Close it (or use it as a context manager) to release TIFF file handles.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file is not a readable image of a supported format (the message names it).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {str(path)!r}")
    kind = _kind_of(path)
    if kind is None and _is_zarr_dir(path):
        kind = "zarr"
    if kind is None:
        raise ValueError(
            f"cannot read {str(path)!r}: unsupported extension (supported: {', '.join(IMAGE_EXTENSIONS)})"
        )
    try:
        if kind in ("tiff", "ome-tiff"):
            image = _read_tiff(path, series)
        elif kind in ("zarr", "ome-zarr"):
            image = _read_zarr(path, level)
        else:
            image = _read_npy(path)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, KeyError, IndexError, TypeError, EOFError, RuntimeError) as err:
        name = {"tiff": "TIFF", "ome-tiff": "OME-TIFF", "zarr": "zarr", "ome-zarr": "OME-Zarr", "npy": ".npy"}[kind]
        raise ValueError(f"cannot read {str(path)!r} as {name}: {_first_line(err)}") from err
    image.path = path
    if image.axes is not None and len(image.axes) != image.ndim:
        image.axes = None
    dtype = image.dtype
    if dtype.kind not in "uifb":
        image.close()
        raise ValueError(f"cannot read {str(path)!r}: unsupported data type {dtype}")
    return image


def _read_npy(path: Path) -> ImageData:
    if path.is_dir():
        raise ValueError("it is a folder")
    return ImageData(np.load(path, mmap_mode="r", allow_pickle=False), format="npy")


# -- TIFF
def _read_tiff(path: Path, series: int) -> ImageData:
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
        axes = _normalize_axes(s.axes)
        if s.dataoffset is not None and not s.is_multifile:
            data: Any = tifffile.memmap(path, series=series, mode="r")
            handles: list = []
            tif.close()
        else:
            import zarr

            data = zarr.open(s.aszarr(), mode="r")
            handles = [tif]
        if tuple(data.shape) != tuple(s.shape):
            data = data.reshape(s.shape) if isinstance(data, np.ndarray) else data
        fmt, scale, units = "tiff", {}, {}
        if tif.is_ome:
            fmt = "ome-tiff"
            scale, units = _ome_tiff_sizes(tif.ome_metadata, series)
        elif tif.is_imagej:
            fmt = "imagej-tiff"
            scale, units = _imagej_sizes(tif)
        scale = {k: v for k, v in scale.items() if k in axes}
        units = {k: v for k, v in units.items() if k in scale}
        return ImageData(data, axes, scale, units, format=fmt, _handles=handles)
    except BaseException:
        tif.close()
        raise


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
        if s.dataoffset is not None:
            end = s.dataoffset + s.nbytes
        else:
            pages: list = []
            try:
                pages.extend(s.pages)
            except IndexError:  # the series' metadata count more pages than the file holds
                pages.append(None)
            if any(page is None for page in pages):
                self.messages.append("pages of the image are missing")
            end = max((int(o) + int(n) for page in pages if page is not None
                       for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)), default=0)
        if end > size:
            self.messages.append(f"its pixel data end at byte {end} but the file has {size}")
        if self.messages:
            raise ValueError(f"the file is truncated or corrupt ({self.messages[0]})")


def _ome_tiff_sizes(xml: str | None, series: int) -> tuple[dict, dict]:
    scale: dict[str, float] = {}
    units: dict[str, str] = {}
    if not xml:
        return scale, units
    root = ET.fromstring(xml)
    images = [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Image"]
    if not images:
        return scale, units
    image = images[min(series, len(images) - 1)]
    pixels = next((el for el in image if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
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


# -- zarr
def _zarr_major() -> int:
    import zarr

    return int(zarr.__version__.split(".")[0])


def _open_zarr_node(path: Path):
    import zarr

    return zarr.open(store=str(path), mode="r")


def _read_zarr(path: Path, level: int) -> ImageData:
    import zarr

    node = _open_zarr_node(path)
    if isinstance(node, zarr.Array):
        axes, scale, units = _plain_zarr_axes(node)
        return ImageData(node, axes, scale, units, format="zarr")
    group = node
    attrs = dict(group.attrs)
    if "multiscales" not in attrs and "multiscales" not in attrs.get("ome", {}):
        # bioformats2raw layout: the image is group "0"
        sub = list(group.group_keys()) if hasattr(group, "group_keys") else []
        if "0" in sub:
            inner = group["0"]
            inner_attrs = dict(inner.attrs)
            if "multiscales" in inner_attrs or "multiscales" in inner_attrs.get("ome", {}):
                group, attrs = inner, inner_attrs
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not multiscales:
        arrays = sorted(group.array_keys())
        if len(arrays) == 1:
            arr = group[arrays[0]]
            axes, scale, units = _plain_zarr_axes(arr)
            return ImageData(arr, axes, scale, units, format="zarr")
        raise ValueError(
            f"a zarr group without OME-Zarr 'multiscales' metadata and {len(arrays)} arrays "
            f"({', '.join(arrays) or 'none'}): open one of them"
        )
    ms = multiscales[0]
    datasets = ms.get("datasets") or []
    if not 0 <= level < len(datasets):
        raise ValueError(f"resolution level {level} does not exist (the image has {len(datasets)})")
    arr = group[datasets[level]["path"]]
    ndim = len(arr.shape)
    axes, units_by_index = _ngff_axes(ms.get("axes"), ndim)
    factors = np.ones(ndim)
    for transform in list(datasets[level].get("coordinateTransformations") or []) + list(
        ms.get("coordinateTransformations") or []
    ):
        if transform.get("type") == "scale" and "scale" in transform:
            factors *= np.asarray(transform["scale"], dtype=float)
    scale: dict[str, float] = {}
    units: dict[str, str] = {}
    if axes is not None:
        for i, letter in enumerate(axes):
            if letter in "TZYX" and (factors[i] != 1.0 or units_by_index[i]):
                scale[letter] = float(factors[i])
                if units_by_index[i]:
                    units[letter] = units_by_index[i]
    return ImageData(arr, axes, scale, units, format="ome-zarr")


def _ngff_axes(axes_meta, ndim: int) -> tuple[str | None, list[str | None]]:
    if not axes_meta or len(axes_meta) != ndim:
        return None, [None] * ndim
    letters: list[str] = []
    units: list[str | None] = []
    for ax in axes_meta:
        if isinstance(ax, str):
            name, kind, unit = ax, None, None
        else:
            name, kind, unit = ax.get("name", ""), ax.get("type"), ax.get("unit")
        name = str(name).lower()
        if name in ("t", "c", "z", "y", "x"):
            letter = name.upper()
        elif kind == "time":
            letter = "T"
        elif kind == "channel":
            letter = "C"
        else:
            letter = "Q"
        letters.append(letter)
        units.append(canonical_unit(unit))
    return _normalize_axes("".join(letters)), units


def _plain_zarr_axes(arr) -> tuple[str | None, dict, dict]:
    attrs = dict(arr.attrs)
    names = attrs.get("_ARRAY_DIMENSIONS")
    if names is None:
        names = getattr(getattr(arr, "metadata", None), "dimension_names", None)
    axes = None
    if names and len(names) == len(arr.shape) and all(names):
        axes = _normalize_axes("".join(str(n)[0] for n in names))
    scale = {str(k): float(v) for k, v in (attrs.get("pixel_size") or {}).items()}
    units = {str(k): str(canonical_unit(v)) for k, v in (attrs.get("pixel_unit") or {}).items()}
    return axes, scale, units


# ----------------------------------------------------------------------------- dask
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


# ----------------------------------------------------------------------------- writing
def _temp_name(path: Path, tag: str = "tmp") -> Path:
    return path.parent / f".{path.name}.{tag}-{uuid.uuid4().hex[:12]}"


def _settle_zarr_io(timeout: float = 10.0) -> None:
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


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _replace(tmp: Path, path: Path) -> None:
    """Move the finished ``tmp`` to ``path``; an existing ``path`` is replaced atomically for
    files, and for folders moved aside first and put back if the move fails."""
    if not os.path.lexists(path) or (tmp.is_file() and path.is_file()):
        os.replace(tmp, path)
        return
    old = _temp_name(path, "old")
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    _remove(old)


def _check_target(path: Path, overwrite: bool) -> None:
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists (pass overwrite=True / --overwrite to replace it)")


def _clean_metadata(shape, axes, scale, units) -> tuple[str, dict, dict]:
    ndim = len(shape)
    if axes is None:
        axes = default_axes(ndim)
    axes = _normalize_axes(str(axes))
    if len(axes) != ndim or len(set(axes)) != ndim:
        raise ValueError(f"`axes` {axes!r} does not fit an array of shape {tuple(shape)}")
    scale = {str(k).upper(): float(v) for k, v in (scale or {}).items()}
    unknown = sorted(set(scale) - set(axes))
    if unknown:
        raise ValueError(f"`scale` names axes {unknown} that are not in axes {axes!r}")
    if any(not math.isfinite(v) or v <= 0 for v in scale.values()):
        raise ValueError(f"pixel sizes in `scale` must be positive and finite, got {scale}")
    units = {str(k).upper(): canonical_unit(v) for k, v in (units or {}).items() if v}
    units = {k: v for k, v in units.items() if k in axes}
    return axes, scale, units


def _create_zarr(path: Path, shape, dtype, chunks, *, compress: bool, ome: bool,
                 axes: str, scale: dict, units: dict):
    import zarr

    path = Path(os.path.abspath(path))  # the array may be pickled to workers with another cwd
    major = _zarr_major()
    if major >= 3:
        kw: dict[str, Any] = {"zarr_format": 2}
        if not compress:
            kw["compressors"] = None
    else:
        kw = {} if compress else {"compressor": None}
    if ome:
        group = zarr.open_group(store=str(path), mode="w", **({"zarr_format": 2} if major >= 3 else {}))
        if major >= 3:
            arr = group.create_array("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
                                     chunk_key_encoding={"name": "v2", "separator": "/"},
                                     **{k: v for k, v in kw.items() if k != "zarr_format"})
        else:
            arr = group.create_dataset("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
                                       dimension_separator="/", **kw)
        group.attrs["multiscales"] = [_ngff_multiscales(axes, scale, units)]
        return arr
    if major >= 3:
        arr = zarr.create_array(store=str(path), shape=shape, chunks=chunks, dtype=dtype, fill_value=0, **kw)
    else:
        arr = zarr.open_array(str(path), mode="w", shape=shape, chunks=chunks, dtype=dtype, fill_value=0, **kw)
    attrs: dict[str, Any] = {"_ARRAY_DIMENSIONS": [a.lower() for a in axes]}
    if scale:
        attrs["pixel_size"] = scale
    if units:
        attrs["pixel_unit"] = units
    arr.attrs.update(attrs)
    return arr


def _ngff_multiscales(axes: str, scale: dict, units: dict) -> dict:
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
        "name": "image",
        "axes": axes_meta,
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": factors}]}],
    }


def _default_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    lead = (1,) * (len(shape) - 2)
    return (*lead, *(min(n, 4096) for n in shape[-2:]))


def _check_compression(compression: str | None) -> None:
    """Fail before any work when a TIFF codec is unavailable (all but zlib need imagecodecs)."""
    if compression in (None, "none", "zlib", "deflate", "adobe_deflate"):
        return
    import importlib.util

    if importlib.util.find_spec("imagecodecs") is None:
        raise ValueError(f"TIFF compression {compression!r} needs the imagecodecs package "
                         f"(pip install imagecodecs); 'zlib' works without it")


def _is_imagej_order(axes: str) -> bool:
    positions = [_IMAGEJ_ORDER.find(a) for a in axes]
    return all(p >= 0 for p in positions) and positions == sorted(positions)


def _write_tiff(path: Path, src, axes: str, scale: dict, units: dict, *, ome: bool,
                compression: str | None) -> None:
    import tifffile

    shape = tuple(int(s) for s in src.shape)
    dtype = np.dtype(src.dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    big = nbytes > _BIGTIFF_BYTES
    imagej = not ome and dtype in _IMAGEJ_DTYPES and _is_imagej_order(axes) and not big
    kwargs: dict[str, Any] = {}
    if compression and compression != "none":
        kwargs["compression"] = compression
    if imagej:
        meta: dict[str, Any] = {"axes": axes}
        if "Z" in scale:
            meta["spacing"] = scale["Z"]
        if "T" in scale:
            meta["finterval"] = scale["T"]
        unit = next((units[a] for a in "XYZ" if a in units), None)
        if unit:
            meta["unit"] = _IMAGEJ_UNITS.get(unit, unit)
        if "X" in scale or "Y" in scale:
            kwargs["resolution"] = (1.0 / scale.get("X", 1.0), 1.0 / scale.get("Y", scale.get("X", 1.0)))
        kwargs.update(imagej=True, metadata=meta)
    else:
        meta = {"axes": axes}
        for letter in "XYZ":
            if letter in scale:
                meta[f"PhysicalSize{letter}"] = scale[letter]
                if letter in units:
                    meta[f"PhysicalSize{letter}Unit"] = _OME_SYMBOLS.get(units[letter], units[letter])
        if "T" in scale:
            meta["TimeIncrement"] = scale["T"]
            if "T" in units:
                meta["TimeIncrementUnit"] = _OME_SYMBOLS.get(units["T"], units["T"])
        kwargs.update(ome=True, metadata=meta, bigtiff=big)

    lead = shape[:-2]

    def pages() -> Iterator[np.ndarray]:
        for index in np.ndindex(*lead):
            yield np.ascontiguousarray(np.asarray(src[index]), dtype=dtype)

    if lead:
        tifffile.imwrite(path, pages(), shape=shape, dtype=dtype, **kwargs)
    else:
        tifffile.imwrite(path, np.asarray(src[...]), **kwargs)


def _write_npy(path: Path, src) -> None:
    shape = tuple(int(s) for s in src.shape)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(src.dtype), shape=shape)
    try:
        for index in np.ndindex(*shape[:1]):
            mm[index] = np.asarray(src[index])
        mm.flush()
    finally:
        del mm


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

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    FileNotFoundError
        ``path``'s folder does not exist.
    """
    path = Path(path)
    kind = output_format(path)
    _check_target(path, overwrite)
    shape = tuple(int(s) for s in shape)
    dtype = np.dtype(dtype)
    if dtype.kind not in "uifb":
        raise TypeError(f"cannot write images of dtype {dtype}")
    axes, scale, units = _clean_metadata(shape, axes, scale, units)
    if kind in ("tiff", "ome-tiff"):
        _check_compression(compression)
    chunks = tuple(chunks) if chunks is not None else _default_chunks(shape)
    tmp = _temp_name(path)
    scratch = _temp_name(path, "scratch") if kind in ("tiff", "ome-tiff", "npy") else None
    try:
        target = scratch if scratch is not None else tmp
        arr = _create_zarr(target, shape, dtype, chunks, compress=scratch is None and compression is not None,
                           ome=kind == "ome-zarr", axes=axes, scale=scale, units=units)
        yield arr
        if kind in ("tiff", "ome-tiff"):
            _write_tiff(tmp, arr, axes, scale, units, ome=kind == "ome-tiff", compression=compression)
        elif kind == "npy":
            _write_npy(tmp, arr)
        _replace(tmp, path)
    except BaseException:
        _settle_zarr_io()  # before removing what those writes go to
        raise
    finally:
        if scratch is not None:
            _remove(scratch)
        if os.path.lexists(tmp):
            _remove(tmp)


def write_image(
    path: str | os.PathLike,
    data: Any,
    *,
    axes: str | None = None,
    scale: Mapping[str, float] | None = None,
    units: Mapping[str, str] | None = None,
    compression: str | None = "zlib",
    overwrite: bool = False,
) -> Path:
    """Write an array (numpy, memmap, zarr or dask) to ``path``, slice by slice, atomically.

    The format comes from the extension; see the module docstring and `create_image` for
    the parameters. Returns the path written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> labels = np.zeros((3, 32, 32), np.uint16)
    >>> _ = write_image(folder / "labels.tif", labels, axes="ZYX", scale={"Z": 2.0, "Y": 0.5, "X": 0.5},
    ...                 units={"X": "um", "Y": "um", "Z": "um"})
    >>> with read_image(folder / "labels.tif") as back:
    ...     back.axes, back.dtype, back.scale["Z"], back.units["X"]
    ('ZYX', dtype('uint16'), 2.0, 'micrometer')
    """
    shape = tuple(int(s) for s in data.shape)
    with create_image(path, shape, data.dtype, axes=axes, scale=scale, units=units,
                      compression=compression, overwrite=overwrite) as out:
        if len(shape) <= 2:
            out[...] = np.asarray(data)
        else:
            for i in range(shape[0]):
                out[i] = np.asarray(data[i])
    return Path(path)
