"""The classic U-Net (Ronneberger et al., 2015), "same" or unpadded ("valid") convolutions."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import SegmentationNetwork
from .blocks import (
    DoubleConv,
    StridedDown,
    StridedUp,
    Upsample2x,
    center_crop,
    conv_back,
    down_back,
    hull,
    reach_of,
    up_back,
)

#: ``UNet(downsampling=...)``: how the encoder halves the size (and the decoder doubles it)
DOWNSAMPLING = ("maxpool", "strided")


class UNet(SegmentationNetwork):
    """U-Net: (3x3 conv, BatchNorm, ReLU) x 2 per level, 2x2 max-pool (or strided conv) down,
    x2 up-sampling, skip concatenation and a 1x1 head.

    Parameters
    ----------
    in_channels : int
        Channels of the input image (1 for grey, 3 for RGB).
    n_classes : int
        Output channels. ``n_classes > 1`` is read with softmax (class 0 = background);
        ``n_classes == 1`` with a sigmoid (foreground probability).
    base_channels : int
        Width of the first level; level ``l`` has ``base_channels * 2**l`` channels.
    depth : int
        Number of 2x2 poolings; H and W must be multiples of ``2**depth``.
    upsampling : {'transposed', 'bilinear'}
        Learned 2x2 transposed convolution, or bilinear interpolation
        (``align_corners=False``) followed by a 1x1 convolution.
    padding : {'same', 'valid'}
        ``'valid'`` is the original paper's unpadded network: the output is smaller than
        the input by ``valid_margin`` pixels on each side (92 at depth 4), and skip maps
        are centre-cropped. With bilinear up-sampling the outermost up-sampled pixel on
        each side is dropped too (interpolation clamps there, inventing values the way
        padding would), so every output pixel depends on real input only and overlap
        tiling stays exact.
    downsampling : {'maxpool', 'strided'}
        ``'maxpool'``: 2x2 max-pooling down, up-sampling as ``upsampling`` says.
        ``'strided'``: the strided-convolution style of the medical-imaging tutorial UNet
        (see `napari_unet_stack.models.reference.strided_tutorial`): a 3x3 convolution
        with stride 2 (padding 1, BatchNorm, ReLU) down, a 3x3 transposed convolution
        (stride 2, padding 1, output_padding 1, BatchNorm, ReLU) up. Needs
        ``padding='same'`` and ``upsampling='transposed'``. Its reach is larger (the 3x3
        down and up convolutions see a pixel more at every level: 110 px at depth 4, halo 112) and
        it tiles exactly like the max-pooling network.

    Examples
    --------
    >>> import torch
    >>> net = UNet(1, 2, base_channels=8, depth=3).eval()
    >>> net(torch.zeros(1, 1, 64, 48)).shape
    torch.Size([1, 2, 64, 48])
    >>> UNet(1, 2, depth=4, padding="valid").valid_margin
    92
    >>> UNet(1, 2, base_channels=8, depth=3, downsampling="strided").eval()(torch.zeros(1, 1, 64, 48)).shape
    torch.Size([1, 2, 64, 48])
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        base_channels: int = 64,
        depth: int = 4,
        upsampling: str = "transposed",
        padding: str = "same",
        downsampling: str = "maxpool",
    ) -> None:
        super().__init__()
        self.depth = self._set_sizes(in_channels, n_classes, base_channels, depth)
        if upsampling not in ("transposed", "bilinear"):
            raise ValueError(f"`upsampling` must be 'transposed' or 'bilinear', got {upsampling!r}")
        if padding not in ("same", "valid"):
            raise ValueError(f"`padding` must be 'same' or 'valid', got {padding!r}")
        check_downsampling(downsampling, upsampling, padding)
        self.upsampling = upsampling
        self.padding = padding
        self.downsampling = downsampling
        strided = downsampling == "strided"
        pad = 1 if padding == "same" else 0
        widths = [base_channels * 2**level for level in range(depth + 1)]

        self.encoders = nn.ModuleList()
        c_in = in_channels
        for w in widths:
            self.encoders.append(DoubleConv(c_in, w, pad))
            c_in = w
        if strided:  # one learned down-sampling per level (the max-pool has no weights)
            self.downs = nn.ModuleList(StridedDown(w) for w in widths[:-1])
        else:
            self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(depth)):
            if strided:
                self.ups.append(StridedUp(widths[level + 1], widths[level]))
            else:
                self.ups.append(Upsample2x(widths[level + 1], widths[level], upsampling))
            self.decoders.append(DoubleConv(2 * widths[level], widths[level], pad))
        self.head = nn.Conv2d(widths[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, encoder in enumerate(self.encoders):
            if level:
                x = self.downs[level - 1](x) if self.downsampling == "strided" else self.pool(x)
            x = encoder(x)
            skips.append(x)
        x = skips.pop()
        for up, decoder in zip(self.ups, self.decoders, strict=True):
            x = up(x)
            if self._crop_up:
                x = x[..., 1:-1, 1:-1]
            skip = skips.pop()
            if self.padding == "valid":
                skip = center_crop(skip, x.shape[-2], x.shape[-1])
            x = decoder(torch.cat([skip, x], dim=1))
        return self.head(x)

    # -- geometry ------------------------------------------------------------------
    def _valid_sizes(self, size: int) -> int | None:
        """Output size of the valid network for input ``size``, or None if inadmissible."""
        s = size
        for _ in range(self.depth):
            s -= 4
            if s <= 0 or s % 2:
                return None
            s //= 2
        s -= 4
        if s <= 0:
            return None
        for _ in range(self.depth):
            s = 2 * s - 4 - (2 if self._crop_up else 0)
        return s if s > 0 else None

    @property
    def _crop_up(self) -> bool:
        """Valid bilinear: the up-sampled maps lose their clamped border pixel."""
        return self.padding == "valid" and self.upsampling == "bilinear"

    @property
    def valid_margin(self) -> int:
        if self.padding == "same":
            return 0
        size = self.input_size_for(1)
        return (size - self._valid_sizes(size)) // 2

    def output_size(self, input_size: int) -> int:
        if self.padding == "same":
            return input_size
        out = self._valid_sizes(input_size)
        if out is None:
            raise ValueError(
                f"input size {input_size} is not admissible for this valid-convolution UNet; "
                f"use model.input_size_for(...) to choose one"
            )
        return out

    def input_size_for(self, output_size: int) -> int:
        if self.padding == "same":
            return super().input_size_for(output_size)
        size = 2 * self.depth * 4  # below this nothing is admissible
        while True:
            out = self._valid_sizes(size)
            if out is not None and out >= output_size:
                return size
            size += 2

    def _reach(self) -> int:
        if self.padding == "valid":
            return self.valid_margin

        strided = self.downsampling == "strided"
        up_mode = "strided" if strided else self.upsampling

        def encoder(level: int, iv):
            iv = conv_back(iv, 2)
            return iv if level == 0 else encoder(level - 1, down_back(iv, self.downsampling))

        def decoder(level: int, iv):
            iv = conv_back(iv, 2)
            below = up_back(iv, up_mode)
            deeper = decoder(level + 1, below) if level + 1 < self.depth else encoder(self.depth, below)
            return hull(encoder(level, iv), deeper)

        block = self.size_multiple
        return reach_of(decoder(0, (0, block - 1)), block)

    def config(self) -> dict[str, Any]:
        return self._config(
            "UNet",
            base_channels=self.base_channels,
            depth=self.depth,
            upsampling=self.upsampling,
            padding=self.padding,
            downsampling=self.downsampling,
        )


def check_downsampling(downsampling: str, upsampling: str = "transposed", padding: str = "same") -> None:
    """ValueError unless ``downsampling`` is one of `DOWNSAMPLING` and fits the other options."""
    if downsampling not in DOWNSAMPLING:
        raise ValueError(f"`downsampling` must be 'maxpool' or 'strided', got {downsampling!r}")
    if downsampling == "strided" and (upsampling != "transposed" or padding != "same"):
        raise ValueError(
            f"`downsampling='strided'` up-samples with its own 3x3 transposed convolution and "
            f"needs padding='same'; got upsampling={upsampling!r}, padding={padding!r} "
            f"(use upsampling='transposed', padding='same')"
        )
