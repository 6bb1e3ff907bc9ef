"""Plain torch networks (no napari): our UNet and UNet++, and the base class the engine reads."""

from .base import SegmentationNetwork, WrappedNetwork, unwrap_logits
from .nested_unet import NestedUNet
from .unet import UNet

ARCHITECTURES = {"UNet": UNet, "NestedUNet": NestedUNet}

__all__ = ["ARCHITECTURES", "NestedUNet", "SegmentationNetwork", "UNet", "WrappedNetwork", "unwrap_logits"]
