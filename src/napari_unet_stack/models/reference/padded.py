"""The padded UNet that milesial/Pytorch-UNet and WZMIAOMIAO share; each names its modules.

Both up-sample (a 2x2 transposed convolution, or bilinear with ``align_corners=True``),
zero-pad the result to the skip map's size, concatenate ``[skip, up]`` and convolve twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..base import SegmentationNetwork
from .common import count_indices, unet_reach, weight_shape

__all__ = ["PadUp", "PaddedUNet", "conv_bn_relu_x2", "up_sampler"]


def conv_bn_relu_x2(c_in: int, c_mid: int, c_out: int, bias: bool) -> nn.Sequential:
    """Keys 0 (conv), 1 (BN), 3 (conv), 4 (BN), as both references name them."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_mid, 3, padding=1, bias=bias),
        nn.BatchNorm2d(c_mid),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_mid, c_out, 3, padding=1, bias=bias),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class PadUp(nn.Module):
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


def up_sampler(c_in: int, bilinear: bool) -> nn.Module:
    if bilinear:
        return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
    return nn.ConvTranspose2d(c_in, c_in // 2, 2, stride=2)


class PaddedUNet(SegmentationNetwork):
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
        self.depth = self._set_sizes(in_channels, n_classes, base_channels, depth)
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
                PadUp(up_sampler(c_in, self.bilinear), self._double_conv(c_in, c_mid, c_out)),
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
        return unet_reach(self.depth, "bilinear_ac" if self.bilinear else "transposed")

    @classmethod
    def kwargs_from_state_dict(cls, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        """Constructor arguments that fit ``state_dict`` (raises ValueError if it cannot)."""
        first = weight_shape(state_dict, cls._FIRST.format("weight"))
        depth = count_indices(state_dict, cls._DOWN, 1)
        if depth == 0:
            raise ValueError(f"the weights have no {cls._DOWN.format(1)!r} entry")
        return {
            "in_channels": first[1],
            "n_classes": weight_shape(state_dict, cls._HEAD)[0],
            "bilinear": cls._UP_WEIGHT not in state_dict,
            "base_channels": first[0],
            "depth": depth,
            "conv_bias": cls._FIRST.format("bias") in state_dict,
        }

    def config(self) -> dict[str, Any]:
        return self._config(
            bilinear=self.bilinear,
            base_channels=self.base_channels,
            depth=self.depth,
            conv_bias=self.conv_bias,
        )
