"""napari-unet-stack: UNet and UNet++ segmentation of microscopy and medical image stacks.

The public API; everything else is an implementation detail. Importing this package does
not import napari or Qt; the training names (and scipy behind them) load on first use.
"""

from ._lazy import lazy_getattr
from ._version import __version__
from .checkpoints import (
    CheckpointError,
    UnsafeCheckpointError,
    export_torchscript,
    list_models,
    load_model,
    save_model,
)
from .inference import (
    InferenceCancelled,
    ModelSource,
    Progress,
    iter_predict,
    iter_segment,
    predict,
    segment,
)
from .labels import LabelRule
from .models import NestedUNet, UNet

# name -> module, imported on first attribute access (PEP 562)
_LAZY = {
    "train": "training",
    "iter_train": "training",
    "TrainingCancelled": "training",
    "TrainProgress": "training",
    "TrainSettings": "training",
    "select_fast_head": "training",
    "dice": "training",
    "iou": "training",
    "foreground_dice": "training",
    "match_instances": "training",
    "mean_average_precision": "training",
    "load_sample": "samples",
    "export_bioimageio": "bioimageio",
}

__all__ = [
    "CheckpointError",
    "InferenceCancelled",
    "LabelRule",
    "ModelSource",
    "NestedUNet",
    "Progress",
    "TrainProgress",
    "TrainSettings",
    "TrainingCancelled",
    "UNet",
    "UnsafeCheckpointError",
    "__version__",
    "dice",
    "export_bioimageio",
    "export_torchscript",
    "foreground_dice",
    "iou",
    "iter_predict",
    "iter_segment",
    "iter_train",
    "list_models",
    "load_model",
    "load_sample",
    "match_instances",
    "mean_average_precision",
    "predict",
    "save_model",
    "segment",
    "select_fast_head",
    "train",
]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
