"""The medical-imaging tutorial UNet ("深度学习pytorch框架--Unet医疗影像分割"), with its key names.

It differs from the classic UNet: ``DownsampleLayer`` (keys ``conv_relu``, ``dowmsample``)
convolves twice and down-samples with a 3x3 convolution of stride 2; ``UpsampleLayer``
(keys ``up_conv_relu``, ``upsample``) convolves to twice its output width, then up-samples
with a 3x3 transposed convolution (stride 2, padding 1, output_padding 1) and concatenates
``[upsampled, skip]``; every convolution has a bias and is followed by BatchNorm and ReLU.
Its output block ends in a 1x1 convolution with ``padding=1``, so the reference returns
(H + 2) x (W + 2) logits whose 1-px frame is the bias alone; ours computes that
convolution without the padding and returns the H x W centre, equal to the reference's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..base import SegmentationNetwork
from ..blocks import Interval, conv_back, down_back, hull, reach_of, up_back
from .common import check_multiple, count_indices, weight_shape

__all__ = ["StridedTutorialUNet", "tutorial_reach"]


def _conv_bn_relu(c_in: int, c_out: int, **conv) -> list[nn.Module]:
    kernel = conv.pop("kernel", 3)
    cls = nn.ConvTranspose2d if conv.pop("transposed", False) else nn.Conv2d
    return [cls(c_in, c_out, kernel, **conv), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _double(c_in: int, c_mid: int, c_out: int) -> nn.Sequential:
    """Keys 0 (conv), 1 (BN), 3 (conv), 4 (BN)."""
    return nn.Sequential(*_conv_bn_relu(c_in, c_mid, padding=1), *_conv_bn_relu(c_mid, c_out, padding=1))


class _DownsampleLayer(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_relu = _double(c_in, c_out, c_out)
        self.dowmsample = nn.Sequential(*_conv_bn_relu(c_out, c_out, stride=2, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.conv_relu(x)
        return skip, self.dowmsample(skip)


class _UpsampleLayer(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.up_conv_relu = _double(c_in, 2 * c_out, 2 * c_out)
        self.upsample = nn.Sequential(
            *_conv_bn_relu(2 * c_out, c_out, transposed=True, stride=2, padding=1, output_padding=1)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.upsample(self.up_conv_relu(x)), skip], dim=1)


def tutorial_reach(depth: int) -> int:
    """Reach of one output block of `StridedTutorialUNet` of ``depth``: the decoder's two
    convolutions run on the coarser map, before its 3x3 transposed up-sampling."""

    def skip(level: int, iv: Interval) -> Interval:  # d(level + 1).conv_relu output
        iv = conv_back(iv, 2)
        return iv if level == 0 else skip(level - 1, down_back(iv, "strided"))

    def cat(i: int, iv: Interval) -> Interval:  # u(i)'s output, at level depth - i
        level = depth - i
        below = conv_back(up_back(iv, "strided"), 2)
        deeper = skip(depth - 1, down_back(below, "strided")) if i == 1 else cat(i - 1, below)
        return hull(skip(level, iv), deeper)

    block = 2**depth
    return reach_of(cat(depth, conv_back((0, block - 1), 2)), block)


class StridedTutorialUNet(SegmentationNetwork):
    """The tutorial's UNet (keys ``d1..d{depth}``, ``u1..u{depth}``, ``o``).

    Parameters
    ----------
    in_channels, n_classes : int
        Image channels and output channels (1 and 1 in the tutorial).
    base_channels : int
        Width of ``d1`` (64 in the tutorial); ``d{k}`` has ``base * 2**(k-1)``.
    depth : int
        Number of stride-2 down-samplings (4 in the tutorial); H and W must be multiples
        of ``2**depth``.

    Examples
    --------
    >>> import torch
    >>> net = StridedTutorialUNet(1, 1, base_channels=4).eval()
    >>> net(torch.zeros(1, 1, 48, 32)).shape  # the reference returns 50 x 34, frame included
    torch.Size([1, 1, 48, 32])
    """

    def __init__(
        self, in_channels: int = 1, n_classes: int = 1, base_channels: int = 64, depth: int = 4
    ) -> None:
        super().__init__()
        self.depth = self._set_sizes(in_channels, n_classes, base_channels, depth)
        widths = [base_channels * 2**level for level in range(depth)]
        c_in = in_channels
        for k, w in enumerate(widths, start=1):
            self.add_module(f"d{k}", _DownsampleLayer(c_in, w))
            c_in = w
        for i in range(1, depth + 1):
            c_out = widths[depth - i]
            self.add_module(f"u{i}", _UpsampleLayer(c_in, c_out))
            c_in = 2 * c_out
        # the reference's o.6 has padding=1: its output frame is the bias alone, dropped here
        self.o = nn.Sequential(*_double(c_in, widths[0], widths[0]), nn.Conv2d(widths[0], n_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_multiple(x, self.size_multiple, type(self).__name__)
        skips = []
        for k in range(1, self.depth + 1):
            skip, x = getattr(self, f"d{k}")(x)
            skips.append(skip)
        for i in range(1, self.depth + 1):
            x = getattr(self, f"u{i}")(x, skips.pop())
        return self.o(x)

    def _reach(self) -> int:
        return tutorial_reach(self.depth)

    @classmethod
    def kwargs_from_state_dict(cls, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        """Constructor arguments that fit ``state_dict`` with the canonical stage names
        (raises ValueError if it cannot)."""
        first = weight_shape(state_dict, "d1.conv_relu.0.weight")
        depth = count_indices(state_dict, "d{}.conv_relu.0.weight", 1)
        return {
            "in_channels": first[1],
            "n_classes": weight_shape(state_dict, "o.6.weight")[0],
            "base_channels": first[0],
            "depth": depth,
        }

    def config(self) -> dict[str, Any]:
        return self._config(base_channels=self.base_channels, depth=self.depth)
