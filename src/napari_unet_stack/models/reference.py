"""Networks of public reference codes, rebuilt so that their checkpoints load unchanged.

Each class has exactly the reference code's ``state_dict`` key names (checkpoints load
with ``strict=True``) and computes the same logits, layer by layer, in eval mode:

- `MilesialUNet`: milesial/Pytorch-UNet ``UNet(n_channels, n_classes, bilinear)``.
- `WZMiaomiaoUNet`: WZMIAOMIAO deep-learning-for-image-processing, pytorch_segmentation/unet
  ``UNet(in_channels, num_classes, bilinear, base_c)``; the same network as milesial's with
  ``nn.Sequential`` naming. Its reference forward returns ``{"out": logits}``; ours returns
  the tensor.
- `VGGUNet` and `VGGNestedUNet`: 4uiiurz1/pytorch-nested-unet ``UNet`` and ``NestedUNet``
  (VGG blocks with biased convolutions).

The sizes (channels, widths, depth, up-sampling, biases) are constructor arguments;
``kwargs_from_state_dict`` reads them off a checkpoint's weights. All of them up-sample with
``align_corners=True`` except milesial/WZMIAOMIAO with transposed convolutions; those that do
cannot tile exactly (``exact_tiling = False``; see DESIGN.md section 3).

These modules exist to reproduce imported weights; new models should use `UNet` and
`NestedUNet`, which tile exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .base import SegmentationNetwork
from .blocks import Interval, conv_back, hull, pool_back, reach_of, up_back
from .unet import _check_int

__all__ = [
    "REFERENCE_ARCHITECTURES",
    "MilesialUNet",
    "VGGNestedUNet",
    "VGGUNet",
    "WZMiaomiaoUNet",
]


# -- receptive field -----------------------------------------------------------------------
def _unet_reach(depth: int, mode: str) -> int:
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


def _nested_reach(heads: list[int], block: int, mode: str) -> int:
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


def _check_multiple(x: torch.Tensor, multiple: int, name: str) -> None:
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(
            f"{name} needs H and W that are multiples of {multiple} (as the reference code does), "
            f"got {h} x {w}; pad the image first (the inference engine does)"
        )


def _count(state_dict: Mapping[str, Any], template: str, start: int) -> int:
    """How many consecutive indices ``start, start + 1, ...`` have ``template.format(i)`` keys."""
    n = 0
    while template.format(start + n) in state_dict:
        n += 1
    return n


def _shape(state_dict: Mapping[str, Any], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise ValueError(f"the weights have no {key!r} entry")
    return tuple(state_dict[key].shape)


# -- milesial / WZMIAOMIAO: padded UNet -----------------------------------------------------
def _conv_bn_relu_x2(c_in: int, c_mid: int, c_out: int, bias: bool) -> nn.Sequential:
    """Keys 0 (conv), 1 (BN), 3 (conv), 4 (BN), as both references name them."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_mid, 3, padding=1, bias=bias),
        nn.BatchNorm2d(c_mid),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_mid, c_out, 3, padding=1, bias=bias),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _MilesialDoubleConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, c_mid: int | None = None, bias: bool = False):
        super().__init__()
        self.double_conv = _conv_bn_relu_x2(c_in, c_mid or c_out, c_out, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class _MilesialDown(nn.Module):
    def __init__(self, c_in: int, c_out: int, bias: bool = False):
        super().__init__()
        self.maxpool_conv = nn.Sequential(
            nn.MaxPool2d(2), _MilesialDoubleConv(c_in, c_out, bias=bias)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class _MilesialOutConv(nn.Module):
    def __init__(self, c_in: int, n_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _PadUp(nn.Module):
    """Up-sample, zero-pad to the skip map's size (odd sizes), concatenate [skip, up], convolve."""

    def __init__(self, up: nn.Module, conv: nn.Module):
        super().__init__()
        self.up = up
        self.conv = conv

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dy = skip.shape[-2] - x.shape[-2]
        dx = skip.shape[-1] - x.shape[-1]
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], dim=1))


