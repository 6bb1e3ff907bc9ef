"""Overlap metrics on label arrays: Dice and IoU per class; objects matched at an IoU threshold.

`match_instances` pairs true and predicted objects (instance labels) one to one and gives
precision, recall, F1, the mean IoU of the matches and the panoptic quality;
`mean_average_precision` averages ``tp / (tp + fp + fn)`` over IoU 0.5:0.95.

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
from dataclasses import dataclass

import numpy as np

__all__ = ["AP_THRESHOLDS", "InstanceMatch", "confusion_counts", "dice", "foreground_dice", "iou", "match_instances",
           "mean_average_precision", "mean_score", "object_ious"]


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


# --- instance metrics: objects matched one to one at an IoU threshold ----------------------

#: The IoU thresholds of `mean_average_precision` (0.5, 0.55, ..., 0.95).
AP_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


@dataclass(frozen=True)
class InstanceMatch:
    """True and predicted objects matched one to one at an IoU threshold.

    Attributes
    ----------
    threshold : float
        A pair matches when its IoU is at least this.
    n_true, n_pred : int
        Objects (non-zero ids) in the ground truth and in the prediction.
    tp : int
        Matched pairs; ``fp = n_pred - tp``, ``fn = n_true - tp``.
    sum_iou : float
        Sum of the matched pairs' IoU.

    Matches over several images add up: ``sum(matches, start=InstanceMatch.empty(0.5))``.
    """

    threshold: float
    n_true: int
    n_pred: int
    tp: int
    sum_iou: float

    @classmethod
    def empty(cls, threshold: float) -> InstanceMatch:
        """No objects at all (the start of a sum over images)."""
        return cls(float(threshold), 0, 0, 0, 0.0)

    def __add__(self, other: InstanceMatch) -> InstanceMatch:
        if not isinstance(other, InstanceMatch) or other.threshold != self.threshold:
            raise ValueError("only matches at the same IoU threshold add up")
        return InstanceMatch(self.threshold, self.n_true + other.n_true, self.n_pred + other.n_pred,
                             self.tp + other.tp, self.sum_iou + other.sum_iou)

    @property
    def fp(self) -> int:
        """Predicted objects without a match."""
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        """True objects without a match."""
        return self.n_true - self.tp

    @property
    def precision(self) -> float:
        """``tp / n_pred`` (1.0 when both are empty, 0.0 when only the prediction is)."""
        return _ratio(self.tp, self.n_pred, self.n_true == 0)

    @property
    def recall(self) -> float:
        """``tp / n_true`` (1.0 when both are empty, 0.0 when only the truth is)."""
        return _ratio(self.tp, self.n_true, self.n_pred == 0)

    @property
    def f1(self) -> float:
        """``2 tp / (n_true + n_pred)``, the harmonic mean of precision and recall."""
        return _ratio(2 * self.tp, self.n_true + self.n_pred, True)

    @property
    def mean_iou(self) -> float:
        """Mean IoU of the matched pairs (segmentation quality; NaN without a match)."""
        return self.sum_iou / self.tp if self.tp else float("nan")

    @property
    def accuracy(self) -> float:
        """``tp / (tp + fp + fn)``: the "average precision" of the Data Science Bowl 2018
        and Cellpose at this threshold (no confidence ranking involved)."""
        return _ratio(self.tp, self.tp + self.fp + self.fn, True)

    @property
    def panoptic_quality(self) -> float:
        """``sum_iou / (tp + fp / 2 + fn / 2)`` = mean IoU x F1 (Kirillov et al. 2019)."""
        denom = self.tp + 0.5 * (self.fp + self.fn)
        return self.sum_iou / denom if denom else 1.0


def _ratio(num: float, denom: float, empty_is_perfect: bool) -> float:
    if denom:
        return float(num / denom)
    return 1.0 if empty_is_perfect else 0.0


def object_ious(pred_labels: np.ndarray, true_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """IoU of every overlapping (true, predicted) object pair.

    Returns
    -------
    true_ids, pred_ids, ious : ndarray
        One entry per pair of objects sharing at least one pixel.
    n_true, n_pred : int
        Objects (distinct non-zero ids) in each array.
    """
    pred, true = _check_pair(pred_labels, true_labels, None)
    t_ids, t_inv = np.unique(true, return_inverse=True)
    p_ids, p_inv = np.unique(pred, return_inverse=True)
    t_area = np.bincount(t_inv)
    p_area = np.bincount(p_inv)
    both = (true != 0) & (pred != 0)
    codes = t_inv[both].astype(np.int64) * len(p_ids) + p_inv[both]
    pairs, inter = np.unique(codes, return_counts=True)
    ti, pi = pairs // len(p_ids), pairs % len(p_ids)
    ious = inter / (t_area[ti] + p_area[pi] - inter)
    n_true = int(np.count_nonzero(t_ids))
    n_pred = int(np.count_nonzero(p_ids))
    return t_ids[ti], p_ids[pi], ious.astype(np.float64), n_true, n_pred


def _match(true_ids, pred_ids, ious, threshold: float) -> np.ndarray:
    """The IoUs of a one-to-one matching of the pairs at or above ``threshold``
    maximising the summed IoU (above 0.5 each object has at most one such pair)."""
    keep = ious >= threshold
    t, p, v = true_ids[keep], pred_ids[keep], ious[keep]
    if len(np.unique(t)) == len(t) and len(np.unique(p)) == len(p):
        return v
    from scipy.optimize import linear_sum_assignment

    tu, ti = np.unique(t, return_inverse=True)
    pu, pj = np.unique(p, return_inverse=True)
    matrix = np.zeros((len(tu), len(pu)))
    matrix[ti, pj] = v
    rows, cols = linear_sum_assignment(matrix, maximize=True)
    chosen = matrix[rows, cols]
    return chosen[chosen >= threshold]


def match_instances(pred_labels: np.ndarray, true_labels: np.ndarray, *, threshold: float = 0.5) -> InstanceMatch:
    """Match predicted to true objects one to one at an IoU threshold.

    Parameters
    ----------
    pred_labels, true_labels : integer arrays of the same shape
        Instance labels: 0 is background, each other id one object (2D or 3D).
    threshold : float
        A (true, predicted) pair can match when its IoU is at least this (0 < t <= 1).

    Returns
    -------
    InstanceMatch
        Counts with precision, recall, f1, mean_iou, accuracy and panoptic_quality.

    Examples
    --------
    >>> true = np.array([[1, 1, 0, 2, 2, 2]])
    >>> pred = np.array([[1, 1, 0, 0, 0, 3]])
    >>> m = match_instances(pred, true)
    >>> m.tp, m.fp, m.fn, m.f1
    (1, 1, 1, 0.5)
    """
    threshold = float(threshold)
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"`threshold` must be in (0, 1], got {threshold}")
    true_ids, pred_ids, ious, n_true, n_pred = object_ious(pred_labels, true_labels)
    matched = _match(true_ids, pred_ids, ious, threshold)
    return InstanceMatch(threshold, n_true, n_pred, len(matched), float(matched.sum()))


def mean_average_precision(pred_labels: np.ndarray, true_labels: np.ndarray, *,
                           thresholds: Iterable[float] = AP_THRESHOLDS) -> float:
    """Mean over IoU thresholds (default 0.5:0.05:0.95) of ``tp / (tp + fp + fn)``.

    This is the "average precision" of the Data Science Bowl 2018, StarDist and Cellpose:
    the labels carry no confidence, so there is no precision-recall curve to integrate.
    """
    true_ids, pred_ids, ious, n_true, n_pred = object_ious(pred_labels, true_labels)
    scores = []
    for t in thresholds:
        tp = len(_match(true_ids, pred_ids, ious, float(t)))
        scores.append(InstanceMatch(float(t), n_true, n_pred, tp, 0.0).accuracy)
    return float(np.mean(scores))
