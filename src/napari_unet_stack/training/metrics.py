"""Overlap metrics on label arrays: Dice and IoU per class.

Examples
--------
>>> import numpy as np
>>> true = np.array([[0, 1, 1], [0, 2, 2]])
>>> pred = np.array([[0, 1, 0], [0, 2, 2]])
>>> dice(pred, true)
{1: 0.6666666666666666, 2: 1.0}
>>> iou(pred, true, classes=[1])
{1: 0.5}
>>> foreground_dice(pred, true)
0.8571428571428571
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["confusion_counts", "dice", "foreground_dice", "iou", "mean_score"]


def _check_pair(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None):
    pred = np.asarray(pred)
    true = np.asarray(true)
    if pred.shape != true.shape:
        raise ValueError(
            f"`pred_labels` (shape {pred.shape}) must have the same shape as `true_labels` (shape {true.shape})"
        )
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != true.shape:
            raise ValueError(
                f"`mask` (shape {mask.shape}) must have the shape of `true_labels` ({true.shape})"
            )
        pred, true = pred[mask], true[mask]
    return pred.ravel(), true.ravel()


def confusion_counts(
    pred_labels: np.ndarray,
    true_labels: np.ndarray,
    classes: Iterable[int],
    *,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, false positives and false negatives per class (int64 arrays).

    Counts add up over images, so metrics over a data set are computed from the sums.
    """
    pred, true = _check_pair(pred_labels, true_labels, mask)
    classes = [int(c) for c in classes]
    tp = np.zeros(len(classes), np.int64)
    fp = np.zeros(len(classes), np.int64)
    fn = np.zeros(len(classes), np.int64)
    for k, c in enumerate(classes):
        p = pred == c
        t = true == c
        both = int(np.count_nonzero(p & t))
        tp[k] = both
        fp[k] = int(np.count_nonzero(p)) - both
        fn[k] = int(np.count_nonzero(t)) - both
    return tp, fp, fn


def _classes(pred: np.ndarray, true: np.ndarray, classes) -> list[int]:
    if classes is not None:
        return [int(c) for c in classes]
    values = np.union1d(np.unique(pred), np.unique(true))
    return [int(v) for v in values if v != 0]


def _scores(tp, fp, fn, kind: str) -> np.ndarray:
    tp, fp, fn = (np.asarray(a, np.float64) for a in (tp, fp, fn))
    denom = 2 * tp + fp + fn if kind == "dice" else tp + fp + fn
    num = 2 * tp if kind == "dice" else tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, num / np.where(denom > 0, denom, 1), np.nan)


def dice(
    pred_labels: np.ndarray,
    true_labels: np.ndarray,
    *,
    classes: Iterable[int] | None = None,
    mask: np.ndarray | None = None,
) -> dict[int, float]:
    """Dice coefficient ``2 |P & T| / (|P| + |T|)`` per label value.

    Parameters
    ----------
    pred_labels, true_labels : integer arrays of the same shape
    classes : iterable of int, optional
        Label values to score; default: every non-zero value present in either array
        (0 is background).
    mask : bool array, optional
        Only pixels where ``mask`` is true count (e.g. painted pixels of sparse labels).

    Returns
    -------
    dict
        ``{value: score}``; NaN for a value absent from both arrays.
    """
    pred, true = _check_pair(pred_labels, true_labels, mask)
    classes = _classes(pred, true, classes)
    scores = _scores(*confusion_counts(pred, true, classes), "dice")
    return {c: float(s) for c, s in zip(classes, scores, strict=True)}


def iou(
    pred_labels: np.ndarray,
    true_labels: np.ndarray,
    *,
    classes: Iterable[int] | None = None,
    mask: np.ndarray | None = None,
) -> dict[int, float]:
    """Intersection over union (Jaccard) ``|P & T| / |P | T|`` per label value; as `dice`."""
    pred, true = _check_pair(pred_labels, true_labels, mask)
    classes = _classes(pred, true, classes)
    scores = _scores(*confusion_counts(pred, true, classes), "iou")
    return {c: float(s) for c, s in zip(classes, scores, strict=True)}


def foreground_dice(
    pred_labels: np.ndarray, true_labels: np.ndarray, *, mask: np.ndarray | None = None
) -> float:
    """Dice of ``pred_labels > 0`` against ``true_labels > 0`` (semantic or instance labels)."""
    pred, true = _check_pair(pred_labels, true_labels, mask)
    return dice(pred > 0, true > 0, classes=[1])[1]


def mean_score(scores: dict[int, float]) -> float:
    """Mean of the defined (non-NaN) scores; NaN when none is defined."""
    values = [v for v in scores.values() if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")
