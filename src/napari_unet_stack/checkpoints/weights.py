"""Building a network from a checkpoint and loading its weights, checked before anything
is allocated, with messages that say what does not fit.

A checkpoint's config (or the shapes its weights claim) decides how large a network
gets built; a few hundred bytes can claim terabytes. `build_checked` therefore checks, in
this order and before allocating anything: the sizes against sane bounds
(`check_claims`), the parameter count of the network built on the ``meta`` device (no
memory) against `MAX_PARAMETERS`, the checkpoint's tensors against that network's
shapes, each tensor against the values the file actually stores for it (an expanded,
stride-0 tensor claims shapes it does not hold), and the weights for NaN and infinity
(`non_finite`: such a model segments everything as background, silently).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError

__all__ = [
    "MAX_CHANNELS",
    "MAX_DEPTH",
    "MAX_PARAMETERS",
    "build_checked",
    "check_claims",
    "check_fit",
    "check_tensors",
    "expanded",
    "load_weights",
    "non_finite",
]

#: deepest network a checkpoint may describe (H and W multiples of 2**16 already)
MAX_DEPTH = 16
#: most channels a checkpoint may give an input, output or first level
MAX_CHANNELS = 2**16
#: most values (parameters and buffers) a loaded network may hold: 4 GiB of float32
MAX_PARAMETERS = 2**30

_CHANNEL_KEYS = ("in_channels", "n_classes", "base_channels")


def _describe(value: Any) -> str:
    return (
        str(tuple(value.shape)) if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"
    )


def check_claims(kwargs: Mapping[str, Any], path: Path, what: str) -> None:
    """`CheckpointError` when ``kwargs`` (from a config or read off the weights) claim a
    depth over `MAX_DEPTH` or channels over `MAX_CHANNELS`; other values are left to the
    network's constructor."""
    limits = {"depth": MAX_DEPTH, **dict.fromkeys(_CHANNEL_KEYS, MAX_CHANNELS)}
    for key, limit in limits.items():
        value = kwargs.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            raise CheckpointError(
                f"{str(path)!r} describes a {what} with {key}={value}, beyond the {limit} a "
                f"checkpoint may claim; the file is corrupt or not what it seems (nothing was built)"
            )


def _skeleton(build: Callable[[], nn.Module], path: Path, what: str) -> nn.Module:
    """``build()`` on the meta device: the shapes, without memory. Constructor errors
    (TypeError, ValueError) pass through for the caller to word."""
    try:
        with torch.device("meta"):
            return build()
    except (RuntimeError, OverflowError, MemoryError) as err:
        raise CheckpointError(
            f"{str(path)!r}: a {what} of the sizes it claims cannot be built ({err})"
        ) from err


def _check_budget(expected: Mapping[str, torch.Tensor], path: Path, what: str) -> None:
    total = sum(t.numel() for t in expected.values())
    if total > MAX_PARAMETERS:
        raise CheckpointError(
            f"{str(path)!r} describes a {what} with {total:,} parameters "
            f"({total * 4 / 2**30:,.0f} GiB as float32), more than the {MAX_PARAMETERS:,} a "
            f"checkpoint may claim; the file is corrupt or not what it seems (nothing was built)"
        )


def check_fit(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, Any], path: Path, what: str
) -> None:
    """A `CheckpointError` naming ``path`` and ``what`` that lists the missing, unexpected
    and wrongly shaped entries of ``state`` (five of each) against ``expected``."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {_describe(state[k])} (expected {tuple(expected[k].shape)})"
        for k in expected
        if k in state
        and (not isinstance(state[k], torch.Tensor) or state[k].shape != expected[k].shape)
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if keys:
            more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
            problems.append(f"{label}: {', '.join(keys[:5])}{more}")
    if problems:
        raise CheckpointError(f"{str(path)!r} does not fit a {what}: {'; '.join(problems)}")


def non_finite(state: Mapping[str, Any]) -> list[str]:
    """``"name (k non-finite value(s) of n, e.g. nan)"`` for each floating tensor of
    ``state`` holding NaN or infinity."""
    found = []
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        bad = ~torch.isfinite(value.detach())
        if bool(bad.any()):
            example = float(value.detach()[bad].flatten()[0])
            found.append(
                f"{key} ({int(bad.sum())} non-finite value(s) of {value.numel()}, e.g. {example})"
            )
    return found


def expanded(value: Any, where: str) -> str | None:
    """``"tensor 'where' claims shape ... but the file stores n value(s) for it"`` for the
    first tensor in ``value`` (nested dicts, lists, tuples) that shares values between its
    entries (an expanded, stride-0 tensor), else None."""
    if isinstance(value, torch.Tensor):
        if value.is_meta:
            return None
        stored = value.untyped_storage().nbytes() // max(value.element_size(), 1)
        strided = any(s == 0 and n > 1 for s, n in zip(value.stride(), value.shape, strict=True))
        if stored < value.numel() or strided:
            return (
                f"tensor {where!r} claims shape {tuple(value.shape)} but the file stores "
                f"{stored} value(s) for it (an expanded tensor)"
            )
        return None
    if not isinstance(value, (Mapping, list, tuple)):
        return None
    items = value.items() if isinstance(value, Mapping) else enumerate(value)
    for key, item in items:
        found = expanded(item, f"{where}[{key!r}]" if where else str(key))
        if found:
            return found
    return None


def check_tensors(state: Mapping[str, Any], path: Path) -> None:
    """`CheckpointError` for a tensor whose file stores fewer values than its shape claims
    (`expanded`), or for weights holding NaN or infinity."""
    found = expanded(state, "")
    if found:
        raise CheckpointError(f"{str(path)!r}: {found}; it is corrupt or not what it seems")
    bad = non_finite(state)
    if bad:
        more = f" and {len(bad) - 3} more tensor(s)" if len(bad) > 3 else ""
        raise CheckpointError(
            f"{str(path)!r} has non-finite weights: {'; '.join(bad[:3])}{more}. A model with NaN "
            f"or infinite weights segments everything as background, so it is refused; use an "
            f"earlier checkpoint of the training run"
        )


def build_checked(
    cls: Callable[..., nn.Module],
    kwargs: Mapping[str, Any],
    state: Mapping[str, Any],
    path: Path,
    what: str,
) -> nn.Module:
    """``cls(**kwargs)`` with ``state`` loaded (``strict=True``), after every check of this
    module has passed on a memory-free copy; `CheckpointError` naming ``path`` otherwise.

    Errors of ``cls``'s constructor (TypeError, ValueError) pass through unchanged.
    """
    check_claims(kwargs, path, what)
    expected = _skeleton(lambda: cls(**kwargs), path, what).state_dict()
    _check_budget(expected, path, what)
    check_fit(expected, state, path, what)
    check_tensors(state, path)
    model = cls(**kwargs)
    _load(model, state, path, what)
    return model


def _load(model: nn.Module, state: Mapping[str, Any], path: Path, what: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{str(path)!r} does not fit a {what}: {err}") from err


def load_weights(model: nn.Module, state: Mapping[str, Any], path: Path, what: str) -> None:
    """``load_state_dict(strict=True)`` into a built ``model``, after `check_fit` and
    `check_tensors`."""
    check_fit(model.state_dict(), state, path, what)
    check_tensors(state, path)
    _load(model, state, path, what)
