"""The CPU speed rules of issue 13: ``batch_size="auto"`` by the windows' activation bytes
(`cpu_batch`: benchmarks/cpu_batch_rule.md), channels-last where
oneDNN runs it, float32 for ``precision="auto"``, and exact tiling at bfloat16 on the CPU
(skipped where the CPU has no native bfloat16)."""

import numpy as np
import pytest
import torch

import napari_unet_stack as nus
from napari_unet_stack.devices import channels_last_for, cpu_native_bf16, resolve_precision
from napari_unet_stack.inference.plan import activation_bytes_per_pixel, resolve_batch
from napari_unet_stack.inference.spec import model_spec

CPU = torch.device("cpu")
needs_bf16 = pytest.mark.skipif(not cpu_native_bf16(), reason="this CPU has no native bfloat16")


def test_auto_precision_on_the_cpu_stays_float32():
    # bf16 kept the sample's labels but flattens near-constant logits (untrained nets): opt-in only
    assert resolve_precision("auto", CPU) is None
    assert resolve_precision("bf16", CPU) is torch.bfloat16


def _auto(window: int, base: int, deep: bool = False, dtype_bytes: int = 4, budget: int = 2**40) -> int:
    # bytes per pixel written out (14 maps of `base` channels, 12 more for a UNet++'s heads), not
    # taken from `activation_bytes_per_pixel`, so that a change of that estimate shows here
    bpp = (14 + (12 if deep else 0)) * base * dtype_bytes
    return resolve_batch("auto", CPU, budget=budget, window_px=window * window, bpp=bpp)


@pytest.mark.parametrize(
    ("window", "base", "deep", "expected"),
    [
        (288, 8, False, 2),  # the demo's windows (nuclei-unet): batch 2 0.90x / 0.75x of batch 1's time
        (192, 8, False, 8),  # batch 8 0.76x / 0.68x
        (128, 16, False, 8),  # batch 8 0.63x / 0.64x
        (192, 16, False, 4),  # batch 4 0.84x / 0.79x
        (416, 8, False, 1),  # batch 2 0.91x / 1.03x (the runs disagree), batch 8 1.28x / 1.45x
        (544, 16, False, 1),  # the old cap's case (512 x 512 slices): batch 2 1.24x / 1.40x
        (704, 8, False, 1),  # batch 2 1.01x / 1.20x, batch 4 1.51x / 1.66x
        (416, 8, True, 1),  # UNet++ base 8: batch 2 0.93x / 1.19x, batch 8 1.44x / 2.14x
        (192, 8, True, 4),  # UNet++ base 8: batch 4 0.91x / 0.81x
    ],
)
def test_auto_batch_on_the_cpu_follows_the_measured_fastest(window, base, deep, expected):
    """Figures: benchmarks/cpu_batch_rule.md, time per pixel over batch 1's, run B / run A."""
    assert _auto(window, base, deep) == expected


def test_auto_batch_on_the_cpu_is_a_power_of_two_that_shrinks_with_the_window_and_the_width():
    for base in (4, 8, 16, 32, 64):
        sizes = [_auto(w, base) for w in range(64, 1025, 16)]
        assert all(s in (1, 2, 4, 8) for s in sizes)
        assert sizes == sorted(sizes, reverse=True) and sizes[0] >= 2 and sizes[-1] == 1
    assert all(_auto(w, 16) <= _auto(w, 8) for w in range(64, 1025, 16))
    # bfloat16 halves the activation bytes, so twice the windows fit (one power of two up)
    assert _auto(288, 8, dtype_bytes=2) == 4 and _auto(544, 16, dtype_bytes=2) == 1


