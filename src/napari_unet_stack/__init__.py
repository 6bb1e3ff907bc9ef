"""napari-unet-stack: UNet and UNet++ segmentation of microscopy and medical image stacks.

The public API; everything else is an implementation detail. Importing this package does
not import napari or Qt.
"""

from ._version import __version__
from .checkpoints import (
    CheckpointError,
    UnsafeCheckpointError,
    export_torchscript,
    list_models,
    load_model,
    save_model,
)
from .inference import InferenceCancelled, Progress, iter_predict, iter_segment, predict, segment
from .models import NestedUNet, UNet

__all__ = [
    "CheckpointError",
    "InferenceCancelled",
    "NestedUNet",
    "Progress",
    "UNet",
    "UnsafeCheckpointError",
    "__version__",
    "export_torchscript",
    "iter_predict",
    "iter_segment",
    "list_models",
    "load_model",
    "predict",
    "save_model",
    "segment",
]
