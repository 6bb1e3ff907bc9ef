"""The bundled models: they load offline by name and segment the held-out sample well."""

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
from napari_unet_stack.training import foreground_dice

TARGET = 0.9
BUNDLED = {"nuclei-unet": UNet, "nuclei-unetpp": NestedUNet}


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
    assert model.meta["class_names"] == ["background", "nucleus"]
    prov = model.meta["provenance"]
    assert prov["steps"] > 0 and prov["data"]["shapes"] == [[16, 256, 256]]
    assert prov["held_out"]["foreground_dice"]
    assert model.base_channels <= 16


@pytest.mark.slow
def test_unet_segments_the_held_out_stack(held_out):
    model = load_model("nuclei-unet")
    labels = segment(held_out.image, model, device="cpu")
    assert labels.shape == held_out.image.shape
    assert foreground_dice(labels, held_out.labels) >= TARGET


@pytest.mark.slow
def test_unetpp_accurate_and_fast_heads(held_out):
    model = load_model("nuclei-unetpp")
    assert model.deep_supervision and 1 <= model.meta["fast_head"] <= model.full_depth
    scores = {}
    for head in ("accurate", "fast"):
        model.head = head
        scores[head] = foreground_dice(segment(held_out.image, model, device="cpu"), held_out.labels)
    assert scores["accurate"] >= TARGET
    assert scores["fast"] >= scores["accurate"] - 0.02
