"""Segmentation losses with an ignore mask.

softmax models: cross-entropy + soft Dice over the foreground classes (1..K-1).
sigmoid models (one channel, or K multilabel channels): binary cross-entropy + soft Dice
per channel; target index k + 1 switches channel k on, 0 switches all off.

Pixels whose target is ``IGNORE`` (-1: unpainted in sparse mode, outside the slice after
augmentation) contribute nothing: with no valid pixel at all the loss is 0 and every
gradient is exactly 0.

Instance models (background / interior / boundary, `training.instances`) may weight the
cross-entropy of *contact* pixels, the boundary pixels where two objects touch
(`contact_pixels`), by ``contact_weight``: the thin line that parts touching nuclei is
what their decoding needs and a few pixels of the patch (the weight map idea of the
original UNet paper, here on the boundary class itself).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..labels import check_activation
from .data import IGNORE
from .instances import INSTANCE_CLASSES

_SMOOTH = 1.0


def _soft_dice_loss(probs: torch.Tensor, onehot: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice over channels, summed over the batch (``valid`` is N x 1 x H x W)."""
    dims = (0, 2, 3)
    probs = probs * valid
    onehot = onehot * valid
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + _SMOOTH) / (denom + _SMOOTH)
    return 1.0 - dice.mean()


def contact_pixels(target: torch.Tensor, boundary_width: int = 1) -> torch.Tensor:
    """(N, H, W) bool: the boundary pixels of instance targets that lie where objects touch,
    i.e. farther than ``boundary_width`` pixels (chessboard) from any background or
    unlabelled pixel (the rest of the boundary class is the objects' outer rim)."""
    outside = ((target == INSTANCE_CLASSES["background"]) | (target == IGNORE)).unsqueeze(1).float()
    size = 2 * int(boundary_width) + 1
    near = F.max_pool2d(outside, size, stride=1, padding=size // 2)[:, 0] > 0
    return (target == INSTANCE_CLASSES["boundary"]) & ~near


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor, contact_weight: float,
                   boundary_width: int) -> torch.Tensor:
    if contact_weight == 1.0 or logits.shape[1] != len(INSTANCE_CLASSES):
        return F.cross_entropy(logits, target, ignore_index=IGNORE)
    weight = (target != IGNORE).to(logits.dtype)
    weight = torch.where(contact_pixels(target, boundary_width), weight * contact_weight, weight)
    ce = F.cross_entropy(logits, target.clamp(min=0), reduction="none")
    return (ce * weight).sum() / weight.sum()


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    activation: str,
    *,
    dice_weight: float = 1.0,
    contact_weight: float = 1.0,
    boundary_width: int = 1,
) -> torch.Tensor:
    """Cross-entropy (or BCE) + ``dice_weight`` x soft Dice loss.

    Parameters
    ----------
    logits : (N, K, H, W) tensor
        Raw network output (computed in float32 here, whatever autocast produced).
    target : (N, H, W) integer tensor
        Class indices; ``IGNORE`` (-1) marks pixels that do not count.
    activation : {'softmax', 'sigmoid'}
    contact_weight : float
        For instance targets (a 3-class softmax model): the cross-entropy weight of
        `contact_pixels` (1: every pixel alike); the mean is over the weights.
    boundary_width : int
        The targets' boundary width (`contact_pixels`).
    """
    logits = logits.float()
    target = target.long()
    valid = target != IGNORE
    n_valid = valid.sum()
    if int(n_valid) == 0:
        return logits.sum() * 0.0  # keeps the graph; all gradients are zero
    k = logits.shape[1]
    validf = valid.unsqueeze(1).to(logits.dtype)
    if activation == "softmax":
        if k == 1:
            return logits.sum() * 0.0
        ce = _cross_entropy(logits, target, float(contact_weight), boundary_width)
        if dice_weight == 0:
            return ce
        probs = torch.softmax(logits, dim=1)
        onehot = F.one_hot(target.clamp(min=0), k).permute(0, 3, 1, 2).to(logits.dtype)
        dice = _soft_dice_loss(probs[:, 1:], onehot[:, 1:], validf)
        return ce + dice_weight * dice
    check_activation(activation)
    # channel c is on where target == c + 1
    channels = torch.arange(1, k + 1, device=target.device).view(1, k, 1, 1)
    onehot = (target.unsqueeze(1) == channels).to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(
        logits, onehot, weight=validf.expand_as(logits), reduction="sum"
    )
    bce = bce / (n_valid * k)
    if dice_weight == 0:
        return bce
    dice = _soft_dice_loss(torch.sigmoid(logits), onehot, validf)
    return bce + dice_weight * dice


def multi_head_loss(
    outputs: list[torch.Tensor], target: torch.Tensor, activation: str, **options
) -> torch.Tensor:
    """Mean of `segmentation_loss` (``options``: its keyword options) over the heads of a
    deeply supervised network."""
    losses = [segmentation_loss(o, target, activation, **options) for o in outputs]
    return torch.stack(losses).mean()
