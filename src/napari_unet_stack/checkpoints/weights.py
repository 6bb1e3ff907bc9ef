"""Loading a state dict into a module, with a message that says what does not fit."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError

__all__ = ["load_weights"]


def _describe(value: Any) -> str:
    return (
        str(tuple(value.shape)) if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"
    )


def load_weights(model: nn.Module, state: Mapping[str, Any], path: Path, what: str) -> None:
    """``load_state_dict(strict=True)``; a `CheckpointError` naming ``path`` and ``what``
    lists the missing, unexpected and wrongly shaped entries (five of each) otherwise."""
    expected = model.state_dict()
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
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{str(path)!r} does not fit a {what}: {err}") from err
