"""Receptive fields: the halo the tiler uses is the measured reach of each network."""

import pytest
import torch

from napari_unet_stack import NestedUNet, UNet
from napari_unet_stack.models import StridedTutorialUNet


def test_reach_matches_measured_facts():
    # depth-4 reach: 94 px with transposed up-sampling, 110 px with bilinear
    assert UNet(1, 2, depth=4).reach == 94
    assert UNet(1, 2, depth=4).halo == 96
    assert UNet(1, 2, depth=4, upsampling="bilinear").reach == 110
    # strided: the 3x3 down and up convolutions reach one pixel further at every level
    assert UNet(1, 2, depth=4, downsampling="strided").reach == 110


REACH_MODELS = {
    "unet": lambda: UNet(1, 1, base_channels=4, depth=2),
    "unet-bilinear": lambda: UNet(1, 1, base_channels=4, depth=2, upsampling="bilinear"),
    "unetpp": lambda: NestedUNet(1, 1, base_channels=4, depth=2),
    "unet-strided": lambda: UNet(1, 1, base_channels=4, depth=2, downsampling="strided"),
    "unet-strided-depth3": lambda: UNet(1, 1, base_channels=2, depth=3, downsampling="strided"),
    "strided-tutorial": lambda: StridedTutorialUNet(1, 1, base_channels=2, depth=2),
    "strided-tutorial-depth3": lambda: StridedTutorialUNet(1, 1, base_channels=2, depth=3),
}
#: the 3x3 stride-2 convolutions and their transposes depend one pixel less on the left
ASYMMETRIC = {"unet-strided", "unet-strided-depth3", "strided-tutorial", "strided-tutorial-depth3"}


@pytest.mark.parametrize("name", list(REACH_MODELS))
def test_reach_is_exact(name):
    """The input pixels an output block depends on reach exactly `reach` px on both sides
    (on the right only, one pixel less on the left, for the strided down-sampling)."""
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
    assert c0 - rows.min().item() == (r - 1 if name in ASYMMETRIC else r)
    assert rows.max().item() - (c0 + m - 1) == r
    # and perturbing beyond the reach changes nothing, bit for bit
    with torch.no_grad():
        base = model(x)[..., c0 : c0 + m, c0 : c0 + m]
        far = x.clone()
        far[..., : c0 - r, :] += 10
        far[..., c0 + m + r :, :] -= 10
        assert torch.equal(model(far)[..., c0 : c0 + m, c0 : c0 + m], base)
