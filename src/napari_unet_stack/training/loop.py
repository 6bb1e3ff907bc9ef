"""The training loop: `train` and its generator form `iter_train`."""

from __future__ import annotations

import datetime
import math
import os
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..devices import precision_name, resolve_device, resolve_precision
from ..models import NestedUNet, SegmentationNetwork, UNet, unwrap_logits
from ..normalization import DEFAULT_NORMALIZATION, validate_normalization
from .augment import AugmentConfig, PatchSampler
from .data import (
    Slice,
    check_capacity,
    index_centres,
    label_capacity,
    prepare_data,
    split_validation,
)
from .losses import multi_head_loss
from .metrics import confusion_counts

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_STEPS",
    "TrainProgress",
    "TrainingCancelled",
    "default_model",
    "iter_train",
    "select_fast_head",
    "train",
]

#: Steps when neither ``steps`` nor ``epochs`` is given.
DEFAULT_STEPS = 1000
#: The model ``train(model=None)`` builds (plus in_channels and n_classes from the data).
DEFAULT_MODEL: dict[str, Any] = {"architecture": "UNet", "base_channels": 16, "depth": 4}


class TrainingCancelled(RuntimeError):
    """Raised by `train` when ``cancel.is_set()`` becomes true.

    Attributes
    ----------
    model : SegmentationNetwork or None
        The best model so far (by validation Dice, else the latest weights), finished like
        a normal result: eval mode, on the CPU, metadata set. None if no step was done.
    history : dict
        The history up to the cancelled step.
    step : int
        Steps completed.
    """

    def __init__(self, message: str, *, model=None, history=None, step: int = 0) -> None:
        super().__init__(message)
        self.model = model
        self.history = history if history is not None else {}
        self.step = step


@dataclass(frozen=True)
class TrainProgress:
    """One event of `iter_train`: ``step`` of ``total`` done, ``info`` as for ``progress``."""

    step: int
    total: int
    info: dict = field(default_factory=dict)


def default_model(
    in_channels: int, n_classes: int, *, architecture: str = "UNet", **kwargs
) -> SegmentationNetwork:
    """The small network ``train(model=None)`` builds: ``DEFAULT_MODEL`` updated by ``kwargs``.

    ``architecture="NestedUNet"`` builds a UNet++ with deep supervision.
    """
    options = {k: v for k, v in DEFAULT_MODEL.items() if k != "architecture"}
    options.update(kwargs)
    if architecture == "UNet":
        return UNet(in_channels, n_classes, **options)
    if architecture == "NestedUNet":
        options.setdefault("deep_supervision", True)
        return NestedUNet(in_channels, n_classes, **options)
    raise ValueError(f"`architecture` must be 'UNet' or 'NestedUNet', got {architecture!r}")


# ----------------------------------------------------------------------------- helpers
def _check_positive_int(name: str, value: Any, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"`{name}` must be a positive int{' or None' if allow_none else ''}, got {value!r}"
        )
    return int(value)


def _resolve_model(model: Any) -> SegmentationNetwork | None:
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


def _patch_shapes(patch_size: Any, model: SegmentationNetwork, slices: list[Slice]):
    """(image patch, label patch) shapes on the model's size grid, no larger than needed."""
    if isinstance(patch_size, (int, np.integer)) and not isinstance(patch_size, bool):
        wanted = (int(patch_size), int(patch_size))
    elif isinstance(patch_size, (tuple, list)) and len(patch_size) == 2:
        wanted = tuple(int(p) for p in patch_size)
    else:
        raise ValueError(f"`patch_size` must be an int or (height, width), got {patch_size!r}")
    if min(wanted) < 1:
        raise ValueError(f"`patch_size` must be positive, got {patch_size!r}")
    largest = (max(s.shape[0] for s in slices), max(s.shape[1] for s in slices))
    image_shape, label_shape = [], []
    for want, big in zip(wanted, largest, strict=True):
        out = min(want, big)
        size_in = model.input_size_for(out)
        image_shape.append(size_in)
        label_shape.append(model.output_size(size_in))
    return tuple(image_shape), tuple(label_shape)


