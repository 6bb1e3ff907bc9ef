"""Losses ignore unlabelled pixels; Dice and IoU per class."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet_stack.training import (
    dice,
    foreground_dice,
    iou,
    segmentation_loss,
)
from napari_unet_stack.training.data import IGNORE


def test_loss_ignores_unlabelled_pixels():
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = torch.full((2, 8, 8), IGNORE)
    loss = segmentation_loss(logits, target, "softmax")
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(logits.grad) == 0
    # with a few painted pixels only those pixels receive gradient
    logits.grad = None
    target[0, 2, 3] = 1
    target[1, 5, 5] = 0
    segmentation_loss(logits, target, "softmax").backward()
    touched = logits.grad.abs().sum(dim=1) > 0
    assert touched.sum() == 2 and touched[0, 2, 3] and touched[1, 5, 5]


@pytest.mark.parametrize("k", [1, 3])
def test_sigmoid_loss_ignores_unlabelled_pixels(k):
    logits = torch.randn(1, k, 6, 6, requires_grad=True)
    target = torch.full((1, 6, 6), IGNORE)
    target[0, :2] = 1
    segmentation_loss(logits, target, "sigmoid").backward()
    assert torch.count_nonzero(logits.grad[..., 2:, :]) == 0
    assert torch.count_nonzero(logits.grad[..., :2, :]) > 0


def test_dice_and_iou_per_class():
    true = np.array([[0, 1, 1, 2], [0, 1, 2, 2]])
    pred = np.array([[0, 1, 0, 2], [1, 1, 2, 0]])
    d = dice(pred, true)
    assert d[1] == pytest.approx(2 * 2 / (3 + 3)) and d[2] == pytest.approx(2 * 2 / (2 + 3))
    j = iou(pred, true)
    assert j[1] == pytest.approx(2 / 4) and j[2] == pytest.approx(2 / 3)
    assert np.isnan(dice(pred, true, classes=[7])[7])
    assert dice(pred, true, mask=true > 0)[1] == pytest.approx(2 * 2 / (2 + 3))
    assert foreground_dice(pred, true) == pytest.approx(2 * 4 / (5 + 6))
    with pytest.raises(ValueError, match="same shape"):
        dice(pred, true[:1])
