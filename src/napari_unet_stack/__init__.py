"""napari-unet-stack: UNet and UNet++ segmentation of image stacks."""
from ._version import __version__
from .models import NestedUNet, UNet

__all__ = ["NestedUNet", "UNet", "__version__"]
