"""Exactness: tiled == whole-slice inference for own, valid and UNet++ models; stacks of any
rank and channel layouts; the engine's device copy follows the model (head, weights, mode)."""

import numpy as np
import pytest
import torch

import napari_unet_stack as nus

NAMES = ["unet-transposed", "unet-bilinear", "unet-depth4", "unetpp", "unetpp-fast", "unet-valid",
         "unet-valid-bilinear"]


@pytest.mark.parametrize(
    ("name", "tile"), [(name, (32, 48)) for name in NAMES] + [("unet-transposed", 64), ("unet-valid", 40)]
)
def test_tiled_equals_whole_slice(name, tile, stack, nets):
    model = nets.MODELS[name]()
    whole = nus.predict(stack, model, tile_size=None, border="reach")
    info = {}
    tiled = nus.predict(stack, model, tile_size=tile, batch_size=3, border="reach", info=info)
    assert info["n_tiles"] > 2 * 2  # really tiled
    assert whole.shape == (model.out_channels, *stack.shape)
    np.testing.assert_allclose(tiled, whole, atol=1e-4, rtol=0)
    assert info["exact"]


@pytest.mark.parametrize("name", ["unet-transposed", "unetpp", "unet-valid", "unet-valid-bilinear"])
def test_image_smaller_than_a_tile(name, nets):
    model = nets.MODELS[name]()
    image = np.random.default_rng(0).random((10, 7)).astype(np.float32)
    whole = nus.predict(image, model, tile_size=None)
    tiled = nus.predict(image, model, tile_size=256)
    assert whole.shape == (model.out_channels, 10, 7)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
    assert np.isfinite(whole).all()


def test_zyx_stack_slices_are_independent(stack, nets):
    model = nets.MODELS["unet-transposed"]()
    volume = np.stack([stack[0], stack[1], stack[0]])
    probs = nus.predict(volume, model, tile_size=48)
    single = nus.predict(stack[1], model, tile_size=None)
    np.testing.assert_allclose(probs[:, 1], single, atol=1e-4)
    np.testing.assert_allclose(probs[:, 0], probs[:, 2], atol=1e-6)


def test_tzyx_stack_slices_are_independent(nets):
    model = nets.MODELS["unet-transposed"]()
    image = np.random.default_rng(0).random((2, 3, 20, 24)).astype(np.float32)
    labels = nus.segment(image, model, tile_size=16)
    assert labels.shape == image.shape and labels.dtype == np.uint8
    assert len(np.unique(labels)) >= 2  # not trivially empty
    for t, z in np.ndindex(2, 3):  # every slice as if it were alone
        np.testing.assert_array_equal(labels[t, z], nus.segment(image[t, z], model, tile_size=None))


@pytest.mark.parametrize("axis", [-1, 0])
def test_rgb_with_channel_axis(axis, nets):
    model = nets.init(nus.UNet(3, 2, base_channels=4, depth=2, upsampling="bilinear"))
    rgb = (np.random.default_rng(1).random((45, 61, 3)) * 255).astype(np.uint8)
    image = rgb if axis == -1 else np.moveaxis(rgb, -1, 0)
    whole = nus.predict(image, model, channel_axis=axis, tile_size=None)
    tiled = nus.predict(image, model, channel_axis=axis, tile_size=16)
    assert whole.shape == (2, 45, 61)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
    if axis == 0:
        np.testing.assert_allclose(whole, nus.predict(rgb, model, channel_axis=-1, tile_size=None), atol=1e-6)


def test_valid_model_uses_overlap_tile_strategy(stack, nets):
    model = nets.MODELS["unet-valid"]()
    info = {}
    out = nus.predict(stack[0], model, tile_size=40, info=info)
    assert out.shape == (2, *stack.shape[1:])
    np.testing.assert_allclose(out, nus.predict(stack[0], model, tile_size=None), atol=1e-4, rtol=0)
    assert info["halo"] == 0 and info["window_shape"][0] == model.input_size_for(40)


def test_blending_with_small_halo_is_close_but_crop_with_full_halo_is_exact(stack, nets):
    model = nets.MODELS["unet-transposed"]()
    whole = nus.predict(stack, model, tile_size=None)
    blended = nus.predict(stack, model, tile_size=32, halo=16, blend="gaussian")
    assert blended.shape == whole.shape
    assert np.abs(blended - whole).max() < 0.2
    np.testing.assert_allclose(blended.sum(0), 1, atol=1e-5)


def test_engine_matches_the_bare_network_forward(nets):
    """The engine's (BatchNorm-folded, device-copied) network gives the model's own softmax."""
    model = nets.MODELS["unet-transposed"]()
    image = np.random.default_rng(5).standard_normal((64, 96)).astype(np.float32)
    probs = nus.predict(image, model, normalization=None, tile_size=None, halo=0, border=0)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(image)[None, None]), dim=1)[0].numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_changing_the_unetpp_head_after_a_run_is_honoured(nets):
    model = nets.MODELS["unetpp"]()
    image = np.random.default_rng(7).random((48, 48)).astype(np.float32)
    accurate = nus.predict(image, model, tile_size=None)
    model.head = 1
    fast = nus.predict(image, model, tile_size=None)
    assert np.abs(accurate - fast).max() > 1e-3
    model.head = "accurate"
    np.testing.assert_allclose(nus.predict(image, model, tile_size=None), accurate, atol=1e-6)


def test_weights_changed_in_place_are_used(nets):
    model = nets.MODELS["unet-transposed"]()
    image = np.random.default_rng(8).random((32, 32)).astype(np.float32)
    before = nus.predict(image, model, tile_size=None)
    with torch.no_grad():
        model.head.weight.mul_(-1)  # e.g. an optimizer step
    after = nus.predict(image, model, tile_size=None)
    assert np.abs(before - after).max() > 1e-3


def test_model_state_is_left_alone(nets):
    model = nets.MODELS["unet-transposed"]().train()
    nus.segment(np.zeros((16, 16), np.float32), model, tile_size=None)
    assert model.training
    assert next(model.parameters()).device.type == "cpu"


@pytest.mark.slow
def test_unetpp_fast_head_is_cheaper_end_to_end(nets):
    """The engine honours the head: a pruned head costs fewer FLOPs through predict."""
    from torch.utils.flop_counter import FlopCounterMode

    model = nets.init(nus.NestedUNet(1, 2, base_channels=4, depth=3, deep_supervision=True))
    image = np.random.default_rng(9).random((2, 40, 40)).astype(np.float32)
    flops = {}
    for head in ("accurate", 1):
        model.head = head
        counter = FlopCounterMode(display=False)
        with counter:
            nus.predict(image, model, tile_size=None, device="cpu")
        flops[head] = counter.get_total_flops()
    assert 0 < flops[1] < 0.5 * flops["accurate"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_close_to_cpu(stack, nets):  # pragma: no cover - runs on the GPU machine only
    model = nets.MODELS["unet-transposed"]()
    cpu = nus.predict(stack, model, tile_size=None, device="cpu")
    gpu32 = nus.predict(stack, model, tile_size=32, device="cuda", precision="float32")
    np.testing.assert_allclose(gpu32, cpu, atol=1e-3)
    info = {}
    gpu = nus.segment(stack, model, tile_size=32, device="cuda", info=info)
    assert info["precision"] in ("bfloat16", "float16")
    assert (gpu == cpu.argmax(0)).mean() > 0.98
