"""Networks of public reference codes, rebuilt so that their checkpoints load unchanged.

Each class has exactly the reference code's ``state_dict`` key names (checkpoints load
with ``strict=True``) and computes the same logits, layer by layer, in eval mode. One
module per reference code:

- `milesial`: `MilesialUNet`, milesial/Pytorch-UNet ``UNet(n_channels, n_classes, bilinear)``.
- `wzmiaomiao`: `WZMiaomiaoUNet`, WZMIAOMIAO deep-learning-for-image-processing,
  pytorch_segmentation/unet ``UNet(in_channels, num_classes, bilinear, base_c)``; the same
  network as milesial's (both built on `padded.PaddedUNet`) with ``nn.Sequential`` naming.
  Its reference forward returns ``{"out": logits}``; ours returns the tensor.
- `pytorch_nested_unet`: `VGGUNet` and `VGGNestedUNet`, 4uiiurz1/pytorch-nested-unet
  ``UNet`` and ``NestedUNet`` (VGG blocks with biased convolutions).
- `strided_tutorial`: `StridedTutorialUNet`, the medical-imaging tutorial UNet
  ("深度学习pytorch框架--Unet医疗影像分割"): stride-2 convolutions down, 3x3 transposed
  convolutions up; it returns the H x W centre of the reference's (H + 2) x (W + 2) logits.

The sizes (channels, widths, depth, up-sampling, biases) are constructor arguments;
``kwargs_from_state_dict`` reads them off a checkpoint's weights. All of them up-sample with
``align_corners=True`` except milesial/WZMIAOMIAO with transposed convolutions and the
strided tutorial UNet (which tile exactly); those that do
cannot tile exactly (``exact_tiling = False``): their sampling grid depends on the size of
the image, so a tile is not up-sampled the way the whole image would be.

These modules exist to reproduce imported weights; new models should use `UNet` and
`NestedUNet`, which tile exactly.
"""

from __future__ import annotations

from ..base import SegmentationNetwork
from .milesial import MilesialUNet
from .pytorch_nested_unet import VGGNestedUNet, VGGUNet
from .strided_tutorial import StridedTutorialUNet
from .wzmiaomiao import WZMiaomiaoUNet

__all__ = [
    "REFERENCE_ARCHITECTURES",
    "MilesialUNet",
    "StridedTutorialUNet",
    "VGGNestedUNet",
    "VGGUNet",
    "WZMiaomiaoUNet",
]

#: Reference classes by the architecture name their ``config()`` reports.
REFERENCE_ARCHITECTURES: dict[str, type[SegmentationNetwork]] = {
    "MilesialUNet": MilesialUNet,
    "WZMiaomiaoUNet": WZMiaomiaoUNet,
    "VGGUNet": VGGUNet,
    "VGGNestedUNet": VGGNestedUNet,
    "StridedTutorialUNet": StridedTutorialUNet,
}
