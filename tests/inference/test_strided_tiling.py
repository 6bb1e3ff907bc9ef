"""Exactness for the strided-convolution UNets (ours with ``downsampling="strided"`` and the
imported tutorial network): tiled == whole-slice through the public predict / segment,
at the halo the model reports and not one grid step below it."""

import numpy as np
import pytest
import torch

import napari_unet_stack as nus
from napari_unet_stack.models import StridedTutorialUNet

MODELS = {
    "unet-strided": lambda nets: nets.init(nus.UNet(1, 3, base_channels=4, depth=3, downsampling="strided")),
    "unet-strided-depth2": lambda nets: nets.init(nus.UNet(1, 2, base_channels=4, depth=2, downsampling="strided")),
    "tutorial": lambda nets: nets.init(StridedTutorialUNet(1, 1, base_channels=2, depth=3)),
}


SLOW = pytest.mark.slow  # several seconds each on 2 busy cores


@pytest.mark.parametrize(
    ("name", "tile"),
    [("unet-strided-depth2", 24), pytest.param("unet-strided", (32, 48), marks=SLOW), pytest.param("tutorial", 40, marks=SLOW)],
)
def test_strided_tiled_equals_whole_slice(name, tile, stack, nets):
    model = MODELS[name](nets)
    whole = nus.predict(stack, model, tile_size=None)
    info = {}
    tiled = nus.predict(stack, model, tile_size=tile, batch_size=3, info=info)
    assert info["n_tiles"] > 2 * 2 and info["halo"] == model.halo  # really tiled, at the reported halo
    assert whole.shape == (model.out_channels, *stack.shape)  # 77 x 130: off the size grid
    np.testing.assert_allclose(tiled, whole, atol=1e-4, rtol=0)
    assert info["exact"]
    labels = nus.segment(stack, model, tile_size=tile)
    np.testing.assert_array_equal(labels, nus.segment(stack, model, tile_size=None))


@pytest.mark.parametrize("name", ["unet-strided-depth2", pytest.param("unet-strided", marks=SLOW),
                                  pytest.param("tutorial", marks=SLOW)])
def test_strided_halo_is_minimal(name, stack, nets):
    """One size-grid step less halo than the model reports, and tiles miss the 1e-4 bound."""
    model = MODELS[name](nets)
    image = stack[0, :64, :96]
    whole = nus.predict(image, model, tile_size=None)
    exact = nus.predict(image, model, tile_size=16)
    short = nus.predict(image, model, tile_size=16, halo=model.halo - model.size_multiple)
    np.testing.assert_allclose(exact, whole, atol=1e-4, rtol=0)
    assert np.abs(short - whole).max() > 1e-4


@pytest.mark.parametrize("shape", [(10, 7), (37, 61)])
def test_strided_awkward_shapes(shape, nets):
    model = MODELS["unet-strided-depth2"](nets)
    image = np.random.default_rng(2).random(shape).astype(np.float32)
    whole = nus.predict(image, model, tile_size=None)
    tiled = nus.predict(image, model, tile_size=16)
    assert whole.shape == (2, *shape) and np.isfinite(whole).all()
    np.testing.assert_allclose(tiled, whole, atol=1e-4, rtol=0)


@SLOW
def test_strided_torchscript_export_keeps_the_exact_halo(tmp_path, stack, nets):
    model = MODELS["unet-strided"](nets)
    path = nus.checkpoints.export_torchscript(model, tmp_path / "strided.ts")
    loaded = nus.load_model(path)
    assert (loaded.halo, loaded.exact_tiling) == (model.halo, True)
    x = torch.randn(1, 1, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    np.testing.assert_allclose(
        nus.predict(stack[0], loaded, tile_size=24), nus.predict(stack[0], model, tile_size=None), atol=1e-4, rtol=0
    )


@pytest.mark.parametrize("name", ["unet-strided", "tutorial"])  # softmax, sigmoid
def test_engine_matches_the_bare_strided_forward(name, nets):
    """The engine's BatchNorm-folded copy (stride-2 convolutions folded, transposed ones kept)
    gives the model's own probabilities."""
    model = MODELS[name](nets)
    image = np.random.default_rng(5).standard_normal((64, 96)).astype(np.float32)
    probs = nus.predict(image, model, normalization=None, tile_size=None, halo=0, border=0)
    with torch.no_grad():
        logits = model(torch.from_numpy(image)[None, None])
    expected = (torch.softmax(logits, dim=1) if model.activation == "softmax" else torch.sigmoid(logits))[0].numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
