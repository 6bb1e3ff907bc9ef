"""Building blocks shared by our networks, and receptive-field arithmetic.

The receptive-field helpers work on closed integer intervals ``(a, b)`` of pixel
positions along one axis. Each ``*_back`` function answers: which positions of a
layer's *input* does the output interval ``(a, b)`` depend on? Walking a network
backwards from one output block gives the exact reach that crop-and-stitch tiling
needs as a halo (see ``SegmentationNetwork.halo``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

Interval = tuple[int, int]


def hull(*intervals: Interval) -> Interval:
    """Smallest interval containing all ``intervals``."""
    return min(a for a, _ in intervals), max(b for _, b in intervals)


def conv_back(iv: Interval, n_convs: int = 1, kernel: int = 3) -> Interval:
    """``n_convs`` same-padded convolutions of odd size ``kernel``."""
    r = (kernel // 2) * n_convs
    return iv[0] - r, iv[1] + r


def pool_back(iv: Interval) -> Interval:
    """2x2 max-pooling with stride 2 (output p reads inputs 2p and 2p + 1)."""
    return 2 * iv[0], 2 * iv[1] + 1


def strided_back(iv: Interval) -> Interval:
    """3x3 convolution with stride 2 and padding 1 (output p reads inputs 2p - 1 .. 2p + 1)."""
    return 2 * iv[0] - 1, 2 * iv[1] + 1


def down_back(iv: Interval, mode: str) -> Interval:
    """x2 down-sampling: ``"maxpool"`` (2x2 max-pooling) or ``"strided"`` (3x3 stride-2 conv)."""
    if mode == "maxpool":
        return pool_back(iv)
    if mode == "strided":
        return strided_back(iv)
    raise ValueError(f"unknown down-sampling mode {mode!r}")


def up_back(iv: Interval, mode: str) -> Interval:
    """x2 up-sampling: ``"transposed"`` (2x2, stride 2), ``"strided"`` (3x3 transposed, stride 2,
    padding 1, output_padding 1) or ``"bilinear"`` (align_corners=False).

    For ``align_corners=True`` the sampling grid depends on the image size, so no
    interval is exact; callers use the ``"bilinear"`` reach plus one pixel as an estimate.
    """
    if mode == "transposed":
        return iv[0] // 2, iv[1] // 2
    if mode == "strided":
        # output q = 2i - 1 + k (k = 0, 1, 2): even q reads i = q/2, odd q reads (q -+ 1)/2
        return iv[0] // 2, (iv[1] + 1) // 2
    if mode in ("bilinear", "bilinear_ac"):
        # output q samples input coordinate q/2 - 1/4: its floor and the next pixel
        lo = math.floor(iv[0] / 2 - 0.25)
        hi = math.floor(iv[1] / 2 - 0.25) + 1
        if mode == "bilinear_ac":
            lo, hi = lo - 1, hi + 1
        return lo, hi
    raise ValueError(f"unknown up-sampling mode {mode!r}")


def reach_of(interval: Interval, block: int) -> int:
    """How far ``interval`` reaches beyond the output block ``[0, block)``, on either side."""
    return max(-interval[0], interval[1] - (block - 1), 0)


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class DoubleConv(nn.Sequential):
    """(3x3 conv, BatchNorm, ReLU) x 2; ``padding=0`` gives the unpadded ("valid") variant."""

    def __init__(self, in_channels: int, out_channels: int, padding: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=padding, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=padding, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Upsample2x(nn.Module):
    """x2 up-sampling from ``in_channels`` to ``out_channels``.

    ``"transposed"``: a learned 2x2 transposed convolution with stride 2.
    ``"bilinear"``: bilinear interpolation (``align_corners=False``, so the result is
    translation-equivariant and tiling stays exact) followed by a 1x1 convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, mode: str = "transposed"):
        super().__init__()
        self.mode = mode
        if mode == "transposed":
            self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        elif mode == "bilinear":
            self.up = nn.Conv2d(in_channels, out_channels, 1)
        else:
            raise ValueError(f"`upsampling` must be 'transposed' or 'bilinear', got {mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "bilinear":
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.up(x)


class StridedDown(nn.Sequential):
    """x2 down-sampling by a learned 3x3 convolution with stride 2 (padding 1), BatchNorm, ReLU.

    Keeps the width, like the strided-convolution tutorial UNet; an output pixel p reads
    input pixels 2p - 1 .. 2p + 1, so H and W must be even.
    """

    def __init__(self, channels: int):
        super().__init__(
            nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )


class StridedUp(nn.Sequential):
    """x2 up-sampling by a learned 3x3 transposed convolution (stride 2, padding 1,
    output_padding 1: exactly twice the size), BatchNorm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.ConvTranspose2d(
                in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop the centre ``height`` x ``width`` of an N x C x H x W tensor (valid-conv skips)."""
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]