def _up_sampler(c_in: int, bilinear: bool) -> nn.Module:
    if bilinear:
        return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
    return nn.ConvTranspose2d(c_in, c_in // 2, 2, stride=2)


class _PaddedUNet(SegmentationNetwork):
    """The network milesial and WZMIAOMIAO share; subclasses choose the module names.

    Level ``l`` has ``base * 2**l`` channels; with bilinear up-sampling the deepest level
    and every decoder output but the last have half that (the references' ``factor``),
    and each decoder's first convolution narrows to half its input (``mid_channels``).
    """

    #: key templates read by ``kwargs_from_state_dict`` (first conv, i-th down conv, head)
    _FIRST: str
    _DOWN: str
    _HEAD: str
    _UP_WEIGHT = "up1.up.weight"

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        bilinear: bool,
        base_channels: int,
        depth: int,
        conv_bias: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = _check_int("in_channels", in_channels, 1)
        self.out_channels = _check_int("n_classes", n_classes, 1)
        self.base_channels = _check_int("base_channels", base_channels, 1)
        self.depth = _check_int("depth", depth, 1)
        self.bilinear = bool(bilinear)
        self.conv_bias = bool(conv_bias)
        self.exact_tiling = not self.bilinear  # align_corners=True depends on the image size

        factor = 2 if self.bilinear else 1
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self._build_first(in_channels, widths[0])
        for level in range(1, depth + 1):
            c_out = widths[level] // factor if level == depth else widths[level]
            self._build_down(level, widths[level - 1], c_out)
        for i in range(1, depth + 1):
            level = depth - i  # decoder output level
            c_in = widths[level + 1]
            c_out = widths[level] // factor if level else widths[0]
            c_mid = c_in // 2 if self.bilinear else c_out
            self.add_module(
                f"up{i}",
                _PadUp(_up_sampler(c_in, self.bilinear), self._double_conv(c_in, c_mid, c_out)),
            )
        self._build_head(widths[0], n_classes)

    # naming hooks
    def _double_conv(self, c_in: int, c_mid: int, c_out: int) -> nn.Module:  # pragma: no cover
        raise NotImplementedError

    def _build_first(self, c_in: int, c_out: int) -> None:  # pragma: no cover
        raise NotImplementedError

    def _build_down(self, index: int, c_in: int, c_out: int) -> None:  # pragma: no cover
        raise NotImplementedError

    def _build_head(self, c_in: int, n_classes: int) -> None:  # pragma: no cover
        raise NotImplementedError

    def _first(self) -> nn.Module:  # pragma: no cover
        raise NotImplementedError

    def _head(self) -> nn.Module:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self._first()(x)]
        for i in range(1, self.depth + 1):
            skips.append(getattr(self, f"down{i}")(skips[-1]))
        x = skips.pop()
        for i in range(1, self.depth + 1):
            x = getattr(self, f"up{i}")(x, skips.pop())
        return self._head()(x)

    def _reach(self) -> int:
        return _unet_reach(self.depth, "bilinear_ac" if self.bilinear else "transposed")

    @classmethod
    def kwargs_from_state_dict(cls, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        """Constructor arguments that fit ``state_dict`` (raises ValueError if it cannot)."""
        first = _shape(state_dict, cls._FIRST.format("weight"))
        depth = _count(state_dict, cls._DOWN, 1)
        if depth == 0:
            raise ValueError(f"the weights have no {cls._DOWN.format(1)!r} entry")
        return {
            "in_channels": first[1],
            "n_classes": _shape(state_dict, cls._HEAD)[0],
            "bilinear": cls._UP_WEIGHT not in state_dict,
            "base_channels": first[0],
            "depth": depth,
            "conv_bias": cls._FIRST.format("bias") in state_dict,
        }

    def config(self) -> dict[str, Any]:
        return {
            "architecture": type(self).__name__,
            "kwargs": {
                "in_channels": self.in_channels,
                "n_classes": self.out_channels,
                "bilinear": self.bilinear,
                "base_channels": self.base_channels,
                "depth": self.depth,
                "conv_bias": self.conv_bias,
            },
        }


class MilesialUNet(_PaddedUNet):
    """milesial/Pytorch-UNet's UNet (keys ``inc``, ``down1..4``, ``up1..4``, ``outc``).

    Parameters
    ----------
    in_channels, n_classes : int
        The reference's ``n_channels`` and ``n_classes``.
    bilinear : bool
        ``Upsample(x2, bilinear, align_corners=True)`` instead of a 2x2 transposed convolution.
    base_channels, depth : int
        64 and 4 in the reference.
    conv_bias : bool
        The 3x3 convolutions have biases (checkpoints from before 2022).

    Examples
    --------
    >>> import torch
    >>> net = MilesialUNet(3, 2, base_channels=4).eval()
    >>> net(torch.zeros(1, 3, 67, 45)).shape  # any size: the up-sampled maps are padded
    torch.Size([1, 2, 67, 45])
    """

    _FIRST = "inc.double_conv.0.{}"
    _DOWN = "down{}.maxpool_conv.1.double_conv.0.weight"
    _HEAD = "outc.conv.weight"

    def __init__(
        self,
        in_channels: int = 3,
        n_classes: int = 2,
        bilinear: bool = False,
        base_channels: int = 64,
        depth: int = 4,
        conv_bias: bool = False,
    ) -> None:
        super().__init__(in_channels, n_classes, bilinear, base_channels, depth, conv_bias)

    def _double_conv(self, c_in, c_mid, c_out):
        return _MilesialDoubleConv(c_in, c_out, c_mid, bias=self.conv_bias)

    def _build_first(self, c_in, c_out):
        self.inc = _MilesialDoubleConv(c_in, c_out, bias=self.conv_bias)

    def _build_down(self, index, c_in, c_out):
        self.add_module(f"down{index}", _MilesialDown(c_in, c_out, bias=self.conv_bias))

    def _build_head(self, c_in, n_classes):
        self.outc = _MilesialOutConv(c_in, n_classes)

    def _first(self):
        return self.inc

    def _head(self):
        return self.outc


class WZMiaomiaoUNet(_PaddedUNet):
    """WZMIAOMIAO's DRIVE UNet (keys ``in_conv``, ``down1..4``, ``up1..4``, ``out_conv``).

    Same computation as `MilesialUNet`; ``nn.Sequential`` blocks give it other key names.
    The reference's defaults are ``bilinear=True, base_channels=64``; its DRIVE script
    uses ``base_c=32``. Returns the logits tensor (the reference wraps it in ``{"out": ...}``).
    """

    _FIRST = "in_conv.0.{}"
    _DOWN = "down{}.1.0.weight"
    _HEAD = "out_conv.0.weight"

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        bilinear: bool = True,
        base_channels: int = 64,
        depth: int = 4,
        conv_bias: bool = False,
    ) -> None:
        super().__init__(in_channels, n_classes, bilinear, base_channels, depth, conv_bias)

    def _double_conv(self, c_in, c_mid, c_out):
        return _conv_bn_relu_x2(c_in, c_mid, c_out, self.conv_bias)

    def _build_first(self, c_in, c_out):
        self.in_conv = _conv_bn_relu_x2(c_in, c_out, c_out, self.conv_bias)

    def _build_down(self, index, c_in, c_out):
        down = nn.Sequential(
            nn.MaxPool2d(2, stride=2), _conv_bn_relu_x2(c_in, c_out, c_out, self.conv_bias)
        )
        self.add_module(f"down{index}", down)

    def _build_head(self, c_in, n_classes):
        self.out_conv = nn.Sequential(nn.Conv2d(c_in, n_classes, 1))

    def _first(self):
        return self.in_conv

    def _head(self):
        return self.out_conv


