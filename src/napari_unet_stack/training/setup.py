"""Setting a run up: the model, the resumed state, the data, the split and the step count.

`plan_run` does everything before the first optimizer is built, in the order that keeps a
seeded run reproducible: the sampling RNG is seeded once and used by the validation split,
then the crop centres, then (restored on resume) the patch sampler.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..channels import check_channel
from ..devices import cpu_native_bf16, resolve_device, resolve_precision
from ..models import SegmentationNetwork
from ..normalization import resolve_normalization, validate_normalization
from ..zcontext import KEY as Z_CONTEXT
from ..zcontext import image_channels, z_context_of
from .data import (
    PreparedData,
    Slice,
    check_capacity,
    index_centres,
    label_capacity,
    prepare_data,
    split_validation,
)
from .finetune import with_new_head
from .instances import instance_training_labels, is_instance_model, prepare_instance_model
from .settings import DEFAULT_LR, DEFAULT_STEPS, DEFAULT_WEIGHT_DECAY, TrainSettings, default_model
from .state import check_training_state, load_last_weights, restore_rng

__all__ = ["Plan", "patch_shapes", "plan_run", "resolve_model", "train_precision"]


@dataclass
class Plan:
    """A run, set up: what `TrainRun` needs to build its optimizer and go."""

    settings: TrainSettings
    net: SegmentationNetwork
    data: PreparedData
    train_slices: list[Slice]
    val_slices: list[Slice]
    image_shape: tuple[int, int]
    label_shape: tuple[int, int]
    rng: np.random.Generator
    device: torch.device
    autocast_dtype: torch.dtype | None
    resumed: dict[str, Any] | None  # the model's training state with resume=True
    previous: dict  # the model's provenance before this call
    start: int  # the step resumed from (0 for a fresh run)
    steps: int  # steps of this call
    lr: float
    weight_decay: float
    val_every: int

    @property
    def total(self) -> int:
        """The schedule's last step (steps are numbered start + 1 .. total)."""
        return self.start + self.steps

    @property
    def loss_options(self) -> dict[str, Any]:
        """`training.losses.segmentation_loss`'s options for this run (the contact weight
        only where the targets are instance classes)."""
        s = self.settings
        options: dict[str, Any] = {"dice_weight": s.dice_weight}
        if s.instances:
            options.update(contact_weight=s.contact_weight, boundary_width=s.boundary_width)
        return options


def resolve_model(model: Any) -> SegmentationNetwork | None:
    """None, a network, or a checkpoint path / bundled name (loaded)."""
    if model is None:
        return None
    if isinstance(model, (str, os.PathLike)):
        from ..checkpoints import load_model

        return load_model(model)
    if isinstance(model, SegmentationNetwork):
        return model
    raise TypeError(
        f"`model` must be None, a UNet/NestedUNet (or any SegmentationNetwork, e.g. from load_model), "
        f"or a checkpoint path / bundled model name, got {type(model).__name__}"
    )


def patch_shapes(
    patch_size: int | tuple[int, int], model: SegmentationNetwork, slices: list[Slice]
):
    """(image patch, label patch) shapes on the model's size grid, no larger than needed.

    ``patch_size`` is a checked `TrainSettings.patch_size`: an int or (height, width).
    """
    wanted = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
    largest = (max(s.shape[0] for s in slices), max(s.shape[1] for s in slices))
    image_shape, label_shape = [], []
    for want, big in zip(wanted, largest, strict=True):
        out = min(want, big)
        size_in = model.input_size_for(out)
        image_shape.append(size_in)
        label_shape.append(model.output_size(size_in))
    return tuple(image_shape), tuple(label_shape)


def _resumed_state(net: SegmentationNetwork | None, s: TrainSettings) -> dict[str, Any] | None:
    """The model's training state when ``resume=True`` (checked), else None."""
    if not s.resume:
        return None
    if net is None:
        raise ValueError(
            "`resume=True` needs `model`: a model returned by train (or TrainingCancelled.model), "
            "or a checkpoint saved from one"
        )
    resumed = check_training_state(getattr(net, "training_state", None))
    if s.steps is None and s.epochs is None and resumed.get("finished", False):
        raise ValueError(
            f"`resume=True`: the training that made this model already ran its planned "
            f"{resumed['total']} steps; pass `steps` (or `epochs`) to train that many more"
        )
    return resumed


