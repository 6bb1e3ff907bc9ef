"""The decoding choices `train_default_models.py` makes for the bundled models, on selection
stacks and images that are neither training nor held-out data.

The selection data are of both kinds users segment, scored with equal weight: the
`SELECTION` ZYX stacks (their mean) and the `SELECTION_SET` 2D images (pooled). The two
pull apart: on the stacks, where out-of-focus light of the neighbouring slices widens what
a 2D network sees, the best foreground threshold is about 0.85; on the 2D images it is
0.5 (measured 2026-12-02; a choice on the stacks alone cost the held-out 2D images 0.02
of Dice).

- The foreground threshold (``meta["threshold"]``, the default of ``segment(threshold=None)``
  and of the widget's slider): the one of `FOREGROUND_THRESHOLDS` with the best foreground
  Dice. What the threshold decides is the foreground, so the foreground's own score
  chooses it.
- Then the marker threshold of the models' own decoding (``meta["instances"]
  ["marker_threshold"]``), at that foreground threshold: the one of `MARKER_THRESHOLDS`
  with the best F1 at IoU 0.5 (objects linked across Z in the stacks; three stacks
  rather than one: the best threshold differs from stack to stack).

The network runs once per stack and image (`selection_probabilities`); both choices decode
those probabilities again (`LabelRule`, `decode_probabilities`: the rules `segment` uses).
"""

from __future__ import annotations

import numpy as np

from napari_unet_stack.inference import predict
from napari_unet_stack.labels import LabelRule
from napari_unet_stack.postprocess import InstanceOptions, decode_probabilities
from napari_unet_stack.synthetic import varied_nuclei, varied_set
from napari_unet_stack.training import foreground_dice, match_instances

__all__ = ["FOREGROUND_THRESHOLDS", "MARKER_THRESHOLDS", "SELECTION", "tune_decoding"]

#: the stacks the thresholds are chosen on (seed 3 is also the fast-head selection stack)
SELECTION = {"shape": (16, 256, 256), "seeds": (3, 4, 5)}
#: the 2D images they are chosen on too (the held-out set has seed 7, the training set 100)
SELECTION_SET = {"n": 16, "shape": (256, 256), "seed": 11}
#: how provenance names them
SELECTION_DATA = (f"synthetic.varied_nuclei({SELECTION['shape']}, seed=s, bit_depths=16), "
                  f"s in {list(SELECTION['seeds'])}; synthetic.varied_set({SELECTION_SET['n']}, "
                  f"{SELECTION_SET['shape']}, seed={SELECTION_SET['seed']}); equal weight")
#: the foreground thresholds tried
FOREGROUND_THRESHOLDS = (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)
#: the marker thresholds tried for the models' own decoding
MARKER_THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95)


def selection_probabilities(model) -> dict[str, list[tuple[object, np.ndarray]]]:
    """(sample, float32 probabilities) of each selection stack and 2D image, by kind."""
    def run(sample):
        return sample, predict(sample.image, model, device="cpu", precision="float32")

    stacks = [varied_nuclei(SELECTION["shape"], seed=seed, bit_depths=16) for seed in SELECTION["seeds"]]
    images = varied_set(SELECTION_SET["n"], SELECTION_SET["shape"], seed=SELECTION_SET["seed"])
    return {"stacks": [run(s) for s in stacks], "images": [run(s) for s in images]}


def _choose(scores: dict[float, dict[str, float]]) -> tuple[float, dict[str, float]]:
    """The candidate with the best mean over the kinds, and every candidate's mean."""
    mean = {t: round(float(np.mean(list(v.values()))), 4) for t, v in scores.items()}
    return max(mean, key=mean.get), {str(t): v for t, v in mean.items()}


def _rounded(scores: dict[float, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {str(t): {k: round(x, 4) for k, x in v.items()} for t, v in scores.items()}


def tune_threshold(model, provenance: dict, data) -> float:
    """``meta["threshold"]``: the best foreground Dice of the model's labels."""
    dice = {}
    for t in FOREGROUND_THRESHOLDS:
        def fg(probs, t=t):
            return LabelRule.for_model(model, t, n_channels=probs.shape[0]).labels(probs) > 0

        stacks = np.mean([foreground_dice(fg(p), s.instances > 0) for s, p in data["stacks"]])
        images = foreground_dice(np.concatenate([fg(p).ravel() for _, p in data["images"]]),
                                 np.concatenate([(s.instances > 0).ravel() for s, _ in data["images"]]))
        dice[t] = {"stacks": float(stacks), "images": float(images)}
    best, mean = _choose(dice)
    model.meta["threshold"] = best
    provenance["threshold_selection"] = {
        "data": SELECTION_DATA, "criterion": "foreground Dice", "dice": _rounded(dice), "dice_mean": mean,
        "threshold": best,
    }
    return best


def tune_markers(model, provenance: dict, data) -> float:
    """``meta["instances"]["marker_threshold"]``: the best F1@0.5 of the model's own
    decoding (Z-linked in the stacks), at the model's foreground threshold."""
    f1 = {}
    for t in MARKER_THRESHOLDS:
        options = InstanceOptions(method="markers", marker_threshold=t)
        stacks = np.mean([match_instances(decode_probabilities(p, model, options), s.instances).f1
                          for s, p in data["stacks"]])
        matches = [match_instances(decode_probabilities(p, model, options), s.instances) for s, p in data["images"]]
        f1[t] = {"stacks": float(stacks), "images": float(sum(matches[1:], matches[0]).f1)}
    best, mean = _choose(f1)
    model.meta["instances"] = {**model.meta["instances"], "marker_threshold": best}
    provenance["marker_threshold_selection"] = {
        "data": SELECTION_DATA, "criterion": "F1@0.5 (Z-linked in the stacks), at meta['threshold']",
        "f1": _rounded(f1), "f1_mean": mean, "marker_threshold": best,
    }
    return best


def tune_decoding(model, provenance: dict) -> None:
    """Both choices, in that order, recorded in ``provenance``."""
    data = selection_probabilities(model)
    tune_threshold(model, provenance, data)
    tune_markers(model, provenance, data)
