"""Writer contributions: a Labels layer to TIFF or OME-Zarr, dtype kept, written atomically.

Both go through `napari_unet_stack.io.write_image`, which writes under a temporary name
beside the target and renames it into place (a failed write never leaves half a file
under the chosen name). The layer's axis labels, scale and units become the file's axes
and pixel sizes, its name the image's name; the files are marked as labels (OME-Zarr
``image-label``, a TIFF Software tag), so the plugin's reader opens them as Labels layers.

A writer never lets a ValueError out: napari takes one for "this writer does not apply"
and tells the user only that; a failure is an OSError that says what went wrong.
"""

from __future__ import annotations

import functools
import uuid
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_labels_tiff", "write_labels_zarr"]

_ZARR_HINT = "writing OME-Zarr needs the zarr package: pip install zarr"


def _reported(writer):
    """Turn ``writer``'s ValueErrors into OSErrors naming the path (see the module docstring),
    and refuse a missing folder up front (not in the name of a temporary file)."""

    @functools.wraps(writer)
    def write(path: str, data: Any, meta: dict) -> list[str]:
        folder = Path(path).parent
        if not folder.is_dir():
            raise FileNotFoundError(f"cannot write {str(path)!r}: folder {str(folder)!r} does not exist")
        try:
            return writer(path, data, meta)
        except ValueError as err:
            raise OSError(f"cannot write {str(path)!r}: {err}") from err

    return write


def _metadata(meta: dict, ndim: int, path: str) -> dict[str, Any]:
    """axes, scale, units and name for `write_image` from a layer's metadata."""
    from ..io import default_axes, normalize_axes, stem_of

    labels = [str(a).strip().upper() for a in (meta.get("axis_labels") or [])][-ndim:]
    if len(labels) == ndim and len(set(labels)) == ndim and all(len(a) == 1 and a in "TZYX" for a in labels):
        axes = "".join(labels)
    else:
        axes = normalize_axes(default_axes(ndim))  # as files name them: 5D is CTZYX
    scale = meta.get("scale")
    # a pixel size is positive: a negative scale is napari's flip of the display
    scale = {a: abs(float(s)) for a, s in zip(axes, scale[-ndim:], strict=True)} if scale is not None else {}
    units = meta.get("units")
    units = {a: str(u) for a, u in zip(axes, units[-ndim:], strict=True)
             if str(u) not in ("pixel", "dimensionless", "")} if units is not None else {}
    name = str(meta.get("name") or "").strip() or stem_of(path)
    return {"axes": axes, "scale": scale, "units": units, "labels": True, "name": name}


def _data(data: Any, meta: dict) -> Any:
    return data[0] if meta.get("multiscale") else data


@_reported
def write_labels_tiff(path: str, data: Any, meta: dict) -> list[str]:
    """Write one Labels layer to ``path`` (.tif/.tiff), zlib-compressed, dtype kept.

    ImageJ TIFF for uint8/uint16 labels (pixel sizes readable in Fiji), OME-TIFF for
    other dtypes.
    """
    from ..io import write_image

    data = _data(data, meta)
    options = _metadata(meta, len(data.shape), path)
    if np.dtype(data.dtype).itemsize == 8 and np.dtype(data.dtype).kind in "iu":
        return [str(_write_plain_tiff(Path(path), data, options))]
    written = write_image(path, data, overwrite=True, **options)
    return [str(written)]


def _write_plain_tiff(path: Path, data: Any, options: dict) -> Path:
    """64-bit labels, which neither ImageJ nor OME-TIFF can hold: a plain TIFF (tifffile's
    JSON description carries axes, scale and units), written under a temporary name."""
    import tifffile

    from ..io.atomic import write_atomically
    from ..io.tiff_write import LABELS_SOFTWARE

    write_atomically(path, lambda tmp: tifffile.imwrite(
        tmp, np.asarray(data), compression="zlib", photometric="minisblack", software=LABELS_SOFTWARE,
        metadata={"axes": options["axes"], "scale": options["scale"], "units": options["units"]}))
    return path


@_reported
def write_labels_zarr(path: str, data: Any, meta: dict) -> list[str]:
    """Write one Labels layer to an OME-Zarr folder (NGFF 0.4, one full-resolution level).

    ``.ome.zarr`` and plain ``.zarr`` names both get OME-Zarr (napari-ome-zarr and Fiji's
    N5/Zarr readers open it).
    """
    try:
        import zarr  # noqa: F401
    except ImportError as err:  # pragma: no cover - zarr is a dependency today
        raise ImportError(_ZARR_HINT) from err
    from ..io import write_image

    data = _data(data, meta)
    target = Path(path)
    options = _metadata(meta, len(data.shape), path)
    if target.name.lower().endswith(".ome.zarr"):
        write_image(target, data, overwrite=True, **options)
        return [str(target)]
    # io picks OME-Zarr from the ".ome.zarr" extension: write a complete hidden one, then swap it in
    from ..io.atomic import remove, replace

    staged = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.ome.zarr"
    try:
        write_image(staged, data, **options)
        replace(staged, target)
    finally:
        remove(staged)
    return [str(target)]

