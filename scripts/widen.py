"""Function-preserving widening of a trained `UNet` (Net2Net "wider", Chen et al. 2016).

    from widen import widen_unet  # scripts/, beside this file
    wide = widen_unet(narrow, base_channels=16)  # predicts what ``narrow`` predicts

Every hidden channel ``j`` of a widened layer copies an old channel ``g(j)``: ``g(j) = j``
for the old ones, a seeded random old channel for the extra ones. A layer's output
weights (convolution rows; the out-channel dimension of a transposed convolution, whose
weight is ``in x out x k x k``), biases and BatchNorm weight, bias and running statistics
are those of ``g(j)``. The next layer's input weights for the copies of an old channel
``c`` are the old ones times factors that sum to 1 over those copies, so the next layer
computes what it did. The factors are random (uniform in [0.25, 0.75], normalised), not
``1/n``: with equal splits the copies of a channel would get the same gradients forever
and never become different units. BatchNorm normalises every channel on its own, so the
copies also match in train mode (the same batch statistics as their original).

The input channels (image, z-context slices) and the head's classes keep their number;
``meta`` (z context, thresholds, decoding, instance settings) and the activation are copied.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from napari_unet_stack.models import UNet
from napari_unet_stack.models.blocks import DoubleConv, StridedDown, StridedUp, Upsample2x

__all__ = ["widen_unet"]

#: the module types a UNet is built of; anything else is refused
KNOWN_MODULES = (
    UNet, nn.ModuleList, DoubleConv, StridedDown, StridedUp, Upsample2x,
    nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d,
)  # fmt: skip
#: the range the input-weight factors are drawn from, before normalising over the copies
FACTOR_RANGE = (0.25, 0.75)


class ChannelMap(NamedTuple):
    """How a widened feature map is made of the old one: new channel ``j`` is old channel
    ``index[j]``; a consumer multiplies its input weights for ``j`` by ``factor[j]``."""

    index: torch.Tensor  # long, one per new channel
    factor: torch.Tensor  # float, sums to 1 over the copies of each old channel
    old_width: int


def identity_map(width: int) -> ChannelMap:
    """A map that is not widened (the image channels)."""
    return ChannelMap(torch.arange(width), torch.ones(width), width)


def random_map(old_width: int, new_width: int, generator: torch.Generator) -> ChannelMap:
    """Old channels first, then ``new_width - old_width`` random copies; random factors
    (uniform in `FACTOR_RANGE`) normalised to sum to 1 over each old channel's copies."""
    extra = torch.randint(old_width, (new_width - old_width,), generator=generator)
    index = torch.cat([torch.arange(old_width), extra])
    low, high = FACTOR_RANGE
    draw = low + (high - low) * torch.rand(new_width, generator=generator, dtype=torch.float64)
    totals = torch.zeros(old_width, dtype=torch.float64).index_add_(0, index, draw)
    return ChannelMap(index, (draw / totals[index]).float(), old_width)


def concat_maps(first: ChannelMap, second: ChannelMap) -> ChannelMap:
    """The map of ``torch.cat([first, second], dim=1)``."""
    return ChannelMap(
        torch.cat([first.index, second.index + first.old_width]),
        torch.cat([first.factor, second.factor]),
        first.old_width + second.old_width,
    )


def check_widenable(old: nn.Module, base_channels: int) -> None:
    """ValueError unless ``old`` is a plain `UNet` narrower than ``base_channels``."""
    if type(old) is not UNet:
        raise ValueError(
            f"widen_unet widens our UNet only, not {type(old).__name__} (its layout differs)"
        )
    if isinstance(base_channels, bool) or not isinstance(base_channels, int) \
            or base_channels <= old.base_channels:
        raise ValueError(
            f"widen_unet needs base_channels wider than the model's {old.base_channels}, "
            f"got {base_channels!r}"
        )
    for name, module in old.named_modules():
        if type(module) not in KNOWN_MODULES:
            raise ValueError(
                f"widen_unet cannot widen module {name!r} of type {type(module).__name__} "
                f"(not part of a UNet)"
            )
    fresh = {k: v.shape for k, v in UNet(**old.config()["kwargs"]).state_dict().items()}
    own = {k: v.shape for k, v in old.state_dict().items()}
    if own != fresh:
        odd = sorted(set(own.items()) ^ set(fresh.items()))[:3]
        raise ValueError(f"widen_unet: the model's tensors differ from its config's UNet, e.g. {odd}")


