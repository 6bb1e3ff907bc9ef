"""Validation decides classes as `segment` does by default: at the model's own foreground
threshold (``meta["threshold"]``, which a model fine-tuned from a bundled one keeps), not
at a fixed 0.5. Checked against the Dice of the documented rule written out in numpy."""

import numpy as np
import pytest
import torch

from napari_unet_stack.checkpoints import load_model
from napari_unet_stack.inference import predict
from napari_unet_stack.normalization import resolve_normalization
from napari_unet_stack.synthetic import nuclei_stack
from napari_unet_stack.training import instance_targets
from napari_unet_stack.training.data import prepare_data
from napari_unet_stack.training.evaluate import validation_metrics


def _dice_numpy(slices, model, threshold):
    """Mean Dice of classes 1, 2: foreground where 1 - P(background) > threshold, its class
    the most probable foreground class; counts pooled over the slices."""
    tp, fp, fn = np.zeros(2), np.zeros(2), np.zeros(2)
    for s in slices:
        p = predict(s.image, model, channel_axis=0, normalization=None, device="cpu", precision="float32")
        pred = np.where(1 - p[0] > np.float32(threshold), 1 + p[1:].argmax(0), 0)
        for k, c in enumerate((1, 2)):
            tp[k] += np.sum((pred == c) & (s.target == c))
            fp[k] += np.sum((pred == c) & (s.target != c))
            fn[k] += np.sum((pred != c) & (s.target == c))
    return float(np.mean(2 * tp / (2 * tp + fp + fn)))


def test_validation_scores_at_the_models_threshold():
    model = load_model("nuclei-unet")
    assert model.meta["threshold"] != 0.5  # its own threshold (0.65 today), not the default
    sample = nuclei_stack((2, 64, 64), seed=3)
    targets = instance_targets(sample.instances)  # background / interior / boundary
    data = prepare_data(sample.image, targets, normalization=resolve_normalization("auto", model.normalization))
    score = validation_metrics(model, data.slices, torch.device("cpu"), "float32")["dice"]
    own, at_half = _dice_numpy(data.slices, model, model.meta["threshold"]), _dice_numpy(data.slices, model, 0.5)
    assert abs(own - at_half) > 0.005  # the two thresholds score apart: the test can tell them apart
    assert score == pytest.approx(own, abs=1e-12)
    del model.meta["threshold"]  # a model that names none: 0.5
    assert validation_metrics(model, data.slices, torch.device("cpu"), "float32")["dice"] == pytest.approx(
        at_half, abs=1e-12)


@pytest.mark.slow
def test_fine_tuning_keeps_the_models_thresholds_and_a_new_head_drops_them():
    """As the README says: a fine-tuned instance model keeps ``meta["threshold"]`` and its
    marker threshold; one given a new class head (semantic labels) keeps neither."""
    from napari_unet_stack.training import train

    sample = nuclei_stack((2, 64, 64), seed=3)
    options = dict(steps=1, patch_size=48, batch_size=2, device="cpu", val_fraction=0)
    tuned, _ = train(sample.image, sample.instances, "nuclei-unet", instances=True, **options)
    bundled = load_model("nuclei-unet")
    # no validation slices (val_fraction=0): nothing to choose other thresholds on
    assert tuned.meta["threshold"] == bundled.meta["threshold"] != 0.5
    assert tuned.meta["instances"]["marker_threshold"] == bundled.meta["instances"]["marker_threshold"]
    with pytest.warns(UserWarning, match="new class head"):
        semantic, _ = train(sample.image, sample.labels, "nuclei-unet", **options)
    assert "threshold" not in semantic.meta and "instances" not in semantic.meta