def _normalization(s: TrainSettings, net: SegmentationNetwork | None) -> dict:
    """The setting (a fresh copy), else the model's, else `DEFAULT_NORMALIZATION`."""
    if s.normalization is not None:
        return validate_normalization(s.normalization)
    return resolve_normalization("auto", net.meta.get("normalization") if net is not None else None)


def _name_classes(net: SegmentationNetwork, class_names: tuple[str, ...] | None) -> None:
    """Set ``meta["class_names"]``: the setting, else the model's, else a default."""
    if class_names is not None:
        if len(class_names) != net.out_channels:
            raise ValueError(
                f"`class_names` must have one name per output channel ({net.out_channels}), "
                f"got {len(class_names)}: {list(class_names)!r}"
            )
        net.meta["class_names"] = [str(c) for c in class_names]
    elif not net.meta.get("class_names"):
        names = net.class_names
        if net.activation == "softmax" and net.out_channels == 2:
            names = ["background", "foreground"]
        elif net.activation == "sigmoid" and net.out_channels > 1:  # multilabel: no background
            names = [f"class {k}" for k in range(1, net.out_channels + 1)]
        net.meta["class_names"] = names


def train_precision(precision: Any, device: torch.device) -> torch.dtype | None:
    """The training autocast dtype (None = float32); the rule of training, not of inference.

    ``"auto"``: on CUDA as `devices.resolve_precision` (bf16 where supported, else fp16
    with a GradScaler); on CPUs that compute bfloat16 natively (`devices.cpu_native_bf16`)
    bf16 autocast, which with channels-last took about 0.4-0.5x of the float32 step of the
    default UNet (issue 13); 150 steps of it on ``nuclei_train`` scored a held-out Dice of
    0.948 on ``nuclei_stack``, the same seeded run in float32 0.945; float32 elsewhere
    (MPS, CPUs without native bf16, where emulated bf16 is slower). An explicit
    ``"bfloat16"`` runs on any CPU; ``"float16"`` is CUDA only; MPS trains in float32.
    The loss is computed in float32 whatever the network's output dtype.
    """
    if (precision is None or precision == "auto") and device.type == "cpu":
        return torch.bfloat16 if cpu_native_bf16() else None
    dtype = resolve_precision(precision, device)
    if dtype is not None and device.type not in ("cuda", "cpu"):
        raise ValueError(
            f"`precision={precision!r}`: mixed-precision training runs on CUDA and the CPU "
            f"(device {device}); use precision='float32'"
        )
    return dtype


def _needs_new_head(net: SegmentationNetwork | None, s: TrainSettings, resumed: bool) -> bool:
    """Whether ``net``'s class head cannot learn these labels: an instance model trained on
    semantic labels, or with ``instances=True`` a model that is not a 3-class softmax one."""
    if net is None:
        return False
    if s.instances:
        cross = net.activation != "softmax" or int(net.out_channels) != 3
    else:
        cross = is_instance_model(net)
    if cross and resumed:
        raise ValueError("`resume=True` goes on with the same classes: the model is "
                         + ("not an instance model" if s.instances else "an instance model (pass instances=True)"))
    return cross


def _count_steps(s, resumed, start: int, train_slices: list[Slice], label_shape) -> int:
    """Steps of this call: ``steps``, from ``epochs``, on to the resumed total, or the default."""
    if s.steps is not None:
        return s.steps
    if s.epochs is not None:
        area = sum(sl.shape[0] * sl.shape[1] for sl in train_slices)
        per_epoch = math.ceil(area / (s.batch_size * label_shape[0] * label_shape[1]))
        return max(1, round(s.epochs * per_epoch))
    return int(resumed["total"]) - start if resumed is not None else DEFAULT_STEPS


def _z_context(net: SegmentationNetwork | None, s: TrainSettings) -> int:
    """The run's z context: the setting, else the model's; ValueError when they differ."""
    own = z_context_of(net) if net is not None else 0
    if s.z_context is None or net is None:
        return own if s.z_context is None else s.z_context
    if s.z_context != own:
        raise ValueError(f"`z_context={s.z_context}` but the model reads {own} neighbouring slice(s) on each side "
                         f"(meta['z_context']): a model's z context cannot change; train a new model")
    return own


