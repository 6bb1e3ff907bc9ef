"""Formats and extensions: which format a path names, and what a zarr folder looks like."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "FORMAT_NAMES",
    "IMAGE_EXTENSIONS",
    "OUTPUT_EXTENSIONS",
    "READ_ONLY",
    "extension_of",
    "is_zarr_dir",
    "kind_of",
    "output_format",
    "stem_of",
]

#: extensions (lower case) of each format; longest first where they overlap
_EXTENSIONS = {
    "ome-zarr": (".ome.zarr",),
    "ome-tiff": (".ome.tif", ".ome.tiff", ".ome.btf"),
    "zarr": (".zarr",),
    "tiff": (".tif", ".tiff", ".btf", ".tf8", ".tf2"),
    "npy": (".npy",),
    "png": (".png",),
    "jpeg": (".jpg", ".jpeg"),
    "bmp": (".bmp",),
}
_ORDER = ("ome-zarr", "ome-tiff", "zarr", "tiff", "npy", "png", "jpeg", "bmp")
#: formats that are read (through imageio) but never written
READ_ONLY = ("png", "jpeg", "bmp")
#: every extension read, most specific first
IMAGE_EXTENSIONS = tuple(ext for kind in _ORDER for ext in _EXTENSIONS[kind])
#: every extension written
OUTPUT_EXTENSIONS = tuple(ext for kind in _ORDER if kind not in READ_ONLY for ext in _EXTENSIONS[kind])
#: each format as messages name it
FORMAT_NAMES = {"tiff": "TIFF", "ome-tiff": "OME-TIFF", "zarr": "zarr", "ome-zarr": "OME-Zarr",
                "npy": ".npy", "png": "PNG", "jpeg": "JPEG", "bmp": "BMP"}


def kind_of(path: str | os.PathLike) -> str | None:
    """The format ``path``'s extension names, or None for an extension of no supported format.

    Only the name counts (case-insensitive); the file need not exist. A folder without a
    zarr extension may still be a zarr store: see `is_zarr_dir`.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    str or None
        ``'ome-zarr'``, ``'ome-tiff'``, ``'zarr'``, ``'tiff'``, ``'npy'``, or one of the
        formats only read (`READ_ONLY`): ``'png'``, ``'jpeg'``, ``'bmp'``.

    Examples
    --------
    >>> kind_of("a/b.OME.TIF"), kind_of("c.zarr"), kind_of("d.JPG"), kind_of("e.gif")
    ('ome-tiff', 'zarr', 'jpeg', None)
    """
    name = Path(path).name.lower()
    for kind in _ORDER:
        if name.endswith(_EXTENSIONS[kind]):
            return kind
    return None


def is_zarr_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a zarr array or group (format 2 or 3).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    bool
        True for a folder with ``.zarray``, ``.zgroup`` or ``zarr.json`` in it, whatever its
        name; False for files, missing paths and other folders.
    """
    path = Path(path)
    return path.is_dir() and any((path / f).exists() for f in (".zarray", ".zgroup", "zarr.json"))


def output_format(path: str | os.PathLike) -> str:
    """The output format chosen by ``path``'s extension, or ValueError naming the choices
    (also for the formats only read, `READ_ONLY`).

    >>> output_format("a/labels.ome.tif"), output_format("x.zarr")
    ('ome-tiff', 'zarr')
    """
    kind = kind_of(path)
    if kind is None:
        raise ValueError(
            f"cannot tell the output format of {str(path)!r} from its extension: use one of "
            f"{', '.join(OUTPUT_EXTENSIONS)}"
        )
    if kind in READ_ONLY:
        raise ValueError(
            f"cannot write {str(path)!r}: {FORMAT_NAMES[kind]} files are read, not written; use "
            f"one of {', '.join(OUTPUT_EXTENSIONS)}"
        )
    return kind


def extension_of(path: str | os.PathLike) -> str:
    """The format extension of ``path`` (``'.ome.tif'``, ``'.zarr'``, ...) or ``''``.

    >>> extension_of("a.OME.zarr"), extension_of("b.txt")
    ('.ome.zarr', '')
    """
    name = Path(path).name.lower()
    for ext in sorted(IMAGE_EXTENSIONS, key=len, reverse=True):
        if name.endswith(ext):
            return ext
    return ""


def stem_of(path: str | os.PathLike) -> str:
    """``path``'s name without its format extension (``'a.ome.tif'`` -> ``'a'``).

    >>> stem_of("dir/a.ome.tif"), stem_of("b.tiff"), stem_of("notes.txt")
    ('a', 'b', 'notes')
    """
    name = Path(path).name
    ext = extension_of(path)
    return name[: len(name) - len(ext)] if ext else Path(path).stem
