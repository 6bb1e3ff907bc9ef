"""The inference engine: exact tiling, stacks of any rank, options, errors, cancel, OOM back-off."""

import threading

import numpy as np
import pytest
import torch

import napari_unet_stack as nus
from napari_unet_stack.models.base import SegmentationNetwork


def _init(model):
    """Random but lively weights: He-initialised convolutions and small positive BatchNorm
    biases, so outputs depend strongly on the input (and ReLUs do not die)."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                module.bias.data.uniform_(-0.1, 0.1)
        elif isinstance(module, torch.nn.BatchNorm2d):
            module.bias.data.uniform_(0.0, 0.2)
    return model.eval()


MODELS = {
    "unet-transposed": lambda: _init(nus.UNet(1, 3, base_channels=4, depth=3)),
    "unet-bilinear": lambda: _init(nus.UNet(1, 2, base_channels=4, depth=3, upsampling="bilinear")),
    "unet-depth4": lambda: _init(nus.UNet(1, 2, base_channels=2, depth=4)),
    "unetpp": lambda: _init(nus.NestedUNet(1, 1, base_channels=4, depth=3, deep_supervision=True)),
    "unetpp-fast": lambda: _init(nus.NestedUNet(1, 2, base_channels=4, depth=3, deep_supervision=True, head=2)),
    "unet-valid": lambda: _init(nus.UNet(1, 2, base_channels=4, depth=2, padding="valid")),
    "unet-valid-bilinear": lambda: _init(
        nus.UNet(1, 2, base_channels=4, depth=3, padding="valid", upsampling="bilinear")
    ),
}


@pytest.fixture(scope="module")
def stack():
    rng = np.random.default_rng(3)
    return (rng.random((2, 77, 130)) * 1000).astype(np.uint16)


@pytest.mark.parametrize(
    ("name", "tile"), [(name, (32, 48)) for name in MODELS] + [("unet-transposed", 64), ("unet-valid", 40)]
)
def test_tiled_equals_whole_slice(name, tile, stack):
    model = MODELS[name]()
    whole = nus.predict(stack, model, tile_size=None)
    info = {}
    tiled = nus.predict(stack, model, tile_size=tile, batch_size=3, info=info)
    assert info["n_tiles"] > 2 * 2  # really tiled
    assert whole.shape == (model.out_channels, *stack.shape)
    np.testing.assert_allclose(tiled, whole, atol=1e-4, rtol=0)
    assert info["exact"]


@pytest.mark.parametrize("name", ["unet-transposed", "unetpp", "unet-valid", "unet-valid-bilinear"])
def test_image_smaller_than_a_tile(name):
    model = MODELS[name]()
    image = np.random.default_rng(0).random((10, 7)).astype(np.float32)
    whole = nus.predict(image, model, tile_size=None)
    tiled = nus.predict(image, model, tile_size=256)
    assert whole.shape == (model.out_channels, 10, 7)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
    assert np.isfinite(whole).all()


def test_zyx_stack_slices_are_independent(stack):
    model = MODELS["unet-transposed"]()
    volume = np.stack([stack[0], stack[1], stack[0]])
    probs = nus.predict(volume, model, tile_size=48)
    single = nus.predict(stack[1], model, tile_size=None)
    np.testing.assert_allclose(probs[:, 1], single, atol=1e-4)
    np.testing.assert_allclose(probs[:, 0], probs[:, 2], atol=1e-6)


def test_tzyx_stack_shape():
    model = MODELS["unet-transposed"]()
    image = np.random.default_rng(0).random((2, 3, 20, 24)).astype(np.float32)
    labels = nus.segment(image, model, tile_size=16)
    assert labels.shape == image.shape and labels.dtype == np.uint8


@pytest.mark.parametrize("axis", [-1, 0])
def test_rgb_with_channel_axis(axis):
    model = _init(nus.UNet(3, 2, base_channels=4, depth=2, upsampling="bilinear"))
    rgb = (np.random.default_rng(1).random((45, 61, 3)) * 255).astype(np.uint8)
    image = rgb if axis == -1 else np.moveaxis(rgb, -1, 0)
    whole = nus.predict(image, model, channel_axis=axis, tile_size=None)
    tiled = nus.predict(image, model, channel_axis=axis, tile_size=16)
    assert whole.shape == (2, 45, 61)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
    if axis == 0:
        np.testing.assert_allclose(whole, nus.predict(rgb, model, channel_axis=-1, tile_size=None), atol=1e-6)


def test_segment_equals_argmax_of_predict_and_is_tiling_invariant(stack):
    model = MODELS["unet-transposed"]()
    probs = nus.predict(stack, model, tile_size=None)
    labels = nus.segment(stack, model, tile_size=32, batch_size=5)
    assert labels.shape == stack.shape and labels.dtype == np.uint8
    disagree = labels != probs.argmax(0)
    # only exact ties could differ; there are none with float probabilities
    assert disagree.sum() == 0


def test_sigmoid_threshold(stack):
    model = MODELS["unetpp"]()
    probs = nus.predict(stack, model, tile_size=None)[0]
    for threshold in (0.3, 0.7):
        labels = nus.segment(stack, model, threshold=threshold, tile_size=48)
        np.testing.assert_array_equal(labels, (probs > threshold).astype(np.uint8))


def test_toy_callable_gives_known_probabilities():
    """Any callable works; with normalization off the result is known exactly."""
    image = np.linspace(-3, 3, 40 * 50, dtype=np.float32).reshape(40, 50)

    def toy(x):
        return torch.cat([x, -x], dim=1)

    probs = nus.predict(image, toy, normalize=None, tile_size=16, halo=0)
    expected = 1 / (1 + np.exp(-2 * image))
    np.testing.assert_allclose(probs[0], expected, atol=1e-6)
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64, bool])
def test_dtypes(dtype):
    model = MODELS["unet-transposed"]()
    image = (np.random.default_rng(0).random((33, 40)) * 100).astype(dtype)
    labels = nus.segment(image, model, tile_size=16)
    assert labels.shape == image.shape and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, nus.segment(image.astype(np.float64), model, tile_size=None))


def test_normalization_is_per_slice_not_per_tile():
    model = MODELS["unet-transposed"]()
    rng = np.random.default_rng(0)
    image = rng.random((2, 64, 64)).astype(np.float32)
    scaled = image.copy()
    scaled[1] = scaled[1] * 50 + 7  # per-slice percentile normalization removes an affine change
    a = nus.predict(image, model, tile_size=16)
    b = nus.predict(scaled, model, tile_size=16)
    np.testing.assert_allclose(a[:, 1], b[:, 1], atol=1e-4)


def test_stored_normalization_wins_over_default():
    model = MODELS["unet-transposed"]()
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32) * 255
    model.meta["normalization"] = {"mode": "scale", "divisor": 255.0}
    stored = nus.predict(image, model, tile_size=None)
    explicit = nus.predict(image / 255.0, model, tile_size=None, normalize=None)
    np.testing.assert_allclose(stored, explicit, atol=1e-5)
    default = nus.predict(image, model, tile_size=None, normalize={"mode": "percentile"})
    assert not np.allclose(default, stored, atol=1e-3)


def test_stack_scope_normalization_uses_one_fit_for_all_slices():
    model = MODELS["unet-transposed"]()
    image = np.random.default_rng(0).random((2, 32, 32)).astype(np.float32)
    image[1] *= 10
    per_stack = nus.predict(image, model, tile_size=None, normalize={"mode": "percentile", "scope": "stack"})
    per_slice = nus.predict(image, model, tile_size=None)
    # expected: one percentile fit over the whole stack, applied to every slice
    from napari_unet_stack.normalization import (
        apply_normalization,
        fit_normalization,
        validate_normalization,
    )

    params = fit_normalization(image[None], validate_normalization({"mode": "percentile", "scope": "stack"}))
    manual = np.stack([apply_normalization(s[None], params)[0] for s in image])
    expected = nus.predict(manual, model, tile_size=None, normalize=None)
    np.testing.assert_allclose(per_stack, expected, atol=1e-5)
    assert not np.allclose(per_stack[:, 1], per_slice[:, 1], atol=1e-3)


def test_nonfinite_pixels():
    """NaN/inf pixels: ignored by normalization, filled before the network; probabilities NaN, labels 0."""
    model = MODELS["unet-transposed"]()
    image = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    bad = image.copy()
    bad[5, 7] = np.nan
    bad[20, 30] = np.inf
    probs = nus.predict(bad, model, tile_size=16)
    assert np.isnan(probs[:, 5, 7]).all() and np.isnan(probs[:, 20, 30]).all()
    assert np.isfinite(np.delete(probs.reshape(3, -1), [5 * 40 + 7, 20 * 40 + 30], axis=1)).all()
    labels = nus.segment(bad, model, tile_size=16)
    assert labels[5, 7] == 0 and labels[20, 30] == 0


def test_valid_model_uses_overlap_tile_strategy(stack):
    model = MODELS["unet-valid"]()
    info = {}
    out = nus.predict(stack[0], model, tile_size=40, info=info)
    assert out.shape == (2, *stack.shape[1:])
    assert info["halo"] == 0 and info["window_shape"][0] == model.input_size_for(40)


def test_instances_and_min_size():
    class Threshold(SegmentationNetwork):
        in_channels, out_channels, depth = 1, 1, 1

        def _reach(self):
            return 0

        def forward(self, x):
            return (x - 0.5) * 100

    image = np.zeros((2, 30, 30), np.float32)
    image[:, 2:8, 2:8] = 1
    image[:, 20:28, 20:28] = 1
    image[:, 15, 15] = 1  # one-pixel speck
    labels = nus.segment(image, Threshold(), normalize=None, instances=True, min_size=3)
    assert labels.dtype == np.uint8
    # 3D connectivity over Z by default: each square is one object through both slices
    assert set(np.unique(labels)) == {0, 1, 2}
    assert labels[0, 3, 3] == labels[1, 3, 3] != labels[0, 21, 21]
    assert labels[0, 15, 15] == 0
    per_slice = nus.segment(image, Threshold(), normalize=None, instances=True, instance_ndim=2)
    assert len(np.unique(per_slice)) == 1 + 3 * 2


def test_class_values_map_labels():
    model = MODELS["unet-bilinear"]()
    model.meta["class_values"] = [0, 255]
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    labels = nus.segment(image, model, tile_size=None)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 255}


def test_progress_and_out(stack):
    model = MODELS["unet-transposed"]()
    calls = []
    out = np.zeros(stack.shape, np.uint16)
    result = nus.segment(stack, model, tile_size=32, batch_size=2, progress=lambda d, t: calls.append((d, t)), out=out)
    assert result is out and len(np.unique(out)) >= 2  # not trivially empty
    np.testing.assert_array_equal(out, nus.segment(stack, model, tile_size=None))
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and calls[-1][0] == calls[-1][1] == 2 * 3 * 5


def test_generator_reports_finished_slices(stack):
    model = MODELS["unet-transposed"]()
    gen = nus.iter_segment(stack, model, tile_size=32, batch_size=4)
    finished = []
    try:
        while True:
            finished.extend(next(gen).slices)
    except StopIteration as stop:
        labels = stop.value
    assert finished == [(0,), (1,)]
    assert labels.shape == stack.shape


def test_cancel_between_batches(stack):
    model = MODELS["unet-transposed"]()
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        cancel.set()

    out = np.zeros(stack.shape, np.uint8)
    with pytest.raises(nus.InferenceCancelled):
        nus.segment(stack, model, tile_size=32, batch_size=2, progress=progress, cancel=cancel, out=out)
    assert seen == [2]  # stopped right after the first batch


class FlakyMemory(SegmentationNetwork):
    """Simulates a device that runs out of memory above a batch size or a window size."""

    def __init__(self, inner, max_batch=1, max_window=10**9):
        super().__init__()
        self.inner, self.max_batch, self.max_window = inner, max_batch, max_window
        self.in_channels, self.out_channels, self.depth = inner.in_channels, inner.out_channels, inner.depth
        self.failures = 0

    def _reach(self):
        return self.inner.reach

    def forward(self, x):
        if x.shape[0] > self.max_batch or x.shape[-1] > self.max_window:
            self.failures += 1
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.inner(x)


def test_out_of_memory_halves_the_batch_and_keeps_the_result(stack):
    inner = MODELS["unet-transposed"]()
    expected = nus.predict(stack, inner, tile_size=None)
    flaky = FlakyMemory(inner, max_batch=2)
    info = {}
    got = nus.predict(stack, flaky, tile_size=32, batch_size=8, info=info)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert info["oom_retries"] == 2 and info["batch_size"] == 2  # 8 -> 4 -> 2


def test_out_of_memory_at_batch_one_shrinks_tiles(stack):
    inner = MODELS["unet-transposed"]()
    expected = nus.segment(stack, inner, tile_size=None)
    flaky = FlakyMemory(inner, max_batch=1, max_window=64 + 2 * inner.halo)
    info = {}
    got = nus.segment(stack, flaky, tile_size=128, batch_size=1, info=info)
    np.testing.assert_array_equal(got, expected)
    assert info["tile_shape"][1] <= 64


def test_model_state_is_left_alone():
    model = MODELS["unet-transposed"]().train()
    nus.segment(np.zeros((16, 16), np.float32), model, tile_size=None)
    assert model.training
    assert next(model.parameters()).device.type == "cpu"


def test_dask_input_gives_lazy_equal_result(stack):
    da = pytest.importorskip("dask.array")
    model = MODELS["unet-transposed"]()
    lazy = nus.segment(da.from_array(stack, chunks=(1, 40, 64)), model, tile_size=32)
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), nus.segment(stack, model, tile_size=32))
    probs = nus.predict(da.from_array(stack, chunks=(1, 77, 130)), model, tile_size=None)
    np.testing.assert_allclose(probs.compute(), nus.predict(stack, model, tile_size=None), atol=1e-6)


def test_zarr_input_and_output(tmp_path, stack):
    zarr = pytest.importorskip("zarr")
    model = MODELS["unet-transposed"]()
    src = zarr.open(str(tmp_path / "in.zarr"), mode="w", shape=stack.shape, chunks=(1, 77, 130), dtype=stack.dtype)
    src[:] = stack
    dst = zarr.open(str(tmp_path / "out.zarr"), mode="w", shape=stack.shape, chunks=(1, 77, 130), dtype=np.uint8)
    nus.segment(src, model, tile_size=32, out=dst)
    np.testing.assert_array_equal(dst[:], nus.segment(stack, model, tile_size=32))


@pytest.mark.parametrize(
    ("image", "kwargs", "error", "match"),
    [
        (np.zeros((5,)), {}, ValueError, "at least 2 dimensions"),
        (np.zeros((0, 16)), {}, ValueError, "empty"),
        (np.zeros((16, 16), complex), {}, TypeError, "real integer or float"),
        ("not an image", {}, TypeError, "`image` must be an array"),
        (np.zeros((16, 16)), {"channel_axis": 5}, ValueError, "out of range"),
        (np.zeros((16, 16)), {"tile_size": -3}, ValueError, "`tile_size`"),
        (np.zeros((16, 16)), {"tile_size": "big"}, ValueError, "`tile_size`"),
        (np.zeros((16, 16)), {"halo": -1}, ValueError, "`halo`"),
        (np.zeros((16, 16)), {"blend": "average"}, ValueError, "`blend`"),
        (np.zeros((16, 16)), {"pad_mode": "wrap"}, ValueError, "`pad_mode`"),
        (np.zeros((16, 16)), {"batch_size": 0}, ValueError, "`batch_size`"),
        (np.zeros((16, 16)), {"precision": "int8"}, ValueError, "`precision`"),
        (np.zeros((16, 16)), {"device": "tpu"}, ValueError, "`device`"),
        (np.zeros((16, 16)), {"normalize": {"mode": "percentile", "low": 50, "high": 10}}, ValueError, "percentiles"),
        (np.zeros((16, 16)), {"out": np.zeros((3, 3), np.uint8)}, ValueError, "`out` must have shape"),
        (np.zeros((16, 16)), {"threshold": 2}, ValueError, "`threshold`"),
    ],
)
def test_bad_input_gets_a_clear_error(image, kwargs, error, match):
    model = MODELS["unet-transposed"]()
    with pytest.raises(error, match=match):
        nus.segment(image, model, **kwargs)


def test_wrong_channel_count_names_both():
    model = _init(nus.UNet(3, 2, base_channels=4, depth=2))
    with pytest.raises(ValueError, match=r"expects 3 input channel\(s\).*has 2"):
        nus.predict(np.zeros((2, 16, 16)), model, channel_axis=0)
    with pytest.raises(ValueError, match="pass channel_axis=-1"):
        nus.predict(np.zeros((16, 16, 3)), model)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_explicit_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        nus.segment(np.zeros((16, 16)), MODELS["unet-transposed"](), device="cuda")


def test_device_is_reported():
    info = {}
    nus.segment(np.zeros((16, 16), np.float32), MODELS["unet-transposed"](), info=info, device="cpu")
    assert info["device"] == "cpu" and info["precision"] == "float32"


def test_blending_with_small_halo_is_close_but_crop_with_full_halo_is_exact(stack):
    model = MODELS["unet-transposed"]()
    whole = nus.predict(stack, model, tile_size=None)
    blended = nus.predict(stack, model, tile_size=32, halo=16, blend="gaussian")
    assert blended.shape == whole.shape
    assert np.abs(blended - whole).max() < 0.2
    np.testing.assert_allclose(blended.sum(0), 1, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_close_to_cpu(stack):  # pragma: no cover - runs on the GPU machine only
    model = MODELS["unet-transposed"]()
    cpu = nus.predict(stack, model, tile_size=None, device="cpu")
    gpu32 = nus.predict(stack, model, tile_size=32, device="cuda", precision="float32")
    np.testing.assert_allclose(gpu32, cpu, atol=1e-3)
    info = {}
    gpu = nus.segment(stack, model, tile_size=32, device="cuda", info=info)
    assert info["precision"] in ("bfloat16", "float16")
    assert (gpu == cpu.argmax(0)).mean() > 0.98


def test_engine_matches_the_bare_network_forward():
    """The engine's (BatchNorm-folded, device-copied) network gives the model's own softmax."""
    model = MODELS["unet-transposed"]()
    image = np.random.default_rng(5).standard_normal((64, 96)).astype(np.float32)
    probs = nus.predict(image, model, normalize=None, tile_size=None, halo=0, pad_mode="constant")
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(image)[None, None]), dim=1)[0].numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_multilabel_sigmoid_model_segments():
    """A sigmoid model with several channels: the most probable channel above the threshold,
    numbered from 1 (background 0), as `probabilities_to_classes` documents."""
    from napari_unet_stack.postprocess import probabilities_to_classes

    model = _init(nus.UNet(1, 3, base_channels=4, depth=2))
    model.activation = "sigmoid"
    image = np.random.default_rng(6).random((2, 40, 52)).astype(np.float32)
    probs = nus.predict(image, model, tile_size=None)
    for threshold in (0.3, 0.6):
        labels = nus.segment(image, model, threshold=threshold, tile_size=16, batch_size=3)
        np.testing.assert_array_equal(labels, probabilities_to_classes(probs, "sigmoid", threshold))
        assert labels.max() <= 3
    model.meta["class_values"] = [10, 20, 30]  # one per channel; background stays 0
    labels = nus.segment(image, model, threshold=0.3, tile_size=None)
    assert set(np.unique(labels)) <= {0, 10, 20, 30}


def test_changing_the_unetpp_head_after_a_run_is_honoured():
    model = MODELS["unetpp"]()
    image = np.random.default_rng(7).random((48, 48)).astype(np.float32)
    accurate = nus.predict(image, model, tile_size=None)
    model.head = 1
    fast = nus.predict(image, model, tile_size=None)
    assert np.abs(accurate - fast).max() > 1e-3
    model.head = "accurate"
    np.testing.assert_allclose(nus.predict(image, model, tile_size=None), accurate, atol=1e-6)


def test_weights_changed_in_place_are_used():
    model = MODELS["unet-transposed"]()
    image = np.random.default_rng(8).random((32, 32)).astype(np.float32)
    before = nus.predict(image, model, tile_size=None)
    with torch.no_grad():
        model.head.weight.mul_(-1)  # e.g. an optimizer step
    after = nus.predict(image, model, tile_size=None)
    assert np.abs(before - after).max() > 1e-3


def test_inference_mode_is_not_held_across_yields(stack):
    """The generator may be resumed or closed from another thread (napari workers):
    between events no torch inference mode is left on in the caller's thread."""
    model = MODELS["unet-transposed"]()
    gen = nus.iter_segment(stack, model, tile_size=32, batch_size=2)
    for _ in range(3):
        next(gen)
        assert not torch.is_inference_mode_enabled()
    closer = threading.Thread(target=gen.close)
    closer.start()
    closer.join()
    assert not torch.is_inference_mode_enabled()
    # and a tensor made now can take part in autograd
    assert (torch.ones(2, requires_grad=True) * 2).sum().requires_grad


