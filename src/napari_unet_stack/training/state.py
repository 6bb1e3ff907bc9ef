"""Resume state: the ``model.training_state`` dict `train` writes and ``resume=True`` reads.

It holds what continuing a run needs (step, planned total, warm-up, AdamW moments, the
GradScaler, the patch-sampling RNG), all copied to the CPU. Also the learning-rate schedule
(linear warm-up, then cosine to 1 %), which a resumed run continues.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..validation import first_line

__all__ = [
    "TRAINING_STATE_VERSION",
    "check_training_state",
    "cpu_copy",
    "load_last_weights",
    "load_optimizer",
    "lr_lambda",
    "restore_rng",
    "snapshot",
]

#: Version of the ``model.training_state`` dict written by `train` (read by ``resume=True``).
TRAINING_STATE_VERSION = 1


def cpu_copy(value: Any) -> Any:
    """A deep copy of nested dicts / lists / tuples with every tensor cloned to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: cpu_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(cpu_copy(item) for item in value)
    return value


def lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    """The schedule's factor at step k (0-based): linear warm-up, then cosine to 1 %."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))

    return f


def snapshot(
    step: int,
    *,
    total: int,
    warmup: int,
    lr: float,
    weight_decay: float,
    seed: int,
    rng_state: dict,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
) -> dict[str, Any]:
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
        "rng": cpu_copy(rng_state),
        "optimizer": cpu_copy(optimizer.state_dict()),
        "grad_scaler": dict(scaler.state_dict()) if scaler.is_enabled() else None,
    }


def check_training_state(state: Any) -> dict[str, Any]:
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
    weights = state.get("weights")
    if weights is not None and not (
        isinstance(weights, dict) and all(isinstance(v, torch.Tensor) for v in weights.values())
    ):
        raise ValueError("`model.training_state['weights']` is not a state_dict of tensors")
    opt = state.get("optimizer")
    if not (
        isinstance(opt, dict)
        and isinstance(opt.get("state"), dict)
        and isinstance(opt.get("param_groups"), list)
    ):
        raise ValueError("`model.training_state['optimizer']` is not an optimizer state_dict")
    return state


def load_optimizer(optimizer: torch.optim.Optimizer, saved: dict, params: list) -> None:
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
    optimizer.load_state_dict(cpu_copy(saved))


def restore_rng(rng: np.random.Generator, resumed: dict[str, Any], seed: int) -> None:
    """With the same seed (so the same split), go on sampling where the resumed run stopped."""
    if resumed.get("seed") != seed or resumed.get("rng") is None:
        return
    try:
        rng.bit_generator.state = resumed["rng"]
    except (TypeError, ValueError, KeyError) as err:
        warnings.warn(
            f"resume: the saved sampling RNG state does not apply ({err}); patches are drawn "
            f"afresh from seed={seed}",
            stacklevel=4,
        )


def load_last_weights(net: torch.nn.Module, resumed: dict[str, Any]) -> None:
    """Give ``net`` the weights of the step the resumed run stopped at (``resumed["weights"]``,
    kept when the model holds the best validated weights of an earlier step instead)."""
    weights = resumed.get("weights")
    if weights is None:
        return
    try:
        net.load_state_dict(weights)
    except (RuntimeError, KeyError) as err:
        raise ValueError(
            f"`resume=True`: the last step's weights in model.training_state do not fit the model "
            f"({first_line(err)}); pass resume=False to fine-tune instead"
        ) from None