def _outputs(model: SegmentationNetwork, x: torch.Tensor) -> list[torch.Tensor]:
    """Every head's logits for deep supervision, else the single output."""
    if getattr(model, "deep_supervision", False) and hasattr(model, "forward_heads"):
        return list(model.forward_heads(x))
    return [unwrap_logits(model(x))]


def _target_names(model: SegmentationNetwork) -> list[str]:
    """Names of the target indices 1..n-1 (the scored classes)."""
    names = model.class_names
    if model.activation == "softmax":
        return names[1:]
    return names


def _validate(
    model: SegmentationNetwork, slices: list[Slice], device, precision: str
) -> dict[str, Any]:
    """Per-class Dice / IoU and cross-entropy on the validation slices, through `predict`.

    The slices are already normalized as inference would (fitted on the whole slice), so
    `predict` runs with ``normalize=None`` and its usual padding and tiling.
    """
    from ..inference import predict
    from ..postprocess import probabilities_to_classes

    n_idx = label_capacity(model)
    classes = list(range(1, n_idx))
    tp = np.zeros(len(classes), np.int64)
    fp = np.zeros_like(tp)
    fn = np.zeros_like(tp)
    nll, n_pix = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        for s in slices:
            probs = predict(
                s.image, model, channel_axis=0, normalize=None, device=device, precision=precision
            )
            valid = s.target >= 0
            target = s.target.astype(np.int64)
            pred = probabilities_to_classes(probs, model.activation)
            counts = confusion_counts(pred, target, classes, mask=valid)
            tp += counts[0]
            fp += counts[1]
            fn += counts[2]
            eps = 1e-7
            if model.activation == "softmax":
                p = np.take_along_axis(probs, np.clip(target, 0, None)[None], axis=0)[0]
                nll += float(-np.log(np.clip(p[valid], eps, 1.0)).sum())
            else:
                on = target[None] == np.arange(1, probs.shape[0] + 1).reshape(-1, 1, 1)
                p = np.where(on, probs, 1.0 - probs)
                nll += float(-np.log(np.clip(p[:, valid], eps, 1.0)).mean(axis=0).sum())
            n_pix += int(valid.sum())
    finally:
        model.train(was_training)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), np.nan)
        j = np.where(tp + fp + fn > 0, tp / np.maximum(tp + fp + fn, 1), np.nan)
    names = _target_names(model)
    names = [names[c - 1] if c - 1 < len(names) else f"class {c}" for c in classes]

    def mean(a):
        a = a[~np.isnan(a)]
        return float(a.mean()) if a.size else float("nan")

    return {
        "loss": nll / max(n_pix, 1),
        "dice": mean(d),
        "iou": mean(j),
        "dice_per_class": {n: float(v) for n, v in zip(names, d, strict=True)},
        "iou_per_class": {n: float(v) for n, v in zip(names, j, strict=True)},
    }


def _finite_or_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _plain_metrics(metrics: dict | None) -> dict | None:
    if metrics is None:
        return None
    out = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out[key] = {k: _finite_or_none(v) for k, v in value.items()}
        else:
            out[key] = _finite_or_none(value)
    return out


def _choose_fast_head(
    model: NestedUNet, val: list[Slice], device, precision: str, tolerance: float
):
    """Smallest head whose val Dice is within ``tolerance`` of the accurate mode."""
    previous = model.head
    scores: dict[str, float] = {}
    try:
        model.head = "accurate"
        accurate = _validate(model, val, device, precision)["dice"]
        scores["accurate"] = accurate
        chosen = None
        for k in range(1, model.full_depth + 1):
            model.head = k
            scores[str(k)] = _validate(model, val, device, precision)["dice"]
            if chosen is None and scores[str(k)] >= accurate - tolerance:
                chosen = k
                break
    finally:
        model.head = previous
    return (chosen or model.full_depth), scores


