"""UNet++: the fast head chosen on validation data."""

from __future__ import annotations

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
