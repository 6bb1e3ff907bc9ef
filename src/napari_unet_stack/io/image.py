"""`ImageData`: an array read from disk, lazily, with the axes and pixel sizes of its file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ImageData"]


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
        ``'tiff'``, ``'imagej-tiff'``, ``'ome-tiff'``, ``'zarr'``, ``'ome-zarr'``, ``'npy'``,
        ``'png'``, ``'jpeg'`` or ``'bmp'``.
    labels : bool
        The file is marked as labels (written with ``labels=True``: OME-Zarr
        ``image-label`` metadata, or this package's TIFF Software tag).
    name : str or None
        The image's name in the file's metadata (OME-Zarr ``multiscales``, OME-TIFF).
    """

    data: Any
    axes: str | None = None
    scale: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    format: str = "array"
    labels: bool = False
    name: str | None = None
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
