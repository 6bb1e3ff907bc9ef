"""Label values -> class indices, and how many classes a new model is built for.

The one rule for both, read by `train` (``model=None`` sizes the network from the labels),
the Train widget and ``unet-stack train`` (`classes_for`):

- dense labels 0..K-1 make K classes (at least 2);
- a mask holding two values ``{0, v}`` with ``v >= BINARY_FROM`` (16: no class index of a
  small model, e.g. 0/255 or 0/65535 masks) that the model does not hold otherwise, is
  *binary*: ``v`` is the foreground, with a note (a UserWarning); a smaller ``v`` stays class
  ``v``;
- more than `MAX_CLASSES` classes (instance labels, a value like 10**6) is a ValueError
  that says how to remap, before anything is allocated for them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "BINARY_FROM",
    "MAX_CLASSES",
    "binary_or_checked",
    "classes_for",
    "describe_capacity",
    "integer_labels",
    "label_capacity",
    "to_targets",
]

#: the most classes a network is built for from label values
MAX_CLASSES = 256
#: the smallest ``v`` of a two-valued ``{0, v}`` mask that is read as binary
BINARY_FROM = 16


def integer_labels(labels: np.ndarray, name: str) -> np.ndarray:
    """``labels`` as int64 (bool, integer, or floats holding integers), else ValueError."""
    if labels.dtype.kind == "b":
        return labels.astype(np.int64)
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise ValueError(f"`{name}` contains NaN or infinite values; labels must be integers")
        rounded = np.rint(labels)
        if not np.array_equal(rounded, labels):
            raise ValueError(
                f"`{name}` has dtype {labels.dtype} with non-integer values; labels must be integers"
            )
        labels = rounded
    if labels.dtype == np.uint64 and labels.max() > np.iinfo(np.int64).max:
        raise ValueError(f"`{name}` has label values too large ({labels.max()})")
    labels = labels.astype(np.int64, copy=False)
    if labels.min() < 0:
        raise ValueError(
            f"`{name}` has negative label values (min {labels.min()}); labels must be >= 0"
        )
    return labels


def label_capacity(model: Any) -> int:
    """How many class indices a model's targets can hold (softmax K; sigmoid 1 -> 2; K -> K + 1)."""
    k = int(model.out_channels)
    if model.activation == "sigmoid":
        return k + 1
    return k


def describe_capacity(model: Any, sparse: bool) -> str:
    n = label_capacity(model)
    if sparse:
        return f"painted values 1..{n} (0 = unlabelled)"
    return f"values 0..{n - 1}"


def to_targets(
    labels: np.ndarray, *, sparse: bool, class_values: Sequence[int] | None, name: str
) -> np.ndarray:
    """Label values -> class indices (IGNORE where unlabelled)."""
    if sparse:
        return labels - 1  # 0 (unlabelled) -> -1 = IGNORE
    if class_values is not None:
        # class index k is written as class_values[k] (an int, or a list of ints)
        pairs = [
            (int(v), k)
            for k, entry in enumerate(class_values)
            for v in (entry if isinstance(entry, (list, tuple)) else [entry])
        ]
        values = np.array(sorted({v for v, _ in pairs}), dtype=np.int64)
        lut = np.full(int(max(values.max(), labels.max())) + 1, -2, dtype=np.int64)
        for v, k in pairs:
            lut[v] = k
        out = lut[labels]
        if (out == -2).any():
            bad = np.unique(labels[out == -2])[:8].tolist()
            raise ValueError(
                f"`{name}` has label values {bad} that are not among the model's class values "
                f"{values.tolist()}"
            )
        return out
    return labels


def _distinct(labels: Sequence[np.ndarray]) -> np.ndarray:
    """The values found in any of ``labels`` (sorted)."""
    return np.unique(np.concatenate([np.unique(lab) for lab in labels]))


def _check_count(values: np.ndarray, top: int, n_classes: int) -> None:
    """ValueError when ``n_classes`` (from the largest value ``top``) is beyond `MAX_CLASSES`."""
    if n_classes <= MAX_CLASSES:
        return
    remap = "remap them to 0..K-1 (e.g. np.unique(labels, return_inverse=True))"
    if values.size > MAX_CLASSES:
        raise ValueError(
            f"`labels` hold {values.size} distinct values (up to {top}): more than the {MAX_CLASSES} "
            f"classes a model is built for. Instance labels? Train on `labels > 0` (in the Train "
            f"widget: 'any label is foreground'); else {remap}"
        )
    shown = ", ".join(str(v) for v in values[:8].tolist()) + (", ..." if values.size > 8 else "")
    raise ValueError(
        f"`labels` have values up to {top} ({values.size} distinct: {shown}): a model of "
        f"{n_classes} classes, while a model is built for at most {MAX_CLASSES} classes; {remap}"
    )


def binary_or_checked(
    labels: list[np.ndarray], *, sparse: bool, capacity: int | None
) -> list[np.ndarray]:
    """``labels`` (integer arrays >= 0) as `to_targets` takes them: a two-valued mask ``{0, v}``
    (``v >= BINARY_FROM``) that does not fit ``capacity`` (None: a model is to be built for
    them) becomes 0/1, with a UserWarning; too many classes for a new model is a ValueError (see the module docstring).
    """
    top = max(int(lab.max()) for lab in labels)
    n_classes = top if sparse else top + 1
    if top <= 1 or (capacity is not None and n_classes <= capacity):
        return labels
    values = _distinct(labels)
    if not sparse and values.size == 2 and values[0] == 0 and top >= BINARY_FROM:
        warnings.warn(
            f"`labels` hold only the values 0 and {top}: trained as a binary mask (0 = background, "
            f"{top} = foreground); the model writes 1 for the foreground",
            UserWarning,
            stacklevel=5,
        )
        return [(lab > 0).astype(np.uint8) for lab in labels]
    if capacity is None:
        _check_count(values, top, n_classes)
    return labels


def classes_for(labels: Any, *, sparse: bool = False) -> int:
    """The output classes of a new softmax network for ``labels`` (an array or a list of them):
    at least 2; a binary ``{0, v}`` mask is 2 classes (with the note); ValueError beyond
    `MAX_CLASSES`. The Train widget and ``unet-stack train`` size their networks with it.
    """
    arrays = list(labels) if isinstance(labels, (list, tuple)) else [labels]
    arrays = [integer_labels(np.asarray(lab), "labels") for lab in arrays if np.size(lab)]
    arrays = binary_or_checked(arrays, sparse=sparse, capacity=None)
    top = max((int(lab.max()) for lab in arrays), default=0)
    return max(2, top if sparse else top + 1)