def _prepared(images: Any, labels: Any, net: SegmentationNetwork | None, s: TrainSettings, norm: dict,
              resumed: bool) -> tuple[SegmentationNetwork | None, PreparedData, Any, bool, int]:
    """The run's data (`prepare_data`), after an instance model's new head and targets: the
    network (a new head for ``instances=True``), the data, the instance ids, whether a new
    semantic head is still to come and the z context."""
    new_head = _needs_new_head(net, s, resumed)
    if new_head and s.instances:
        net = with_new_head(net, 3, seed=s.seed, why="instances=True learns background / interior / boundary")
        new_head = False
    class_values = net.meta.get("class_values") if net is not None and not s.sparse else None
    ids = None
    if s.instances:
        labels, ids = instance_training_labels(labels, boundary_width=s.boundary_width, sparse=s.sparse)
        class_values = None
    if new_head:
        class_values = None
    capacity = label_capacity(net) if net is not None and not new_head else None
    if s.channel is not None and net is not None and image_channels(net) != 1:
        check_channel(s.channel, None, image_channels(net), channel_axis=s.channel_axis)
    z_context = _z_context(net, s)
    data = prepare_data(images, labels, channel_axis=s.channel_axis, channel=s.channel, sparse=s.sparse,
                        normalization=norm, class_values=class_values, capacity=capacity,
                        z_context=z_context, z_axis=s.z_axis, time_axes=s.time_axis)  # fmt: skip
    return net, data, ids, new_head, z_context


def _ready_net(net: SegmentationNetwork | None, data: PreparedData, s: TrainSettings, ids: Any, new_head: bool,
               z_context: int, norm: dict) -> SegmentationNetwork:
    """The network to train: built (seeded) when there is none, or given its new head; its
    instance metadata, class names and normalization set; checked against the data."""
    if net is None:
        with torch.random.fork_rng(devices=[]):  # seeded init, global RNG untouched
            torch.manual_seed(s.seed)
            net = default_model(data.in_channels, 3 if s.instances else max(2, data.n_targets))
        if z_context:
            net.meta[Z_CONTEXT] = z_context
    elif new_head:
        net = with_new_head(net, max(2, data.n_targets), seed=s.seed, why="an instance model trained on semantic labels")
    if s.instances:
        prepare_instance_model(net, data, ids, s.boundary_width)
    check_capacity(data, net, s.sparse)
    _name_classes(net, s.class_names)
    net.meta["normalization"] = norm
    return net


def plan_run(images: Any, labels: Any, model: Any, s: TrainSettings) -> Plan:
    """Check and prepare everything a run needs before its optimizer (see the module doc)."""
    dev = resolve_device(s.device)
    autocast_dtype = train_precision(s.precision, dev)
    net = resolve_model(model)
    previous = dict(net.meta.get("provenance") or {}) if net is not None else {}
    resumed = _resumed_state(net, s)
    start = int(resumed["step"]) if resumed is not None else 0
    earlier = resumed if resumed is not None else {}
    lr = s.lr if s.lr is not None else float(earlier.get("lr", DEFAULT_LR))
    weight_decay = s.weight_decay
    if weight_decay is None:
        weight_decay = float(earlier.get("weight_decay", DEFAULT_WEIGHT_DECAY))
    norm = _normalization(s, net)
    net, data, ids, new_head, z_context = _prepared(images, labels, net, s, norm, resumed is not None)
    net = _ready_net(net, data, s, ids, new_head, z_context, norm)
    rng = np.random.default_rng(s.seed)
    image_shape, label_shape = patch_shapes(s.patch_size, net, data.slices)
    train_slices, val_slices = split_validation(
        data.slices,
        float(s.val_fraction),
        rng,
        min_size=max(label_shape[0] // 2, net.size_multiple),
        sparse=s.sparse,
    )
    index_centres(train_slices, s.sparse, rng)
    steps = _count_steps(s, resumed, start, train_slices, label_shape)
    if resumed is not None:
        restore_rng(rng, resumed, s.seed)
        load_last_weights(net, resumed)  # go on from the last step, not the best one
    return Plan(
        settings=s, net=net, data=data, train_slices=train_slices, val_slices=val_slices,
        image_shape=image_shape, label_shape=label_shape, rng=rng, device=dev,
        autocast_dtype=autocast_dtype, resumed=resumed, previous=previous, start=start,
        steps=steps, lr=lr, weight_decay=weight_decay,
        val_every=s.val_every if s.val_every is not None else max(1, steps // 10),
    )  # fmt: skip
