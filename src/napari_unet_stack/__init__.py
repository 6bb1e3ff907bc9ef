"""napari-unet-stack: UNet and UNet++ segmentation of microscopy and medical image stacks.

The public API; everything else is an implementation detail. Importing this package does
not import napari or Qt.
"""

from ._version import __version__
from .inference import InferenceCancelled, Progress, iter_predict, iter_segment, predict, segment
from .models import NestedUNet, UNet

__all__ = [
    "InferenceCancelled",
    "NestedUNet",
    "Progress",
    "UNet",
    "__version__",
    "iter_predict",
    "iter_segment",
    "predict",
    "segment",
]
