"""The ``border`` option: mirror padding at the image edge decoupled from the tile halo.

Whole-slice inference with border b is the network on the slice mirror-padded by b and on
to the model's grid at the bottom and right (written out here with numpy); tiles near the
edge are clamped into that canvas, so tiled == whole-slice for every border."""

import numpy as np
import pytest
import torch

import napari_unet_stack as nus
from napari_unet_stack.devices import cpu_native_bf16


def _grid(n, m):
    return -(-n // m) * m


@pytest.mark.parametrize(
    ("name", "border", "tile", "shape"),
    [
        pytest.param("unet-transposed", 0, 32, (150, 170), marks=pytest.mark.slow),
        pytest.param("unet-transposed", 5, (96, 64), (511, 237), marks=pytest.mark.slow),  # odd, off the grid
        ("unet-bilinear", 16, 48, (200, 190)),
        pytest.param("unet-depth4", 8, 64, (300, 260), marks=pytest.mark.slow),
        pytest.param("unetpp", 3, 48, (200, 190), marks=pytest.mark.slow),
        ("unetpp-fast", 0, 16, (77, 130)),
        ("unet-valid", 0, 40, (77, 130)),  # valid models pad by their margin whatever the border
        ("unet-valid-bilinear", 7, 24, (77, 130)),
    ],
)
def test_tiled_equals_whole_slice_for_any_border(name, border, tile, shape, nets):
    model = nets.MODELS[name]()
    image = (np.random.default_rng(11).random(shape) * 1000).astype(np.uint16)
    whole = nus.predict(image, model, tile_size=None, border=border, device="cpu")
    info = {}
    tiled = nus.predict(image, model, tile_size=tile, batch_size=2, border=border, device="cpu", info=info)
    assert info["n_tiles"] > 2 * 2 and info["exact"]  # really tiled, windows of one size
    assert info["border"] == (model.valid_margin or border)
    np.testing.assert_allclose(tiled, whole, atol=1e-4, rtol=0)


@pytest.mark.skipif(not cpu_native_bf16(), reason="this CPU has no native bfloat16")
@pytest.mark.parametrize(("name", "border"), [("unet-bilinear", 5), ("unetpp-fast", 0), ("unet-valid", 16)])
def test_tiled_equals_whole_slice_at_bf16_for_a_border(name, border, nets):
    model = nets.MODELS[name]()
    image = np.random.default_rng(12).random((200, 190)).astype(np.float32)
    whole = nus.predict(image, model, tile_size=None, border=border, device="cpu", precision="bfloat16")
    info = {}
    tiled = nus.predict(image, model, tile_size=48, border=border, device="cpu", precision="bfloat16", info=info)
    assert info["precision"] == "bfloat16" and info["n_tiles"] > 2 * 2
    np.testing.assert_allclose(tiled, whole, atol=1e-4, rtol=0)


@pytest.mark.parametrize("border", [0, 5, 16, "reach"])
def test_whole_slice_is_the_network_on_the_mirror_padded_slice(border, nets):
    model = nets.MODELS["unet-transposed"]()  # grid 8, halo 48
    image = np.random.default_rng(2).standard_normal((45, 61)).astype(np.float32)
    info = {}
    probs = nus.predict(image, model, tile_size=None, border=border, normalization=None, device="cpu",
                        precision="float32", info=info)
    b = model.halo if border == "reach" else border
    pads = [(b, _grid(n + 2 * b, 8) - n - b) for n in image.shape]  # mirror on to the grid, too
    canvas = np.pad(image, pads, mode="reflect")
    assert info["window_shape"] == canvas.shape
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(canvas)[None, None]), dim=1)[0].numpy()
    np.testing.assert_allclose(probs, expected[:, b : b + 45, b : b + 61], atol=1e-5)


@pytest.mark.parametrize("border", [0, 3, 40])
@pytest.mark.parametrize("name", ["unet-transposed", "unetpp", "unet-valid"])
def test_image_smaller_than_a_tile_with_any_border(name, border, nets):
    model = nets.MODELS[name]()
    image = np.random.default_rng(0).random((10, 7)).astype(np.float32)
    whole = nus.predict(image, model, tile_size=None, border=border)
    tiled = nus.predict(image, model, tile_size=256, border=border)
    assert whole.shape == (model.out_channels, 10, 7) and np.isfinite(whole).all()
    np.testing.assert_allclose(tiled, whole, atol=1e-4)


def test_tzyx_stack_and_channels_with_a_border(nets):
    model = nets.MODELS["unet-transposed"]()
    image = np.random.default_rng(4).random((2, 2, 37, 50)).astype(np.float32)
    labels = nus.segment(image, model, tile_size=16, border=0)
    for t, z in np.ndindex(2, 2):
        np.testing.assert_array_equal(labels[t, z], nus.segment(image[t, z], model, tile_size=None, border=0))
    rgb_model = nets.init(nus.UNet(3, 2, base_channels=4, depth=2, upsampling="bilinear"))
    rgb = (np.random.default_rng(1).random((45, 61, 3)) * 255).astype(np.uint8)
    whole = nus.predict(rgb, rgb_model, channel_axis=-1, tile_size=None, border=2)
    np.testing.assert_allclose(nus.predict(rgb, rgb_model, channel_axis=-1, tile_size=16, border=2), whole, atol=1e-4)


def test_lazy_dask_result_honours_the_border(nets):
    da = pytest.importorskip("dask.array")
    model = nets.MODELS["unet-transposed"]()
    image = np.random.default_rng(6).random((3, 40, 52)).astype(np.float32)
    expected = nus.predict(image, model, tile_size=16, border=0)
    lazy = nus.predict(da.from_array(image, chunks=(1, 40, 52)), model, tile_size=16, border=0)
    np.testing.assert_allclose(lazy.compute(), expected, atol=1e-6)
    assert not np.allclose(expected, nus.predict(image, model, tile_size=16, border="reach"), atol=1e-3)
