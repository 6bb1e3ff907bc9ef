"""WZMIAOMIAO deep-learning-for-image-processing DRIVE UNet checkpoints
(``{"model", "optimizer", "lr_scheduler", "epoch", "args"}``)."""

from __future__ import annotations

from ...models.reference import WZMiaomiaoUNet
from .family import ForeignFamily

__all__ = ["WZMIAOMIAO"]

#: its transforms: ToTensor (divide by 255), then Normalize with the DRIVE mean and std
WZMIAOMIAO = ForeignFamily(
    name="wzmiaomiao",
    source="WZMIAOMIAO/deep-learning-for-image-processing",
    network=WZMiaomiaoUNet,
    markers=("in_conv.0.weight",),
    normalization={
        "mode": "meanstd",
        "mean": [0.709, 0.381, 0.224],
        "std": [0.127, 0.079, 0.043],
        "divisor": 255.0,
    },
)
