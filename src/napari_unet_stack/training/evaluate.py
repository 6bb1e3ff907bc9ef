"""Validation during training (the choice of a UNet++'s fast head is `fast_head`).

Validation runs the model through `predict` exactly as inference will (padding, tiling) on
slices already normalized as inference normalizes them, decides classes by the one label
rule `segment` uses (`napari_unet_stack.labels.LabelRule`, at the model's own foreground
threshold, ``meta["threshold"]``, else 0.5), and scores per-class Dice / IoU
and the cross-entropy over the labelled pixels (``scope``: "painted pixels" when some pixels
are unlabelled, so a score is not a full-image score). An instance model's slices are also
decoded as `segment(..., instances=True)` decodes them and matched object by object
against their instance ids: ``instance_f1`` (F1 at IoU 0.5; NaN for sparse labels, whose
objects are not all painted).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..inference import predict
from ..inference.spec import model_spec
from ..labels import LabelRule
from ..models import SegmentationNetwork
from ..postprocess import InstanceOptions, labels_rule, marker_slice, model_instances
from .data import Slice, label_capacity
from .metrics import confusion_counts, match_instances

__all__ = ["PAINTED", "slice_probabilities", "target_names", "validation_metrics"]

_EPS = 1e-7
#: ``metrics["scope"]`` of painted labels: the scores count the (held-out) painted pixels only.
PAINTED = "painted pixels"


def target_names(model: SegmentationNetwork) -> list[str]:
    """Names of the target indices 1..n-1 (the scored classes)."""
    names = model.class_names
    if model.activation == "softmax":
        return names[1:]
    return names


def _nll_sum(probs: np.ndarray, target: np.ndarray, valid: np.ndarray, activation: str) -> float:
    """Summed cross-entropy (BCE averaged over channels for sigmoid) of the valid pixels."""
    if activation == "softmax":
        p = np.take_along_axis(probs, np.clip(target, 0, None)[None], axis=0)[0]
        return float(-np.log(np.clip(p[valid], _EPS, 1.0)).sum())
    on = target[None] == np.arange(1, probs.shape[0] + 1).reshape(-1, 1, 1)
    p = np.where(on, probs, 1.0 - probs)
    return float(-np.log(np.clip(p[:, valid], _EPS, 1.0)).mean(axis=0).sum())


def _nan_mean(a: np.ndarray) -> float:
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else float("nan")


def slice_probabilities(model: SegmentationNetwork, s: Slice, device, precision: str) -> np.ndarray:
    """``predict``'s probabilities (K, H, W) of one slice, already normalized as inference
    normalizes it: the same as those of the whole image through `predict` (a z-context
    model's slice holds its neighbours already: the engine is told not to add them)."""
    spec = dataclasses.replace(model_spec(model), z_context=0)
    return predict(s.image, spec, channel_axis=0, normalization=None, device=device, precision=precision)


def validation_metrics(
    model: SegmentationNetwork, slices: list[Slice], device, precision: str
) -> dict[str, Any]:
    """Per-class Dice / IoU and cross-entropy on the validation slices, through `predict`.

    The slices are already normalized as inference would (fitted on the whole slice), so
    `predict` runs without normalization and with its usual padding and tiling.
    """
    classes = list(range(1, label_capacity(model)))
    # as `segment` decides by default: at the model's own threshold (a fine-tuned model keeps it)
    rule = LabelRule.for_model(model)
    tp = np.zeros(len(classes), np.int64)
    fp = np.zeros_like(tp)
    fn = np.zeros_like(tp)
    nll, n_pix = 0.0, 0
    objects = _ObjectScore(model)
    was_training = model.training
    model.eval()
    try:
        for s in slices:
            probs = slice_probabilities(model, s, device, precision)
            valid = s.target >= 0
            target = s.target.astype(np.int64)
            pred = rule.classes(probs)
            counts = confusion_counts(pred, target, classes, mask=valid)
            tp += counts[0]
            fp += counts[1]
            fn += counts[2]
            objects.add(probs, s)
            nll += _nll_sum(probs, target, valid, model.activation)
            n_pix += int(valid.sum())
    finally:
        model.train(was_training)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), np.nan)
        j = np.where(tp + fp + fn > 0, tp / np.maximum(tp + fp + fn, 1), np.nan)
    names = target_names(model)
    names = [names[c - 1] if c - 1 < len(names) else f"class {c}" for c in classes]
    return {
        "loss": nll / max(n_pix, 1),
        "dice": _nan_mean(d),
        "iou": _nan_mean(j),
        "dice_per_class": {n: float(v) for n, v in zip(names, d, strict=True)},
        "iou_per_class": {n: float(v) for n, v in zip(names, j, strict=True)},
        "instance_f1": objects.f1,
        "scope": PAINTED if any(bool((s.target < 0).any()) for s in slices) else "all pixels",
    }


class _ObjectScore:
    """Instance F1 (IoU 0.5) over the validation slices of an instance model (dense labels)."""

    def __init__(self, model: SegmentationNetwork) -> None:
        self.rule = None
        if model_instances(model) is not None:
            self.rule = labels_rule(model, InstanceOptions().resolve(model), n_channels=model.out_channels)
        self.tp = self.n_pred = self.n_true = 0
        self.scored = True

    def add(self, probs: np.ndarray, s: Slice) -> None:
        if self.rule is None:
            return
        if s.instances is None or (s.target < 0).any():  # not every object painted
            self.scored = False
            return
        pred, _ = marker_slice(self.rule.labels(probs))
        m = match_instances(pred, s.instances)
        self.tp, self.n_pred, self.n_true = self.tp + m.tp, self.n_pred + m.n_pred, self.n_true + m.n_true

    @property
    def f1(self) -> float:
        if self.rule is None or not self.scored or self.n_pred + self.n_true == 0:
            return float("nan")
        return 2 * self.tp / (self.n_pred + self.n_true)
