"""An instance model's decoding thresholds, chosen on labelled data.

Two choices, in this order, each from a fixed grid:

- the foreground threshold (``meta["threshold"]``, the default of ``segment(threshold=None)``
  and of the Predict widget's slider): the candidate of `FOREGROUND_THRESHOLDS` whose
  labels (`LabelRule`, as `segment` decides) give the best foreground Dice. What this
  threshold decides is the foreground, so the foreground's own score chooses it;
- then, at that threshold, the marker threshold of the model's own decoding
  (``meta["instances"]["marker_threshold"]``): the candidate of `MARKER_THRESHOLDS` whose
  objects (`decode_probabilities`, as ``segment(..., instances=True)`` decodes them; linked
  over Z for stacks) give the best F1 at IoU 0.5.

The data come as *groups* (`choose_decoding`): a mapping of a name to a list of items, an
item being a list of ``(probabilities, instance ids)`` pairs pooled into one score (pixels
for Dice, objects for F1). A group scores the mean of its items, a candidate the mean of
the groups (so two kinds of data, e.g. stacks and 2D images, can weigh equally whatever
their sizes). Scores are compared at 4 decimals; on a tie the model's current value stays,
else the first candidate in grid order wins.

`train` calls `choose_on_validation` after an instance training run (``TrainSettings.
tune_decoding``) on its validation slices when they are densely labelled and hold at least
`MIN_OBJECTS` objects; ``scripts/default_model_choices.py`` calls `choose_decoding` for the
bundled models on its selection data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..labels import LabelRule, model_threshold
from ..postprocess import InstanceOptions, decode_probabilities
from .instances import is_instance_model
from .metrics import foreground_dice, match_instances

__all__ = [
    "FOREGROUND_THRESHOLDS",
    "MARKER_THRESHOLDS",
    "MIN_OBJECTS",
    "choose_decoding",
    "choose_on_validation",
    "describe_choice",
]

#: The foreground thresholds tried.
FOREGROUND_THRESHOLDS = (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)
#: The marker thresholds tried for the model's own decoding.
MARKER_THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95)
#: `choose_on_validation` chooses only when the validation slices hold at least so many
#: objects: on fewer, one object more or less moves F1 by more than the thresholds do.
MIN_OBJECTS = 50

Pairs = Sequence[tuple[np.ndarray, np.ndarray]]
Groups = Mapping[str, Sequence[Pairs]]


def _pooled_dice(model, threshold: float, pairs: Pairs) -> float:
    def fg(probs):
        return LabelRule.for_model(model, threshold, n_channels=probs.shape[0]).labels(probs) > 0

    return foreground_dice(np.concatenate([fg(p).ravel() for p, _ in pairs]),
                           np.concatenate([(t > 0).ravel() for _, t in pairs]))


def _pooled_f1(model, marker_threshold: float, pairs: Pairs, cancel=None) -> float:
    options = InstanceOptions(method="markers", marker_threshold=marker_threshold)
    matches = [match_instances(decode_probabilities(p, model, options, cancel=cancel), t) for p, t in pairs]
    return sum(matches[1:], matches[0]).f1


def _scores(score, candidates, groups: Groups) -> dict[float, dict[str, float]]:
    """candidate -> group name -> mean over the group's items of ``score(candidate, pairs)``."""
    return {c: {name: float(np.mean([score(c, pairs) for pairs in items])) for name, items in groups.items()}
            for c in candidates}


def _pick(scores: dict[float, dict[str, float]], current: float | None) -> tuple[float, dict[str, float]]:
    """The best candidate by the mean over groups (4 decimals; the current value on a tie)."""
    mean = {c: round(float(np.mean(list(v.values()))), 4) for c, v in scores.items()}
    best = max(mean, key=mean.get)
    if current is not None and current in mean and mean[current] == mean[best]:
        best = current
    return best, {str(c): v for c, v in mean.items()}


def _rounded(scores: dict[float, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {str(c): {k: round(x, 4) for k, x in v.items()} for c, v in scores.items()}


def choose_decoding(
    model: Any,
    groups: Groups,
    *,
    thresholds: Sequence[float] = FOREGROUND_THRESHOLDS,
    marker_thresholds: Sequence[float] = MARKER_THRESHOLDS,
    cancel=None,
) -> dict[str, Any]:
    """Choose and set ``model``'s foreground threshold, then (instance models) its marker
    threshold, on ``groups`` (see the module docstring); return what was chosen and every
    candidate's scores (JSON-able, for provenance).

    ``groups`` maps a name to items, each a list of ``(probabilities, instance ids)``:
    probabilities as `predict` returns them for one image or stack (K, ..., Y, X), ids of
    the same spatial shape (0 background). A plain (semantic) model gets the foreground
    threshold only.
    """
    if not groups or not all(groups.values()):
        raise ValueError("`groups` must name at least one group, each with at least one item")
    fg = _scores(lambda t, pairs: _pooled_dice(model, t, pairs), thresholds, groups)
    threshold, fg_mean = _pick(fg, model_threshold(model))
    model.meta["threshold"] = float(threshold)
    record: dict[str, Any] = {
        "threshold": float(threshold),
        "threshold_criterion": "foreground Dice",
        "dice": _rounded(fg),
        "dice_mean": fg_mean,
    }
    if is_instance_model(model):
        current = model.meta["instances"].get("marker_threshold")
        f1 = _scores(lambda t, pairs: _pooled_f1(model, t, pairs, cancel), marker_thresholds, groups)
        marker, f1_mean = _pick(f1, current)
        model.meta["instances"] = {**model.meta["instances"], "marker_threshold": float(marker)}
        record.update(marker_threshold=float(marker), marker_criterion="F1@0.5 at the chosen threshold",
                      f1=_rounded(f1), f1_mean=f1_mean)
    return record


def choose_on_validation(model: Any, slices: list, probabilities) -> dict[str, Any]:
    """`choose_decoding` on a training run's validation slices (one pooled item), or, when
    they cannot choose, ``{"skipped": why}`` and the model unchanged.

    ``slices`` are `training.data.Slice` objects (``.target``, ``.instances``);
    ``probabilities(slice)`` gives `predict`'s probabilities of one. Sparse (painted)
    slices do not label every object, and fewer than `MIN_OBJECTS` objects do not decide
    between thresholds: both are skipped.
    """
    if not is_instance_model(model):
        return {"skipped": "not an instance model"}
    if not slices:
        return {"skipped": "no validation slices"}
    if any(s.instances is None or bool((s.target < 0).any()) for s in slices):
        return {"skipped": "the validation labels are painted (sparse): not every object is labelled"}
    n = sum(int(np.unique(s.instances[s.instances > 0]).size) for s in slices)
    if n < MIN_OBJECTS:
        return {"skipped": f"the validation slices hold {n} objects, fewer than {MIN_OBJECTS}"}
    pairs = [(probabilities(s), np.asarray(s.instances)) for s in slices]
    record = choose_decoding(model, {"validation": [pairs]})
    record["data"] = f"the {len(slices)} validation slice(s), {n} objects"
    return record


def describe_choice(model: Any) -> str:
    """One line on what the model's last training run chose for its decoding (or why it
    kept its thresholds); "" when it did not try (CLI summary, Train widget status)."""
    chosen = (getattr(model, "meta", None) or {}).get("provenance", {}).get("decoding")
    if not chosen:
        return ""
    if "skipped" in chosen:
        return f"decoding thresholds kept ({chosen['skipped']})"
    return (f"decoding chosen on {chosen['data']}: threshold {chosen['threshold']:g}, "
            f"marker threshold {chosen['marker_threshold']:g}")
