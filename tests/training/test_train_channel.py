"""``train(..., channel=...)``: a one-channel model from a multichannel image (issue 11, item 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet_stack.training import TrainSettings, train


@pytest.fixture(scope="module")
def rgb(data):
    """(Z, Y, X, 3): the nuclei in green, noise in red and blue."""
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 255, (*data.image.shape, 3), dtype=np.uint8)
    noise[..., 1] = data.image
    return noise


def _run(image, labels, tiny_unet, fast, **kw):
    torch.manual_seed(0)
    return train(image, labels, tiny_unet(), steps=2, val_fraction=0, **fast, **kw)


@pytest.mark.parametrize("channel", [1, -2, "mean", "MEAN"])
def test_a_channel_or_the_mean_trains_a_one_channel_model(data, rgb, fast, tiny_unet, channel):
    model, history = _run(rgb, data.labels, tiny_unet, fast, channel_axis=-1, channel=channel)
    assert model.in_channels == 1
    # the same run as on that one channel given alone
    alone = rgb[..., 1] if channel in (1, -2) else rgb.mean(axis=-1, dtype=np.float64).astype(np.float32)
    expected, expected_history = _run(alone, data.labels, tiny_unet, fast)
    np.testing.assert_allclose(history["loss"], expected_history["loss"], rtol=1e-5)
    for key, value in expected.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"channel_axis": -1, "channel": 3}, ValueError, r"`channel=3` is out of range: `images` has 3 channel"),
        ({"channel_axis": -1, "channel": "max"}, ValueError, r"`channel` must be None, a channel index or 'mean'"),
        ({"channel_axis": -1, "channel": 1.0}, TypeError, r"`channel` must be None, an int"),
        ({"channel": 0}, ValueError, r"`channel=0` picks along the channel axis: pass channel_axis="),
    ],
)
def test_bad_channel_choices_are_refused_before_training(data, rgb, fast, options, error, match):
    with pytest.raises(error, match=match):
        train(rgb, data.labels, steps=1, **fast, **options)


def test_channel_is_a_setting_checked_at_once():
    with pytest.raises(TypeError, match="`channel` must be None, an int"):
        TrainSettings(channel=[0], channel_axis=-1)
    assert TrainSettings(channel="Mean", channel_axis=0).channel == "mean"


def test_a_one_channel_model_and_a_multichannel_image_say_how_to_choose(data, rgb, fast, tiny_unet):
    with pytest.raises(ValueError, match=r"3 channel\(s\) but the model takes 1.*channel=<index> or channel='mean'"):
        train(rgb, data.labels, tiny_unet(), steps=1, channel_axis=-1, **fast)
    with pytest.raises(ValueError, match=r"`channel=0` makes one input channel, but the model expects 3"):
        train(rgb, data.labels, tiny_unet(in_channels=3), steps=1, channel_axis=-1, channel=0, **fast)