def test_the_memory_budget_still_caps_the_cpu_batch_and_an_explicit_batch_is_kept():
    window_bytes = 128 * 128 * 14 * 8 * 4
    assert _auto(128, 8) == 8
    assert _auto(128, 8, budget=3 * window_bytes) == 3  # what the budget holds, below the rule's 8
    assert _auto(128, 8, budget=window_bytes // 2) == 1  # never below one window
    for batch in (1, 3, 16):
        assert resolve_batch(batch, CPU, budget=1, window_px=704 * 704, bpp=1e4) == batch
    with pytest.raises(ValueError, match="batch_size"):
        resolve_batch(0, CPU, budget=2**40, window_px=64 * 64, bpp=100.0)


def test_other_devices_keep_their_caps():
    cuda, mps = torch.device("cuda"), torch.device("mps")
    assert resolve_batch("auto", cuda, budget=2**40, window_px=64 * 64, bpp=100.0) == 64
    assert resolve_batch("auto", mps, budget=2**40, window_px=64 * 64, bpp=100.0) == 4
    assert resolve_batch("auto", cuda, budget=10 * 64 * 64 * 100, window_px=64 * 64, bpp=100.0) == 10


def test_channels_last_on_the_cpu_where_onednn_runs():
    assert channels_last_for(CPU) == torch.backends.mkldnn.is_available()


def test_a_cpu_run_reports_float32_and_the_rules_batch(nets):
    # the old rule held the CPU to one window; tiny windows now batch (the rule's choice for
    # this network's own width and window, cross-checked against a fixed figure); 9 slices:
    # a forward of 8 windows, then 1 (info["batch_size"] is the most one forward took)
    model, info = nets.MODELS["unet-transposed"](), {}
    nus.segment(np.zeros((9, 32, 32), np.float32), model, device="cpu", info=info)
    window_px = info["window_shape"][0] * info["window_shape"][1]
    expected = resolve_batch("auto", CPU, 2**40, window_px, activation_bytes_per_pixel(model_spec(model), 4))
    assert info["precision"] == "float32" and info["batch_size"] == expected == 8


@needs_bf16
@pytest.mark.parametrize(
    "name", ["unet-transposed", "unet-bilinear", "unet-depth4", "unetpp", "unetpp-fast", "unet-valid",
             "unet-valid-bilinear"]
)
def test_tiled_equals_whole_slice_at_bf16_on_the_cpu(name, stack, nets):
    model = nets.MODELS[name]()
    whole = nus.predict(stack, model, tile_size=None, device="cpu", precision="bfloat16", border="reach")
    info = {}
    tiled = nus.predict(stack, model, tile_size=(32, 48), batch_size=3, device="cpu", precision="bfloat16",
                        border="reach", info=info)
    assert info["precision"] == "bfloat16" and info["n_tiles"] > 2 * 2 and info["exact"]
    np.testing.assert_allclose(tiled, whole, atol=1e-4, rtol=0)


@needs_bf16
@pytest.mark.slow
@pytest.mark.parametrize("name", ["nuclei-unet", "nuclei-unet-z", "nuclei-unetpp"])
def test_auto_uses_bf16_for_a_bundled_model_exactly_when_it_keeps_the_held_out_labels(name):
    """Measured here over the whole held-out stack (class agreement and mean probability
    change of bf16 against float32): ``precision="auto"`` must choose bf16 exactly when
    both bounds of issue 13's rule hold (today's 3-class models keep ~99.8-99.9% of their
    classes: float32)."""
    from napari_unet_stack.inference.precision import AGREEMENT, PROB_CHANGE

    sample = nus.load_sample("nuclei_stack")
    model = nus.load_model(name)
    bf16 = nus.predict(sample.image, model, device="cpu", precision="bfloat16")
    fp32 = nus.predict(sample.image, model, device="cpu", precision="float32")
    keeps = (np.mean(bf16.argmax(0) == fp32.argmax(0)) >= AGREEMENT
             and np.abs(bf16 - fp32).max(axis=0).mean() <= PROB_CHANGE)
    info = {}
    nus.segment(sample.image[:2], model, device="cpu", info=info)
    assert info["precision"] == ("bfloat16" if keeps else "float32"), info["precision_reason"]
