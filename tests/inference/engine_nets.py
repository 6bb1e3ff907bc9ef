"""Small lively networks and a test stack shared by the engine's tests (not a test module).

Load it with `load()` below from a test file beside it (pytest runs with
--import-mode=importlib, so test folders are not packages).
"""

import numpy as np
import torch

import napari_unet_stack as nus


def init(model):
    """Random but lively weights: He-initialised convolutions and small positive BatchNorm
    biases, so outputs depend strongly on the input (and ReLUs do not die)."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                module.bias.data.uniform_(-0.1, 0.1)
        elif isinstance(module, torch.nn.BatchNorm2d):
            module.bias.data.uniform_(0.0, 0.2)
    return model.eval()


MODELS = {
    "unet-transposed": lambda: init(nus.UNet(1, 3, base_channels=4, depth=3)),
    "unet-bilinear": lambda: init(nus.UNet(1, 2, base_channels=4, depth=3, upsampling="bilinear")),
    "unet-depth4": lambda: init(nus.UNet(1, 2, base_channels=2, depth=4)),
    "unetpp": lambda: init(nus.NestedUNet(1, 1, base_channels=4, depth=3, deep_supervision=True)),
    "unetpp-fast": lambda: init(nus.NestedUNet(1, 2, base_channels=4, depth=3, deep_supervision=True, head=2)),
    "unet-valid": lambda: init(nus.UNet(1, 2, base_channels=4, depth=2, padding="valid")),
    "unet-valid-bilinear": lambda: init(
        nus.UNet(1, 2, base_channels=4, depth=3, padding="valid", upsampling="bilinear")
    ),
}


def make_stack() -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.random((2, 77, 130)) * 1000).astype(np.uint16)
