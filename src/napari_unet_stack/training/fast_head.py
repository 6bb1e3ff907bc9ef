"""The choice of a UNet++'s fast head (``meta["fast_head"]``).

The fast head is the smallest head whose score is within a tolerance of the accurate mode's
(`smallest_head`). `train` chooses it at the end on its validation slices by the mean
class Dice of the targets it trained on (`choose_fast_head`: for an instance model its
background / interior / boundary classes). `select_fast_head` chooses it on other images by
what users of the model measure. A semantic model: the mean Dice of its foreground classes.
An instance model (`napari_unet_stack.postprocess.model_instances`): the instance F1 at IoU
0.5 of its own decoding (`segment(..., instances=True)`, objects linked across Z) against
instance labels, or the foreground Dice of P(foreground) > its threshold against a 0/1 mask (or
painted labels); the class Dice of its three classes means nothing against such labels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from ..devices import precision_name, resolve_device, resolve_precision
from ..labels import LabelRule
from ..models import NestedUNet
from ..normalization import resolve_normalization
from ..postprocess import decode_probabilities, model_instances
from .data import Slice, check_capacity, label_capacity, prepare_data
from .evaluate import slice_probabilities, validation_metrics
from .instances import check_instance_labels
from .metrics import InstanceMatch, foreground_dice, match_instances

__all__ = ["FAST_HEAD_SCORES", "choose_fast_head", "select_fast_head", "smallest_head"]

#: What `select_fast_head`'s ``score`` may be.
FAST_HEAD_SCORES = ("auto", "dice", "f1")
#: The IoU at which `select_fast_head`'s instance F1 matches objects.
MATCH_IOU = 0.5


def smallest_head(model: NestedUNet, score: Callable[[], float], tolerance: float) -> tuple[int, dict[str, float]]:
    """The smallest head ``k`` whose ``score()`` (called with ``model.head = k``, the model in
    eval mode) is at least the accurate mode's minus ``tolerance``; the deepest head when
    none is. Returns it and the scores: ``"accurate"``, then ``"1"`` up to the chosen head.
    The model's head and training mode are restored."""
    previous, was_training = model.head, model.training
    scores: dict[str, float] = {}
    model.eval()
    try:
        model.head = "accurate"
        scores["accurate"] = accurate = float(score())
        for k in range(1, model.full_depth + 1):
            model.head = k
            scores[str(k)] = float(score())
            if scores[str(k)] >= accurate - tolerance:
                return k, scores
    finally:
        model.head = previous
        model.train(was_training)
    return model.full_depth, scores


def choose_fast_head(
    model: NestedUNet, val: list[Slice], device, precision: str, tolerance: float
) -> tuple[int, dict[str, float]]:
    """`train`'s choice: the smallest head whose validation Dice (`validation_metrics`: the
    mean Dice of the trained classes) is within ``tolerance`` of the accurate mode's."""
    return smallest_head(model, lambda: validation_metrics(model, val, device, precision)["dice"], tolerance)


def _foreground_score(model: NestedUNet, slices: list[Slice], device, precision: str) -> float:
    """Foreground Dice of P(foreground) > its threshold (the model's label rule, as ``segment``) against
    the targets' foreground, over their labelled pixels, pooled over the slices."""
    rule = LabelRule.for_model(model)
    pred = [rule.labels(slice_probabilities(model, s, device, precision)).ravel() for s in slices]
    truth = np.concatenate([s.target.ravel() for s in slices])
    return foreground_dice(np.concatenate(pred), truth > 0, mask=truth >= 0)


def _instance_f1(model: NestedUNet, slices: list[Slice], ids: list[np.ndarray], device, precision: str) -> float:
    """F1 at IoU `MATCH_IOU` of each array's objects decoded as ``segment(..., instances=True)``
    decodes them (`decode_probabilities`: linked across Z) against its ids, pooled over the
    arrays. The slices are dense: every slice of every array, in order."""
    match = InstanceMatch.empty(MATCH_IOU)
    for index, truth in enumerate(ids):
        probs = [slice_probabilities(model, s, device, precision) for s in slices if s.source[0] == index]
        stacked = np.stack(probs, axis=1).reshape(len(probs[0]), *truth.shape)
        match = match + match_instances(decode_probabilities(stacked, model, True), truth, threshold=MATCH_IOU)
    return match.f1


def _instance_model_labels(labels: Any, sparse: bool) -> tuple[Any, list[np.ndarray]]:
    """An instance model's ``labels`` checked: (their foreground in `prepare_data`'s
    convention, a single array or a list as given; the arrays). Dense: instance ids or a
    0/1 mask, 0 background. Painted (``sparse``): 0 unlabelled, 1 background, >= 2 objects."""
    single = not isinstance(labels, (list, tuple))
    arrays = []
    for k, lab in enumerate([labels] if single else labels):
        name = "labels" if single else f"labels[{k}]"
        if not hasattr(lab, "shape") or not hasattr(lab, "dtype"):
            raise TypeError(f"`{name}` must be an array (numpy, dask, zarr), got {type(lab).__name__}")
        arr = np.asarray(lab)
        check_instance_labels(arr, name, sparse=sparse, at_least=0)
        arrays.append(arr)
    masks = [(np.minimum(a, 2) if sparse else a > 0).astype(np.uint8) for a in arrays]
    return (masks[0] if single else masks), arrays


