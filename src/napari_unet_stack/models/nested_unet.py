"""UNet++ (Zhou et al., 2018): nested, densely connected skip pathways and deep supervision."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .base import SegmentationNetwork
from .blocks import DoubleConv, conv_back, hull, pool_back, reach_of, up_back


class NestedUNet(SegmentationNetwork):
    """UNet++: node X(i, j) = conv([X(i, 0), ..., X(i, j-1), up(X(i+1, j-1))]).

    Parameters
    ----------
    in_channels, n_classes, base_channels, depth : int
        As for `UNet`; level ``i`` has ``base_channels * 2**i`` channels.
    deep_supervision : bool
        One 1x1 head on each of X(0, 1) ... X(0, depth). Without it, one head on X(0, depth).
    head : {'accurate', 'fast'} or int
        With deep supervision: ``'accurate'`` averages the logits of all heads;
        ``k`` (1..depth) is the pruned fast mode: only the sub-network that head ``k``
        needs (nodes with ``i + j <= k``) is computed; ``'fast'`` uses ``meta["fast_head"]``
        (chosen on validation data by the trainer; ``depth - 1`` by default).
        Can be changed after construction: ``model.head = 2``.

    Up-sampling is bilinear with ``align_corners=False`` (exact tiling).
    ``forward_heads(x)`` returns every head's logits (used for training).
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 1,
        base_channels: int = 32,
        depth: int = 4,
        deep_supervision: bool = False,
        head: str | int = "accurate",
    ) -> None:
        super().__init__()
        self._full_depth = self._set_sizes(in_channels, n_classes, base_channels, depth)
        self.deep_supervision = bool(deep_supervision)
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.nodes = nn.ModuleDict()
        for i in range(depth + 1):
            c_in = in_channels if i == 0 else widths[i - 1]
            self.nodes[f"{i}_0"] = DoubleConv(c_in, widths[i])
        for j in range(1, depth + 1):
            for i in range(depth + 1 - j):
                self.nodes[f"{i}_{j}"] = DoubleConv(j * widths[i] + widths[i + 1], widths[i])
        self.pool = nn.MaxPool2d(2)
        n_heads = depth if deep_supervision else 1
        self.heads = nn.ModuleList(nn.Conv2d(widths[0], n_classes, 1) for _ in range(n_heads))
        self.head = head

    # -- head selection -------------------------------------------------------------
    @property
    def head(self) -> str | int:
        return self._head

    @head.setter
    def head(self, value: str | int) -> None:
        if value not in ("accurate", "fast") and not (
            isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= self._full_depth
        ):
            raise ValueError(
                f"`head` must be 'accurate', 'fast' or an int in 1..{self._full_depth}, got {value!r}"
            )
        if value != "accurate" and not self.deep_supervision:
            raise ValueError(
                f"`head={value!r}` (the fast, pruned mode) needs a model built with deep_supervision=True"
            )
        self._head = value

    @property
    def active_head(self) -> int | None:
        """The head index (1..depth) computed by ``forward``, or None for the mean of all heads."""
        if self._head == "accurate":
            return None if self.deep_supervision else self._full_depth
        if self._head == "fast":
            return int(self.meta.get("fast_head", max(1, self._full_depth - 1)))
        return int(self._head)

    @property
    def depth(self) -> int:  # the depth that forward actually runs (pruned in fast mode)
        k = self.active_head
        return self._full_depth if k is None else k

    @property
    def full_depth(self) -> int:
        return self._full_depth

    # -- forward --------------------------------------------------------------------
    def _up(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    def _columns(self, x: torch.Tensor, last: int) -> list[torch.Tensor]:
        """Compute nodes with i + j <= last; return X(0, 1..last)."""
        grid: dict[tuple[int, int], torch.Tensor] = {}
        for i in range(last + 1):
            grid[i, 0] = self.nodes[f"{i}_0"](x if i == 0 else self.pool(grid[i - 1, 0]))
            # once X(i, 0) exists, the diagonal below it can be completed
            for j in range(1, i + 1):
                r = i - j
                inputs = [grid[r, k] for k in range(j)] + [self._up(grid[r + 1, j - 1])]
                grid[r, j] = self.nodes[f"{r}_{j}"](torch.cat(inputs, dim=1))
        return [grid[0, j] for j in range(1, last + 1)]

    def forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every head (one entry without deep supervision)."""
        columns = self._columns(x, self._full_depth)
        if not self.deep_supervision:
            return [self.heads[0](columns[-1])]
        return [head(col) for head, col in zip(self.heads, columns, strict=True)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.active_head
        if k is None:
            outs = self.forward_heads(x)
            return torch.stack(outs).mean(dim=0)
        columns = self._columns(x, k)
        head = self.heads[k - 1] if self.deep_supervision else self.heads[0]
        return head(columns[-1])

    # -- geometry ------------------------------------------------------------------
    def _reach(self) -> int:
        memo: dict = {}

        def node(i: int, j: int, iv):
            key = (i, j, iv)
            if key in memo:
                return memo[key]
            inner = conv_back(iv, 2)
            if j == 0:
                result = inner if i == 0 else node(i - 1, 0, pool_back(inner))
            else:
                parts = [node(i, k, inner) for k in range(j)]
                parts.append(node(i + 1, j - 1, up_back(inner, "bilinear")))
                result = hull(*parts)
            memo[key] = result
            return result

        block = self.size_multiple
        k = self.active_head
        lasts = range(1, self._full_depth + 1) if k is None else [k]
        return max(reach_of(node(0, j, (0, block - 1)), block) for j in lasts)

    def config(self) -> dict[str, Any]:
        return self._config(
            "NestedUNet",
            base_channels=self.base_channels,
            depth=self._full_depth,
            deep_supervision=self.deep_supervision,
            head=self._head,
        )
