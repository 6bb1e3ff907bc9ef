"""Instance labels -> the classes an instance model learns, and the model's metadata.

An *instance model* is a softmax model with three classes: background (0), interior (1)
and boundary (2). A boundary pixel is an object pixel within ``boundary_width`` pixels
(4-connected steps) of a pixel with another value: another object or the background. So
two touching objects are parted by a boundary band ``2 * boundary_width`` pixels wide, and
the connected components of the interior are one per object: the markers the decoding
(`napari_unet_stack.postprocess`) grows back into the foreground.

``meta["instances"]`` tells that a model is such a model and how to decode it (see
`instance_meta`); ``meta["class_values"]`` is ``[0, 1, 1]``, so that its plain labels
(``segment(..., instances=False)``) are the foreground: 1 for interior and boundary alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_BOUNDARY_WIDTH",
    "INSTANCE_CLASSES",
    "check_instance_labels",
    "instance_meta",
    "instance_targets",
    "instance_training_labels",
    "is_instance_model",
]

#: The classes of an instance model, by output channel.
INSTANCE_CLASSES = {"background": 0, "interior": 1, "boundary": 2}
#: Boundary width (pixels on each side of an object border) of `instance_targets`.
DEFAULT_BOUNDARY_WIDTH = 1
#: The value `instance_targets` gives unlabelled pixels of sparse labels.
UNLABELLED = -1


def _slice_targets(ids: np.ndarray, width: int, sparse: bool) -> np.ndarray:
    """One (Y, X) slice of ids -> 0 / 1 / 2 (and -1 where unlabelled with ``sparse``)."""
    from scipy import ndimage as ndi

    objects = ids >= 2 if sparse else ids > 0
    # a pixel is near a border when some pixel within `width` 4-connected steps differs
    cross = ndi.generate_binary_structure(2, 1)
    footprint = ndi.iterate_structure(cross, width) if width > 1 else cross
    high = ndi.maximum_filter(ids, footprint=footprint, mode="nearest")
    low = ndi.minimum_filter(ids, footprint=footprint, mode="nearest")
    border = (high != ids) | (low != ids)
    out = np.zeros(ids.shape, np.int8)
    out[objects] = INSTANCE_CLASSES["interior"]
    out[objects & border] = INSTANCE_CLASSES["boundary"]
    if sparse:
        out[ids == 0] = UNLABELLED
    return out


def instance_targets(labels: Any, *, boundary_width: int = DEFAULT_BOUNDARY_WIDTH, sparse: bool = False) -> np.ndarray:
    """The background / interior / boundary classes of instance labels, slice by slice.

    Parameters
    ----------
    labels : (..., Y, X) integer array_like
        Instance labels: each object its own id. Dense (``sparse=False``): 0 is the
        background. Sparse (painted in napari): 0 is unlabelled, 1 painted background, and
        each id >= 2 an object (painted whole: its outline is its boundary).
    boundary_width : int
        Object pixels this many 4-connected steps or fewer from another value are boundary
        (1: the object's outermost ring). At least 1.
    sparse : bool
        Whether 0 means unlabelled (then -1 in the result).

    Returns
    -------
    targets : (..., Y, X) int8 ndarray
        0 background, 1 interior, 2 boundary (`INSTANCE_CLASSES`), -1 unlabelled (sparse).
        Each (Y, X) slice on its own: objects are parted in-plane.

    >>> ids = np.array([[0, 1, 1, 1, 2, 2, 2, 0]] * 3)
    >>> instance_targets(ids)[1].tolist()
    [0, 2, 1, 2, 2, 1, 2, 0]
    """
    from ..validation import check_int

    width = check_int("boundary_width", boundary_width)
    ids = np.asarray(labels)
    check_instance_labels(ids, "labels", sparse=sparse, at_least=1)
    ids = ids.astype(np.int64, copy=False)
    flat = ids.reshape(-1, *ids.shape[-2:])
    out = np.stack([_slice_targets(s, width, sparse) for s in flat])
    return out.reshape(ids.shape)


def check_instance_labels(labels: np.ndarray, name: str, *, sparse: bool, at_least: int = 2) -> None:
    """ValueError unless ``labels`` are non-negative integers of at least ``at_least`` objects."""
    if labels.ndim < 2:
        raise ValueError(f"`{name}` must have at least 2 dimensions (Y, X), got shape {labels.shape}")
    if labels.dtype.kind not in "uib":
        raise ValueError(f"`{name}` (instance labels) must have an integer dtype, got {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"`{name}` (instance labels) must be >= 0, got a minimum of {labels.min()}")
    first = 2 if sparse else 1
    n = int(np.unique(labels[labels >= first]).size) if labels.size else 0
    if n < at_least:
        what = "ids >= 2 (sparse: 0 unlabelled, 1 background)" if sparse else "ids >= 1 (0 background)"
        raise ValueError(
            f"`{name}` must hold instance labels with at least {at_least} objects ({what}), got {n}; "
            f"label each object with its own id (e.g. skimage.measure.label of a mask)"
        )


def instance_meta(*, boundary_width: int = DEFAULT_BOUNDARY_WIDTH, marker_threshold: float = 0.5,
                  min_size: int = 0) -> dict[str, Any]:
    """The ``meta["instances"]`` of an instance model: what it learnt and how to decode it.

    ``decoding`` is ``"seeded_watershed"``: markers are the connected components of
    P(interior) > ``marker_threshold`` inside the foreground (P(foreground) > the
    segmentation threshold), grown into the foreground by a watershed of its distance
    transform; ``min_size`` is the suggested smallest object.
    """
    return {
        "decoding": "seeded_watershed",
        "classes": dict(INSTANCE_CLASSES),
        "boundary_width": int(boundary_width),
        "marker_threshold": float(marker_threshold),
        "min_size": int(min_size),
    }


def is_instance_model(model: Any) -> bool:
    """Whether ``model`` (a network, or its ``meta`` dict) is an instance model."""
    meta = model if isinstance(model, dict) else (getattr(model, "meta", None) or {})
    info = meta.get("instances")
    return isinstance(info, dict) and info.get("decoding") == "seeded_watershed"


def instance_training_labels(labels: Any, *, boundary_width: int, sparse: bool) -> tuple[Any, list[np.ndarray]]:
    """``train(instances=True)``'s labels -> (class labels in `train`'s convention, the
    instance ids of each array). Dense: 0/1/2; sparse: 0 unlabelled, 1 background, 2
    interior, 3 boundary (a painted value v is class v - 1)."""
    single = not isinstance(labels, (list, tuple))
    arrays = [labels] if single else list(labels)
    ids, targets = [], []
    total = 0
    for k, lab in enumerate(arrays):
        name = "labels" if single else f"labels[{k}]"
        if not hasattr(lab, "shape") or not hasattr(lab, "dtype"):
            raise TypeError(f"`{name}` must be an array (numpy, dask, zarr), got {type(lab).__name__}")
        arr = np.asarray(lab)
        check_instance_labels(arr, name, sparse=sparse, at_least=0)
        total += int(np.unique(arr[arr >= (2 if sparse else 1)]).size)
        t = instance_targets(arr, boundary_width=boundary_width, sparse=sparse) if arr.size else arr.astype(np.int8)
        ids.append(arr)
        targets.append((t + 1).astype(np.int8) if sparse else t)
    if total < 2:
        what = "ids >= 2 (sparse: 0 unlabelled, 1 background)" if sparse else "ids >= 1 (0 background)"
        raise ValueError(f"`labels` with instances=True must hold at least 2 objects, each its own id ({what}), "
                         f"got {total}; label each object with its own id (e.g. skimage.measure.label)")
    return (targets[0] if single else targets), ids


def prepare_instance_model(net: Any, data: Any, ids: list[np.ndarray], boundary_width: int) -> None:
    """Check ``net`` can learn the instance classes, give it the instance metadata, and
    attach each training slice's instance ids (for validation's instance F1)."""
    if net.activation != "softmax" or int(net.out_channels) != len(INSTANCE_CLASSES):
        raise ValueError(
            f"`instances=True` trains background / interior / boundary: the model must be a softmax model with "
            f"3 output channels, got {net.activation} with {net.out_channels}; pass model=None for a new one"
        )
    info = net.meta.get("instances") if isinstance(net.meta.get("instances"), dict) else {}
    meta = instance_meta(boundary_width=boundary_width)
    for key in ("marker_threshold", "min_size"):  # a fine-tuned instance model keeps its tuning
        if key in info:
            meta[key] = info[key]
    net.meta["instances"] = meta
    net.meta["class_values"] = [0, 1, 1]
    net.meta["class_names"] = list(INSTANCE_CLASSES)
    for s in data.slices:
        index, lead = s.source
        s.instances = np.asarray(ids[index][lead])