def widen_conv(old: nn.Conv2d, new: nn.Conv2d, inp: ChannelMap, out: ChannelMap) -> None:
    """Rows of ``out.index``; input columns of ``inp.index`` times ``inp.factor``."""
    rows, columns = out.index.to(old.weight.device), inp.index.to(old.weight.device)
    factor = inp.factor.to(old.weight).view(1, -1, 1, 1)
    new.weight.copy_(old.weight[rows][:, columns] * factor)
    if old.bias is not None:
        new.bias.copy_(old.bias[rows])


def widen_conv_transpose(old: nn.ConvTranspose2d, new: nn.ConvTranspose2d, inp, out) -> None:
    """As `widen_conv` for a weight of shape in x out x k x k."""
    rows, columns = inp.index.to(old.weight.device), out.index.to(old.weight.device)
    factor = inp.factor.to(old.weight).view(-1, 1, 1, 1)
    new.weight.copy_(old.weight[rows][:, columns] * factor)
    if old.bias is not None:
        new.bias.copy_(old.bias[columns])


def widen_batch_norm(old: nn.BatchNorm2d, new: nn.BatchNorm2d, out: ChannelMap) -> None:
    """Affine parameters and running statistics of ``out.index``."""
    index = out.index.to(old.weight.device)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, name).copy_(getattr(old, name)[index])
    new.num_batches_tracked.copy_(old.num_batches_tracked)


def widen_layer(old: nn.Module, new: nn.Module, inp: ChannelMap, out: ChannelMap) -> None:
    """One convolution or transposed convolution from ``inp`` to ``out``."""
    if isinstance(old, nn.ConvTranspose2d):
        widen_conv_transpose(old, new, inp, out)
    else:
        widen_conv(old, new, inp, out)


def widen_sequence(old: nn.Sequential, new: nn.Sequential, inp: ChannelMap, generator) -> ChannelMap:
    """A DoubleConv, StridedDown or StridedUp: each convolution gets a new random map
    (its BatchNorm follows it); returns the map of the block's output."""
    current = inp
    for old_layer, new_layer in zip(old, new, strict=True):
        if isinstance(old_layer, (nn.Conv2d, nn.ConvTranspose2d)):
            out = random_map(old_layer.out_channels, new_layer.out_channels, generator)
            widen_layer(old_layer, new_layer, current, out)
            current = out
        elif isinstance(old_layer, nn.BatchNorm2d):
            widen_batch_norm(old_layer, new_layer, current)
    return current


def widen_up(old: nn.Module, new: nn.Module, inp: ChannelMap, generator) -> ChannelMap:
    """An up-sampling: `Upsample2x` (one convolution, interpolation first for bilinear)
    or `StridedUp`."""
    if isinstance(old, Upsample2x):
        out = random_map(old.up.out_channels, new.up.out_channels, generator)
        widen_layer(old.up, new.up, inp, out)
        return out
    return widen_sequence(old, new, inp, generator)


def widen_weights(old: UNet, new: UNet, generator: torch.Generator) -> None:
    """Every tensor of ``new`` from ``old``, following forward's data flow."""
    current, skips = identity_map(old.in_channels), []
    for level, (old_enc, new_enc) in enumerate(zip(old.encoders, new.encoders, strict=True)):
        if level and old.downsampling == "strided":
            current = widen_sequence(old.downs[level - 1], new.downs[level - 1], current, generator)
        current = widen_sequence(old_enc, new_enc, current, generator)
        skips.append(current)
    current = skips.pop()
    pairs = zip(old.ups, new.ups, old.decoders, new.decoders, strict=True)
    for old_up, new_up, old_dec, new_dec in pairs:
        current = widen_up(old_up, new_up, current, generator)
        joined = concat_maps(skips.pop(), current)  # forward: torch.cat([skip, x], dim=1)
        current = widen_sequence(old_dec, new_dec, joined, generator)
    widen_conv(old.head, new.head, current, identity_map(old.out_channels))


def widen_unet(old: UNet, base_channels: int, seed: int = 0) -> UNet:
    """A `UNet` of ``base_channels`` (wider than ``old``'s) that computes what ``old`` does.

    The other constructor arguments, ``meta`` (a deep copy), the activation and the
    train/eval mode are ``old``'s; the device and dtype of its weights too. ``seed`` picks
    the channels the extra ones copy and the factors that split the next layer's weights
    among the copies (random, so that the copies learn apart). ValueError for anything but
    a plain UNet (e.g. NestedUNet, unknown modules) and for a ``base_channels`` that is not
    wider.
    """
    check_widenable(old, base_channels)
    reference = next(old.parameters())
    new = UNet(**{**old.config()["kwargs"], "base_channels": base_channels})
    new.to(device=reference.device, dtype=reference.dtype)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        widen_weights(old, new, generator)
    new.meta = old.clone_meta()
    if old.explicit_activation is not None:
        new.activation = old.explicit_activation
    return new.train(old.training)
