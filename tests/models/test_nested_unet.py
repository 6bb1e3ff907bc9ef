"""UNet++: heads, deep supervision, head validation and the fast head's cost."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from napari_unet_stack import NestedUNet


def _out(model, h, w, c=None, n=2):
    c = model.in_channels if c is None else c
    with torch.inference_mode():
        return model.eval()(torch.randn(n, c, h, w))


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_nested_unet_shapes_and_heads(depth):
    model = NestedUNet(2, 3, base_channels=4, depth=depth, deep_supervision=True)
    size = 2**depth * 2
    x = torch.randn(1, 2, size, size)
    with torch.inference_mode():
        heads = model.eval().forward_heads(x)
        assert len(heads) == depth
        assert all(h.shape == (1, 3, size, size) for h in heads)
        torch.testing.assert_close(model(x), torch.stack(heads).mean(0))
        for k in range(1, depth + 1):
            model.head = k
            torch.testing.assert_close(model(x), heads[k - 1])
        assert model.size_multiple == 2**k


def test_nested_unet_without_deep_supervision_has_one_head():
    model = NestedUNet(1, 1, base_channels=4, depth=3)
    assert len(model.heads) == 1
    y = _out(model, 16, 24)
    assert y.shape == (2, 1, 16, 24)
    assert torch.isfinite(y).all() and y.std() > 0 and not torch.equal(y[0], y[1])
    with pytest.raises(ValueError, match="deep_supervision=True"):
        model.head = 2


def test_nested_head_validation():
    model = NestedUNet(1, 1, depth=3, deep_supervision=True)
    for bad in (0, 4, "quick", True):
        with pytest.raises(ValueError, match="`head`"):
            model.head = bad
    model.meta["fast_head"] = 1
    model.head = "fast"
    assert model.active_head == 1


def _flops(model, size=64):
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model.eval()(torch.randn(1, 1, size, size))
    return counter.get_total_flops()


@pytest.mark.slow
def test_fast_head_uses_fewer_flops():
    model = NestedUNet(1, 1, base_channels=8, depth=4, deep_supervision=True)
    accurate = _flops(model)
    costs = []
    for k in (1, 2, 3):
        model.head = k
        costs.append(_flops(model))
    assert costs[0] < costs[1] < costs[2] < accurate
    assert costs[0] < 0.2 * accurate