def select_fast_head(
    model: NestedUNet,
    images: Any,
    labels: Any,
    *,
    tolerance: float = 0.02,
    channel_axis: int | None = None,
    sparse: bool = False,
    device: str = "auto",
    precision: str = "auto",
) -> tuple[int, dict[str, float]]:
    """Choose a UNet++'s ``meta["fast_head"]`` on validation images (what `train` does at the end).

    The fast head becomes the smallest head ``k`` whose mean foreground Dice on
    ``images`` / ``labels`` is within ``tolerance`` of the accurate mode (the mean of all
    heads). Images are normalized as inference does, with the model's normalization.

    Returns
    -------
    head : int
        The chosen head (also stored in ``model.meta["fast_head"]``).
    scores : dict
        Dice per mode: ``"accurate"`` and ``"1"``, ``"2"``, ... up to the chosen head.
    """
    if not (isinstance(model, NestedUNet) and model.deep_supervision):
        raise ValueError(
            f"`model` must be a NestedUNet built with deep_supervision=True, got {type(model).__name__}"
            + (" without deep supervision" if isinstance(model, NestedUNet) else "")
        )
    norm = validate_normalization(model.meta.get("normalization") or DEFAULT_NORMALIZATION)
    class_values = None if sparse else model.meta.get("class_values")
    data = prepare_data(
        images,
        labels,
        channel_axis=channel_axis,
        sparse=sparse,
        normalization=norm,
        class_values=class_values,
    )
    check_capacity(data, model, sparse)
    dev = resolve_device(device)
    prec = precision_name(resolve_precision(precision, dev))
    head, scores = _choose_fast_head(model, data.slices, dev, prec, float(tolerance))
    model.meta["fast_head"] = int(head)
    return int(head), scores


def _lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))

    return f


