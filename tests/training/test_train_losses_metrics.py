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


def _touching_pair_targets():
    """Instance targets of two 6 x 5 objects touching along a column (ids 1 | 2), with
    an unlabelled (sparse) strip at the right: computed by `instance_targets`."""
    from napari_unet_stack.training import instance_targets

    ids = np.zeros((10, 16), np.int32)
    ids[2:8, 2:7] = 1
    ids[2:8, 7:12] = 2
    target = instance_targets(ids).astype(np.int64)
    target[:, 14:] = IGNORE
    return ids, torch.from_numpy(target)[None]


def test_contact_pixels_are_the_boundary_where_two_objects_touch():
    from napari_unet_stack.training.losses import contact_pixels

    _, target = _touching_pair_targets()
    contact = contact_pixels(target)[0].numpy()
    # by hand: columns 6 and 7 (each object's side of the contact), rows 3-6 (rows 2 and 7
    # are the objects' top and bottom rims, next to the background)
    expected = np.zeros_like(contact)
    expected[3:7, 6:8] = True
    np.testing.assert_array_equal(contact, expected)
    # an object against unlabelled pixels has no contact there
    t = target.clone()
    t[0, :, 12:] = IGNORE
    assert contact_pixels(t)[0, 3:7, 11].sum() == 0


def test_contact_weight_weights_the_cross_entropy_of_contact_pixels():
    from torch.nn import functional as F

    from napari_unet_stack.training.losses import contact_pixels

    _, target = _touching_pair_targets()
    torch.manual_seed(0)
    logits = torch.randn(1, 3, *target.shape[1:])
    plain = segmentation_loss(logits, target, "softmax", dice_weight=0)
    assert plain.item() == pytest.approx(F.cross_entropy(logits, target, ignore_index=IGNORE).item(), rel=1e-6)
    weighted = segmentation_loss(logits, target, "softmax", dice_weight=0, contact_weight=5.0)
    # independently: -log softmax at the target, weights 5 on contact, 1 elsewhere, 0 ignored
    logp = torch.log_softmax(logits, 1)[0].numpy()
    t = target[0].numpy()
    valid = t != IGNORE
    w = np.where(contact_pixels(target)[0].numpy(), 5.0, 1.0) * valid
    nll = -np.take_along_axis(logp, np.clip(t, 0, None)[None], 0)[0]
    assert weighted.item() == pytest.approx((nll * w).sum() / w.sum(), rel=1e-5)
    assert weighted.item() != pytest.approx(plain.item(), rel=1e-3)
    # not an instance model's three classes: no weighting
    two = torch.clamp(target, max=1)
    assert segmentation_loss(logits[:, :2], two, "softmax", dice_weight=0, contact_weight=5.0).item() == \
        pytest.approx(segmentation_loss(logits[:, :2], two, "softmax", dice_weight=0).item())


def test_contact_weight_is_checked_and_reaches_the_loss_only_for_instance_training():
    from napari_unet_stack.training import TrainSettings
    from napari_unet_stack.training.settings import DEFAULT_CONTACT_WEIGHT

    with pytest.raises(ValueError, match="contact_weight"):
        TrainSettings(contact_weight=0.5)
    assert TrainSettings().contact_weight == DEFAULT_CONTACT_WEIGHT


def test_the_trainer_passes_the_contact_weight_for_instance_labels_only(monkeypatch):
    import napari_unet_stack.training.run as run
    from napari_unet_stack.models import UNet
    from napari_unet_stack.training import train

    seen = []
    real = run.multi_head_loss

    def spy(outputs, target, activation, **options):
        seen.append(options)
        return real(outputs, target, activation, **options)

    monkeypatch.setattr(run, "multi_head_loss", spy)
    ids, _ = _touching_pair_targets()
    ids = np.pad(ids, ((0, 22), (0, 16)))  # 32 x 32
    image = (ids > 0).astype(np.float32) + 0.1
    common = dict(steps=1, batch_size=1, patch_size=32, val_fraction=0, augment=False, device="cpu")
    train(image, ids, UNet(1, 3, base_channels=2, depth=1), instances=True, contact_weight=3.0, **common)
    assert seen[-1] == {"dice_weight": 1.0, "contact_weight": 3.0, "boundary_width": 1}
    train(image, (ids > 0).astype(np.uint8), UNet(1, 2, base_channels=2, depth=1), contact_weight=3.0, **common)
    assert seen[-1] == {"dice_weight": 1.0}
