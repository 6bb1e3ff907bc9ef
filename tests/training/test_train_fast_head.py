"""UNet++: the fast head chosen on validation data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet_stack.models import NestedUNet
from napari_unet_stack.normalization import (
    DEFAULT_NORMALIZATION,
)
from napari_unet_stack.training import (
    train,
)


def test_unetpp_deep_supervision_picks_a_fast_head(data, fast):
    torch.manual_seed(0)
    model = NestedUNet(1, 2, base_channels=4, depth=3, deep_supervision=True)
    model, _ = train(data.image, data.labels, model, steps=12, val_every=6, **fast)
    heads = model.meta["provenance"]["head_dice"]
    fast = model.meta["fast_head"]
    assert 1 <= fast <= 3 and set(heads) >= {"accurate", str(fast)}
    assert heads[str(fast)] >= heads["accurate"] - 0.02
    assert all(heads[str(k)] < heads["accurate"] - 0.02 for k in range(1, fast))
    assert model.head == "accurate"


def test_select_fast_head_on_other_data(data, tiny_unet):
    from napari_unet_stack.training import select_fast_head

    model = NestedUNet(1, 2, base_channels=4, depth=2, deep_supervision=True)
    model.meta["normalization"] = dict(DEFAULT_NORMALIZATION)
    head, scores = select_fast_head(model, data.image[:2], data.labels[:2], tolerance=1.0, device="cpu")
    assert head == 1 and model.meta["fast_head"] == 1 and set(scores) == {"accurate", "1"}
    head, scores = select_fast_head(model, data.image[:2], data.labels[:2], tolerance=-1.0, device="cpu")
    assert head == 2 and set(scores) == {"accurate", "1", "2"}  # none qualifies: the deepest
    with pytest.raises(ValueError, match="deep_supervision"):
        select_fast_head(tiny_unet(), data.image, data.labels)


# --- an instance UNet++ (the bundled one: its heads differ) scored as its users score it ----
@pytest.fixture(scope="module")
def instance_pp():
    """(bundled instance UNet++, [a 4-slice stack, a 2D image], their instance ids)."""
    from napari_unet_stack.checkpoints import load_model
    from napari_unet_stack.synthetic import varied_nuclei, varied_set

    stack = varied_nuclei((4, 96, 96), seed=11)
    flat = varied_set(1, (96, 96), seed=5)[0]
    return load_model("nuclei-unetpp"), [stack.image, flat.image], [stack.instances, flat.instances]


def _per_mode(model, measure) -> dict[str, float]:
    """``measure()`` with each mode of ``model`` (accurate, then heads 1..full depth)."""
    out = {}
    for head in ("accurate", *range(1, model.full_depth + 1)):
        model.head = head
        out[str(head)] = measure()
    model.head = "accurate"
    return out


def _smallest(expected: dict[str, float], tolerance: float) -> int:
    heads = [int(k) for k in expected if k != "accurate"]
    return next((k for k in heads if expected[str(k)] >= expected["accurate"] - tolerance), max(heads))


@pytest.mark.slow
def test_select_fast_head_scores_an_instance_model_by_its_instance_f1(instance_pp):
    from napari_unet_stack.inference import segment
    from napari_unet_stack.training import match_instances, select_fast_head

    model, images, ids = instance_pp

    def pooled_f1():  # segment's own decoding (Z-linked in the stack), matched per array
        matches = [match_instances(segment(im, model, device="cpu", precision="float32", instances=True), t)
                   for im, t in zip(images, ids, strict=True)]
        return (matches[0] + matches[1]).f1

    expected = _per_mode(model, pooled_f1)
    assert len({round(v, 3) for v in expected.values()}) >= 3  # the heads differ here
    head, scores = select_fast_head(model, images, ids, tolerance=-1.0, score="f1", device="cpu")
    assert head == model.full_depth and scores == pytest.approx(expected, rel=1e-9)
    tolerance = 0.01
    head, scores = select_fast_head(model, images, ids, tolerance=tolerance, device="cpu")  # auto: F1
    assert head == _smallest(expected, tolerance) == model.meta["fast_head"]
    assert scores == pytest.approx({k: expected[k] for k in ["accurate", *map(str, range(1, head + 1))]}, rel=1e-9)
    assert model.head == "accurate"


@pytest.mark.slow
def test_select_fast_head_scores_an_instance_model_by_foreground_dice_of_masks(instance_pp):
    from napari_unet_stack.inference import segment
    from napari_unet_stack.training import foreground_dice, select_fast_head

    model, images, ids = instance_pp
    masks = [(t > 0).astype(np.uint8) for t in ids]

    def pooled_dice():  # P(foreground) > its threshold: the plain labels, against labels > 0, all pixels together
        pred = [segment(im, model, device="cpu", precision="float32").ravel() for im in images]
        return foreground_dice(np.concatenate(pred), np.concatenate([m.ravel() for m in masks]))

    expected = _per_mode(model, pooled_dice)
    assert len({round(v, 4) for v in expected.values()}) >= 3
    _, scores = select_fast_head(model, images, masks, tolerance=-1.0, device="cpu")  # auto: Dice
    assert scores == pytest.approx(expected, rel=1e-9)
    _, scores = select_fast_head(model, images, ids, tolerance=-1.0, score="dice", device="cpu")
    assert scores == pytest.approx(expected, rel=1e-9)
    # painted labels (0 unlabelled, 1 background, ids >= 2): the painted pixels only
    painted = np.where(ids[0] > 0, ids[0].astype(np.int32) + 1, 1)
    painted[1, :, 48:] = 0
    painted[3] = 0
    _, scores = select_fast_head(model, images[0], painted, tolerance=-1.0, sparse=True, device="cpu")
    model.head = 2
    pred = segment(images[0], model, device="cpu", precision="float32")
    model.head = "accurate"
    assert scores["2"] == pytest.approx(foreground_dice(pred, painted >= 2, mask=painted > 0), rel=1e-9)


@pytest.fixture
def tiny_instance_pp():
    from napari_unet_stack.training import instance_meta

    model = NestedUNet(1, 3, base_channels=4, depth=2, deep_supervision=True)
    model.meta.update(instances=instance_meta(), class_values=[0, 1, 1],
                      normalization=dict(DEFAULT_NORMALIZATION))
    return model


def test_select_fast_head_refuses_scores_the_model_or_labels_cannot_give(data, tiny_instance_pp):
    from napari_unet_stack.training import select_fast_head

    image, ids = data.image[:2], data.instances[:2]
    semantic = NestedUNet(1, 2, base_channels=4, depth=2, deep_supervision=True)
    with pytest.raises(ValueError, match=r"needs an instance model.*score='dice'"):
        select_fast_head(semantic, image, data.labels[:2], score="f1")
    with pytest.raises(ValueError, match=r"only 0 and 1 \(a mask\)"):
        select_fast_head(tiny_instance_pp, image, (ids > 0).astype(np.uint8), score="f1")
    with pytest.raises(ValueError, match="dense instance labels"):
        select_fast_head(tiny_instance_pp, image, ids + 1, score="f1", sparse=True)
    with pytest.raises(ValueError, match="`score` must be one of"):
        select_fast_head(tiny_instance_pp, image, ids, score="F1")
    with pytest.raises(ValueError, match="integer dtype"):
        select_fast_head(tiny_instance_pp, image, ids.astype(np.float32))
    with pytest.raises(ValueError, match="must have the shape of `images`"):
        select_fast_head(tiny_instance_pp, image, ids[:, :32])
    with pytest.raises(TypeError, match=r"`labels\[1\]` must be an array"):
        select_fast_head(tiny_instance_pp, [image[0], image[1]], [ids[0], ids[1].tolist()])
    assert "fast_head" not in tiny_instance_pp.meta
