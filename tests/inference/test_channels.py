"""The channel choice rule (napari_unet_stack.channels), issue 11 item 2."""

import doctest

import numpy as np
import pytest

from napari_unet_stack import channels
from napari_unet_stack.channels import check_channel, pick_channels
from napari_unet_stack.validation import parse_int


def test_docstring_examples():
    result = doctest.testmod(channels)
    assert result.attempted > 0 and result.failed == 0


def test_check_channel_accepts():
    assert check_channel(None, 3, 3) is None
    assert check_channel(None, None, 1) is None
    assert check_channel(0, 3, 1) == 0
    assert check_channel(np.int64(-1), 4, 1) == 3
    assert check_channel(-2, None, 1) == -2  # unknown count: kept as given
    assert check_channel(" MEAN ", 2, None) == "mean"
    assert check_channel(parse_int("--channel", "mean", words=channels.CHANNEL_WORDS), 3, 1) == "mean"


def test_check_channel_refuses():
    with pytest.raises(ValueError, match=r"expects 1 input channel\(s\) but image 'rgb' has 3: pick one with channel="):
        check_channel(None, 3, 1, where="image 'rgb'")
    with pytest.raises(ValueError, match=r"expects 2 input channel\(s\) but `image` has 3$"):
        check_channel(None, 3, 2)
    with pytest.raises(TypeError, match=r"`channel` must be None, an int .* got bool \(True\)"):
        check_channel(True, 3, 1)
    with pytest.raises(TypeError, match=r"got float \(1.0\)"):
        check_channel(1.0, 3, 1)
    with pytest.raises(ValueError, match=r"`channel` must be None, a channel index or 'mean', got 'max'"):
        check_channel("max", 3, 1)
    with pytest.raises(ValueError, match=r"`channel=3` is out of range: `image` has 3 channel\(s\) \(valid: -3 to 2"):
        check_channel(3, 3, 1)
    with pytest.raises(ValueError, match=r"`channel=-4` is out of range"):
        check_channel(-4, 3, 1)
    with pytest.raises(ValueError, match=r"`channel=0` picks along the channel axis: pass channel_axis="):
        check_channel(0, 1, 1, channel_axis=None)
    with pytest.raises(ValueError, match=r"`channel='mean'` makes one input channel, but the model expects 3"):
        check_channel("mean", 3, 3)


def test_pick_channels():
    block = np.stack([np.full((2, 3), v, np.uint8) for v in (10, 20, 60)])
    assert pick_channels(block, None).shape == (3, 2, 3)
    one = pick_channels(block, 2)
    assert one.shape == (1, 2, 3) and one.dtype == np.float32 and (one == 60).all()
    mean = pick_channels(block, "mean")
    assert mean.shape == (1, 2, 3) and mean.dtype == np.float32 and np.allclose(mean, 30.0)
    assert pick_channels(block.astype(np.float64), "mean").dtype == np.float64
    assert pick_channels(block.astype(np.int64), 0).dtype == np.float64
    with_nan = block.astype(np.float32)
    with_nan[1, 0, 0] = np.nan
    picked = pick_channels(with_nan, "mean")
    assert np.isnan(picked[0, 0, 0]) and np.isfinite(picked[0, 1:]).all()
