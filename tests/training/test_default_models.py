"""The bundled instance models: they load offline by name and segment the held-out sample well."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import torch

from napari_unet_stack.checkpoints import list_models, load_model
from napari_unet_stack.inference import segment
from napari_unet_stack.models import NestedUNet, UNet
from napari_unet_stack.normalization import DEFAULT_NORMALIZATION
from napari_unet_stack.samples import load_sample
from napari_unet_stack.training import foreground_dice, match_instances

#: held-out foreground Dice and instance F1 at IoU 0.5 (per slice) the bundled models must keep;
#: `scripts/train_default_models.py` records the figures they reached in their provenance
#: (reached, 2026-12-02 weights: UNet Dice 0.889 and F1 0.737, UNet++ accurate Dice 0.876;
#: the earlier weights 0.852 / 0.622; issue 14 aims at 0.95 and 0.9)
DICE_TARGET = 0.86
F1_TARGET = 0.6
BUNDLED = {"nuclei-unet": UNet, "nuclei-unet-z": UNet, "nuclei-unetpp": NestedUNet}


def _path(name: str) -> Path:
    return Path(str(resources.files("napari_unet_stack") / "bundled_models" / f"{name}.pt"))


@pytest.fixture(scope="module")
def held_out():
    return load_sample("nuclei_stack")


def test_bundled_models_are_listed():
    assert set(BUNDLED) <= set(list_models())


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_model_files_are_small_safe_and_described(name):
    path = _path(name)
    assert path.stat().st_size <= 10 * 2**20
    raw = torch.load(path, weights_only=True)  # no pickled code
    assert raw["format"] == "napari-unet-stack"
    model = load_model(name)
    assert isinstance(model, BUNDLED[name]) and not model.training
    assert model.meta["normalization"] == {**DEFAULT_NORMALIZATION}
    assert model.meta["class_names"] == ["background", "interior", "boundary"]
    assert model.meta["instances"]  # an instance model: segment(..., instances=True) decodes it
    prov = model.meta["provenance"]
    assert prov["steps"] > 0 and [16, 256, 256] in prov["data"]["shapes"]
    varied = prov["training_data"]["varied_set"]
    if model.meta.get("z_context"):  # the 2.5D model: trained on the generated stacks only
        assert varied is None and model.in_channels == 2 * model.meta["z_context"] + 1
    else:
        assert varied["n"] >= 48 and prov["held_out"]["set"]["seed"] != varied["seed"]
    scores = next(iter(prov["held_out"]["scores"].values()))["nuclei_stack"]
    assert {"dice", "f1", "map", "pq"} <= set(scores["2d"])
    assert set(scores["3d"]) == set(scores["2d"])
    assert model.base_channels <= 16 and path.stat().st_size <= 2.6 * 2**20


def _slice_f1(pred, truth) -> float:
    """Instance F1 at IoU 0.5, pooled over the slices (each slice's objects on their own)."""
    tp = n_pred = n_true = 0
    for p, t in zip(pred, truth, strict=True):
        m = match_instances(p, t, threshold=0.5)
        tp, n_pred, n_true = tp + m.tp, n_pred + m.n_pred, n_true + m.n_true
    return 2 * tp / (n_pred + n_true)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nuclei-unet", "nuclei-unet-z"])
def test_unet_segments_the_held_out_stack(held_out, name):
    model = load_model(name)
    labels = segment(held_out.image, model, device="cpu")
    assert labels.shape == held_out.image.shape
    assert foreground_dice(labels, held_out.labels) >= DICE_TARGET
    objects = segment(held_out.image, model, device="cpu", instances=True, instance_ndim=2)
    assert _slice_f1(objects, held_out.instances) >= F1_TARGET


@pytest.mark.slow
def test_unetpp_accurate_and_fast_heads(held_out):
    model = load_model("nuclei-unetpp")
    assert model.deep_supervision and 1 <= model.meta["fast_head"] <= model.full_depth
    scores = {}
    for head in ("accurate", "fast"):
        model.head = head
        scores[head] = foreground_dice(segment(held_out.image, model, device="cpu"), held_out.labels)
    assert scores["accurate"] >= DICE_TARGET
    assert scores["fast"] >= scores["accurate"] - 0.02