# ----------------------------------------------------------------------------- main
def iter_train(
    images: Any,
    labels: Any,
    model: Any = None,
    *,
    steps: int | None = None,
    epochs: float | None = None,
    patch_size: int | tuple[int, int] = 128,
    batch_size: int = 8,
    val_fraction: float = 0.15,
    val_every: int | None = None,
    augment: Any = True,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    dice_weight: float = 1.0,
    device: str = "auto",
    precision: str = "auto",
    cancel: Any = None,
    seed: int = 0,
    channel_axis: int | None = None,
    sparse: bool = False,
    class_names: list[str] | None = None,
    normalization: dict | str | None = None,
    fast_head_tolerance: float = 0.02,
) -> Generator[TrainProgress, None, tuple[SegmentationNetwork, dict[str, list]]]:
    """`train` as a generator: yields a `TrainProgress` per step, returns ``(model, history)``.

    Use it from a worker thread (the napari widget does); `train` drains it.
    """
    t0 = time.perf_counter()
    steps = _check_positive_int("steps", steps, allow_none=True)
    batch_size = _check_positive_int("batch_size", batch_size)
    val_every = _check_positive_int("val_every", val_every, allow_none=True)
    if steps is not None and epochs is not None:
        raise ValueError(f"give `steps` ({steps}) or `epochs` ({epochs}), not both")
    if epochs is not None and not (isinstance(epochs, (int, float)) and epochs > 0):
        raise ValueError(f"`epochs` must be a positive number, got {epochs!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"`lr` must be a positive number, got {lr!r}")
    if not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise ValueError(f"`val_fraction` must be a number in [0, 1), got {val_fraction!r}")
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise TypeError(
            f"`cancel` must have an is_set() method (threading.Event), got {type(cancel).__name__}"
        )
    aug = AugmentConfig.from_argument(augment)
    dev = resolve_device(device)
    autocast_dtype = resolve_precision(precision, dev)
    if autocast_dtype is not None and dev.type != "cuda":
        raise ValueError(
            f"`precision={precision!r}`: mixed-precision training runs on CUDA only (device {dev})"
        )

    net = _resolve_model(model)
    previous_provenance = dict(net.meta.get("provenance") or {}) if net is not None else {}
    if normalization is not None:
        norm = validate_normalization(normalization)
    elif net is not None and net.meta.get("normalization"):
        norm = validate_normalization(net.meta["normalization"])
    else:
        norm = validate_normalization(DEFAULT_NORMALIZATION)
    class_values = net.meta.get("class_values") if net is not None and not sparse else None
    data = prepare_data(
        images,
        labels,
        channel_axis=channel_axis,
        sparse=sparse,
        normalization=norm,
        class_values=class_values,
    )

    rng = np.random.default_rng(seed)
    if net is None:
        with torch.random.fork_rng(devices=[]):  # seeded init, global RNG untouched
            torch.manual_seed(seed)
            net = default_model(data.in_channels, max(2, data.n_targets))
    check_capacity(data, net, sparse)
    if class_names is not None:
        if len(class_names) != net.out_channels:
            raise ValueError(
                f"`class_names` must have one name per output channel ({net.out_channels}), "
                f"got {len(class_names)}: {class_names!r}"
            )
        net.meta["class_names"] = [str(c) for c in class_names]
    elif not net.meta.get("class_names"):
        names = net.class_names
        if net.activation == "softmax" and net.out_channels == 2:
            names = ["background", "foreground"]
        elif net.activation == "sigmoid" and net.out_channels > 1:  # multilabel: no background
            names = [f"class {k}" for k in range(1, net.out_channels + 1)]
        net.meta["class_names"] = names
    net.meta["normalization"] = norm

    image_shape, label_shape = _patch_shapes(patch_size, net, data.slices)
    train_slices, val_slices = split_validation(
        data.slices, float(val_fraction), rng, min_size=max(label_shape[0] // 2, net.size_multiple)
    )
    index_centres(train_slices, sparse, rng)
    if steps is None:
        if epochs is None:
            steps = DEFAULT_STEPS
        else:
            area = sum(s.shape[0] * s.shape[1] for s in train_slices)
            per_epoch = math.ceil(area / (batch_size * label_shape[0] * label_shape[1]))
            steps = max(1, round(epochs * per_epoch))
    total = steps
    if val_every is None:
        val_every = max(1, total // 10)
    sampler = PatchSampler(
        train_slices,
        patch_shape=image_shape,
        label_shape=label_shape,
        cfg=aug,
        rng=rng,
        sparse=sparse,
    )

    net.to(dev)
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    warmup = min(100, max(1, total // 20))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total, warmup))
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype == torch.float16)
    prec_name = precision_name(autocast_dtype)

    history: dict[str, list] = {
        key: []
        for key in (
            "step", "loss", "lr", "seconds",
            "val_step", "val_loss", "val_dice", "val_iou", "val_dice_per_class", "val_iou_per_class",
        )
    }  # fmt: skip
    best = {"dice": -math.inf, "step": 0, "state": None, "metrics": None}
    activation = net.activation
    bad_steps = 0

    def finish(done: int) -> SegmentationNetwork:
        if best["state"] is not None:
            net.load_state_dict(best["state"])
        net.eval()
        head_scores = None
        if isinstance(net, NestedUNet) and net.deep_supervision and val_slices:
            fast, head_scores = _choose_fast_head(
                net, val_slices, dev, prec_name, fast_head_tolerance
            )
            net.meta["fast_head"] = int(fast)
        net.to("cpu")
        prev = {k: v for k, v in previous_provenance.items() if k != "previous"}
        net.meta["provenance"] = {
            "trainer": _trainer_id(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "steps": int(done),
            "total_steps": int(prev.get("total_steps", 0)) + int(done),
            "best_step": int(best["step"]) if best["state"] is not None else int(done),
            "seed": int(seed),
            "batch_size": int(batch_size),
            "patch_size": [int(v) for v in label_shape],
            "lr": float(lr),
            "augment": aug.enabled,
            "sparse": bool(sparse),
            "device": str(dev),
            "precision": prec_name,
            "seconds": round(time.perf_counter() - t0, 1),
            "data": {
                "shapes": [list(s) for s in data.shapes],
                "dtypes": list(data.dtypes),
                "train_slices": len(train_slices),
                "val_slices": len(val_slices),
                "labelled_pixels": int(sum(s.n_labelled for s in data.slices)),
            },
            "val": _plain_metrics(best["metrics"]),
            "head_dice": {k: _finite_or_none(v) for k, v in head_scores.items()}
            if head_scores
            else None,
            "previous": prev or None,
        }
        return net

    yield TrainProgress(
        0, total, {"train_slices": len(train_slices), "val_slices": len(val_slices)}
    )
    for step in range(1, total + 1):
        if cancel is not None and cancel.is_set():
            done = step - 1
            result = finish(done) if done else None
            raise TrainingCancelled(
                f"training cancelled after {done} of {total} steps",
                model=result,
                history=history,
                step=done,
            )
        x_np, y_np = sampler.batch(batch_size)
        x = torch.from_numpy(x_np).to(dev, non_blocking=True)
        y = torch.from_numpy(y_np).to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            outs = _outputs(net, x)
        loss = multi_head_loss(outs, y, activation, dice_weight=dice_weight)
        optimizer.zero_grad(set_to_none=True)
        loss_value = float(loss.detach())
        if math.isfinite(loss_value):
            bad_steps = 0
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            scaler.step(optimizer)
            scaler.update()
        else:
            bad_steps += 1
            if bad_steps >= 5:
                raise FloatingPointError(
                    f"the loss is {loss_value} at step {step} (5 steps in a row); lower `lr` "
                    f"(now {lr}) or use precision='float32'"
                )
        lr_now = optimizer.param_groups[0]["lr"]
        scheduler.step()
        elapsed = time.perf_counter() - t0
        history["step"].append(step)
        history["loss"].append(loss_value)
        history["lr"].append(lr_now)
        history["seconds"].append(elapsed)
        info: dict[str, Any] = {"loss": loss_value, "lr": lr_now, "seconds": elapsed}
        if val_slices and (step % val_every == 0 or step == total):
            metrics = _validate(net, val_slices, dev, prec_name)
            history["val_step"].append(step)
            for key in ("loss", "dice", "iou", "dice_per_class", "iou_per_class"):
                history[f"val_{key}"].append(metrics[key])
            score = metrics["dice"] if math.isfinite(metrics["dice"]) else -math.inf
            if score > best["dice"] or best["state"] is None:
                best.update(
                    dice=score,
                    step=step,
                    metrics=metrics,
                    state={k: v.detach().clone() for k, v in net.state_dict().items()},
                )
            info.update(
                val_loss=metrics["loss"], val_dice=metrics["dice"], val_iou=metrics["iou"],
                best_val_dice=best["dice"],
            )  # fmt: skip
        yield TrainProgress(step, total, info)
    return finish(total), history


def _trainer_id() -> str:
    from .._version import __version__

    return f"napari-unet-stack {__version__}"


def train(
    images: Any,
    labels: Any,
    model: Any = None,
    *,
    steps: int | None = None,
    epochs: float | None = None,
    patch_size: int | tuple[int, int] = 128,
    batch_size: int = 8,
    val_fraction: float = 0.15,
    val_every: int | None = None,
    augment: Any = True,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    dice_weight: float = 1.0,
    device: str = "auto",
    precision: str = "auto",
    progress: Callable[[int, int, dict], Any] | None = None,
    cancel: Any = None,
    seed: int = 0,
    channel_axis: int | None = None,
    sparse: bool = False,
    class_names: list[str] | None = None,
    normalization: dict | str | None = None,
    fast_head_tolerance: float = 0.02,
) -> tuple[SegmentationNetwork, dict[str, list]]:
    """Train (or fine-tune) a segmentation network on images and label masks.

    Parameters
    ----------
    images : array or list of arrays
        One 2D image or stack ``(..., Y, X)``, or a list of them (sizes may differ). Any
        real integer or float dtype; NaN or infinite pixels are an error. Every leading
        axis is a stack of independent 2D slices, as in `predict`.
    labels : integer array or list of arrays
        One label array per image, with the image's shape without its channel axis. Any
        integer dtype, or floats holding integers. See ``sparse`` for their meaning.
    model : None, UNet, NestedUNet, SegmentationNetwork, path or bundled model name
        None builds `default_model` (a small UNet, ``DEFAULT_MODEL``) for the data's
        channels and classes (softmax with at least 2 classes). A model instance is trained
        **in place**. A checkpoint path or bundled name is loaded with `load_model` and
        fine-tuned: our own checkpoints resume from their stored weights, normalization and
        class names (the optimizer starts afresh; ``meta["provenance"]["total_steps"]``
        adds up over runs); imported checkpoints keep the normalization they came with.
    steps : int, optional
        Optimizer steps (one batch each). Default ``DEFAULT_STEPS`` (1000).
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
        Steps between validations (default: a tenth of the steps); the last step is
        always validated. The weights with the best mean foreground validation Dice are
        returned.
    augment : bool, dict or AugmentConfig
        True: random crops, flips, 90-degree rotations, elastic deformation, intensity
        gain/offset and noise (`AugmentConfig` defaults); a dict overrides some of them;
        False: random crops only.
    lr, weight_decay : float
        AdamW settings; the learning rate warms up linearly, then follows a cosine decay to
        1 % of ``lr``.
    dice_weight : float
        Weight of the soft Dice term added to the cross-entropy (BCE for sigmoid models).
    device : 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'
        'auto': CUDA, then MPS, then CPU.
    precision : {'auto', 'float32', 'bfloat16', 'float16'}
        Mixed precision is used on CUDA only: 'auto' is bf16 autocast where supported,
        else fp16 with a GradScaler; float32 elsewhere.
    progress : callable(step, total, info), optional
        Called once with step 0, then after every step. ``info`` holds ``loss``, ``lr``,
        ``seconds``, and after a validation ``val_loss``, ``val_dice``, ``val_iou``,
        ``best_val_dice``.
    cancel : object with ``is_set()``, optional
        Checked before every step; when set, `TrainingCancelled` is raised, carrying the
        best model so far (``err.model``, finished and ready to save) and the history.
    seed : int
        Seeds the model's initialisation, the validation split, patch sampling and
        augmentation: the same seed and data give the same run (on the CPU).
    channel_axis : int or None
        Axis of ``images`` holding channels (as for `predict`).
    sparse : bool
        False (dense masks): 0 is background, 1..K-1 are classes, every pixel counts.
        True (painted annotations): **0 means unlabelled**, a painted value v means class
        v - 1 (paint background with 1, the first object class with 2, ...); only
        painted pixels count in the loss and metrics, slices with nothing painted are
        skipped.
    class_names : list of str, optional
        One name per output channel (default: kept from the model, else "background",
        "foreground" / "class k").
    normalization : dict or str, optional
        Intensity normalization (see `napari_unet_stack.normalization`); default: the
        model's, else ``DEFAULT_NORMALIZATION`` (percentiles 1-99.8 per slice). It is fitted
        on whole slices, exactly as inference does, and stored in the model.
    fast_head_tolerance : float
        UNet++ with deep supervision: ``meta["fast_head"]`` becomes the smallest head whose
        validation Dice is within this of the accurate (all-heads) mode.

    Returns
    -------
    model : SegmentationNetwork
        The trained network in eval mode, on the CPU, with ``meta["normalization"]``,
        ``meta["class_names"]`` and ``meta["provenance"]`` (steps, data shapes, best
        validation metrics, timing; plus ``meta["fast_head"]`` for UNet++), ready for
        `save_model` and `segment`.
    history : dict of lists
        One entry per step under ``step``, ``loss``, ``lr``, ``seconds``; one entry per
        validation under ``val_step``, ``val_loss``, ``val_dice``, ``val_iou`` (mean over
        foreground classes), ``val_dice_per_class`` and ``val_iou_per_class`` (dicts
        class name -> score).

    Raises
    ------
    ValueError
        Mismatched shapes, empty arrays, NaN pixels, no foreground (or nothing painted),
        label values the model has no output for, bad settings.
    TrainingCancelled
        When ``cancel`` is set.

    Examples
    --------
    >>> from napari_unet_stack.samples import load_sample
    >>> s = load_sample("nuclei_train")
    >>> model, history = train(s.image[:2], s.labels[:2], steps=2, patch_size=64,
    ...                        batch_size=2)  # doctest: +SKIP
    """
    gen = iter_train(
        images,
        labels,
        model,
        steps=steps,
        epochs=epochs,
        patch_size=patch_size,
        batch_size=batch_size,
        val_fraction=val_fraction,
        val_every=val_every,
        augment=augment,
        lr=lr,
        weight_decay=weight_decay,
        dice_weight=dice_weight,
        device=device,
        precision=precision,
        cancel=cancel,
        seed=seed,
        channel_axis=channel_axis,
        sparse=sparse,
        class_names=class_names,
        normalization=normalization,
        fast_head_tolerance=fast_head_tolerance,
    )
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(event.step, event.total, event.info)
