"""Model shapes, dtypes, geometry (halo/margins) and the UNet++ fast head's cost."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from napari_unet_stack import NestedUNet, UNet


def _out(model, h, w, c=None, n=2):
    c = model.in_channels if c is None else c
    with torch.inference_mode():
        return model.eval()(torch.randn(n, c, h, w))


@pytest.mark.parametrize("upsampling", ["transposed", "bilinear"])
@pytest.mark.parametrize(("depth", "base", "in_ch", "k"), [(1, 4, 1, 2), (2, 8, 3, 1), (3, 4, 2, 3), (4, 4, 1, 2)])
def test_unet_shapes(upsampling, depth, base, in_ch, k):
    model = UNet(in_ch, k, base_channels=base, depth=depth, upsampling=upsampling)
    size = 2**depth * 3
    y = _out(model, size, 2 * size)
    assert y.shape == (2, k, size, 2 * size)
    assert y.dtype == torch.float32
    assert model.size_multiple == 2**depth
    assert model.halo % model.size_multiple == 0 and model.halo >= model.reach
    assert model.activation == ("softmax" if k > 1 else "sigmoid")


def test_unet_widths_follow_base_channels():
    model = UNet(1, 2, base_channels=8, depth=3)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert max(c.out_channels for c in convs) == 8 * 2**3


@pytest.mark.parametrize(("depth", "margin"), [(1, 8), (2, 20), (3, 44), (4, 92)])
def test_valid_unet_margin(depth, margin):
    model = UNet(1, 2, base_channels=4, depth=depth, padding="valid")
    assert model.valid_margin == margin
    size = model.input_size_for(20)
    y = _out(model, size, size, n=1)
    assert y.shape[-1] == model.output_size(size) == size - 2 * margin
    assert y.shape[-1] >= 20


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_valid_bilinear_unet_margin(depth):
    """Valid + bilinear also drops each up-sampled map's clamped border pixel."""
    model = UNet(1, 2, base_channels=2, depth=depth, padding="valid", upsampling="bilinear")
    transposed = UNet(1, 2, base_channels=2, depth=depth, padding="valid")
    assert model.valid_margin > transposed.valid_margin
    size = model.input_size_for(24)
    y = _out(model, size, size, n=1)
    assert y.shape[-1] == model.output_size(size) == size - 2 * model.valid_margin >= 24


def test_valid_unet_paper_geometry():
    model = UNet(1, 2, depth=4, padding="valid")
    assert model.output_size(572) == 388  # Ronneberger et al. 2015, Fig. 1
    with pytest.raises(ValueError, match="not admissible"):
        model.output_size(570)


def test_reach_matches_measured_facts():
    # DESIGN.md section 3: depth-4 reach 94 px (transposed), 110 px (bilinear)
    assert UNet(1, 2, depth=4).reach == 94
    assert UNet(1, 2, depth=4).halo == 96
    assert UNet(1, 2, depth=4, upsampling="bilinear").reach == 110


REACH_MODELS = {
    "unet": lambda: UNet(1, 1, base_channels=4, depth=2),
    "unet-bilinear": lambda: UNet(1, 1, base_channels=4, depth=2, upsampling="bilinear"),
    "unetpp": lambda: NestedUNet(1, 1, base_channels=4, depth=2),
}


@pytest.mark.parametrize("name", list(REACH_MODELS))
def test_reach_is_exact(name):
    """The input pixels an output block depends on reach exactly `reach` px on both sides."""
    torch.manual_seed(1)  # built here, seeded: weights fixed at collection time made this flaky
    model = REACH_MODELS[name]().eval().double()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.bias.data.fill_(0.5)  # keep ReLUs alive so every dependence shows in the gradient
    m, r = model.size_multiple, model.reach
    size = m * (2 * (r // m + 2) + 1)
    c0 = (size // 2) // m * m  # a block on the grid near the centre
    x = (torch.rand(1, 1, size, size, dtype=torch.float64) + 1).requires_grad_(True)
    model(x)[..., c0 : c0 + m, c0 : c0 + m].sum().backward()
    rows = (x.grad[0, 0].abs().sum(1) > 0).nonzero().flatten()
    assert c0 - rows.min().item() == r
    assert rows.max().item() - (c0 + m - 1) == r
    # and perturbing beyond the reach changes nothing, bit for bit
    with torch.no_grad():
        base = model(x)[..., c0 : c0 + m, c0 : c0 + m]
        far = x.clone()
        far[..., : c0 - r, :] += 10
        far[..., c0 + m + r :, :] -= 10
        assert torch.equal(model(far)[..., c0 : c0 + m, c0 : c0 + m], base)


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
    assert _out(model, 16, 24, n=1).shape == (1, 1, 16, 24)
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


def test_fast_head_uses_fewer_flops():
    model = NestedUNet(1, 1, base_channels=8, depth=4, deep_supervision=True)
    accurate = _flops(model)
    costs = []
    for k in (1, 2, 3):
        model.head = k
        costs.append(_flops(model))
    assert costs[0] < costs[1] < costs[2] < accurate
    assert costs[0] < 0.2 * accurate


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_channels": 0}, "in_channels"),
        ({"n_classes": 1.5}, "n_classes"),
        ({"depth": 0}, "depth"),
        ({"upsampling": "nearest"}, "upsampling"),
        ({"padding": "full"}, "padding"),
    ],
)
def test_unet_rejects_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        UNet(**kwargs)


def test_describe_mentions_architecture():
    text = UNet(3, 2, base_channels=4, depth=2).describe()
    assert "UNet" in text and "3 in" in text and "softmax" in text
