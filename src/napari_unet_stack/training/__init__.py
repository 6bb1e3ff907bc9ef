"""Training UNet / UNet++ models on image stacks and (dense or painted) label masks.

`train` is the entry point (`iter_train` is its generator form for worker threads); both
take the same arguments, their settings being the fields of `TrainSettings`. `ModelSettings`
holds the defaults of a new network. `dice` / `iou` score label arrays per class.
"""

from .augment import AugmentConfig, augment_pair
from .classes import MAX_CLASSES, classes_for
from .errors import TrainingFailed
from .loop import TrainingCancelled, TrainProgress, iter_train, select_fast_head, train
from .losses import segmentation_loss
from .metrics import confusion_counts, dice, foreground_dice, iou, mean_score
from .settings import (
    DEFAULT_LR,
    DEFAULT_MODEL,
    DEFAULT_STEPS,
    DEFAULT_WEIGHT_DECAY,
    ModelSettings,
    TrainSettings,
    default_model,
)

__all__ = [
    "DEFAULT_LR",
    "DEFAULT_MODEL",
    "DEFAULT_STEPS",
    "DEFAULT_WEIGHT_DECAY",
    "MAX_CLASSES",
    "AugmentConfig",
    "ModelSettings",
    "TrainProgress",
    "TrainSettings",
    "TrainingCancelled",
    "TrainingFailed",
    "augment_pair",
    "classes_for",
    "confusion_counts",
    "default_model",
    "dice",
    "foreground_dice",
    "iou",
    "iter_train",
    "mean_score",
    "segmentation_loss",
    "select_fast_head",
    "train",
]
