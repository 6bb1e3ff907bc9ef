"""The decoding choices `train_default_models.py` makes for the bundled models, on selection
stacks that are neither training nor held-out data.

- The foreground threshold (``meta["threshold"]``, the default of ``segment(threshold=None)``
  and of the widget's slider): the one of `FOREGROUND_THRESHOLDS` with the best mean
  foreground Dice on the `SELECTION` stacks. The networks draw outlines about a pixel too
  wide at 0.5 (README, *Bundled models*): what the threshold decides is the foreground,
  so the foreground's own score chooses it.
- Then the marker threshold of the models' own decoding (``meta["instances"]
  ["marker_threshold"]``), at that foreground threshold: the one of `MARKER_THRESHOLDS`
  with the best mean F1 at IoU 0.5 of Z-linked objects (three stacks rather than one: the
  best threshold differs from stack to stack).

The network runs once per stack (`selection_probabilities`); both choices decode those
probabilities again (`decode_probabilities`, the rule `segment` uses).
"""

from __future__ import annotations

import numpy as np

from napari_unet_stack.inference import predict
from napari_unet_stack.labels import LabelRule
from napari_unet_stack.postprocess import InstanceOptions, decode_probabilities
from napari_unet_stack.synthetic import varied_nuclei
from napari_unet_stack.training import foreground_dice, match_instances

__all__ = ["FOREGROUND_THRESHOLDS", "MARKER_THRESHOLDS", "SELECTION", "tune_decoding"]

#: the stacks the thresholds are chosen on (seed 3 is also the fast-head selection stack)
SELECTION = {"shape": (16, 256, 256), "seeds": (3, 4, 5)}
#: how provenance names them
SELECTION_DATA = (f"synthetic.varied_nuclei({SELECTION['shape']}, seed=s, bit_depths=16), "
                  f"s in {list(SELECTION['seeds'])}")
#: the foreground thresholds tried
FOREGROUND_THRESHOLDS = (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)
#: the marker thresholds tried for the models' own decoding
MARKER_THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95)


def selection_probabilities(model) -> list[tuple[object, np.ndarray]]:
    """(sample, float32 probabilities) of each selection stack."""
    out = []
    for seed in SELECTION["seeds"]:
        sample = varied_nuclei(SELECTION["shape"], seed=seed, bit_depths=16)
        out.append((sample, predict(sample.image, model, device="cpu", precision="float32")))
    return out


def _best(scores: dict[float, list[float]]) -> tuple[float, dict[str, float]]:
    mean = {t: round(float(np.mean(v)), 4) for t, v in scores.items()}
    return max(mean, key=mean.get), {str(t): v for t, v in mean.items()}


def tune_threshold(model, provenance: dict, stacks) -> float:
    """``meta["threshold"]``: the best mean foreground Dice of the model's labels."""
    dice = {t: [] for t in FOREGROUND_THRESHOLDS}
    for sample, probs in stacks:
        for t in FOREGROUND_THRESHOLDS:
            labels = LabelRule.for_model(model, t, n_channels=probs.shape[0]).labels(probs)
            dice[t].append(foreground_dice(labels > 0, sample.instances > 0))
    best, mean = _best(dice)
    model.meta["threshold"] = best
    provenance["threshold_selection"] = {
        "data": SELECTION_DATA, "criterion": "foreground Dice", "dice_mean": mean, "threshold": best,
        "dice": {str(t): [round(x, 4) for x in v] for t, v in dice.items()},
    }
    return best


def tune_markers(model, provenance: dict, stacks) -> float:
    """``meta["instances"]["marker_threshold"]``: the best mean Z-linked F1@0.5 of the
    model's own decoding, at the model's foreground threshold."""
    f1 = {t: [] for t in MARKER_THRESHOLDS}
    for sample, probs in stacks:
        for t in MARKER_THRESHOLDS:
            ids = decode_probabilities(probs, model, InstanceOptions(method="markers", marker_threshold=t))
            f1[t].append(match_instances(ids, sample.instances).f1)
    best, mean = _best(f1)
    model.meta["instances"] = {**model.meta["instances"], "marker_threshold": best}
    provenance["marker_threshold_selection"] = {
        "data": SELECTION_DATA, "criterion": "Z-linked F1@0.5, at meta['threshold']",
        "f1_3d": {str(t): [round(x, 4) for x in v] for t, v in f1.items()},
        "f1_3d_mean": mean, "marker_threshold": best,
    }
    return best


def tune_decoding(model, provenance: dict) -> None:
    """Both choices, in that order, recorded in ``provenance``."""
    stacks = selection_probabilities(model)
    tune_threshold(model, provenance, stacks)
    tune_markers(model, provenance, stacks)
