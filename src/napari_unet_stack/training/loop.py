"""The training loop: `train` and its generator form `iter_train`."""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import time
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..devices import precision_name, resolve_device, resolve_precision
from ..models import NestedUNet, SegmentationNetwork, unwrap_logits
from ..normalization import DEFAULT_NORMALIZATION, validate_normalization
from .augment import PatchSampler
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
from .settings import DEFAULT_LR, DEFAULT_STEPS, DEFAULT_WEIGHT_DECAY, TrainSettings, default_model

__all__ = [
    "TrainProgress",
    "TrainingCancelled",
    "iter_train",
    "select_fast_head",
    "train",
]

#: Version of the ``model.training_state`` dict written by `train` (read by ``resume=True``).
TRAINING_STATE_VERSION = 1


class TrainingCancelled(RuntimeError):
    """Raised by `train` when ``cancel.is_set()`` becomes true.

    Attributes
    ----------
    model : SegmentationNetwork or None
        The best model so far (by validation Dice, else the latest weights), finished like
        a normal result: eval mode, on the CPU, metadata and ``training_state`` set, so
        ``train(..., model=err.model, resume=True)`` continues to the planned total. None
        if no step was done.
    history : dict
        The history up to the cancelled step.
    step : int
        The last step completed: steps done by this call, plus the step it resumed from
        with ``resume=True`` (the history's numbering).
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


# ----------------------------------------------------------------------------- helpers
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


def _cpu_copy(value: Any) -> Any:
    """A deep copy of nested dicts / lists / tuples with every tensor cloned to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _cpu_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(item) for item in value)
    return value


def _check_training_state(state: Any) -> dict[str, Any]:
    """The model's ``training_state`` for ``resume=True``, or ValueError saying what is wrong."""
    if state is None:
        raise ValueError(
            "`resume=True` needs a model that carries its training state (model.training_state): "
            "one returned by `train` (or TrainingCancelled.model), or a checkpoint saved from it "
            "with save_model (not with include_training_state=False). This model has none (bundled "
            "and imported models never do); pass resume=False to fine-tune it with a fresh "
            "optimizer and schedule"
        )
    if not isinstance(state, dict):
        raise ValueError(f"`model.training_state` must be a dict, got {type(state).__name__}")
    version = state.get("version")
    if not isinstance(version, int) or version > TRAINING_STATE_VERSION:
        raise ValueError(
            f"`model.training_state` has version {version!r}; this version reads up to "
            f"{TRAINING_STATE_VERSION}: upgrade napari-unet-stack"
        )
    for key in ("step", "total", "warmup"):
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"`model.training_state[{key!r}]` must be an int >= 0, got {value!r}")
    if state["step"] > state["total"]:
        raise ValueError(
            f"`model.training_state` is past its end (step {state['step']} of {state['total']})"
        )
    opt = state.get("optimizer")
    if not (
        isinstance(opt, dict)
        and isinstance(opt.get("state"), dict)
        and isinstance(opt.get("param_groups"), list)
    ):
        raise ValueError("`model.training_state['optimizer']` is not an optimizer state_dict")
    return state


