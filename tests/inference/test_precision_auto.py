"""``precision="auto"`` on the CPU: bfloat16 where a probe shows it keeps the labels (at
least 99.9% of float32's), float32 elsewhere, decided once per model and weights."""

import numpy as np
import pytest
import torch

import napari_unet_stack as nus
from napari_unet_stack.devices import cpu_native_bf16
from napari_unet_stack.inference import precision

needs_bf16 = pytest.mark.skipif(not cpu_native_bf16(), reason="this CPU has no native bfloat16")
pytestmark = pytest.mark.filterwarnings("ignore:model geometry unknown")
CALLS = []  # forward calls of every Counting (the engine runs a copy of the model)


class Counting(torch.nn.Module):
    """A 1x1 convolution with large logits (-8, 8) x (x - 0.5): bfloat16 keeps its labels
    except within ~0.002 of x = 0.5. Counts its forward calls in `CALLS`."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([-16.0, 16.0]).view(2, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([8.0, -8.0]))

    def forward(self, x):
        CALLS.append(1)
        return self.conv(x)


def two_phase(seed=0, shape=(96, 80)):
    """Bright blobs on a dark ground, far from the 0.5 decision level after normalization."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    blobs = (np.sin(yy / 7.0) * np.cos(xx / 5.0)) > 0.2
    return (np.where(blobs, 0.9, 0.1) + rng.normal(0, 0.02, shape)).astype(np.float32)


def agreement(model, image):
    a = nus.segment(image, model, device="cpu", precision="float32", normalization=None)
    b = nus.segment(image, model, device="cpu", precision="bfloat16", normalization=None)
    return np.mean(a == b)


@needs_bf16
def test_bf16_where_it_keeps_the_labels_and_the_choice_is_kept_per_weights():
    model, image = Counting(), two_phase()
    assert agreement(model, image) >= 0.999  # checked independently of the probe
    info = {}
    nus.segment(image, model, device="cpu", normalization=None, info=info)
    assert info["precision"] == "bfloat16" and "kept" in info["precision_reason"]
    calls = len(CALLS)
    nus.segment(image, model, device="cpu", normalization=None, info=info)
    per_run = info["n_tiles"] + 1  # its tiles and the class-count forward of a plain callable
    assert len(CALLS) - calls == per_run  # decided: no bf16 probe this time
    with torch.no_grad():
        model.conv.bias.add_(0.0)  # weights modified in place (an optimizer step): probed again
    calls = len(CALLS)
    nus.segment(image, model, device="cpu", normalization=None, info=info)
    assert len(CALLS) - calls == per_run + 2  # the probe's float32 and bfloat16 forwards


@needs_bf16
@pytest.mark.parametrize("name", ["unet-transposed", "unet-valid"])
def test_float32_where_bf16_loses_labels(name, stack, nets):
    model = nets.MODELS[name]()
    assert agreement(model, stack[0]) < 0.999  # these lively random nets have flat logits
    info = {}
    whole = nus.predict(stack[0], model, device="cpu", normalization=None, tile_size=None, border=0, info=info)
    assert info["precision"] == "float32" and "needs >= 99.9%" in info["precision_reason"]
    reference = nus.predict(stack[0], model, device="cpu", normalization=None, tile_size=None, border=0,
                            precision="float32")
    np.testing.assert_array_equal(whole, reference)


@needs_bf16
def test_probabilities_that_move_keep_float32(monkeypatch):
    """Kept labels are not enough: bf16 must also leave the probabilities (nearly) alone."""
    model, image = Counting(), two_phase()
    monkeypatch.setattr(precision, "PROB_CHANGE", 0.0)  # Counting's bf16 probabilities move a little
    info = {}
    nus.segment(image, model, device="cpu", normalization=None, info=info)
    assert info["precision"] == "float32" and "probabilities moved" in info["precision_reason"]


@needs_bf16
def test_a_one_class_probe_is_inconclusive_and_not_kept():
    model = Counting()
    info = {}
    nus.segment(np.full((64, 64), 0.1, np.float32), model, device="cpu", normalization=None, info=info)
    assert info["precision"] == "float32" and "inconclusive" in info["precision_reason"]
    nus.segment(two_phase(), model, device="cpu", normalization=None, info=info)
    assert info["precision"] == "bfloat16"


def test_cpus_without_native_bf16_stay_float32(monkeypatch):
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: False)
    info = {}
    nus.segment(two_phase(), Counting(), device="cpu", normalization=None, info=info)
    assert info["precision"] == "float32" and "no native bfloat16" in info["precision_reason"]


@needs_bf16
def test_lazy_dask_result_runs_in_the_precision_decided_once():
    da = pytest.importorskip("dask.array")
    image = np.stack([two_phase(0), two_phase(1)])
    info = {}
    lazy = nus.segment(da.from_array(image, chunks=(1, 96, 80)), Counting(), device="cpu", normalization=None,
                       info=info)
    assert info["precision"] == "bfloat16"
    expected = nus.segment(image, Counting(), device="cpu", normalization=None, precision="bfloat16")
    np.testing.assert_array_equal(lazy.compute(), expected)


@needs_bf16
def test_a_recorded_held_out_check_decides_while_the_weights_match(stack, nets):
    """A model may carry the bf16 check measured on its held-out data (the bundled models
    do): it decides instead of the probe while the weights are the ones it was measured on."""
    model = nets.MODELS["unet-transposed"]()  # its 128 px probe keeps float32 (see above)
    digest = precision.weights_digest(model)
    model.meta.setdefault("provenance", {})["bf16_check"] = {
        "agreement": 0.9995, "prob_change": 0.0004, "data": "a held-out test stack", "weights": digest}
    info = {}
    nus.predict(stack[0], model, device="cpu", normalization=None, info=info)
    assert info["precision"] == "bfloat16" and "a held-out test stack" in info["precision_reason"]
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)  # fine-tuned: the record is for other weights
    assert precision.weights_digest(model) != digest and precision.recorded_check(model) is None
    nus.predict(stack[0], model, device="cpu", normalization=None, info=info)
    assert info["precision"] == "float32" and "128 px probe" in info["precision_reason"]


@needs_bf16
def test_a_recorded_check_below_the_bounds_keeps_float32(stack, nets):
    model = nets.MODELS["unet-transposed"]()
    model.meta.setdefault("provenance", {})["bf16_check"] = {
        "agreement": 0.998, "prob_change": 0.0004, "data": "held-out", "weights": precision.weights_digest(model)}
    info = {}
    nus.predict(stack[0], model, device="cpu", normalization=None, info=info)
    assert info["precision"] == "float32" and "99.800% of the float32 labels of held-out" in info["precision_reason"]


def test_the_weights_digest_names_values_not_objects():
    a = nus.UNet(1, 2, base_channels=4, depth=2)
    b = nus.UNet(1, 2, base_channels=4, depth=2)
    b.load_state_dict(a.state_dict())
    assert precision.weights_digest(a) == precision.weights_digest(b)
    with torch.no_grad():
        next(b.parameters()).add_(1.0)
    assert precision.weights_digest(a) != precision.weights_digest(b)
    assert precision.recorded_check(a) is None  # nothing recorded
