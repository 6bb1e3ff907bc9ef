"""WZMIAOMIAO deep-learning-for-image-processing, pytorch_segmentation/unet ``UNet``.

``UNet(in_channels, num_classes, bilinear, base_c)``: the same network as milesial's with
``nn.Sequential`` naming. Its reference forward returns ``{"out": logits}``; ours returns
the tensor.
"""

from __future__ import annotations

from torch import nn

from .padded import PaddedUNet, conv_bn_relu_x2

__all__ = ["WZMiaomiaoUNet"]


class WZMiaomiaoUNet(PaddedUNet):
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
        return conv_bn_relu_x2(c_in, c_mid, c_out, self.conv_bias)

    def _build_first(self, c_in, c_out):
        self.in_conv = conv_bn_relu_x2(c_in, c_out, c_out, self.conv_bias)

    def _build_down(self, index, c_in, c_out):
        down = nn.Sequential(
            nn.MaxPool2d(2, stride=2), conv_bn_relu_x2(c_in, c_out, c_out, self.conv_bias)
        )
        self.add_module(f"down{index}", down)

    def _build_head(self, c_in, n_classes):
        self.out_conv = nn.Sequential(nn.Conv2d(c_in, n_classes, 1))

    def _first(self):
        return self.in_conv

    def _head(self):
        return self.out_conv
