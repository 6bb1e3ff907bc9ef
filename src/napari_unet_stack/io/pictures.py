"""PNG, JPEG and BMP inputs, read whole through imageio (Pillow): read, never written.

Gray pictures are ``YX``; RGB and RGBA (and gray + alpha) ones get a channel axis last,
``YXC``. Palette pictures come as RGB(A). Only the first frame of an animated PNG is read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..validation import first_line
from .image import ImageData

__all__ = ["read_picture"]


def read_picture(path: Path, kind: str) -> ImageData:
    """The picture at ``path`` (format ``kind``: ``'png'``, ``'jpeg'`` or ``'bmp'``) in memory.

    Raises
    ------
    ValueError
        ``path`` is a folder or not a readable picture (Pillow's reason in one line).
    """
    import imageio.v3 as iio

    if path.is_dir():
        raise ValueError("it is a folder")
    try:
        data = np.asarray(iio.imread(path, plugin="pillow", index=0))
    except (OSError, ValueError, SyntaxError, EOFError, RuntimeError, IndexError) as err:
        # Pillow reports a damaged PNG chunk as a SyntaxError
        raise ValueError(f"not a readable picture ({first_line(err)})") from err
    if data.ndim == 2:
        axes = "YX"
    elif data.ndim == 3 and data.shape[-1] in (2, 3, 4):
        axes = "YXC"
    else:
        raise ValueError(f"a picture of shape {data.shape} is neither gray nor RGB(A)")
    return ImageData(data, axes, format=kind)
