"""TrainSettings and ModelSettings: one set of checked settings and defaults, shared by
`train` and `iter_train` (and read by the CLI and the Train widget)."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
import torch

from napari_unet_stack.checkpoints import load_model, save_model
from napari_unet_stack.models import ARCHITECTURES, NestedUNet, UNet, architecture_class
from napari_unet_stack.training import (
    DEFAULT_MODEL,
    DEFAULT_STEPS,
    AugmentConfig,
    ModelSettings,
    TrainSettings,
    default_model,
    iter_train,
    train,
)


def test_bad_settings(data, fast, tiny_unet):
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
            train(data.image, data.labels, tiny_unet(), epochs=bad, **fast)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"steps": 0}, ValueError, "`steps` must be >= 1"),
        ({"steps": 2.5}, TypeError, "`steps` must be an int or None"),
        ({"batch_size": 0}, ValueError, "`batch_size`"),
        ({"val_every": True}, TypeError, "`val_every`"),
        ({"val_fraction": -0.1}, ValueError, "`val_fraction`"),
        ({"lr": 0}, ValueError, "`lr` must be a positive number"),
        ({"weight_decay": -1}, ValueError, "`weight_decay` must be a number >= 0"),
        ({"dice_weight": "1"}, ValueError, "`dice_weight`"),
        ({"fast_head_tolerance": -0.5}, ValueError, "`fast_head_tolerance`"),
        ({"seed": -1}, ValueError, "`seed`"),
        ({"patch_size": (32,)}, ValueError, "`patch_size` must be an int or"),
        ({"patch_size": 0}, ValueError, "`patch_size` must be positive"),
        ({"resume": 1}, TypeError, "`resume`"),
        ({"sparse": "yes"}, TypeError, "`sparse`"),
        ({"class_names": "background"}, TypeError, "`class_names`"),
        ({"augment": "strong"}, TypeError, "`augment`"),
        ({"normalization": "bogus"}, ValueError, "normalization mode"),
    ],
)
def test_each_bad_setting_is_named(options, error, match):
    with pytest.raises(error, match=match):
        TrainSettings(**options)
    with pytest.raises(error, match=match):  # the same check through train
        train(np.zeros((2, 8, 8)), np.ones((2, 8, 8), np.uint8), **options)


def test_unknown_option_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match=r"\['stepz'\].*'steps'"):
        train(np.zeros((8, 8)), np.zeros((8, 8), np.uint8), stepz=3)
    with pytest.raises(TypeError, match="stepz"):
        next(iter_train(np.zeros((8, 8)), np.zeros((8, 8), np.uint8), stepz=3))
    with pytest.raises(TypeError, match="TrainSettings"):
        train(np.zeros((8, 8)), np.zeros((8, 8), np.uint8), settings={"steps": 3})


def test_settings_are_canonical_and_replaceable():
    s = TrainSettings(steps=np.int64(5), patch_size=[32, 48], augment=False, class_names=["a", "b"])
    assert s.steps == 5 and type(s.steps) is int
    assert s.patch_size == (32, 48)
    assert s.augment == AugmentConfig.from_argument(False) and not s.augment.enabled
    assert s.class_names == ("a", "b")
    t = s.replace(batch_size=2)
    assert (t.batch_size, t.steps, s.batch_size) == (2, 5, 8)
    assert TrainSettings.from_options(t) is t
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.steps = 3
    with pytest.raises(ValueError, match="not both"):
        s.replace(epochs=2)


def test_defaults_are_the_librarys():
    s = TrainSettings()
    assert (s.steps, s.epochs, s.patch_size, s.batch_size, s.val_fraction) == (None, None, 128, 8, 0.15)
    assert (s.device, s.precision, s.seed, s.resume, s.sparse) == ("auto", "auto", 0, False, False)
    assert DEFAULT_STEPS == 1000
    assert ModelSettings() == ModelSettings("UNet", 16, 4, "maxpool")
    assert DEFAULT_MODEL == {"architecture": "UNet", "base_channels": 16, "depth": 4, "downsampling": "maxpool"}
    net = default_model(1, 2)
    assert type(net) is UNet and (net.base_channels, net.depth) == (16, 4)


def test_train_and_iter_train_take_the_same_arguments():
    t = inspect.signature(train).parameters
    g = inspect.signature(iter_train).parameters
    assert [n for n in t if n != "progress"] == list(g)
    assert list(g) == ["images", "labels", "model", "settings", "cancel", "options"]


def test_settings_object_and_keywords_give_the_same_run(data, fast, tiny_unet):
    small = {**fast, "patch_size": 32, "batch_size": 2, "steps": 3, "seed": 4, "val_every": 2}
    torch.manual_seed(0)
    a, ha = train(data.image[:3], data.labels[:3], tiny_unet(), **small)
    settings = TrainSettings(**{k: v for k, v in small.items() if k != "steps"})
    torch.manual_seed(0)
    b, hb = train(data.image[:3], data.labels[:3], tiny_unet(), settings=settings, steps=3)
    assert ha["loss"] == hb["loss"] and ha["val_dice"] == hb["val_dice"]
    assert len(ha["loss"]) == 3 and all(np.isfinite(ha["loss"]))
    for (key, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), key
    assert a.meta["provenance"]["batch_size"] == b.meta["provenance"]["batch_size"] == 2


@pytest.mark.parametrize(
    ("name", "cls"),
    [("UNet", UNet), ("unet", UNet), ("NestedUNet", NestedUNet), ("nestedunet", NestedUNet),
     ("unetpp", NestedUNet), ("unet++", NestedUNet), ("UNet++", NestedUNet)],
)  # fmt: skip
def test_architecture_names(name, cls):
    assert architecture_class(name) is cls
    assert ModelSettings(name).architecture in ARCHITECTURES
    net = default_model(1, 2, architecture=name, base_channels=4, depth=2)
    assert type(net) is cls and net.base_channels == 4
    if cls is NestedUNet:
        assert net.deep_supervision


def test_unknown_architecture_lists_the_choices():
    assert ARCHITECTURES == ("UNet", "NestedUNet")
    for bad in ("resnet", "", None):
        with pytest.raises(ValueError, match=r"\['UNet', 'NestedUNet'\]"):
            architecture_class(bad)
    with pytest.raises(ValueError, match="architecture"):
        default_model(1, 2, architecture="VGGUNet")
    with pytest.raises(ValueError, match="`depth`"):
        ModelSettings(depth=0)


def test_strided_downsampling_is_a_model_setting():
    net = ModelSettings(downsampling="strided", base_channels=4, depth=2).build(1, 2)
    assert type(net) is UNet and net.downsampling == "strided"
    assert default_model(1, 2, downsampling="strided").config()["kwargs"]["downsampling"] == "strided"
    assert default_model(1, 2).downsampling == "maxpool"
    with pytest.raises(ValueError, match=r"`downsampling` must be 'maxpool' or 'strided', got 'avg'"):
        ModelSettings(downsampling="avg")
    with pytest.raises(ValueError, match=r"downsampling='strided'.*UNet option.*NestedUNet"):
        ModelSettings("unetpp", downsampling="strided")


@pytest.mark.slow
def test_strided_unet_trains_saves_and_resumes(tmp_path, data, fast):
    net = ModelSettings(downsampling="strided", base_channels=4, depth=2).build(1, 2)
    model, history = train(data.image[:3], data.labels[:3], net, steps=2, val_fraction=0, **{**fast, "patch_size": 32})
    assert len(history["loss"]) == 2 and all(np.isfinite(history["loss"]))
    save_model(model, tmp_path / "strided.pt")
    again = load_model(tmp_path / "strided.pt")
    assert again.downsampling == "strided" and again.training_state is not None
    resumed, _ = train(data.image[:3], data.labels[:3], again, resume=True, steps=1, val_fraction=0,
                       **{**fast, "patch_size": 32})
    assert resumed.meta["provenance"]["total_steps"] == 3