def _load_optimizer(optimizer: torch.optim.Optimizer, saved: dict, params: list) -> None:
    """Load a saved AdamW state, checking first that it was made for these parameters."""
    groups = saved["param_groups"]
    counts = [len(g.get("params", [])) for g in groups]
    if len(groups) != 1 or counts[0] != len(params):
        raise ValueError(
            f"`resume=True`: the model's training state holds optimizer state for {sum(counts)} "
            f"trainable tensors in {len(groups)} group(s), but the model has {len(params)} "
            f"trainable tensors; pass resume=False to fine-tune instead"
        )
    for index, entry in saved["state"].items():
        moment = entry.get("exp_avg") if isinstance(entry, dict) else None
        if not (isinstance(index, int) and 0 <= index < len(params)) or (
            isinstance(moment, torch.Tensor) and moment.shape != params[index].shape
        ):
            shape = tuple(moment.shape) if isinstance(moment, torch.Tensor) else None
            raise ValueError(
                f"`resume=True`: the optimizer state of parameter {index!r} (shape {shape}) does not "
                f"fit the model; pass resume=False to fine-tune instead"
            )
    # a copy: the optimizer updates its moments in place, the saved state stays as it was
    optimizer.load_state_dict(_cpu_copy(saved))


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
    settings: TrainSettings | None = None,
    cancel: Any = None,
    **options: Any,
) -> Generator[TrainProgress, None, tuple[SegmentationNetwork, dict[str, list]]]:
    """`train` as a generator: yields a `TrainProgress` per step, returns ``(model, history)``.

    Use it from a worker thread (the napari widget does); `train` drains it.
    """
    t0 = time.perf_counter()
    s = TrainSettings.from_options(settings, **options)
    (resume, steps, epochs, patch_size, batch_size, val_fraction, val_every, aug, lr,
     weight_decay, dice_weight, device, precision, seed, channel_axis, sparse, class_names,
     normalization, fast_head_tolerance) = (getattr(s, f.name) for f in dataclasses.fields(s))
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise TypeError(
            f"`cancel` must have an is_set() method (threading.Event), got {type(cancel).__name__}"
        )
    dev = resolve_device(device)
    autocast_dtype = resolve_precision(precision, dev)
    if autocast_dtype is not None and dev.type != "cuda":
        raise ValueError(
            f"`precision={precision!r}`: mixed-precision training runs on CUDA only (device {dev})"
        )

    net = _resolve_model(model)
    previous_provenance = dict(net.meta.get("provenance") or {}) if net is not None else {}
    resumed: dict[str, Any] | None = None
    if resume:
        if net is None:
            raise ValueError(
                "`resume=True` needs `model`: a model returned by train (or TrainingCancelled.model), "
                "or a checkpoint saved from one"
            )
        resumed = _check_training_state(getattr(net, "training_state", None))
        if steps is None and epochs is None and resumed.get("finished", False):
            raise ValueError(
                f"`resume=True`: the training that made this model already ran its planned "
                f"{resumed['total']} steps; pass `steps` (or `epochs`) to train that many more"
            )
    start = int(resumed["step"]) if resumed is not None else 0
    if lr is None:
        lr = float(resumed.get("lr", DEFAULT_LR)) if resumed is not None else DEFAULT_LR
    if weight_decay is None:
        weight_decay = DEFAULT_WEIGHT_DECAY
        if resumed is not None:
            weight_decay = float(resumed.get("weight_decay", DEFAULT_WEIGHT_DECAY))
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
    if steps is None and epochs is not None:
        area = sum(s.shape[0] * s.shape[1] for s in train_slices)
        per_epoch = math.ceil(area / (batch_size * label_shape[0] * label_shape[1]))
        steps = max(1, round(epochs * per_epoch))
    if steps is None:  # resume: on to the planned total; else the default
        steps = int(resumed["total"]) - start if resumed is not None else DEFAULT_STEPS
    total = start + steps  # the schedule's last step (steps are numbered start + 1 .. total)
    if resumed is not None and resumed.get("seed") == seed and resumed.get("rng") is not None:
        # same seed, so the same split: the patch sampling goes on where it stopped
        try:
            rng.bit_generator.state = resumed["rng"]
        except (TypeError, ValueError, KeyError) as err:
            warnings.warn(
                f"resume: the saved sampling RNG state does not apply ({err}); patches are drawn "
                f"afresh from seed={seed}",
                stacklevel=2,
            )
    if val_every is None:
        val_every = max(1, steps // 10)
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
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype == torch.float16)
    if resumed is not None:
        _load_optimizer(optimizer, resumed["optimizer"], params)
        for group in optimizer.param_groups:  # the schedule's base rate: `lr`
            group["lr"] = group["initial_lr"] = lr
            group["weight_decay"] = weight_decay
        warmup = max(1, int(resumed["warmup"]))
        if scaler.is_enabled() and isinstance(resumed.get("grad_scaler"), dict):
            scaler.load_state_dict(resumed["grad_scaler"])
    else:
        warmup = min(100, max(1, total // 20))
    schedule = _lr_lambda(total, warmup)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: schedule(start + k))
    prec_name = precision_name(autocast_dtype)

    def training_state(step: int) -> dict[str, Any]:
        """What ``resume=True`` needs to continue after ``step`` (copied to the CPU)."""
        return {
            "version": TRAINING_STATE_VERSION,
            "step": int(step),
            "total": int(total),
            "warmup": int(warmup),
            "schedule": "linear warmup, cosine to 1 %",
            "lr": float(lr),
            "weight_decay": float(weight_decay),
            "seed": int(seed),
            "rng": _cpu_copy(rng.bit_generator.state),
            "optimizer": _cpu_copy(optimizer.state_dict()),
            "grad_scaler": dict(scaler.state_dict()) if scaler.is_enabled() else None,
        }

    history: dict[str, list] = {
        key: []
        for key in (
            "step", "loss", "lr", "seconds",
            "val_step", "val_loss", "val_dice", "val_iou", "val_dice_per_class", "val_iou_per_class",
        )
    }  # fmt: skip
    best = {"dice": -math.inf, "step": 0, "state": None, "metrics": None, "training": None}
    activation = net.activation
    bad_steps = 0

    def finish(done: int) -> SegmentationNetwork:
        """The result after ``done`` steps of this call (best weights, metadata, training state)."""
        if best["state"] is not None:
            net.load_state_dict(best["state"])
            state = best["training"]
        else:
            state = training_state(start + done)
        state["finished"] = start + done >= total
        net.training_state = state
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
            "best_step": int(best["step"]) if best["state"] is not None else start + int(done),
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
        if resumed is not None:
            net.meta["provenance"]["resumed_from_step"] = start
        return net

    yield TrainProgress(
        start, total, {"train_slices": len(train_slices), "val_slices": len(val_slices)}
    )
    for step in range(start + 1, total + 1):
        if cancel is not None and cancel.is_set():
            done = step - 1 - start
            result = finish(done) if done else None
            raise TrainingCancelled(
                f"training cancelled after {done} of {steps} steps"
                + (f" (at step {step - 1} of {total})" if start else ""),
                model=result,
                history=history,
                step=step - 1,
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
                    training=training_state(step),
                )
            info.update(
                val_loss=metrics["loss"], val_dice=metrics["dice"], val_iou=metrics["iou"],
                best_val_dice=best["dice"],
            )  # fmt: skip
        yield TrainProgress(step, total, info)
    return finish(steps), history


def _trainer_id() -> str:
    from .._version import __version__

    return f"napari-unet-stack {__version__}"


def train(
    images: Any,
    labels: Any,
    model: Any = None,
    *,
    settings: TrainSettings | None = None,
    progress: Callable[[int, int, dict], Any] | None = None,
    cancel: Any = None,
    **options: Any,
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
        **in place**. A checkpoint path or bundled name is loaded with `load_model`. Without
        ``resume`` the model is fine-tuned: it starts from its weights, normalization and
        class names, with a fresh optimizer and schedule (``meta["provenance"]
        ["total_steps"]`` adds up over runs); imported checkpoints keep the normalization
        they came with.
    settings : TrainSettings, optional
        The training settings (default: ``TrainSettings()``); ``options`` replace some.
    progress : callable(step, total, info), optional
        Called once with step 0 (with ``resume``: the step resumed from), then after every
        step; ``total`` is the schedule's last step. ``info`` holds ``loss``, ``lr``,
        ``seconds``, and after a validation ``val_loss``, ``val_dice``, ``val_iou``,
        ``best_val_dice``.
    cancel : object with ``is_set()``, optional
        Checked before every step; when set, `TrainingCancelled` is raised, carrying the
        best model so far (``err.model``, finished and ready to save) and the history.
    **options
        Any `TrainSettings` field by name (``steps``, ``epochs``, ``patch_size``,
        ``batch_size``, ``val_fraction``, ``val_every``, ``augment``, ``lr``,
        ``weight_decay``, ``dice_weight``, ``device``, ``precision``, ``seed``,
        ``channel_axis``, ``sparse``, ``class_names``, ``normalization``,
        ``fast_head_tolerance``, ``resume``), documented there. Another name is a
        TypeError.

    Returns
    -------
    model : SegmentationNetwork
        The trained network in eval mode, on the CPU, with ``meta["normalization"]``,
        ``meta["class_names"]`` and ``meta["provenance"]`` (steps, data shapes, best
        validation metrics, timing; plus ``meta["fast_head"]`` for UNet++), ready for
        `save_model` and `segment`. ``model.training_state`` (not part of ``meta``) holds
        what ``resume=True`` needs: a dict of tensors and plain values (``step``,
        ``total``, ``warmup``, ``finished``, ``lr``, ``weight_decay``, ``seed``, ``rng``,
        ``optimizer``, ``grad_scaler``), at the step of the returned weights.
    history : dict of lists
        One entry per step of this call under ``step``, ``loss``, ``lr``, ``seconds``; one entry per
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
    >>> more, _ = train(s.image[:2], s.labels[:2], model, resume=True, steps=2,
    ...                 patch_size=64, batch_size=2)  # doctest: +SKIP
    """
    gen = iter_train(images, labels, model, settings=settings, cancel=cancel, **options)
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(event.step, event.total, event.info)
