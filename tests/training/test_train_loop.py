"""The training loop: learning, results ready for inference, history and progress, seeding, models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet_stack.checkpoints import load_model, save_model
from napari_unet_stack.inference import segment
from napari_unet_stack.models import UNet
from napari_unet_stack.normalization import (
    DEFAULT_NORMALIZATION,
)
from napari_unet_stack.training import (
    default_model,
    foreground_dice,
    train,
)


@pytest.mark.slow
def test_loss_decreases_and_dice_passes_threshold(trained, held_out):
    model, history, _ = trained
    loss = np.array(history["loss"])
    assert loss[-10:].mean() < 0.7 * loss[:10].mean()
    assert max(history["val_dice"]) > 0.8
    pred = segment(held_out.image, model, device="cpu")
    assert foreground_dice(pred, held_out.labels) > 0.7  # 50 steps of a tiny UNet


@pytest.mark.slow
def test_result_is_ready_for_inference(trained, tmp_path):
    model, history, _ = trained
    assert not model.training
    assert next(model.parameters()).device.type == "cpu"
    assert model.meta["normalization"] == {**DEFAULT_NORMALIZATION}
    assert model.meta["class_names"] == ["background", "foreground"]
    prov = model.meta["provenance"]
    assert prov["steps"] == 50 and prov["total_steps"] == 50
    assert prov["data"]["shapes"] == [[6, 64, 64]] and prov["data"]["val_slices"] == 1
    assert prov["val"]["dice"] == pytest.approx(max(history["val_dice"]))  # best kept
    assert prov["best_step"] == history["val_step"][int(np.argmax(history["val_dice"]))]
    path = save_model(model, tmp_path / "m.pt")
    assert torch.load(path, weights_only=True)["meta"]["provenance"]["steps"] == 50
    assert load_model(path).meta["provenance"] == model.meta["provenance"]


@pytest.mark.slow
def test_history_and_progress(trained):
    _, history, calls = trained
    assert history["step"] == list(range(1, 51))
    assert len(history["loss"]) == len(history["lr"]) == len(history["seconds"]) == 50
    assert history["val_step"] == [10, 20, 30, 40, 50]
    assert set(history["val_dice_per_class"][0]) == {"foreground"}
    assert [c[0] for c in calls] == list(range(51)) and all(c[1] == 50 for c in calls)
    assert "val_dice" in calls[10][2] and "val_dice" not in calls[11][2]
    lr = history["lr"]
    assert max(lr) == pytest.approx(5e-3, rel=0.05) and lr[-1] < 0.2 * max(lr)  # warm-up, cosine


@pytest.mark.slow
def test_training_is_seeded(data, fast):
    small = {**fast, "patch_size": 32, "batch_size": 2}
    runs = [
        train(data.image[:2], data.labels[:2], None, steps=2, val_fraction=0, seed=1, **small)
        for _ in range(2)
    ]
    assert runs[0][1]["loss"] == runs[1][1]["loss"]
    for a, b in zip(
        runs[0][0].state_dict().values(), runs[1][0].state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b)


def test_default_model_matches_the_data(data, fast):
    image = np.stack([data.image, data.image // 2], axis=-1)  # (Z, Y, X, 2)
    labels = data.labels.astype(np.int32) * 2  # classes 0 and 2 -> 3 classes
    model, _ = train(image, labels, steps=1, channel_axis=-1, val_fraction=0, **fast)
    assert isinstance(model, UNet) and model.in_channels == 2 and model.out_channels == 3
    assert model.meta["class_names"] == ["background", "class 1", "class 2"]
    assert default_model(1, 2, architecture="NestedUNet").deep_supervision


@pytest.mark.slow
def test_training_on_sparse_labels_learns(data, held_out, fast, tiny_unet):
    rng = np.random.default_rng(0)
    painted = rng.random(data.labels.shape) < 0.05  # 5 % of the pixels painted
    painted[2] = False  # a slice with nothing painted is skipped
    sparse = np.where(painted, data.labels + 1, 0).astype(np.uint8)  # 1 = background, 2 = nucleus
    torch.manual_seed(0)
    model, _ = train(data.image, sparse, tiny_unet(), steps=50, sparse=True, val_every=25, **fast)
    # 5 painted slices are fewer than 1 / val_fraction: validation holds out strokes of
    # every painted slice, so all 5 train (and the empty slice is skipped by both)
    assert model.meta["provenance"]["data"]["train_slices"] == 5
    assert 1 <= model.meta["provenance"]["data"]["val_slices"] <= 5
    pred = segment(held_out.image, model, device="cpu")
    assert foreground_dice(pred, held_out.labels) > 0.6


def test_list_of_images_of_different_sizes(data, fast, tiny_unet):
    images = [data.image[0], data.image[1:3, :48, :56]]
    labels = [data.labels[0], data.labels[1:3, :48, :56].astype(np.float32)]
    model, _ = train(images, labels, tiny_unet(), steps=2, **fast)
    assert model.meta["provenance"]["data"]["shapes"] == [[64, 64], [2, 48, 56]]


def test_class_values_of_an_imported_model_map_the_labels(data, fast, tiny_unet):
    model = tiny_unet()
    model.meta["class_values"] = [0, 255]
    labels = data.labels.astype(np.uint8) * 255
    train(data.image, labels, model, steps=1, val_fraction=0, **fast)
    with pytest.raises(ValueError, match=r"class values \[0, 255\]"):
        train(data.image, data.labels, model, steps=1, **fast)


@pytest.mark.parametrize(
    ("epochs", "padding", "steps"),
    [
        # 4 training slices of 64 x 64 (2 of the 6 held out), batches of 4 label patches of
        # 32 x 32: ceil(4 * 64 * 64 / (4 * 32 * 32)) = 4 steps per epoch
        (1, "same", 4),
        (0.5, "same", 2),
        (2.6, "same", 10),  # round(2.6 * 4)
        (0.01, "same", 1),  # at least one step
        # a valid-convolution UNet reads 72 x 72 to predict 32 x 32: the label patch counts
        (1, "valid", 4),
    ],
)
def test_epochs_set_the_number_of_steps(data, epochs, padding, steps, fast, tiny_unet):
    model = tiny_unet(padding=padding)
    events = []
    trained, history = train(
        data.image,
        data.labels,
        model,
        epochs=epochs,
        val_fraction=1 / 3,
        progress=lambda step, total, info: events.append((step, total)),
        **{**fast, "patch_size": 32},
    )
    assert trained is model and not trained.training
    provenance = trained.meta["provenance"]
    assert provenance["data"]["train_slices"] == 4 and provenance["data"]["val_slices"] == 2
    assert provenance["patch_size"] == [32, 32]
    assert history["step"] == list(range(1, steps + 1))
    assert len(history["loss"]) == steps and all(np.isfinite(history["loss"]))
    assert events == [(k, steps) for k in range(steps + 1)]
    assert provenance["steps"] == steps
    assert history["val_step"][-1] == steps  # the last step is validated


@pytest.mark.parametrize(
    "build",
    [
        lambda: UNet(1, 1, base_channels=4, depth=2),  # sigmoid
        lambda: UNet(1, 2, base_channels=4, depth=2, padding="valid"),
        lambda: UNet(1, 2, base_channels=4, depth=2, upsampling="bilinear"),
    ],
    ids=["sigmoid", "valid", "bilinear"],
)
def test_other_architectures_train(data, build, fast):
    model, history = train(data.image, data.labels, build(), steps=3, val_every=3, **fast)
    assert len(history["loss"]) == 3 and np.isfinite(history["val_dice"][-1])
    labels = segment(data.image, model, device="cpu")
    assert labels.shape == data.labels.shape and set(np.unique(labels).tolist()) <= {0, 1}
    # validation decides labels as segment does: one slice (the held-out one) scores the
    # validation Dice of the returned (last, only validated) weights
    per_slice = [foreground_dice(labels[z], data.labels[z]) for z in range(len(labels))]
    assert any(d == pytest.approx(history["val_dice"][-1], abs=1e-9) for d in per_slice)


def test_multilabel_sigmoid_targets(data, fast):
    model = UNet(1, 2, base_channels=4, depth=2)
    model.activation = "sigmoid"
    labels = data.labels.astype(np.int64) * 2  # channel 1 on for nuclei, channel 0 never
    model, history = train(data.image, labels, model, steps=2, **fast)
    assert model.meta["class_names"] == ["class 1", "class 2"]
    assert set(history["val_dice_per_class"][0]) == {"class 1", "class 2"}


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["float16", "bfloat16", "float32"])
def test_mixed_precision_on_cuda(data, precision, fast, tiny_unet):
    if precision == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    model, history = train(
        data.image, data.labels, tiny_unet(), steps=4, val_every=2, precision=precision,
        **{**fast, "device": "cuda"},
    )
    assert np.isfinite(history["loss"]).all() and model.meta["provenance"]["precision"] == precision
    assert next(model.parameters()).device.type == "cpu"


def test_float16_training_is_refused_on_the_cpu(data, fast, tiny_unet):
    with pytest.raises(ValueError, match="float16"):
        train(data.image, data.labels, tiny_unet(), steps=1, precision="float16", **fast)
