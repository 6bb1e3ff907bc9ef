"""milesial/Pytorch-UNet's ``UNet(n_channels, n_classes, bilinear)``, with its key names."""

from __future__ import annotations

import torch
from torch import nn

from .padded import PaddedUNet, conv_bn_relu_x2

__all__ = ["MilesialUNet"]


class _MilesialDoubleConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, c_mid: int | None = None, bias: bool = False):
        super().__init__()
        self.double_conv = conv_bn_relu_x2(c_in, c_mid or c_out, c_out, bias)

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


class MilesialUNet(PaddedUNet):
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
