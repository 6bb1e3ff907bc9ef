"""train(..., instances=True): the targets it learns, the model's metadata, its decoding."""

from __future__ import annotations

import numpy as np
import pytest

import napari_unet_stack as nus
from napari_unet_stack.models import NestedUNet
from napari_unet_stack.training import instance_targets, is_instance_model, train


def touching_triples(shape=(256, 512), *, radius=10, seed=0):
    """(image float32, instance ids uint16): rows of three discs whose centres are 1.5
    radii apart (each pixel to its nearest centre, relative to the radii), so each row is
    one connected component holding three nuclei; each nucleus has its own brightness and
    a darker rim, and the image has Gaussian noise."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    ids = np.zeros(shape, np.uint16)
    signal = np.zeros(shape, np.float32)
    step = 5 * radius + 8
    n = 0
    for cy in range(step // 2, h - step // 2 + 1, step):
        for cx in range(step // 2, w - step // 2 + 1, step):
            angle = rng.uniform(0, np.pi)
            dy, dx = np.sin(angle) * 1.5 * radius, np.cos(angle) * 1.5 * radius
            centres = [(cy + k * dy + rng.uniform(-1, 1), cx + k * dx + rng.uniform(-1, 1)) for k in (-1, 0, 1)]
            radii = [radius * rng.uniform(0.9, 1.1) for _ in centres]
            scaled = np.stack([np.hypot(yy - y, xx - x) / r for (y, x), r in zip(centres, radii, strict=True)])
            nearest = scaled.argmin(axis=0)
            for k in range(3):
                mine = (scaled[k] <= 1) & (nearest == k)
                n += 1
                ids[mine] = n
                signal[mine] = rng.uniform(0.6, 1.0) * (1.0 - 0.5 * scaled[k][mine] ** 4)
    image = signal + rng.normal(0, 0.08, shape).astype(np.float32)
    return image.astype(np.float32), ids


@pytest.fixture(scope="module")
def triples():
    image, ids = touching_triples((64, 128), radius=8, seed=1)
    return image, ids


def test_instance_training_sets_the_metadata_and_saves(triples, fast, tiny_unet, tmp_path):
    image, ids = triples
    model, _ = train(image, ids, instances=True, steps=3, **fast)
    assert is_instance_model(model) and model.out_channels == 3
    assert model.meta["class_names"] == ["background", "interior", "boundary"]
    assert model.meta["instances"]["boundary_width"] == 1
    path = tmp_path / "inst.pt"
    nus.save_model(model, path)
    loaded = nus.load_model(path)
    assert loaded.meta["instances"] == model.meta["instances"]
    labels = nus.segment(image, loaded, instances=True)
    assert labels.shape == image.shape
    semantic = nus.segment(image, loaded)
    assert set(np.unique(semantic)) <= {0, 1}  # the plain labels are the foreground


def test_fine_tuning_across_heads_keeps_the_features_and_replaces_the_head(triples, fast, tiny_unet):
    import torch

    image, ids = triples
    semantic = tiny_unet(2)
    with pytest.warns(UserWarning, match="new class head of 3 classes"):
        model, _ = train(image, ids, semantic, instances=True, steps=1, lr=1e-12, augment=False,
                         **{k: v for k, v in fast.items() if k != "lr"})
    assert is_instance_model(model) and model.out_channels == 3
    # (nearly) no step taken: the encoder is the semantic model's, the head is new
    for new, old in zip(model.encoders[0].parameters(), semantic.encoders[0].parameters(), strict=True):
        torch.testing.assert_close(new, old)
    assert model.head.weight.shape[0] == 3
    # and back: an instance model fine-tuned on a semantic mask gets a 2-class head
    with pytest.warns(UserWarning, match="new class head of 2 classes"):
        back, _ = train(image, (ids > 0).astype(np.uint8), model, steps=1, **fast)
    assert back.out_channels == 2 and not is_instance_model(back)
    assert "class_values" not in back.meta
    model3, _ = train(image, ids, tiny_unet(3), instances=True, steps=1, **fast)  # a 3-class model is used as is
    assert is_instance_model(model3)


def test_instance_labels_need_two_objects(fast):
    image = np.zeros((32, 32), np.float32)
    one = np.zeros((32, 32), np.uint8)
    one[4:12, 4:12] = 5
    with pytest.raises(ValueError, match="at least 2 objects"):
        train(image, one, instances=True, steps=1, **fast)
    with pytest.raises(ValueError, match="integer dtype"):
        train(image, one.astype(np.float32) + 0.5, instances=True, steps=1, **fast)


@pytest.mark.slow
def test_unetpp_deep_supervision_and_sparse_instance_labels(triples, fast):
    image, ids = triples
    net = NestedUNet(1, 3, base_channels=4, depth=2, deep_supervision=True)
    model, history = train(image, ids, net, instances=True, steps=4, val_fraction=0.3, **fast)
    assert is_instance_model(model) and "fast_head" in model.meta
    assert np.isfinite(history["val_instance_f1"][-1])
    # sparse: 0 unlabelled, 1 background, ids >= 2 objects; only the left half painted
    sparse = np.zeros_like(ids)
    left = ids[:, :64]
    sparse[:, :64] = np.where(left > 0, left + 1, 1)
    model, _ = train(image, sparse, instances=True, sparse=True, steps=3, **fast)
    assert is_instance_model(model)
    t = instance_targets(sparse, sparse=True)
    assert (t[:, 64:] == -1).all() and (t[:, :64] >= 0).all()


@pytest.mark.slow
def test_an_instance_model_trained_on_the_left_half_separates_touching_objects_on_the_right():
    """The done-when of issue 14: 300 steps, patch 128, CPU, on the left half's instance
    labels; on the right half, connected components cannot split the touching rows of
    three nuclei (F1 0) while the instance model's own decoding does."""
    import torch

    from napari_unet_stack.models import UNet
    from napari_unet_stack.training import match_instances

    image, ids = touching_triples((256, 512), radius=10, seed=0)
    left, right = slice(0, 256), slice(256, 512)
    torch.manual_seed(0)
    net = UNet(1, 3, base_channels=8, depth=2)
    model, history = train(image[:, left], ids[:, left], net, instances=True, steps=300, patch_size=128,
                           batch_size=4, device="cpu", seed=0)
    truth = ids[:, right]
    components = nus.segment(image[:, right], model, instances="components", device="cpu")
    assert match_instances(components, truth).f1 < 0.2  # the rows are one component each
    objects = nus.segment(image[:, right], model, instances=True, device="cpu")
    m = match_instances(objects, truth)
    assert m.f1 > 0.85, (m, history["val_instance_f1"])
