"""Held-out scores of the bundled models (and of the ceiling benchmark's): foreground Dice,
instance F1 / precision / recall at IoU 0.5, mAP over IoU 0.5:0.95 and PQ, with each
model's own decoding (`segment(..., instances=True)`), for `train_default_models.py`."""

from __future__ import annotations

import json

import numpy as np

from napari_unet_stack.inference import segment
from napari_unet_stack.samples import load_sample
from napari_unet_stack.synthetic import varied_set
from napari_unet_stack.training import foreground_dice, match_instances, mean_average_precision

#: the generated 2D held-out images (another seed: no image in common with the training set)
HELD_OUT_SET = {"n": 16, "shape": (256, 256), "seed": 7}


def _summary(match, ap: list[float], pred_fg, true_fg) -> dict[str, float]:
    return {
        "dice": round(foreground_dice(pred_fg, true_fg), 4),
        "f1": round(match.f1, 4),
        "precision": round(match.precision, 4),
        "recall": round(match.recall, 4),
        "map": round(float(np.mean(ap)), 4),
        "pq": round(match.panoptic_quality, 4),
        "objects": match.n_true,
    }


def score_stack(model, image, truth, **options) -> dict[str, dict]:
    """A stack against its instance labels ``truth``: objects linked over Z (3D), and every
    slice on its own (2D); ``options`` go to `segment` (e.g. ``channel_axis``)."""
    pred = segment(image, model, device="cpu", instances=True, **options)
    three_d = _summary(
        match_instances(pred, truth), [mean_average_precision(pred, truth)], pred > 0, truth > 0
    )
    flat = segment(image, model, device="cpu", instances=True, instance_ndim=2, **options)
    matches = [match_instances(p, t) for p, t in zip(flat, truth, strict=True)]
    aps = [mean_average_precision(p, t) for p, t in zip(flat, truth, strict=True)]
    return {"3d": three_d, "2d": _summary(sum(matches[1:], matches[0]), aps, flat > 0, truth > 0)}


def score_set(model, samples) -> dict[str, float]:
    """The held-out 2D images: matches pooled over the set, mAP averaged."""
    preds = [segment(s.image, model, device="cpu", instances=True) for s in samples]
    matches = [match_instances(p, s.instances) for p, s in zip(preds, samples, strict=True)]
    aps = [mean_average_precision(p, s.instances) for p, s in zip(preds, samples, strict=True)]
    fg = np.concatenate([p.ravel() > 0 for p in preds])
    true_fg = np.concatenate([s.instances.ravel() > 0 for s in samples])
    return _summary(sum(matches[1:], matches[0]), aps, fg, true_fg)


def held_out_scores(model, heads=(None,)) -> dict[str, dict]:
    """Scores per mode (UNet++: accurate and fast; UNet: the one) on the stack and the 2D set."""
    stack = load_sample("nuclei_stack")
    images = varied_set(HELD_OUT_SET["n"], HELD_OUT_SET["shape"], seed=HELD_OUT_SET["seed"])
    scores = {}
    for head in heads:
        if head is not None:
            model.head = head
        name = str(head or "default")
        scores[name] = {"nuclei_stack": score_stack(model, stack.image, stack.instances)}
        scores[name]["varied_2d"] = score_set(model, images)
        print(name, json.dumps(scores[name]), flush=True)
    if heads != (None,):
        model.head = "accurate"
    return scores
