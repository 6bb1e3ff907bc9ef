"""Training UNet / UNet++ models on image stacks and (dense or painted) label masks.

`train` is the entry point (`iter_train` is its generator form for worker threads); both
take the same arguments, their settings being the fields of `TrainSettings`. `ModelSettings`
holds the defaults of a new network. `dice` / `iou` score label arrays per class;
`match_instances` / `mean_average_precision` score instance labels object by object.
"""

from .augment import AugmentConfig, augment_pair
from .classes import MAX_CLASSES, classes_for
from .errors import TrainingFailed
from .instances import (
    DEFAULT_BOUNDARY_WIDTH,
    INSTANCE_CLASSES,
    instance_meta,
    instance_targets,
    is_instance_model,
)
from .loop import TrainingCancelled, TrainProgress, iter_train, select_fast_head, train
from .losses import segmentation_loss
from .metrics import (
    AP_THRESHOLDS,
    InstanceMatch,
    confusion_counts,
    dice,
    foreground_dice,
    iou,
    match_instances,
    mean_average_precision,
    mean_score,
)
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
    "AP_THRESHOLDS",
    "DEFAULT_BOUNDARY_WIDTH",
    "DEFAULT_LR",
    "DEFAULT_MODEL",
    "DEFAULT_STEPS",
    "DEFAULT_WEIGHT_DECAY",
    "INSTANCE_CLASSES",
    "MAX_CLASSES",
    "AugmentConfig",
    "InstanceMatch",
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
    "instance_meta",
    "instance_targets",
    "iou",
    "is_instance_model",
    "iter_train",
    "match_instances",
    "mean_average_precision",
    "mean_score",
    "segmentation_loss",
    "select_fast_head",
    "train",
]
