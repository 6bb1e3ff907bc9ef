"""Training settings: every keyword of `train` / `iter_train` in one frozen dataclass, and the
one set of defaults (steps, network) that the library, the CLI and the Train widget read.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..channels import check_channel
from ..models import (
    NestedUNet,
    SegmentationNetwork,
    UNet,
    architecture_class,
    architecture_name,
    check_downsampling,
)
from ..normalization import validate_normalization
from ..validation import check_int
from ..zcontext import check_time_axis, check_z_axis, check_z_context
from .augment import AugmentConfig

__all__ = [
    "DEFAULT_CONTACT_WEIGHT",
    "DEFAULT_LR",
    "DEFAULT_MODEL",
    "DEFAULT_STEPS",
    "DEFAULT_WEIGHT_DECAY",
    "ModelSettings",
    "TrainSettings",
    "default_model",
]

#: Steps when neither ``steps`` nor ``epochs`` is given.
DEFAULT_STEPS = 1000
#: AdamW learning rate and weight decay when ``lr`` / ``weight_decay`` are not given (and
#: not resumed from the model's training state).
DEFAULT_LR = 2e-3
DEFAULT_WEIGHT_DECAY = 1e-4
#: The cross-entropy weight of touching objects' boundary pixels in instance training. Chosen
#: by fine-tuning the bundled nuclei-unet 1500 steps, seeds 50 and 51, against weight 1: on
#: three generated selection stacks Z-linked F1 0.759 / 0.790 -> 0.776 / 0.791, on 16
#: generated 2D images 0.895 / 0.890 -> 0.902 / 0.898 (weight 10: 0.771 and 0.880, seed 50).
DEFAULT_CONTACT_WEIGHT = 5.0


def _number(name: str, value: Any, *, minimum: float, strict: bool, allow_none: bool = False):
    """``value`` as a finite float > (or >=) ``minimum``, else ValueError naming ``name``."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok and not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value!r}")
    if not ok or not (value > minimum if strict else value >= minimum):
        what = "a positive number" if strict and minimum == 0 else f"a number >= {minimum}"
        raise ValueError(f"`{name}` must be {what}, got {value!r}")
    return value


def _patch_size(value: Any) -> int | tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        wanted: Any = int(value)
        smallest = wanted
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        wanted = tuple(int(p) for p in value)
        smallest = min(wanted)
    else:
        raise ValueError(f"`patch_size` must be an int or (height, width), got {value!r}")
    if smallest < 1:
        raise ValueError(f"`patch_size` must be positive, got {value!r}")
    return wanted


@dataclass(frozen=True)
class ModelSettings:
    """The network ``train(model=None)`` builds (plus in_channels and n_classes from the data).

    The one set of defaults for new networks: `default_model`, ``unet-stack train`` and the
    Train widget all start from ``ModelSettings()``.

    Parameters
    ----------
    architecture : str
        One of `napari_unet_stack.models.ARCHITECTURES` (``"UNet"`` or ``"NestedUNet"``,
        any case, or ``"unetpp"``); a UNet++ is built with deep supervision.
    base_channels : int
        Channels of the first level (doubling at every level down).
    depth : int
        Number of down-sampling levels.
    downsampling : {'maxpool', 'strided'}
        UNet only: 2x2 max-pooling down, or the strided-convolution style (3x3 stride-2
        convolutions down, 3x3 transposed convolutions up; see `napari_unet_stack.UNet`).
    """

    architecture: str = "UNet"
    base_channels: int = 16
    depth: int = 4
    downsampling: str = "maxpool"

    def __post_init__(self) -> None:
        object.__setattr__(self, "architecture", architecture_name(self.architecture))
        object.__setattr__(self, "base_channels", check_int("base_channels", self.base_channels))
        object.__setattr__(self, "depth", check_int("depth", self.depth))
        check_downsampling(self.downsampling)
        if self.downsampling != "maxpool" and architecture_class(self.architecture) is not UNet:
            raise ValueError(
                f"`downsampling={self.downsampling!r}` is a UNet option; {self.architecture} "
                f"down-samples with max-pooling (use downsampling='maxpool' or architecture='UNet')"
            )

    def build(self, in_channels: int, n_classes: int, **kwargs) -> SegmentationNetwork:
        """A fresh network of these settings; ``kwargs`` go to the class (e.g. ``padding``)."""
        cls = architecture_class(self.architecture)
        options = {"base_channels": self.base_channels, "depth": self.depth, **kwargs}
        if cls is NestedUNet:
            options.setdefault("deep_supervision", True)
        else:
            options.setdefault("downsampling", self.downsampling)
        return cls(in_channels, n_classes, **options)


