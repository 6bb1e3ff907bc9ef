"""The reference networks' forward passes, written functionally on a raw state dict.

An independent check of ``napari_unet_stack.models.reference``: no module classes, only
``torch.nn.functional`` on the reference codes' own key names, in eval mode (BatchNorm
with running statistics). Each function follows its reference code's forward literally:

- milesial/Pytorch-UNet and WZMIAOMIAO: inc -> down1..4 (max-pool, double conv) ->
  up1..4 (up-sample, zero-pad to the skip's size, cat [skip, up], double conv) -> 1x1 head.
- 4uiiurz1/pytorch-nested-unet UNet and NestedUNet: VGG blocks, shared bilinear x2
  up-sampling with align_corners=True, cat [same-level nodes..., up(lower node)].
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

EPS = 1e-5  # nn.BatchNorm2d default


def _bn(x, sd, p):
    return F.batch_norm(
        x,
        sd[p + "running_mean"],
        sd[p + "running_var"],
        sd[p + "weight"],
        sd[p + "bias"],
        False,
        0.0,
        EPS,
    )


def _conv3(x, sd, p):
    return F.conv2d(x, sd[p + "weight"], sd.get(p + "bias"), padding=1)


def _seq_double_conv(x, sd, p):
    """nn.Sequential(conv, BN, ReLU, conv, BN, ReLU) with keys p0, p1, p3, p4."""
    x = F.relu(_bn(_conv3(x, sd, p + "0."), sd, p + "1."))
    return F.relu(_bn(_conv3(x, sd, p + "3."), sd, p + "4."))


def _up_ac(x):
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


def _pad_to(x, skip):
    dy = skip.size(2) - x.size(2)
    dx = skip.size(3) - x.size(3)
    return F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])


def padded_unet_forward(sd, x, names):
    """milesial / WZMIAOMIAO UNet; ``names`` maps the parts to the family's key prefixes."""
    x1 = _seq_double_conv(x, sd, names["inc"])
    skips = [x1]
    i = 1
    while names["down"].format(i) + "0.weight" in sd:
        skips.append(_seq_double_conv(F.max_pool2d(skips[-1], 2), sd, names["down"].format(i)))
        i += 1
    depth = i - 1
    y = skips.pop()
    for i in range(1, depth + 1):
        skip = skips.pop()
        key = f"up{i}.up.weight"
        if key in sd:
            y = F.conv_transpose2d(y, sd[key], sd[f"up{i}.up.bias"], stride=2)
        else:
            y = _up_ac(y)
        y = _pad_to(y, skip)
        y = _seq_double_conv(torch.cat([skip, y], dim=1), sd, names["up"].format(i))
    head = names["head"]
    return F.conv2d(y, sd[head + "weight"], sd[head + "bias"])


MILESIAL = {
    "inc": "inc.double_conv.",
    "down": "down{}.maxpool_conv.1.double_conv.",
    "up": "up{}.conv.double_conv.",
    "head": "outc.conv.",
}
WZMIAOMIAO = {"inc": "in_conv.", "down": "down{}.1.", "up": "up{}.conv.", "head": "out_conv.0."}


def milesial_forward(sd, x):
    return padded_unet_forward(sd, x, MILESIAL)


def wzmiaomiao_forward(sd, x):
    """The reference returns {"out": logits}; this returns the logits."""
    return padded_unet_forward(sd, x, WZMIAOMIAO)


def _vgg(x, sd, name):
    p = name + "."
    x = F.relu(_bn(_conv3(x, sd, p + "conv1."), sd, p + "bn1."))
    return F.relu(_bn(_conv3(x, sd, p + "conv2."), sd, p + "bn2."))


def _final(x, sd, name):
    return F.conv2d(x, sd[name + ".weight"], sd[name + ".bias"])


def vgg_unet_forward(sd, x):
    """4uiiurz1 UNet: x{i}_0 down the encoder, then x3_1, x2_2, x1_3, x0_4."""
    enc = [_vgg(x, sd, "conv0_0")]
    for i in range(1, 5):
        enc.append(_vgg(F.max_pool2d(enc[-1], 2, 2), sd, f"conv{i}_0"))
    y = enc[4]
    for j in range(1, 5):
        y = _vgg(torch.cat([enc[4 - j], _up_ac(y)], 1), sd, f"conv{4 - j}_{j}")
    return _final(y, sd, "final")


def nested_unet_forward(sd, x):
    """4uiiurz1 NestedUNet: a list of 4 logits with deep supervision, else one tensor."""
    X = {}
    X[0, 0] = _vgg(x, sd, "conv0_0")
    for i in range(1, 5):
        X[i, 0] = _vgg(F.max_pool2d(X[i - 1, 0], 2, 2), sd, f"conv{i}_0")
    # order does not matter for the values; fill column by column
    for j in range(1, 5):
        for i in range(0, 5 - j):
            inputs = [X[i, k] for k in range(j)] + [_up_ac(X[i + 1, j - 1])]
            X[i, j] = _vgg(torch.cat(inputs, 1), sd, f"conv{i}_{j}")
    if "final1.weight" in sd:
        return [_final(X[0, k], sd, f"final{k}") for k in range(1, 5)]
    return _final(X[0, 4], sd, "final")


def _cbr(x, sd, p, **conv):
    """conv (or transposed conv with ``transposed=True``) with bias, BatchNorm p+1, ReLU."""
    fn = F.conv_transpose2d if conv.pop("transposed", False) else F.conv2d
    x = fn(x, sd[p + "0.weight"], sd[p + "0.bias"], **conv)
    return F.relu(_bn(x, sd, p + "1."))


def strided_tutorial_forward(sd, x, stages=None):
    """The medical-imaging tutorial UNet, (H + 2) x (W + 2) logits as the reference returns.

    ``stages`` maps the canonical stage names (d1..d4, u1..u4, o) to the file's names.
    DownsampleLayer: out = conv_relu(x) (2 x conv3 pad 1, BN, ReLU); out_2 = dowmsample(out)
    (conv3 stride 2 pad 1, BN, ReLU); returns (out, out_2). UpsampleLayer: conv_relu to
    2 * out, transposed conv3 stride 2 pad 1 output_padding 1, BN, ReLU; cat([up, skip]).
    The output block's last 1x1 convolution has padding=1.
    """
    name = (lambda s: stages.get(s, s)) if stages else (lambda s: s)
    skips = []
    k = 1
    while f"{name(f'd{k}')}.conv_relu.0.weight" in sd:
        p = name(f"d{k}") + "."
        out = _seq_double_conv(x, sd, p + "conv_relu.")
        skips.append(out)
        x = _cbr(out, sd, p + "dowmsample.", stride=2, padding=1)
        k += 1
    for i in range(1, k):
        p = name(f"u{i}") + "."
        y = _seq_double_conv(x, sd, p + "up_conv_relu.")
        y = _cbr(y, sd, p + "upsample.", transposed=True, stride=2, padding=1, output_padding=1)
        x = torch.cat([y, skips.pop()], dim=1)
    p = name("o") + "."
    x = _seq_double_conv(x, sd, p)
    return F.conv2d(x, sd[p + "6.weight"], sd[p + "6.bias"], padding=1)
