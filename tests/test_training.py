"""The trainer: data checks, augmentation alignment, losses, loop, cancel, resume, CLI."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from napari_unet_stack.checkpoints import load_model, save_model
from napari_unet_stack.inference import segment
from napari_unet_stack.models import NestedUNet, UNet
from napari_unet_stack.normalization import (
    DEFAULT_NORMALIZATION,
    apply_normalization,
    fit_normalization,
)
from napari_unet_stack.synthetic import nuclei_stack
from napari_unet_stack.training import (
    AugmentConfig,
    TrainingCancelled,
    augment_pair,
    default_model,
    dice,
    foreground_dice,
    iou,
    iter_train,
    segmentation_loss,
    train,
)
from napari_unet_stack.training.augment import elastic_field
from napari_unet_stack.training.data import IGNORE, prepare_data, split_validation

FAST = {"patch_size": 48, "batch_size": 4, "lr": 5e-3, "device": "cpu"}


@pytest.fixture(scope="module")
def data():
    return nuclei_stack((6, 64, 64), seed=3)


@pytest.fixture(scope="module")
def held_out():
    return nuclei_stack((2, 64, 64), seed=4)


def tiny_unet(n_classes=2, in_channels=1, **kw):
    return UNet(in_channels, n_classes, base_channels=8, depth=2, **kw)


# ----------------------------------------------------------------------------- learning
@pytest.fixture(scope="module")
def trained(data):
    torch.manual_seed(0)
    calls = []
    model, history = train(
        data.image,
        data.labels,
        tiny_unet(),
        steps=50,
        val_every=10,
        progress=lambda step, total, info: calls.append((step, total, dict(info))),
        **FAST,
    )
    return model, history, calls


def test_loss_decreases_and_dice_passes_threshold(trained, held_out):
    model, history, _ = trained
    loss = np.array(history["loss"])
    assert loss[-10:].mean() < 0.7 * loss[:10].mean()
    assert max(history["val_dice"]) > 0.8
    pred = segment(held_out.image, model, device="cpu")
    assert foreground_dice(pred, held_out.labels) > 0.7  # 50 steps of a tiny UNet


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


def test_training_is_seeded(data):
    small = {**FAST, "patch_size": 32, "batch_size": 2}
    runs = [
        train(data.image[:2], data.labels[:2], None, steps=2, val_fraction=0, seed=1, **small)
        for _ in range(2)
    ]
    assert runs[0][1]["loss"] == runs[1][1]["loss"]
    for a, b in zip(
        runs[0][0].state_dict().values(), runs[1][0].state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b)


def test_default_model_matches_the_data(data):
    image = np.stack([data.image, data.image // 2], axis=-1)  # (Z, Y, X, 2)
    labels = data.labels.astype(np.int32) * 2  # classes 0 and 2 -> 3 classes
    model, _ = train(image, labels, steps=1, channel_axis=-1, val_fraction=0, **FAST)
    assert isinstance(model, UNet) and model.in_channels == 2 and model.out_channels == 3
    assert model.meta["class_names"] == ["background", "class 1", "class 2"]
    assert default_model(1, 2, architecture="NestedUNet").deep_supervision


# ----------------------------------------------------------------------------- sparse
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


def test_training_on_sparse_labels_learns(data, held_out):
    rng = np.random.default_rng(0)
    painted = rng.random(data.labels.shape) < 0.05  # 5 % of the pixels painted
    painted[2] = False  # a slice with nothing painted is skipped
    sparse = np.where(painted, data.labels + 1, 0).astype(np.uint8)  # 1 = background, 2 = nucleus
    torch.manual_seed(0)
    model, _ = train(data.image, sparse, tiny_unet(), steps=50, sparse=True, val_every=25, **FAST)
    assert (
        model.meta["provenance"]["data"]["train_slices"]
        + model.meta["provenance"]["data"]["val_slices"]
        == 5
    )
    pred = segment(held_out.image, model, device="cpu")
    assert foreground_dice(pred, held_out.labels) > 0.6


# ----------------------------------------------------------------------------- augmentation
def test_augmentation_keeps_image_and_labels_aligned():
    rng = np.random.default_rng(1)
    labels = np.zeros((96, 96), np.int64)
    labels[10:40, 20:70] = 1
    labels[50:90, 5:45] = 2
    labels[60:80, 60:90] = 3
    image = labels[None].astype(np.float32)  # intensity == label
    no_intensity = AugmentConfig(elastic_p=1.0, elastic_sigma=6.0, scale=0, shift=0, noise=0)
    for _ in range(10):
        img, lab = augment_pair(
            image,
            labels,
            rng,
            no_intensity,
            shape=(64, 64),
            image_order=0,
            centre=(rng.uniform(20, 76), rng.uniform(20, 76)),
        )
        inside = lab != IGNORE
        np.testing.assert_array_equal(img[0][inside], lab[inside])
        # bilinear image: integer-valued pixels away from edges still equal their label
        img1, lab1 = augment_pair(
            image, labels, np.random.default_rng(5), no_intensity, shape=(64, 64)
        )
        agree = np.isclose(np.rint(img1[0]), lab1)[lab1 != IGNORE].mean()
        assert agree > 0.97


def test_flips_and_rotations_are_exact_and_cover_the_group():
    labels = np.arange(16 * 16).reshape(16, 16)
    image = labels[None].astype(np.float32)
    cfg = AugmentConfig(elastic_p=0, scale=0, shift=0, noise=0)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(80):
        img, lab = augment_pair(image, labels, rng, cfg)
        np.testing.assert_array_equal(img[0], lab)
        assert sorted(lab.ravel()) == list(range(256))  # a permutation of the pixels
        seen.add(lab.tobytes())
    assert len(seen) == 8


def test_valid_label_patch_is_centred_in_the_image_patch():
    labels = np.arange(40 * 40).reshape(40, 40)
    image = labels[None].astype(np.float32)
    cfg = AugmentConfig(elastic_p=1.0, scale=0, shift=0, noise=0)
    img, lab = augment_pair(
        image,
        labels,
        np.random.default_rng(2),
        cfg,
        shape=(30, 30),
        label_shape=(20, 20),
        image_order=0,
    )
    np.testing.assert_array_equal(img[0, 5:25, 5:25], lab)


def test_elastic_field_is_smooth_and_seeded():
    a = elastic_field(np.random.default_rng(3), (64, 64), 5.0, 32)
    b = elastic_field(np.random.default_rng(3), (64, 64), 5.0, 32)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 64, 64) and 1 < a.std() < 15
    assert np.abs(np.diff(a, axis=-1)).max() < 2  # smooth: neighbours move together


def test_intensity_augmentation_changes_only_the_image():
    labels = np.zeros((32, 32), np.int64)
    labels[8:20, 8:20] = 1
    image = labels[None].astype(np.float32)
    cfg = AugmentConfig(flips=False, rotate90=False, elastic_p=0, noise_p=1.0)
    img, lab = augment_pair(image, labels, np.random.default_rng(0), cfg)
    np.testing.assert_array_equal(lab, labels)
    assert not np.allclose(img[0], image[0])


# ----------------------------------------------------------------------------- data
def test_normalization_is_fitted_per_whole_slice_like_inference(data):
    prepared = prepare_data(data.image, data.labels, normalization=DEFAULT_NORMALIZATION)
    z = 3
    expected = apply_normalization(
        data.image[z][None], fit_normalization(data.image[z][None], DEFAULT_NORMALIZATION)
    )
    np.testing.assert_array_equal(prepared.slices[z].image, expected)


def test_single_image_is_split_by_rows(data):
    prepared = prepare_data(data.image[0], data.labels[0], normalization=DEFAULT_NORMALIZATION)
    train_part, val_part = split_validation(prepared.slices, 0.25, np.random.default_rng(0), 16)
    assert train_part[0].shape == (48, 64) and val_part[0].shape == (16, 64)


def test_list_of_images_of_different_sizes(data):
    images = [data.image[0], data.image[1:3, :48, :56]]
    labels = [data.labels[0], data.labels[1:3, :48, :56].astype(np.float32)]
    model, _ = train(images, labels, tiny_unet(), steps=2, **FAST)
    assert model.meta["provenance"]["data"]["shapes"] == [[64, 64], [2, 48, 56]]


def test_class_values_of_an_imported_model_map_the_labels(data):
    model = tiny_unet()
    model.meta["class_values"] = [0, 255]
    labels = data.labels.astype(np.uint8) * 255
    train(data.image, labels, model, steps=1, val_fraction=0, **FAST)
    with pytest.raises(ValueError, match=r"class values \[0, 255\]"):
        train(data.image, data.labels, model, steps=1, **FAST)


def _bad_inputs(data):
    img, lab = data.image, data.labels
    nan = img.astype(np.float32)
    nan[0, 3, 3] = np.nan
    return {
        "shape": ((img, lab[:, :30]), r"`labels` \(shape \(6, 30, 64\)\).*\(6, 64, 64\)"),
        "empty": ((img[:, :0], lab[:, :0]), r"`images` is empty"),
        "nan": ((nan, lab), r"`images` .* 1 NaN"),
        "no foreground": ((img, np.zeros_like(lab)), r"no foreground"),
        "too many classes": ((img, lab * 5), r"values up to 5 .* values 0\.\.1"),
        "lengths": (([img, img], [lab]), r"`images` \(2 arrays\) and `labels` \(1 arrays\)"),
        "float labels": ((img, lab + 0.5), r"non-integer"),
        "negative": ((img, lab.astype(np.int8) - 1), r"negative"),
        "channels": (
            (np.stack([img, img], axis=-1), lab),
            r"`images` have 2 channel\(s\) but the model takes 1",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "shape",
        "empty",
        "nan",
        "no foreground",
        "too many classes",
        "lengths",
        "float labels",
        "negative",
        "channels",
    ],
)
def test_clear_errors_for_bad_input(data, case):
    (images, labels), message = _bad_inputs(data)[case]
    kwargs = {"channel_axis": -1} if case == "channels" else {}
    with pytest.raises(ValueError, match=message):
        train(images, labels, tiny_unet(), steps=1, **kwargs, **FAST)


def test_sparse_errors(data):
    with pytest.raises(ValueError, match="no painted pixel"):
        train(data.image, np.zeros_like(data.labels), tiny_unet(), sparse=True, steps=1, **FAST)
    only_background = np.zeros_like(data.labels)
    only_background[:, :4] = 1
    with pytest.raises(ValueError, match="only one class"):
        train(data.image, only_background, tiny_unet(), sparse=True, steps=1, **FAST)
    with pytest.raises(ValueError, match=r"painted values 1\.\.2"):
        train(data.image, data.labels * 2 + 1, tiny_unet(), sparse=True, steps=1, **FAST)


def test_bad_settings(data):
    with pytest.raises(ValueError, match="not both"):
        train(data.image, data.labels, steps=2, epochs=1)
    with pytest.raises(ValueError, match="val_fraction"):
        train(data.image, data.labels, val_fraction=1.5)
    with pytest.raises(TypeError, match="is_set"):
        train(data.image, data.labels, cancel=object())
    with pytest.raises(ValueError, match="unknown option"):
        train(data.image, data.labels, augment={"spin": True})
    with pytest.raises(TypeError, match="model"):
        train(data.image, data.labels, model=42)
    for bad in (0, -1, "1"):
        with pytest.raises(ValueError, match="epochs"):
            train(data.image, data.labels, tiny_unet(), epochs=bad, **FAST)


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
def test_epochs_set_the_number_of_steps(data, epochs, padding, steps):
    model = tiny_unet(padding=padding)
    events = []
    trained, history = train(
        data.image,
        data.labels,
        model,
        epochs=epochs,
        val_fraction=1 / 3,
        progress=lambda step, total, info: events.append((step, total)),
        **{**FAST, "patch_size": 32},
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


# ----------------------------------------------------------------------------- cancel, resume
def test_cancel_raises_with_the_best_model_so_far(data):
    event = threading.Event()

    def progress(step, total, info):
        if step == 3:
            event.set()

    with pytest.raises(TrainingCancelled) as caught:
        train(
            data.image,
            data.labels,
            tiny_unet(),
            steps=100,
            val_every=2,
            progress=progress,
            cancel=event,
            **FAST,
        )
    err = caught.value
    assert err.step == 3 and len(err.history["loss"]) == 3
    assert err.model is not None and not err.model.training
    assert (
        err.model.meta["provenance"]["steps"] == 3
        and err.model.meta["provenance"]["best_step"] == 2
    )


def test_cancel_before_the_first_step(data):
    event = threading.Event()
    event.set()
    with pytest.raises(TrainingCancelled) as caught:
        train(data.image, data.labels, tiny_unet(), steps=5, cancel=event, **FAST)
    assert caught.value.model is None and caught.value.step == 0


def test_resume_from_our_checkpoint(trained, data, tmp_path):
    model, _, _ = trained
    path = save_model(model, tmp_path / "first.pt")
    gen = iter_train(data.image, data.labels, str(path), steps=4, val_fraction=0, **FAST)
    next(gen)  # data prepared, weights loaded, nothing trained yet
    resumed, history2 = _drain(gen)
    # it continues from the stored weights: the loss starts where the first run ended
    fresh = train(data.image, data.labels, tiny_unet(), steps=4, val_fraction=0, **FAST)[1]
    assert np.mean(history2["loss"]) < 0.8 * np.mean(fresh["loss"])
    prov = resumed.meta["provenance"]
    assert prov["steps"] == 4 and prov["total_steps"] == 54 and prov["previous"]["steps"] == 50
    assert resumed.meta["class_names"] == model.meta["class_names"]
    # fine-tuning (resume=False): a fresh optimizer and schedule, steps numbered from 1
    assert history2["step"] == [1, 2, 3, 4] and "resumed_from_step" not in prov
    assert history2["lr"] == fresh["lr"]
    assert resumed.training_state["step"] == 4 and resumed.training_state["total"] == 4


def _straight_and_cancelled(data, *, steps, cancel_at, **kw):
    """(model, history) of an uninterrupted run, and the TrainingCancelled of the same run
    stopped after ``cancel_at`` steps (same seed, same initial weights)."""
    torch.manual_seed(0)
    straight = train(data.image, data.labels, tiny_unet(), steps=steps, **kw, **FAST)
    event = threading.Event()

    def progress(step, total, info):
        if step == cancel_at:
            event.set()

    torch.manual_seed(0)
    with pytest.raises(TrainingCancelled) as caught:
        train(
            data.image,
            data.labels,
            tiny_unet(),
            steps=steps,
            progress=progress,
            cancel=event,
            **kw,
            **FAST,
        )
    return straight, caught.value


def test_cancelled_run_resumes_from_its_checkpoint_to_the_planned_total(data, tmp_path):
    (straight, straight_history), err = _straight_and_cancelled(
        data, steps=12, cancel_at=5, val_fraction=0
    )
    state = err.model.training_state
    assert (state["step"], state["total"], state["finished"]) == (5, 12, False)
    assert state["lr"] == FAST["lr"] and torch.equal(
        state["optimizer"]["state"][0]["step"], torch.tensor(5.0)
    )
    path = save_model(err.model, tmp_path / "cancelled.pt")

    calls = []
    fast = {k: v for k, v in FAST.items() if k != "lr"}  # lr: the checkpoint's
    resumed, history = train(
        data.image,
        data.labels,
        str(path),
        resume=True,
        val_fraction=0,
        progress=lambda step, total, info: calls.append((step, total)),
        **fast,
    )
    # steps 6..12 on the planned schedule: same learning rates as the uninterrupted run
    assert history["step"] == list(range(6, 13)) and calls[0] == (5, 12) and calls[-1] == (12, 12)
    assert history["lr"] == straight_history["lr"][5:]
    # optimizer moments, schedule and patch sampling carried on: the very same run
    np.testing.assert_allclose(history["loss"], straight_history["loss"][5:], rtol=1e-5)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    done = resumed.training_state
    assert (done["step"], done["total"], done["finished"]) == (12, 12, True)
    assert torch.equal(done["optimizer"]["state"][0]["step"], torch.tensor(12.0))
    prov = resumed.meta["provenance"]
    assert prov["resumed_from_step"] == 5 and prov["steps"] == 7 and prov["total_steps"] == 12
    assert prov["best_step"] == 12 and prov["lr"] == FAST["lr"]
    # it had finished: resuming again needs a number of steps
    with pytest.raises(ValueError, match="planned 12 steps; pass `steps`"):
        train(data.image, data.labels, resumed, resume=True, **FAST)


def test_cancelled_run_with_validation_resumes_from_its_best_step(data):
    (_, straight_history), err = _straight_and_cancelled(
        data, steps=8, cancel_at=3, val_every=2
    )
    # the cancelled model holds the step-2 weights (last validation): its state is step 2's
    assert err.model.meta["provenance"]["best_step"] == 2
    assert err.model.training_state["step"] == 2
    _, history = train(data.image, data.labels, err.model, resume=True, val_every=2, **FAST)
    assert history["step"] == list(range(3, 9)) and history["val_step"] == [4, 6, 8]
    assert history["lr"] == straight_history["lr"][2:]
    np.testing.assert_allclose(history["loss"], straight_history["loss"][2:], rtol=1e-5)


def test_resume_with_steps_runs_that_many_more(trained, data, tmp_path):
    from napari_unet_stack.training.state import lr_lambda

    model, _, _ = trained
    reached = model.training_state["step"]
    assert reached == model.meta["provenance"]["best_step"] and model.training_state["finished"]
    path = save_model(model, tmp_path / "first.pt")  # the fixture's model stays untouched
    more, history = train(
        data.image, data.labels, path, resume=True, steps=4, val_fraction=0, **FAST
    )
    assert history["step"] == [reached + k for k in range(1, 5)]
    # the schedule is stretched to end after the 4 new steps (same warmup)
    schedule = lr_lambda(reached + 4, model.training_state["warmup"])
    assert history["lr"] == pytest.approx([FAST["lr"] * schedule(s - 1) for s in history["step"]])
    state = more.training_state
    assert (state["step"], state["total"]) == (reached + 4, reached + 4)
    assert torch.equal(
        state["optimizer"]["state"][0]["step"], torch.tensor(float(reached + 4))
    )
    assert more.meta["provenance"]["resumed_from_step"] == reached


def test_resume_needs_a_training_state(data, tmp_path):
    with pytest.raises(ValueError, match="needs `model`"):
        train(data.image, data.labels, resume=True, steps=2, **FAST)
    with pytest.raises(ValueError, match="training state"):
        train(data.image, data.labels, tiny_unet(), resume=True, steps=2, **FAST)
    model, _ = train(data.image, data.labels, tiny_unet(), steps=2, val_fraction=0, **FAST)
    path = save_model(model, tmp_path / "weights_only.pt", include_training_state=False)
    with pytest.raises(ValueError, match="include_training_state=False"):
        train(data.image, data.labels, path, resume=True, steps=2, **FAST)
    with pytest.raises(TypeError, match="`resume`"):
        train(data.image, data.labels, model, resume="yes", steps=2, **FAST)
    # a state made for another network is refused before any step
    other = tiny_unet(n_classes=3)
    other.training_state = model.training_state
    with pytest.raises(ValueError, match="does not fit the model"):
        train(data.image, data.labels, other, resume=True, steps=2, **FAST)


def _drain(gen):
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def test_fine_tune_an_imported_network(data, tmp_path):
    from napari_unet_stack.models.reference import MilesialUNet

    # a milesial/Pytorch-UNet checkpoint: a bare state dict, preprocessing "divide by 255"
    torch.save(
        MilesialUNet(1, 2, bilinear=False, base_channels=4).state_dict(), tmp_path / "milesial.pth"
    )
    net = load_model(tmp_path / "milesial.pth")
    norm = dict(net.meta.get("normalization") or {})
    before = [p.detach().clone() for p in net.parameters()]
    tuned, _ = train(
        data.image, data.labels, net, steps=2, patch_size=64, batch_size=2, device="cpu"
    )
    assert tuned is net
    if norm:
        assert tuned.meta["normalization"] == {**norm, **tuned.meta["normalization"]}  # kept
    assert any(not torch.equal(a, b) for a, b in zip(before, tuned.parameters(), strict=True))
    # straight from the file, too
    again, _ = train(
        data.image,
        data.labels,
        str(tmp_path / "milesial.pth"),
        steps=1,
        val_fraction=0,
        patch_size=64,
        batch_size=2,
        device="cpu",
    )
    assert type(again) is type(net)


# ----------------------------------------------------------------------------- architectures
def test_unetpp_deep_supervision_picks_a_fast_head(data):
    torch.manual_seed(0)
    model = NestedUNet(1, 2, base_channels=4, depth=3, deep_supervision=True)
    model, _ = train(data.image, data.labels, model, steps=12, val_every=6, **FAST)
    heads = model.meta["provenance"]["head_dice"]
    fast = model.meta["fast_head"]
    assert 1 <= fast <= 3 and set(heads) >= {"accurate", str(fast)}
    assert heads[str(fast)] >= heads["accurate"] - 0.02
    assert all(heads[str(k)] < heads["accurate"] - 0.02 for k in range(1, fast))
    assert model.head == "accurate"


def test_select_fast_head_on_other_data(data):
    from napari_unet_stack.training import select_fast_head

    model = NestedUNet(1, 2, base_channels=4, depth=2, deep_supervision=True)
    model.meta["normalization"] = dict(DEFAULT_NORMALIZATION)
    head, scores = select_fast_head(model, data.image[:2], data.labels[:2], tolerance=1.0, device="cpu")
    assert head == 1 and model.meta["fast_head"] == 1 and set(scores) == {"accurate", "1"}
    head, scores = select_fast_head(model, data.image[:2], data.labels[:2], tolerance=-1.0, device="cpu")
    assert head == 2 and set(scores) == {"accurate", "1", "2"}  # none qualifies: the deepest
    with pytest.raises(ValueError, match="deep_supervision"):
        select_fast_head(tiny_unet(), data.image, data.labels)


@pytest.mark.parametrize(
    "build",
    [
        lambda: UNet(1, 1, base_channels=4, depth=2),  # sigmoid
        lambda: UNet(1, 2, base_channels=4, depth=2, padding="valid"),
        lambda: UNet(1, 2, base_channels=4, depth=2, upsampling="bilinear"),
    ],
    ids=["sigmoid", "valid", "bilinear"],
)
def test_other_architectures_train(data, build):
    model, history = train(data.image, data.labels, build(), steps=3, val_every=3, **FAST)
    assert len(history["loss"]) == 3 and np.isfinite(history["val_dice"][-1])
    assert segment(data.image[:1], model, device="cpu").shape == (1, 64, 64)


def test_multilabel_sigmoid_targets(data):
    model = UNet(1, 2, base_channels=4, depth=2)
    model.activation = "sigmoid"
    labels = data.labels.astype(np.int64) * 2  # channel 1 on for nuclei, channel 0 never
    model, history = train(data.image, labels, model, steps=2, **FAST)
    assert model.meta["class_names"] == ["class 1", "class 2"]
    assert set(history["val_dice_per_class"][0]) == {"class 1", "class 2"}


# ----------------------------------------------------------------------------- metrics
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


# ----------------------------------------------------------------------------- CLI
def test_cli_train_writes_a_checkpoint(tmp_path, data, capsys):
    import tifffile

    from napari_unet_stack.cli import main

    tifffile.imwrite(tmp_path / "img.tif", data.image)
    np.save(tmp_path / "lab.npy", data.labels)
    out = tmp_path / "model.pt"
    code = main(
        [
            "train",
            str(tmp_path / "img.tif"),
            str(tmp_path / "lab.npy"),
            "-o",
            str(out),
            "--steps",
            "2",
            "--patch-size",
            "48",
            "--batch-size",
            "2",
            "--base-channels",
            "4",
            "--depth",
            "2",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert code == 0 and out.is_file()
    model = load_model(out)
    assert model.meta["provenance"]["steps"] == 2 and model.base_channels == 4
    assert "val Dice" in capsys.readouterr().out

    # --resume continues that training: 2 more steps on the stored optimizer and schedule
    again = tmp_path / "more.pt"
    common = [str(tmp_path / "img.tif"), str(tmp_path / "lab.npy"), "-o", str(again)]
    small = ["--patch-size", "48", "--batch-size", "2", "--device", "cpu", "--no-progress"]
    code = main(["train", *common, "--model", str(out), "--resume", "--steps", "2", *small])
    assert code == 0
    resumed = load_model(again)
    reached = model.training_state["step"]
    assert resumed.meta["provenance"]["resumed_from_step"] == reached
    assert resumed.training_state["step"] == resumed.meta["provenance"]["best_step"]
    assert reached < resumed.training_state["total"] == reached + 2
    capsys.readouterr()
    code = main(["train", *common, "--overwrite", "--resume", "--steps", "2", *small])
    assert code == 2 and "--resume needs --model" in capsys.readouterr().err


def test_cli_train_reports_bad_labels_in_one_line(tmp_path, data, capsys):
    import tifffile

    from napari_unet_stack.cli import main

    tifffile.imwrite(tmp_path / "img.tif", data.image)
    tifffile.imwrite(tmp_path / "lab.tif", data.labels[:, :10])
    code = main(
        [
            "train",
            str(tmp_path / "img.tif"),
            str(tmp_path / "lab.tif"),
            "-o",
            str(tmp_path / "m.pt"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert (
        "unet-stack train: error:" in err and "shape" in err and len(err.strip().splitlines()) == 1
    )


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["float16", "bfloat16", "float32"])
def test_mixed_precision_on_cuda(data, precision):
    if precision == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    model, history = train(
        data.image, data.labels, tiny_unet(), steps=4, val_every=2, precision=precision,
        **{**FAST, "device": "cuda"},
    )
    assert np.isfinite(history["loss"]).all() and model.meta["provenance"]["precision"] == precision
    assert next(model.parameters()).device.type == "cpu"


def test_mixed_precision_is_refused_on_the_cpu(data):
    with pytest.raises(ValueError, match="CUDA only"):
        train(data.image, data.labels, tiny_unet(), steps=1, precision="bfloat16", **FAST)
