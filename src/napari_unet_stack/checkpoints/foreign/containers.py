"""The containers training scripts wrap their weights in: ``model`` / ``state_dict`` / ...
entries, and the prefixes DataParallel and ``torch.compile`` add to every key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["PREFIXES", "WRAPPER_KEYS", "strip_prefixes", "unwrap_container"]

WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "net")
PREFIXES = ("module.", "_orig_mod.")


def strip_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` without a prefix of `PREFIXES` that every tensor key carries."""
    state = dict(state)
    for prefix in PREFIXES:
        keys = [k for k in state if isinstance(state[k], torch.Tensor)]
        if keys and all(k.startswith(prefix) for k in keys):
            state = {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}
    return state


def unwrap_container(obj: Mapping[str, Any]) -> Any:
    """Descend through `WRAPPER_KEYS` entries (up to four) to the weights (or a module)."""
    for _ in range(4):
        if not isinstance(obj, Mapping) or any(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), (Mapping, nn.Module)):
                obj = obj[key]
                break
        else:
            return obj
    return obj
