"""4uiiurz1/pytorch-nested-unet's ``UNet`` and ``NestedUNet`` (VGG blocks, biased convolutions).

Both up-sample with ``Upsample(x2, bilinear, align_corners=True)``, shared by all nodes,
and need H and W that are multiples of ``2**depth``, as the reference code does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..base import SegmentationNetwork
from .common import check_multiple, count_indices, nested_reach, unet_reach, weight_shape

__all__ = ["VGGNestedUNet", "VGGUNet"]


class _VGGBlock(nn.Module):
    """conv(bias) - BN - ReLU - conv(bias) - BN - ReLU, keys conv1, bn1, conv2, bn2."""

    def __init__(self, c_in: int, c_mid: int, c_out: int):
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(c_in, c_mid, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c_mid)
        self.conv2 = nn.Conv2d(c_mid, c_out, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(x)))


class _VGGBase(SegmentationNetwork):
    """Shared parts: node ``conv{i}_{j}`` at level i, column j; level i has base * 2**i channels."""

    exact_tiling = False  # Upsample(x2, bilinear, align_corners=True)

    def __init__(self, in_channels: int, n_classes: int, base_channels: int, depth: int) -> None:
        super().__init__()
        self._full_depth = self._set_sizes(in_channels, n_classes, base_channels, depth)
        self._widths = [base_channels * 2**i for i in range(depth + 1)]
        self.pool = nn.MaxPool2d(2, 2)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        for i in range(depth + 1):
            c_in = in_channels if i == 0 else self._widths[i - 1]
            self._add_node(i, 0, c_in)

    def _add_node(self, i: int, j: int, c_in: int) -> None:
        self.add_module(f"conv{i}_{j}", _VGGBlock(c_in, self._widths[i], self._widths[i]))

    def _node(self, i: int, j: int) -> nn.Module:
        return getattr(self, f"conv{i}_{j}")

    @property
    def full_depth(self) -> int:
        return self._full_depth

    @staticmethod
    def _base_kwargs(state_dict: Mapping[str, Any]) -> dict[str, Any]:
        first = weight_shape(state_dict, "conv0_0.conv1.weight")
        return {
            "in_channels": first[1],
            "base_channels": first[0],
            "depth": count_indices(state_dict, "conv{}_0.conv1.weight", 0) - 1,
        }


class VGGUNet(_VGGBase):
    """4uiiurz1/pytorch-nested-unet's plain ``UNet`` (keys ``conv{i}_0``, ``conv{d-j}_{j}``, ``final``).

    Parameters
    ----------
    in_channels, n_classes : int
        The reference's ``input_channels`` and ``num_classes``.
    base_channels, depth : int
        32 and 4 in the reference (filters 32, 64, 128, 256, 512).

    H and W must be multiples of ``2**depth``, as in the reference.
    """

    def __init__(
        self, in_channels: int = 3, n_classes: int = 1, base_channels: int = 32, depth: int = 4
    ):
        super().__init__(in_channels, n_classes, base_channels, depth)
        for j in range(1, depth + 1):
            i = depth - j
            self._add_node(i, j, self._widths[i] + self._widths[i + 1])
        self.final = nn.Conv2d(self._widths[0], n_classes, 1)

    @property
    def depth(self) -> int:
        return self._full_depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_multiple(x, self.size_multiple, type(self).__name__)
        encoded = [self.conv0_0(x)]
        for i in range(1, self.depth + 1):
            encoded.append(self._node(i, 0)(self.pool(encoded[-1])))
        x = encoded[-1]
        for j in range(1, self.depth + 1):
            i = self.depth - j
            x = self._node(i, j)(torch.cat([encoded[i], self.up(x)], dim=1))
        return self.final(x)

    def _reach(self) -> int:
        return unet_reach(self.depth, "bilinear_ac")

    @classmethod
    def kwargs_from_state_dict(cls, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        kwargs = cls._base_kwargs(state_dict)
        kwargs["n_classes"] = weight_shape(state_dict, "final.weight")[0]
        return kwargs

    def config(self) -> dict[str, Any]:
        return self._config("VGGUNet", base_channels=self.base_channels, depth=self._full_depth)


class VGGNestedUNet(_VGGBase):
    """4uiiurz1/pytorch-nested-unet's ``NestedUNet`` (UNet++), keys ``conv{i}_{j}``, ``final[1..4]``.

    Parameters
    ----------
    in_channels, n_classes, base_channels, depth : int
        As for `VGGUNet`.
    deep_supervision : bool
        Heads ``final1..final{depth}`` on X(0, 1..depth); the reference returns all of them
        and validates with the last. Without it, one head ``final`` on X(0, depth).
    head : {'last', 'mean'} or int
        What ``forward`` returns with deep supervision: the last head's logits (default,
        as the reference's validation), the mean of all heads' logits, or head ``k``
        (1..depth; only the nodes that head needs are computed, with the same result).
        ``forward_heads`` returns the reference's list.

    H and W must be multiples of ``2**depth`` (``2**k`` for head k), as in the reference.
    """

    def __init__(
        self,
        in_channels: int = 3,
        n_classes: int = 1,
        base_channels: int = 32,
        depth: int = 4,
        deep_supervision: bool = False,
        head: str | int = "last",
    ) -> None:
        super().__init__(in_channels, n_classes, base_channels, depth)
        self.deep_supervision = bool(deep_supervision)
        for j in range(1, depth + 1):
            for i in range(depth + 1 - j):
                self._add_node(i, j, j * self._widths[i] + self._widths[i + 1])
        if self.deep_supervision:
            for k in range(1, depth + 1):
                self.add_module(f"final{k}", nn.Conv2d(self._widths[0], n_classes, 1))
        else:
            self.final = nn.Conv2d(self._widths[0], n_classes, 1)
        self.head = head

    @property
    def head(self) -> str | int:
        return self._head

    @head.setter
    def head(self, value: str | int) -> None:
        is_index = isinstance(value, int) and not isinstance(value, bool)
        if value not in ("last", "mean") and not (is_index and 1 <= value <= self._full_depth):
            raise ValueError(
                f"`head` must be 'last', 'mean' or an int in 1..{self._full_depth}, got {value!r}"
            )
        if not self.deep_supervision and value != "last" and value != self._full_depth:
            raise ValueError(
                f"`head={value!r}` needs a model with deep supervision (this one has one head)"
            )
        self._head = value

    @property
    def active_head(self) -> int | None:
        """Head index (1..depth) that ``forward`` returns, or None for the mean of all heads."""
        if self._head == "mean":
            return None
        if self._head == "last":
            return self._full_depth
        return int(self._head)

    @property
    def depth(self) -> int:  # levels that forward actually runs
        k = self.active_head
        return self._full_depth if k is None else k

    def _columns(self, x: torch.Tensor, last: int) -> list[torch.Tensor]:
        """Nodes with i + j <= last, in the reference's order; returns X(0, 1..last)."""
        grid: dict[tuple[int, int], torch.Tensor] = {(0, 0): self.conv0_0(x)}
        for i in range(1, last + 1):
            grid[i, 0] = self._node(i, 0)(self.pool(grid[i - 1, 0]))
            for j in range(1, i + 1):
                r = i - j
                inputs = [grid[r, c] for c in range(j)] + [self.up(grid[r + 1, j - 1])]
                grid[r, j] = self._node(r, j)(torch.cat(inputs, dim=1))
        return [grid[0, j] for j in range(1, last + 1)]

    def _final(self, k: int) -> nn.Module:
        return getattr(self, f"final{k}") if self.deep_supervision else self.final

    def forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The reference's output: all heads' logits with deep supervision, else one."""
        check_multiple(x, 2**self._full_depth, type(self).__name__)
        columns = self._columns(x, self._full_depth)
        if not self.deep_supervision:
            return [self.final(columns[-1])]
        return [self._final(k)(col) for k, col in enumerate(columns, start=1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.active_head
        if k is None:
            return torch.stack(self.forward_heads(x)).mean(dim=0)
        check_multiple(x, 2**k, type(self).__name__)
        return self._final(k)(self._columns(x, k)[-1])

    def _reach(self) -> int:
        k = self.active_head
        heads = list(range(1, self._full_depth + 1)) if k is None else [k]
        return nested_reach(heads, self.size_multiple, "bilinear_ac")

    @classmethod
    def kwargs_from_state_dict(cls, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        kwargs = cls._base_kwargs(state_dict)
        deep = "final1.weight" in state_dict
        kwargs["n_classes"] = weight_shape(state_dict, "final1.weight" if deep else "final.weight")[0]
        kwargs["deep_supervision"] = deep
        return kwargs

    def config(self) -> dict[str, Any]:
        return self._config(
            "VGGNestedUNet",
            base_channels=self.base_channels,
            depth=self._full_depth,
            deep_supervision=self.deep_supervision,
            head=self._head,
        )
