"""Fine-tuning across heads: a model whose classes do not fit the labels keeps its features.

An instance model (background / interior / boundary) fine-tuned on semantic labels, or a
semantic model fine-tuned with ``instances=True``, cannot reuse its class head: its
channels mean other things. `with_new_head` keeps every encoder and decoder weight and
gives the network a freshly initialised head (seeded) of the classes wanted.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from ..models import SegmentationNetwork, architecture_class

__all__ = ["HEAD_PREFIXES", "with_new_head"]

#: State-dict keys of the class heads (UNet: ``head``, UNet++: ``heads``).
HEAD_PREFIXES = ("head.", "heads.")


def with_new_head(net: SegmentationNetwork, n_classes: int, *, seed: int = 0, why: str = "") -> SegmentationNetwork:
    """A copy of ``net`` with a new head of ``n_classes`` softmax outputs, every other
    weight and the normalization kept (a UserWarning says so, with ``why``)."""
    try:
        cfg: dict[str, Any] = net.config()
    except NotImplementedError:
        raise ValueError(f"cannot give {type(net).__name__} a new class head for {n_classes} classes; "
                         f"pass model=None to train a new network") from None
    kwargs = dict(cfg["kwargs"], n_classes=int(n_classes))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = architecture_class(cfg["architecture"])(**kwargs)
    kept = {k: v for k, v in net.state_dict().items() if not k.startswith(HEAD_PREFIXES)}
    missing, unexpected = fresh.load_state_dict(kept, strict=False)
    if unexpected or any(not k.startswith(HEAD_PREFIXES) for k in missing):
        raise ValueError(f"cannot reuse the weights of {type(net).__name__} under a new head "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for key in ("normalization", "provenance"):
        if key in net.meta:
            fresh.meta[key] = net.meta[key]
    warnings.warn(f"fine-tuning {type(net).__name__} ({net.out_channels} classes) with a new class head of "
                  f"{n_classes} classes{f': {why}' if why else ''}; its other weights are kept", UserWarning,
                  stacklevel=3)
    return fresh
