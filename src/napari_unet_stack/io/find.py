"""Finding inputs: files, folders and glob patterns expanded into a list of image paths."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from .formats import IMAGE_EXTENSIONS, is_zarr_dir, kind_of

__all__ = ["find_images"]


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
        found.extend(_expand(os.fspath(item)))
    unique: dict[str, Path] = {}
    for p in found:
        unique.setdefault(os.path.abspath(p), p)
    return list(unique.values())


def _is_image(path: Path) -> bool:
    """A file or zarr folder with a supported extension."""
    return kind_of(path) is not None and (path.is_file() or is_zarr_dir(path))


def _expand(text: str) -> list[Path]:
    """The images one input names."""
    path = Path(text)
    if path.exists():
        if path.is_dir() and not is_zarr_dir(path) and kind_of(path) not in ("zarr", "ome-zarr"):
            return _folder_images(path, text)
        return [path]
    if glob.has_magic(text):
        matches = [m for m in map(Path, sorted(glob.glob(text, recursive=True))) if _is_image(m)]
        if not matches:
            raise FileNotFoundError(f"no images match {text!r}")
        return matches
    raise FileNotFoundError(f"no such file or folder: {text!r}")


def _folder_images(folder: Path, text: str) -> list[Path]:
    inside = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and _is_image(p))
    if not inside:
        raise FileNotFoundError(f"folder {text!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return inside
