"""Shared by the reference networks: their receptive fields, input checks and weight reading."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..blocks import Interval, conv_back, hull, pool_back, reach_of, up_back

__all__ = ["check_multiple", "count_indices", "nested_reach", "unet_reach", "weight_shape"]


# -- receptive field -----------------------------------------------------------------------
def unet_reach(depth: int, mode: str) -> int:
    """Reach of one output block of a classic UNet (two 3x3 convs per node) of ``depth``."""

    def encoder(level: int, iv: Interval) -> Interval:
        iv = conv_back(iv, 2)
        return iv if level == 0 else encoder(level - 1, pool_back(iv))

    def decoder(level: int, iv: Interval) -> Interval:
        iv = conv_back(iv, 2)
        below = up_back(iv, mode)
        deeper = decoder(level + 1, below) if level + 1 < depth else encoder(depth, below)
        return hull(encoder(level, iv), deeper)

    block = 2**depth
    return reach_of(decoder(0, (0, block - 1)), block)


def nested_reach(heads: list[int], block: int, mode: str) -> int:
    """Largest reach over the UNet++ outputs X(0, j), j in ``heads``."""
    memo: dict = {}

    def node(i: int, j: int, iv: Interval) -> Interval:
        key = (i, j, iv)
        if key not in memo:
            inner = conv_back(iv, 2)
            if j == 0:
                memo[key] = inner if i == 0 else node(i - 1, 0, pool_back(inner))
            else:
                parts = [node(i, k, inner) for k in range(j)]
                parts.append(node(i + 1, j - 1, up_back(inner, mode)))
                memo[key] = hull(*parts)
        return memo[key]

    return max(reach_of(node(0, j, (0, block - 1)), block) for j in heads)


def check_multiple(x: torch.Tensor, multiple: int, name: str) -> None:
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(
            f"{name} needs H and W that are multiples of {multiple} (as the reference code does), "
            f"got {h} x {w}; pad the image first (the inference engine does)"
        )


def count_indices(state_dict: Mapping[str, Any], template: str, start: int) -> int:
    """How many consecutive indices ``start, start + 1, ...`` have ``template.format(i)`` keys."""
    n = 0
    while template.format(start + n) in state_dict:
        n += 1
    return n


def weight_shape(state_dict: Mapping[str, Any], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise ValueError(f"the weights have no {key!r} entry")
    return tuple(state_dict[key].shape)
