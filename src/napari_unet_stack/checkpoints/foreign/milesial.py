"""milesial/Pytorch-UNet checkpoints (``checkpoint_epoch*.pth``: a state dict, maybe with
``mask_values``); transposed or bilinear up-sampling, the older biased convolutions too."""

from __future__ import annotations

from ...models.reference import MilesialUNet
from .family import ForeignFamily

__all__ = ["MILESIAL"]

#: its predict.py divides 8-bit images by 255 (images already in [0, 1] are left alone)
MILESIAL = ForeignFamily(
    name="milesial",
    source="milesial/Pytorch-UNet",
    network=MilesialUNet,
    markers=("inc.double_conv.0.weight",),
    normalization={"mode": "scale", "divisor": 255.0, "when_above": 1.0},
)
