"""`read_image`: any supported file or zarr store, opened lazily, as an `ImageData`."""

from __future__ import annotations

import os
from pathlib import Path

from ..validation import first_line
from .axes import check_axes
from .formats import FORMAT_NAMES, IMAGE_EXTENSIONS, is_zarr_dir, kind_of
from .image import ImageData
from .npy import read_npy
from .pictures import read_picture
from .tiff_read import read_tiff
from .zarr_read import read_zarr

__all__ = ["read_image"]

#: what a reader raises for a file it cannot read (turned into one ValueError naming the file)
_READ_ERRORS = (ValueError, OSError, KeyError, IndexError, TypeError, EOFError, RuntimeError)


def read_image(path: str | os.PathLike, *, axes: str | None = None, series: int = 0,
               level: int = 0) -> ImageData:
    """Open an image file or zarr store lazily.

    Parameters
    ----------
    path : str or Path
        TIFF (plain, ImageJ, OME, BigTIFF), zarr array or group, OME-Zarr, ``.npy``, or a
        PNG, JPEG or BMP picture (read whole; RGB(A) ones get axes ``YXC``).
    axes : str, optional
        The image's axes, one letter from ``TZCYX`` per dimension, in place of what the file
        says (``"ZYX"`` for a 3-plane stack that ``tifffile.imwrite`` stored as planar RGB,
        ``"CYX"``). Pixel sizes and units stay with their dimension (those of a dimension
        that becomes ``C`` are dropped).
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
    TypeError
        ``axes`` is not a string.
    ValueError
        The file is not a readable image of a supported format, or ``axes`` does not fit
        it (the message names the file).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {str(path)!r}")
    kind = kind_of(path)
    if kind is None and is_zarr_dir(path):
        kind = "zarr"
    if kind is None:
        raise ValueError(
            f"cannot read {str(path)!r}: unsupported extension (supported: {', '.join(IMAGE_EXTENSIONS)})"
        )
    try:
        image = _open(kind, path, series, level)
    except FileNotFoundError:
        raise
    except _READ_ERRORS as err:
        raise ValueError(f"cannot read {str(path)!r} as {FORMAT_NAMES[kind]}: {first_line(err)}") from err
    image.path = path
    if image.axes is not None and len(image.axes) != image.ndim:
        image.axes = None
    dtype = image.dtype
    if dtype.kind not in "uifb":
        image.close()
        raise ValueError(f"cannot read {str(path)!r}: unsupported data type {dtype}")
    if axes is not None:
        _override_axes(image, axes)
    return image


def _override_axes(image: ImageData, axes: str) -> None:
    """Give ``image`` the user's ``axes``; its pixel sizes and units follow their dimension
    while it stays spatial (``ZYX``) or time (``T``)."""
    try:
        letters = check_axes(axes, image.shape)
    except (TypeError, ValueError) as err:
        image.close()
        known = f" (the file says {image.axes})" if image.axes else ""
        raise type(err)(f"cannot read {str(image.path)!r}{known}: {err}") from None
    old = image.axes or ""
    kind = {"T": "time", "Z": "space", "Y": "space", "X": "space"}
    moved = {new: o for new, o in zip(letters, old, strict=False)
             if kind.get(new, new) == kind.get(o, o) and new != "C"}
    image.scale = {new: image.scale[o] for new, o in moved.items() if o in image.scale}
    image.units = {new: image.units[o] for new, o in moved.items() if o in image.units}
    image.axes = letters


def _open(kind: str, path: Path, series: int, level: int) -> ImageData:
    if kind in ("tiff", "ome-tiff"):
        return read_tiff(path, series)
    if kind in ("zarr", "ome-zarr"):
        return read_zarr(path, level)
    if kind == "npy":
        return read_npy(path)
    return read_picture(path, kind)