#: `ModelSettings` defaults as a dict (``architecture``, ``base_channels``, ``depth``,
#: ``downsampling``).
DEFAULT_MODEL: dict[str, Any] = dataclasses.asdict(ModelSettings())


def default_model(
    in_channels: int, n_classes: int, *, architecture: str = "UNet", **kwargs
) -> SegmentationNetwork:
    """The small network ``train(model=None)`` builds: ``DEFAULT_MODEL`` updated by ``kwargs``.

    ``architecture="NestedUNet"`` (or ``"unetpp"``, any case) builds a UNet++ with deep
    supervision; other names raise ValueError listing the choices.
    """
    known = {f.name for f in dataclasses.fields(ModelSettings)} - {"architecture"}
    chosen = {k: kwargs.pop(k) for k in list(kwargs) if k in known}
    return ModelSettings(architecture, **chosen).build(in_channels, n_classes, **kwargs)


@dataclass(frozen=True)
class TrainSettings:
    """Every setting of `train` / `iter_train` (everything but the data, model, progress and
    cancel). Building one checks it: a bad value raises ValueError (or TypeError) naming it.

    Parameters
    ----------
    resume : bool
        Continue the training that produced ``model`` instead of fine-tuning it: the AdamW
        moments, the learning-rate schedule, the step count and (with the same ``seed``)
        the patch sampling go on from ``model.training_state``, which `train` sets on its
        result (also on ``TrainingCancelled.model``) and `save_model` stores. The state is
        taken at the step whose weights the model holds: the best validated step, else the
        last one. With neither ``steps`` nor ``epochs``, the run goes on to the total the
        earlier run planned (a cancelled run finishes as if never stopped; a run that had
        finished is an error). ``steps=N`` (or ``epochs``) means N *more* steps, on the
        schedule stretched to end at the resumed step + N: it is the planned schedule
        when that is the planned total, and for a run that had finished the learning rate
        rises again from its 1 % floor. ``lr`` and ``weight_decay`` default to the earlier
        run's. History and progress steps continue the earlier numbering (the history holds
        this call's steps only); the best weights are chosen among this call's validations.
        A model without training state (bundled, imported, saved with
        ``include_training_state=False``) raises ValueError: use ``resume=False``.
    steps : int, optional
        Optimizer steps (one batch each). Default ``DEFAULT_STEPS`` (1000); with
        ``resume``, the steps left to the planned total.
    epochs : float, optional
        Instead of ``steps``: passes over the training pixels (``area / (batch_size x
        patch area)`` steps per epoch).
    patch_size : int or (int, int)
        Output patch size, rounded up to the model's size grid (and capped at the slices'
        size). For valid-convolution UNets the input patch is larger.
    batch_size : int
        Patches per step.
    val_fraction : float in [0, 1)
        Share of slices held out for validation (seeded; at least one when there are two
        or more slices). A single image loses its last rows (or columns) instead. 0
        disables validation: the final weights are returned.
    val_every : int, optional
        Steps between validations: steps whose number is a multiple of it are validated
        (default: a tenth of the steps run); the last step is always validated. The
        weights with the best mean foreground validation Dice are returned.
    augment : bool, dict or AugmentConfig
        True: random crops, flips, 90-degree rotations, elastic deformation, intensity
        gain/offset and noise (`AugmentConfig` defaults); a dict overrides some of them;
        False: random crops only. Stored as the `AugmentConfig` it means.
    lr, weight_decay : float, optional
        AdamW settings (default ``DEFAULT_LR`` = 2e-3 and ``DEFAULT_WEIGHT_DECAY`` = 1e-4,
        or with ``resume`` the earlier run's); the learning rate warms up linearly, then
        follows a cosine decay to 1 % of ``lr``.
    dice_weight : float
        Weight (>= 0) of the soft Dice term added to the cross-entropy (BCE for sigmoid
        models).
    device : 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'
        'auto': CUDA, then MPS, then CPU.
    precision : {'auto', 'float32', 'bfloat16', 'float16'}
        'auto': on CUDA bf16 autocast where supported, else fp16 with a GradScaler; on
        CPUs with native bfloat16 (AVX-512 BF16 / AMX) bf16 autocast with channels-last;
        float32 elsewhere (see `training.setup.train_precision`). The loss, validation and
        the UNet++ head choice are computed in float32 off CUDA. 'float16' is CUDA only.
    seed : int
        Seeds the model's initialisation, the validation split, patch sampling and
        augmentation: the same seed and data give the same run (on the CPU), and a
        cancelled run resumed with the same seed and data ends where the uninterrupted run
        would.
    channel_axis : int or None
        Axis of ``images`` holding channels (as for `predict`).
    channel : None, int or 'mean'
        To train a one-channel model on multichannel images: that channel index along
        ``channel_axis`` (negative from the end), or ``'mean'`` of the channels (the rule of
        `napari_unet_stack.channels`, as ``predict(..., channel=)`` then takes it). None:
        every channel. Stored as the checked choice (``'mean'`` in lower case).
    sparse : bool
        False (dense masks): 0 is background, 1..K-1 are classes, every pixel counts.
        True (painted annotations): **0 means unlabelled**, a painted value v means class
        v - 1 (paint background with 1, the first object class with 2, ...); only
        painted pixels count in the loss and metrics, slices with nothing painted are
        skipped.
    class_names : list of str, optional
        One name per output channel (default: kept from the model, else "background",
        "foreground" / "class k"). Stored as a tuple of str.
    normalization : dict or str, optional
        Intensity normalization (see `napari_unet_stack.normalization`); default: the
        model's, else ``DEFAULT_NORMALIZATION`` (percentiles 1-99.8 per slice). It is fitted
        on whole slices, exactly as inference does, and stored in the model. Stored
        validated (canonical dict).
    fast_head_tolerance : float
        UNet++ with deep supervision: ``meta["fast_head"]`` becomes the smallest head whose
        validation Dice is within this (>= 0) of the accurate (all-heads) mode.
    instances : bool
        ``labels`` are instance labels (each object its own id; sparse: 0 unlabelled, 1
        background, ids >= 2 objects) and the model learns background / interior /
        boundary (`napari_unet_stack.training.instance_targets`), so that
        ``segment(..., instances=True)`` separates touching objects. The model (new: 3
        classes; given: a 3-class softmax model) gets ``meta["instances"]``.
    boundary_width : int
        With ``instances``: the boundary band's width inside each object, in pixels.
    contact_weight : float
        With ``instances``: the cross-entropy weight (>= 1) of the boundary pixels where two
        objects touch (`training.losses.contact_pixels`; 1: all pixels alike). Default
        `DEFAULT_CONTACT_WEIGHT`.
    tune_decoding : bool
        With ``instances``: after training, choose the model's foreground threshold
        (``meta["threshold"]``) and then its marker threshold
        (``meta["instances"]["marker_threshold"]``) on the validation slices, by foreground
        Dice and by instance F1 at IoU 0.5 (`training.decoding_choice`), so that
        ``segment(..., instances=True)`` decodes as this data wants. Only with densely
        labelled validation slices holding at least `decoding_choice.MIN_OBJECTS` objects;
        otherwise (and with False) the model keeps its thresholds (a fine-tuned model its
        own, a new one 0.5). What was chosen, or why not, is in
        ``meta["provenance"]["decoding"]``.
    z_context : int, optional
        Neighbouring slices on either side each input also holds (2.5D, `napari_unet_stack.zcontext`):
        a new model takes (2k + 1) x C channels and records ``meta["z_context"]``, and
        `predict` / `segment` then read the neighbours themselves, along ``z_axis``. None
        (default): the given model's (0 for a new one). A model's own z context cannot change.
    z_axis : 'auto', int, None, or a list of those (one per image)
        With z context: the axis of each image (numbered like ``channel_axis``) its slices'
        neighbours are read along, the rule of ``predict(..., z_axis=)``
        (`zcontext.context_lead`): 'auto', the last leading (stack) axis that is not a
        ``time_axis``; None, or no such axis (a 2D image, a stack of time points only):
        each slice is its own neighbour. A list gives each image its own (images of
        different axis orders, e.g. ZYX beside ZTYX files). Checked, and ignored without
        z context.
    time_axis : int, sequence of int or None
        Axes of each image that are time (as `segment`'s ``time_axis``): with z context and
        ``z_axis='auto'``, never read across. Stored as a tuple of int.
    """

    resume: bool = False
    steps: int | None = None
    epochs: float | None = None
    patch_size: int | tuple[int, int] = 128
    batch_size: int = 8
    val_fraction: float = 0.15
    val_every: int | None = None
    augment: Any = True
    lr: float | None = None
    weight_decay: float | None = None
    dice_weight: float = 1.0
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    channel_axis: int | None = None
    channel: int | str | None = None
    sparse: bool = False
    class_names: tuple[str, ...] | None = None
    normalization: dict | str | None = None
    fast_head_tolerance: float = 0.02
    instances: bool = False
    boundary_width: int = 1
    contact_weight: float = DEFAULT_CONTACT_WEIGHT
    tune_decoding: bool = True
    z_context: int | None = None
    z_axis: int | str | list | None = "auto"
    time_axis: int | tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for name, value in self.validate().items():
            object.__setattr__(self, name, value)

    def validate(self) -> dict[str, Any]:
        """Check every setting; return the canonical values (ints, AugmentConfig, ...).

        Raises ValueError (TypeError for a value of the wrong kind) naming the setting.
        """
        steps = check_int("steps", self.steps, allow_none=True)
        if steps is not None and self.epochs is not None:
            raise ValueError(f"give `steps` ({steps}) or `epochs` ({self.epochs}), not both")
        if not isinstance(self.resume, bool):
            raise TypeError(f"`resume` must be True or False, got {self.resume!r}")
        if not isinstance(self.sparse, (bool, np.bool_)):
            raise TypeError(f"`sparse` must be True or False, got {self.sparse!r}")
        fraction = self.val_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:  # fmt: skip
            raise ValueError(f"`val_fraction` must be a number in [0, 1), got {fraction!r}")
        return {
            "steps": steps,
            "epochs": _number("epochs", self.epochs, minimum=0, strict=True, allow_none=True),
            "patch_size": _patch_size(self.patch_size),
            "batch_size": check_int("batch_size", self.batch_size),
            "val_every": check_int("val_every", self.val_every, allow_none=True),
            "augment": AugmentConfig.from_argument(self.augment),
            "lr": _number("lr", self.lr, minimum=0, strict=True, allow_none=True),
            "weight_decay": _number(
                "weight_decay", self.weight_decay, minimum=0, strict=False, allow_none=True
            ),
            "dice_weight": _number("dice_weight", self.dice_weight, minimum=0, strict=False),
            "fast_head_tolerance": _number(
                "fast_head_tolerance", self.fast_head_tolerance, minimum=0, strict=False
            ),
            "seed": check_int("seed", self.seed, 0),
            "channel": check_channel(self.channel, channel_axis=self.channel_axis),
            "sparse": bool(self.sparse),
            "instances": _flag("instances", self.instances),
            "tune_decoding": _flag("tune_decoding", self.tune_decoding),
            "boundary_width": check_int("boundary_width", self.boundary_width),
            "contact_weight": float(_number("contact_weight", self.contact_weight, minimum=1, strict=False)),
            "class_names": _class_names(self.class_names),
            "z_context": None if self.z_context is None else check_z_context(self.z_context),
            "z_axis": check_z_axis(self.z_axis, per_image=True),
            "time_axis": check_time_axis(self.time_axis),
            "normalization": None
            if self.normalization is None
            else validate_normalization(self.normalization),
        }

    @classmethod
    def from_options(cls, settings: TrainSettings | None = None, **options) -> TrainSettings:
        """``settings`` (default: the defaults) with ``options`` replaced; an option that is
        not a setting is a TypeError naming it and the settings there are.
        """
        if settings is not None and not isinstance(settings, TrainSettings):
            raise TypeError(f"`settings` must be a TrainSettings, got {type(settings).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise TypeError(f"unexpected training option(s) {unknown}; the options are {names}")
        if settings is None:
            return cls(**options)
        return dataclasses.replace(settings, **options) if options else settings

    def replace(self, **changes) -> TrainSettings:
        """A copy with ``changes`` (checked like a new one)."""
        return TrainSettings.from_options(self, **changes)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False, got {value!r}")
    return bool(value)


def _class_names(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise TypeError(f"`class_names` must be a list of str, got {value!r}")
    return tuple(str(c) for c in value)
