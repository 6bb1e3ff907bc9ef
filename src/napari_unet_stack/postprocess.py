"""Probabilities to labels: argmax or threshold, class values, instances, size filter."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def smallest_uint(max_value: int) -> np.dtype:
    """The smallest unsigned dtype holding ``max_value``.

    >>> smallest_uint(255), smallest_uint(256)
    (dtype('uint8'), dtype('uint16'))
    """
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"label value {max_value} does not fit in 64 bits")


def label_values(n_classes: int, activation: str, class_values: Sequence[int] | None) -> np.ndarray:
    """The value written for each class index (see `probabilities_to_classes`).

    softmax: one value per channel. sigmoid: background plus one value per channel
    (a single-channel model gives 0/1; a multilabel model numbers its channels from 1).
    ``class_values`` may list every value, or, for a multilabel sigmoid model, one per
    channel (background is then 0).

    >>> label_values(3, "sigmoid", None)
    array([0, 1, 2, 3])
    >>> label_values(2, "sigmoid", [5, 9])
    array([0, 5, 9])
    """
    n = n_classes + 1 if activation == "sigmoid" else n_classes
    if class_values is None:
        return np.arange(n, dtype=np.int64)
    values = np.asarray(class_values, dtype=np.int64)
    if activation == "sigmoid" and n_classes > 1 and values.shape == (n_classes,):
        values = np.concatenate([[0], values])
    if values.shape != (n,) or values.min() < 0:
        raise ValueError(f"`class_values` must be {n} non-negative ints, got {list(class_values)}")
    return values


def probabilities_to_classes(probs: np.ndarray, activation: str, threshold: float = 0.5) -> np.ndarray:
    """Class indices from probabilities ``(K, ...)``.

    softmax: argmax over classes. sigmoid with one channel: ``p > threshold``. sigmoid
    with several channels (multilabel): the most probable channel above ``threshold``,
    numbered from 1 (0 where none passes).
    """
    if activation == "softmax":
        return np.argmax(probs, axis=0)
    if probs.shape[0] == 1:
        return (probs[0] > threshold).astype(np.int64)
    best = np.argmax(probs, axis=0)
    passed = np.take_along_axis(probs, best[None], axis=0)[0] > threshold
    return np.where(passed, best + 1, 0)


def instance_labels(semantic: np.ndarray, *, ndim: int, min_size: int = 0) -> np.ndarray:
    """Connected components of equal non-zero labels over the last ``ndim`` axes.

    Leading axes beyond ``ndim`` (time, say) are labelled independently; ids are unique
    over the whole array. Components smaller than ``min_size`` pixels become 0. Returns
    the smallest unsigned dtype that holds the ids.
    """
    from skimage.measure import label
    from skimage.segmentation import relabel_sequential

    lead = semantic.shape[: semantic.ndim - ndim]
    out = np.zeros(semantic.shape, dtype=np.uint32 if semantic.size < 2**32 else np.uint64)
    offset = 0
    for index in np.ndindex(*lead):
        part = label(semantic[index], background=0, connectivity=1)
        if min_size > 0 and part.max() > 0:
            sizes = np.bincount(part.ravel())
            small = sizes < min_size
            small[0] = False
            part[small[part]] = 0
            part = relabel_sequential(part)[0]
        n = int(part.max())
        out[index] = np.where(part > 0, part + offset, 0)
        offset += n
    return out.astype(smallest_uint(offset), copy=False)