# -- 4uiiurz1/pytorch-nested-unet ----------------------------------------------------------
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
        self.in_channels = _check_int("in_channels", in_channels, 1)
        self.out_channels = _check_int("n_classes", n_classes, 1)
        self.base_channels = _check_int("base_channels", base_channels, 1)
        self._full_depth = _check_int("depth", depth, 1)
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
        first = _shape(state_dict, "conv0_0.conv1.weight")
        return {
            "in_channels": first[1],
            "base_channels": first[0],
            "depth": _count(state_dict, "conv{}_0.conv1.weight", 0) - 1,
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
        _check_multiple(x, self.size_multiple, type(self).__name__)
        encoded = [self.conv0_0(x)]
        for i in range(1, self.depth + 1):
            encoded.append(self._node(i, 0)(self.pool(encoded[-1])))
        x = encoded[-1]
        for j in range(1, self.depth + 1):
            i = self.depth - j
            x = self._node(i, j)(torch.cat([encoded[i], self.up(x)], dim=1))
        return self.final(x)

    def _reach(self) -> int:
        return _unet_reach(self.depth, "bilinear_ac")

    @classmethod
    def kwargs_from_state_dict(cls, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        kwargs = cls._base_kwargs(state_dict)
        kwargs["n_classes"] = _shape(state_dict, "final.weight")[0]
        return kwargs

    def config(self) -> dict[str, Any]:
        return {
            "architecture": "VGGUNet",
            "kwargs": {
                "in_channels": self.in_channels,
                "n_classes": self.out_channels,
                "base_channels": self.base_channels,
                "depth": self._full_depth,
            },
        }


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
        _check_multiple(x, 2**self._full_depth, type(self).__name__)
        columns = self._columns(x, self._full_depth)
        if not self.deep_supervision:
            return [self.final(columns[-1])]
        return [self._final(k)(col) for k, col in enumerate(columns, start=1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.active_head
        if k is None:
            return torch.stack(self.forward_heads(x)).mean(dim=0)
        _check_multiple(x, 2**k, type(self).__name__)
        return self._final(k)(self._columns(x, k)[-1])

    def _reach(self) -> int:
        k = self.active_head
        heads = list(range(1, self._full_depth + 1)) if k is None else [k]
        return _nested_reach(heads, self.size_multiple, "bilinear_ac")

    @classmethod
    def kwargs_from_state_dict(cls, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        kwargs = cls._base_kwargs(state_dict)
        deep = "final1.weight" in state_dict
        kwargs["n_classes"] = _shape(state_dict, "final1.weight" if deep else "final.weight")[0]
        kwargs["deep_supervision"] = deep
        return kwargs

    def config(self) -> dict[str, Any]:
        return {
            "architecture": "VGGNestedUNet",
            "kwargs": {
                "in_channels": self.in_channels,
                "n_classes": self.out_channels,
                "base_channels": self.base_channels,
                "depth": self._full_depth,
                "deep_supervision": self.deep_supervision,
                "head": self._head,
            },
        }


#: Reference classes by the architecture name their ``config()`` reports.
REFERENCE_ARCHITECTURES: dict[str, type[SegmentationNetwork]] = {
    "MilesialUNet": MilesialUNet,
    "WZMiaomiaoUNet": WZMiaomiaoUNet,
    "VGGUNet": VGGUNet,
    "VGGNestedUNet": VGGNestedUNet,
}
