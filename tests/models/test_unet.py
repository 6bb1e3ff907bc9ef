"""UNet: shapes, dtypes, widths, valid-convolution margins and argument checks."""

import pytest
import torch

from napari_unet_stack import UNet


def _out(model, h, w, c=None, n=2):
    c = model.in_channels if c is None else c
    with torch.inference_mode():
        return model.eval()(torch.randn(n, c, h, w))


def _assert_informative(y):
    """Finite logits that vary over the image and between the samples (an all-zero or
    input-independent network fails)."""
    assert torch.isfinite(y).all()
    assert y.std() > 0
    assert not torch.equal(y[0], y[1])


@pytest.mark.parametrize("upsampling", ["transposed", "bilinear"])
@pytest.mark.parametrize(("depth", "base", "in_ch", "k"), [(1, 4, 1, 2), (2, 8, 3, 1), (3, 4, 2, 3), (4, 4, 1, 2)])
def test_unet_shapes(upsampling, depth, base, in_ch, k):
    model = UNet(in_ch, k, base_channels=base, depth=depth, upsampling=upsampling)
    size = 2**depth * 3
    y = _out(model, size, 2 * size)
    assert y.shape == (2, k, size, 2 * size)
    assert y.dtype == torch.float32
    _assert_informative(y)
    assert model.size_multiple == 2**depth
    assert model.halo % model.size_multiple == 0 and model.halo >= model.reach
    assert model.activation == ("softmax" if k > 1 else "sigmoid")


def test_unet_widths_follow_base_channels():
    model = UNet(1, 2, base_channels=8, depth=3)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert max(c.out_channels for c in convs) == 8 * 2**3


@pytest.mark.parametrize(("depth", "margin"), [(1, 8), (2, 20), (3, 44), (4, 92)])
def test_valid_unet_margin(depth, margin):
    model = UNet(1, 2, base_channels=4, depth=depth, padding="valid")
    assert model.valid_margin == margin
    size = model.input_size_for(20)
    y = _out(model, size, size)
    assert y.shape[-1] == model.output_size(size) == size - 2 * margin
    assert y.shape[-1] >= 20
    _assert_informative(y)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_valid_bilinear_unet_margin(depth):
    """Valid + bilinear also drops each up-sampled map's clamped border pixel."""
    model = UNet(1, 2, base_channels=2, depth=depth, padding="valid", upsampling="bilinear")
    transposed = UNet(1, 2, base_channels=2, depth=depth, padding="valid")
    assert model.valid_margin > transposed.valid_margin
    size = model.input_size_for(24)
    y = _out(model, size, size)
    assert y.shape[-1] == model.output_size(size) == size - 2 * model.valid_margin >= 24
    _assert_informative(y)


@pytest.mark.parametrize("upsampling", ["transposed", "bilinear"])
def test_valid_unet_output_depends_on_its_window_only(upsampling):
    """Cropping the input by one size multiple crops the output by the same: each output
    pixel sees the input pixels around it, wherever the image begins."""
    model = UNet(1, 2, base_channels=4, depth=2, padding="valid", upsampling=upsampling)
    model = model.double().eval()
    m = model.size_multiple
    size = model.input_size_for(16 + m)
    x = torch.randn(1, 1, size, size + m, dtype=torch.float64)
    with torch.no_grad():
        whole = model(x)
        cropped = model(x[..., m:, m:])
    assert cropped.shape[-2:] == (whole.shape[-2] - m, whole.shape[-1] - m)
    torch.testing.assert_close(cropped, whole[..., m:, m:], rtol=1e-10, atol=1e-10)
    assert whole.std() > 0


def test_valid_unet_paper_geometry():
    model = UNet(1, 2, depth=4, padding="valid")
    assert model.output_size(572) == 388  # Ronneberger et al. 2015, Fig. 1
    with pytest.raises(ValueError, match="not admissible"):
        model.output_size(570)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_channels": 0}, "in_channels"),
        ({"n_classes": 1.5}, "n_classes"),
        ({"depth": 0}, "depth"),
        ({"upsampling": "nearest"}, "upsampling"),
        ({"padding": "full"}, "padding"),
        ({"downsampling": "avgpool"}, r"`downsampling` must be 'maxpool' or 'strided', got 'avgpool'"),
        ({"downsampling": "strided", "upsampling": "bilinear"}, r"strided.*upsampling='bilinear'"),
        ({"downsampling": "strided", "padding": "valid"}, r"strided.*needs padding='same'.*padding='valid'"),
    ],
)
def test_unet_rejects_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        UNet(**kwargs)


def test_describe_mentions_architecture():
    text = UNet(3, 2, base_channels=4, depth=2).describe()
    assert "UNet" in text and "3 in" in text and "softmax" in text


@pytest.mark.parametrize(("depth", "base", "in_ch", "k"), [(1, 4, 1, 2), (2, 8, 3, 1), (3, 4, 2, 3)])
def test_strided_unet_shapes_and_layers(depth, base, in_ch, k):
    model = UNet(in_ch, k, base_channels=base, depth=depth, downsampling="strided")
    size = 2**depth * 3
    y = _out(model, size, 2 * size)
    assert y.shape == (2, k, size, 2 * size)
    _assert_informative(y)
    modules = list(model.modules())
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in modules)
    downs = [m for m in modules if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    ups = [m for m in modules if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(m.kernel_size, m.padding) for m in downs] == [((3, 3), (1, 1))] * depth
    assert [(m.kernel_size, m.padding, m.output_padding) for m in ups] == [((3, 3), (1, 1), (1, 1))] * depth
    assert model.config()["kwargs"]["downsampling"] == "strided"
    assert model.halo % model.size_multiple == 0 and model.halo >= model.reach > UNet(depth=depth).reach


def test_maxpool_unet_weights_are_unchanged_by_the_option():
    """Checkpoints saved before the option existed still fit (same keys, and no config entry)."""
    plain, explicit = UNet(1, 2, base_channels=4, depth=2), UNet(1, 2, base_channels=4, depth=2, downsampling="maxpool")
    assert plain.state_dict().keys() == explicit.state_dict().keys()
    assert not any(k.startswith("downs.") for k in plain.state_dict())