def _score_kind(score: Any, model: NestedUNet, arrays: list[np.ndarray] | None, sparse: bool) -> str:
    """'dice' or 'f1' for ``score`` (`FAST_HEAD_SCORES`); ``arrays``: an instance model's
    labels (None for a semantic model). ValueError for a score the model or labels cannot give."""
    if not isinstance(score, str) or score not in FAST_HEAD_SCORES:
        raise ValueError(f"`score` must be one of {FAST_HEAD_SCORES}, got {score!r}")
    if arrays is None:
        if score == "f1":
            raise ValueError(
                f"`score='f1'` (instance F1) needs an instance model (trained with instances=True); this "
                f"{model.activation} model with {model.out_channels} output(s) is semantic: use score='dice'"
            )
        return "dice"
    if score == "f1" and sparse:
        raise ValueError("`score='f1'` needs dense instance labels (every object labelled); painted "
                         "(sparse=True) labels leave objects out: use score='dice'")
    ids = not sparse and any(int(a.max(initial=0)) > 1 for a in arrays)
    if score == "f1" and not ids:
        raise ValueError("`score='f1'` needs instance labels (each object its own id), but `labels` hold only "
                         "0 and 1 (a mask): label each object (e.g. skimage.measure.label) or use score='dice'")
    if score == "auto":
        return "f1" if ids else "dice"
    return score


def select_fast_head(
    model: NestedUNet,
    images: Any,
    labels: Any,
    *,
    tolerance: float = 0.02,
    score: str = "auto",
    channel_axis: int | None = None,
    sparse: bool = False,
    device: str = "auto",
    precision: str = "auto",
) -> tuple[int, dict[str, float]]:
    """Choose a UNet++'s ``meta["fast_head"]`` on validation images.

    The fast head becomes the smallest head ``k`` whose score on ``images`` / ``labels``
    is at least the accurate mode's (the mean of all heads) minus ``tolerance``; the
    deepest head when none is. Images are normalized as inference does, with the model's
    normalization, and run through `predict` as `segment` runs them.

    Parameters
    ----------
    model : NestedUNet
        Built with ``deep_supervision=True``.
    images, labels : array_like or list of array_like
        As `train` takes them. A semantic model: its class labels. An instance model
        (``meta["instances"]``, trained with ``instances=True``): instance labels (each
        object its own id, 0 background) or a 0/1 mask; painted (``sparse=True``): 0
        unlabelled, 1 background, values >= 2 objects.
    tolerance : float
        How far below the accurate mode's score a head may score.
    score : {'auto', 'dice', 'f1'}
        'dice': a semantic model's mean Dice of its foreground classes (what `train`
        scores); an instance model's foreground Dice: P(foreground) > its threshold (its plain
        ``segment`` labels) against ``labels > 0``, over the labelled pixels. 'f1' (instance
        models, dense instance labels): instance F1 at IoU 0.5 of the model's own decoding
        (``segment(..., instances=True)``: objects linked across Z) against the ids, matched
        per array and pooled. 'auto': 'f1' for an instance model given dense labels
        holding an id above 1, else 'dice'.
    channel_axis, sparse, device, precision
        As for `train` (precision 'auto': float32 on the CPU).

    Returns
    -------
    head : int
        The chosen head (also stored in ``model.meta["fast_head"]``).
    scores : dict
        The score of each mode tried: ``"accurate"`` and ``"1"``, ``"2"``, ... up to the
        chosen head.

    Raises
    ------
    ValueError
        For a model that is no deep-supervised NestedUNet, an unknown ``score``, 'f1' for a
        semantic model, for painted labels or for a 0/1 mask, and the data errors of `train`.
    """
    if not (isinstance(model, NestedUNet) and model.deep_supervision):
        raise ValueError(
            f"`model` must be a NestedUNet built with deep_supervision=True, got {type(model).__name__}"
            + (" without deep supervision" if isinstance(model, NestedUNet) else "")
        )
    arrays = None
    if model_instances(model) is not None:
        labels, arrays = _instance_model_labels(labels, sparse)
    kind = _score_kind(score, model, arrays, sparse)
    norm = resolve_normalization("auto", model.meta.get("normalization"))
    data = prepare_data(
        images, labels, channel_axis=channel_axis, sparse=sparse, normalization=norm,
        class_values=None if sparse or arrays is not None else model.meta.get("class_values"),
        capacity=label_capacity(model) if arrays is not None else None,
    )  # fmt: skip
    check_capacity(data, model, sparse)
    dev = resolve_device(device)
    prec = precision_name(resolve_precision(precision, dev))
    if arrays is None:
        head, scores = choose_fast_head(model, data.slices, dev, prec, float(tolerance))
    else:
        measure = (functools.partial(_instance_f1, model, data.slices, arrays, dev, prec) if kind == "f1"
                   else functools.partial(_foreground_score, model, data.slices, dev, prec))
        head, scores = smallest_head(model, measure, float(tolerance))
    model.meta["fast_head"] = int(head)
    return int(head), scores
