"""Reading zarr: a plain array (axes from ``_ARRAY_DIMENSIONS``), a group, or OME-Zarr.

OME-Zarr 0.4 and 0.5 (``multiscales`` at the top, or under ``ome``) and the
bioformats2raw layout (the image in group ``0``) are read; pixel sizes are the product of
the level's and the image's ``scale`` transformations. The array is a `CheckedZarr`: a damaged chunk is
an OSError naming the store and the chunk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .axes import canonical_unit, normalize_axes
from .image import ImageData
from .zarr_chunks import CheckedZarr
from .zarr_write import LABELS_KEY

__all__ = ["read_zarr"]


def read_zarr(path: Path, level: int) -> ImageData:
    """Open the zarr store ``path``: resolution level ``level`` of an OME-Zarr image, the
    array of a plain store, or the only array of a group.

    Raises
    ------
    ValueError
        A group without OME-Zarr metadata holding other than one array, or no such level.
    """
    import zarr

    node = zarr.open(store=str(path), mode="r")
    if isinstance(node, zarr.Array):
        image = _plain_image(node)
    else:
        image = _group_image(node, level)
    image.data = CheckedZarr(image.data, path)  # a damaged chunk: one error naming it
    return image


def _group_image(node, level: int) -> ImageData:
    group, attrs = _image_group(node)
    multiscales = _multiscales(attrs)
    if not multiscales:
        arrays = sorted(group.array_keys())
        if len(arrays) == 1:
            return _plain_image(group[arrays[0]])
        raise ValueError(
            f"a zarr group without OME-Zarr 'multiscales' metadata and {len(arrays)} arrays "
            f"({', '.join(arrays) or 'none'}): open one of them"
        )
    return _ome_image(group, multiscales[0], level)


def _multiscales(attrs: dict):
    return attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")


def _image_group(group) -> tuple[object, dict]:
    """The group holding the image and its attributes (bioformats2raw: the group ``0``)."""
    attrs = dict(group.attrs)
    if "multiscales" not in attrs and "multiscales" not in attrs.get("ome", {}):
        sub = list(group.group_keys()) if hasattr(group, "group_keys") else []
        if "0" in sub:
            inner = group["0"]
            inner_attrs = dict(inner.attrs)
            if "multiscales" in inner_attrs or "multiscales" in inner_attrs.get("ome", {}):
                return inner, inner_attrs
    return group, attrs


def _ome_image(group, ms: dict, level: int) -> ImageData:
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
    attrs = dict(group.attrs)
    scale: dict[str, float] = {}
    units: dict[str, str] = {}
    if axes is not None:
        for i, letter in enumerate(axes):
            if letter in "TZYX" and (factors[i] != 1.0 or units_by_index[i]):
                scale[letter] = float(factors[i])
                if units_by_index[i]:
                    units[letter] = units_by_index[i]
    labels = LABELS_KEY in attrs or LABELS_KEY in attrs.get("ome", {})
    name = ms.get("name") if isinstance(ms.get("name"), str) else None
    return ImageData(arr, axes, scale, units, format="ome-zarr", labels=labels, name=name)


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
    return normalize_axes("".join(letters)), units


def _plain_image(arr) -> ImageData:
    """A zarr array with the axes and pixel sizes in its attributes (as `create_image` writes)."""
    attrs = dict(arr.attrs)
    names = attrs.get("_ARRAY_DIMENSIONS")
    if names is None:
        names = getattr(getattr(arr, "metadata", None), "dimension_names", None)
    axes = None
    if names and len(names) == len(arr.shape) and all(names):
        axes = normalize_axes("".join(str(n)[0] for n in names))
    scale = {str(k): float(v) for k, v in (attrs.get("pixel_size") or {}).items()}
    units = {str(k): str(canonical_unit(v)) for k, v in (attrs.get("pixel_unit") or {}).items()}
    return ImageData(arr, axes, scale, units, format="zarr", labels=LABELS_KEY in attrs)
