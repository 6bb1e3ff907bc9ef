"""The engine's copy of a model on a device: eval mode, BatchNorm folded, cached.

The caller's model is never moved or changed. A copy is kept per (model, device,
channels_last) and invalidated when any parameter or buffer is modified in place
(training) or the UNet++ head is changed.
"""

from __future__ import annotations

import copy
import itertools
import weakref

import torch

__all__ = ["fold_batchnorm", "on_device", "weights_version"]

_DEVICE_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fold_batchnorm(module: torch.nn.Module) -> None:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d in an nn.Sequential
    into that convolution (one op instead of two; equal up to float rounding)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for child in module.modules():
        if not isinstance(child, torch.nn.Sequential):
            continue
        names = list(child._modules)
        for a, b in itertools.pairwise(names):
            conv, bn = child._modules[a], child._modules[b]
            if (
                type(conv) is torch.nn.Conv2d
                and type(bn) is torch.nn.BatchNorm2d
                and bn.track_running_stats
                and bn.running_mean is not None
                and conv.out_channels == bn.num_features
            ):
                child._modules[a] = fuse_conv_bn_eval(conv, bn)
                child._modules[b] = torch.nn.Identity()


def weights_version(module: torch.nn.Module, params: list[torch.Tensor] | None = None) -> tuple:
    """A key that changes when ``module``'s weights are modified in place (training) or a
    setting that changes forward without touching them (the UNet++ head) is changed."""
    if params is None:
        params = list(module.parameters()) + list(module.buffers())
    return (tuple(p._version for p in params), getattr(module, "head", None), getattr(module, "active_head", None))


def on_device(module: torch.nn.Module, device: torch.device, channels_last: bool) -> torch.nn.Module:
    """An inference copy of ``module`` on ``device`` (cached until its weights change)."""
    params = list(module.parameters()) + list(module.buffers())
    scripted = isinstance(module, torch.jit.ScriptModule)
    if scripted and all(p.device == device for p in params) and not channels_last:
        return module
    version = weights_version(module, params)
    cache = _DEVICE_COPIES.setdefault(module, {})
    key = (str(device), channels_last)
    hit = cache.get(key)
    if hit is not None and hit[0] == version and len(hit[2]) == len(params) and all(
        a is b for a, b in zip(hit[2], params, strict=True)
    ):
        return hit[1]
    cache.pop(key, None)
    moved = _copy_to(module, device, channels_last, scripted)
    cache[key] = (version, moved, params)
    return moved


def _copy_to(module: torch.nn.Module, device: torch.device, channels_last: bool, scripted: bool) -> torch.nn.Module:
    with torch.no_grad():
        # the engine's copy leaves out the training state (optimizer moments) trainers keep
        state = getattr(module, "training_state", None)
        memo = {} if state is None else {id(state): None}
        moved = copy.deepcopy(module, memo).eval()
        if not scripted:
            fold_batchnorm(moved)
        moved = moved.to(device)
        if channels_last:
            moved = moved.to(memory_format=torch.channels_last)
    for p in moved.parameters():
        p.requires_grad_(False)
    return moved