def test_callable_with_many_classes_gets_a_wide_enough_dtype():
    """A plain callable's class count is probed, so 300 classes do not wrap in uint8."""
    image = np.zeros((32, 32), np.float32)

    def many(x):
        logits = torch.zeros(x.shape[0], 300, *x.shape[-2:])
        logits[:, 280] = 5.0
        return logits

    labels = nus.segment(image, many, normalize=None, tile_size=None, halo=0)
    assert labels.dtype == np.uint16
    assert (labels == 280).all()


def test_out_with_a_dtype_that_cannot_hold_the_result_is_refused(stack):
    model = MODELS["unet-transposed"]()
    with pytest.raises(ValueError, match="float dtype"):
        nus.predict(stack, model, out=np.zeros((3, *stack.shape), np.int32))
    with pytest.raises(ValueError, match="holds uint8"):
        nus.segment(stack, model, out=np.zeros(stack.shape, np.int8))
    out = np.zeros(stack.shape, np.int16)  # wider signed is fine
    nus.segment(stack, model, out=out, tile_size=None)
    np.testing.assert_array_equal(out, nus.segment(stack, model, tile_size=None))


def test_unetpp_fast_head_is_cheaper_end_to_end():
    """The engine honours the head: a pruned head costs fewer FLOPs through predict."""
    from torch.utils.flop_counter import FlopCounterMode

    model = _init(nus.NestedUNet(1, 2, base_channels=4, depth=3, deep_supervision=True))
    image = np.random.default_rng(9).random((2, 40, 40)).astype(np.float32)
    flops = {}
    for head in ("accurate", 1):
        model.head = head
        counter = FlopCounterMode(display=False)
        with counter:
            nus.predict(image, model, tile_size=None, device="cpu")
        flops[head] = counter.get_total_flops()
    assert 0 < flops[1] < 0.5 * flops["accurate"]
