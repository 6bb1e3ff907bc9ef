"""Plain torch networks (no napari): our UNet and UNet++, and the base class the engine reads."""

from .base import SegmentationNetwork, WrappedNetwork, unwrap_logits
from .nested_unet import NestedUNet
from .reference import REFERENCE_ARCHITECTURES, MilesialUNet, VGGNestedUNet, VGGUNet, WZMiaomiaoUNet
from .unet import UNet

ARCHITECTURES = {"UNet": UNet, "NestedUNet": NestedUNet}

__all__ = [
    "ARCHITECTURES",
    "REFERENCE_ARCHITECTURES",
    "MilesialUNet",
    "NestedUNet",
    "SegmentationNetwork",
    "UNet",
    "VGGNestedUNet",
    "VGGUNet",
    "WZMiaomiaoUNet",
    "WrappedNetwork",
    "unwrap_logits",
]
