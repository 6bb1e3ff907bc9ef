"""Z-context (2.5D) models in the widgets: a model of 3 input channels with
``meta["z_context"] = 1`` segments a 1-channel Image layer, reading each slice's neighbours
along Z and never across an axis labelled time (eagerly and lazily, as `segment` with that
``time_axis``); the Train widget's "z context" builds and trains one, passing the layer's
time axes so that training reads the neighbours by the same rule."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from napari_unet_stack import predict, segment
from napari_unet_stack.models import UNet
from napari_unet_stack.napari._layers import channel_axis_for, z_axis_for
from napari_unet_stack.napari._predict_widget import PredictWidget

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def stack():
    from napari_unet_stack.synthetic import nuclei_stack

    return nuclei_stack((4, 48, 64), seed=2).image.astype(np.float32)


@pytest.fixture(scope="module")
def zmodel(stack):
    torch.manual_seed(3)
    model = UNet(3, 2, base_channels=4, depth=2).eval()
    model.meta["z_context"] = 1
    p = predict(stack, model, device="cpu")[1]  # a bias that makes a quarter of the pixels foreground
    t = float(np.clip(np.quantile(p, 0.75), 1e-4, 1 - 1e-4))
    with torch.no_grad():
        model.head.bias[1] -= float(np.log(t / (1 - t)))
    return model


def _by_hand(stack, model):
    """Labels of each slice fed to the same network as a plain 2D model of the 3 channels
    z-1, z, z+1 (ends repeated): the z-context rule computed here, without it."""
    plain = copy.deepcopy(model)
    del plain.meta["z_context"]
    n = len(stack)
    return np.stack([segment(np.stack([stack[max(z - 1, 0)], stack[z], stack[min(z + 1, n - 1)]]), plain,
                             channel_axis=0, device="cpu") for z in range(n)])


def _widget(make_napari_viewer, registered, data, model, labels=None):
    viewer = make_napari_viewer()
    layer = viewer.add_image(data, name="img", **({} if labels is None else {"axis_labels": labels}))
    widget = PredictWidget(viewer)
    widget.model.value = registered(model, "z1")
    widget.image.value = layer
    widget.device.value = "cpu"
    return viewer, layer, widget


def test_a_zyx_layer_is_segmented_as_segment_does(make_napari_viewer, registered, stack, zmodel):
    viewer, _layer, widget = _widget(make_napari_viewer, registered, stack, zmodel)
    assert widget.channel_axis.value is None and not widget.channel.enabled  # 1 image channel per slice
    assert widget.run(wait=True) is not None, widget.status.value
    labels = viewer.layers["img labels"].data
    expected = segment(stack, zmodel, device="cpu")
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(labels, _by_hand(stack, zmodel))
    assert (segment(stack, zmodel, device="cpu", z_axis=None) != expected).any()  # the neighbours matter


@pytest.mark.parametrize(("labels", "order", "time", "lazy"), [
    (("z", "time", "y", "x"), (1, 0), 1, False),  # time last: the default Z would be it
    pytest.param(("t", "z", "y", "x"), (0, 1), 0, False, marks=pytest.mark.slow),  # time first
    pytest.param(("t", "z", "y", "x"), (0, 1), 0, True, marks=pytest.mark.slow),
    pytest.param(("z", "time", "y", "x"), (1, 0), 1, True, marks=pytest.mark.slow),
])
def test_a_time_axis_is_never_read_across(make_napari_viewer, registered, stack, zmodel, labels, order, time, lazy):
    tzyx = np.stack([stack, stack[::-1]])
    data = np.transpose(tzyx, (*order, 2, 3))
    viewer, layer, widget = _widget(make_napari_viewer, registered, data, zmodel, labels)
    assert z_axis_for(layer, None, widget.decoding.chosen_time_axes()) == 1 - time
    widget.lazy.value = lazy
    widget.instances.value = False
    widget.run(wait=True)
    assert widget.status.value.startswith("img"), widget.status.value
    result = np.asarray(viewer.layers["img labels"].data)
    expected = segment(data, zmodel, device="cpu", time_axis=time)
    np.testing.assert_array_equal(result, expected)
    by_hand = np.stack([_by_hand(tzyx[t], zmodel) for t in range(2)])
    np.testing.assert_array_equal(result, np.transpose(by_hand, (*order, 2, 3)))
    if time == 1:
        assert (segment(data, zmodel, device="cpu") != expected).any()  # read across time it differs


@pytest.mark.slow
def test_a_layer_of_time_only_reads_each_slice_alone(make_napari_viewer, registered, stack, zmodel):
    viewer, layer, widget = _widget(make_napari_viewer, registered, stack, zmodel, ("t", "y", "x"))
    assert z_axis_for(layer, None, widget.decoding.chosen_time_axes()) is None
    widget.run(wait=True)
    expected = np.stack([segment(s, zmodel, device="cpu") for s in stack])  # 2D images: their own neighbours
    np.testing.assert_array_equal(viewer.layers["img labels"].data, expected)
    assert (segment(stack, zmodel, device="cpu") != expected).any()


@pytest.mark.slow
def test_channels_are_counted_per_slice(make_napari_viewer, registered, stack, zmodel):
    two = UNet(6, 2, base_channels=4, depth=2).eval()  # 2 image channels, z context 1
    two.meta["z_context"] = 1
    zc = np.stack([stack, stack[::-1]], axis=1)  # Z, C, Y, X
    viewer, layer, widget = _widget(make_napari_viewer, registered, zc, two)
    assert channel_axis_for(layer, 2) == 1 and widget.channel_axis.value == 1  # chosen for the 2 channels
    widget.run(wait=True)
    np.testing.assert_array_equal(viewer.layers["img labels"].data, segment(zc, two, channel_axis=1, device="cpu"))
    widget.channel_axis.value = None
    assert widget.run(wait=True) is None
    assert "expects 2 input channel(s) per slice (z context 1: 3 slices in)" in widget.status.value
    widget.set_model(zmodel)  # 1 channel per slice: offers a channel of the 2, or their mean
    widget.channel_axis.value = 1
    assert widget.channel.enabled and "mean" in widget.channel.choices
    widget.channel.value = 1
    widget.run(wait=True)
    np.testing.assert_array_equal(viewer.layers["img labels"].data, segment(zc[:, 1], zmodel, device="cpu"))


@pytest.mark.slow
def test_train_widget_z_context_trains_a_z_context_model(make_napari_viewer, stack):
    from napari_unet_stack.napari._registry import USER_MODELS
    from napari_unet_stack.napari._train_widget import TrainWidget

    viewer = make_napari_viewer()
    image = viewer.add_image(stack, name="img")
    painted = viewer.add_labels((stack > np.median(stack)).astype(np.uint8), name="painted")
    train = TrainWidget(viewer)
    assert train.z_context.value == 0  # a 2D model by default
    train.image.value, train.annotations.value = image, painted
    train.base_channels.value, train.depth.value = 4, 2
    train.patch_size.value, train.batch_size.value, train.steps.value = 32, 2, 2
    train.device.value = "cpu"
    train.z_context.value = 1
    try:
        assert train.train(wait=True) is not None
        model = train.model
        assert model is not None, train.status.value
        assert model.in_channels == 3 and model.meta["z_context"] == 1 and train.model_name.endswith("z1")
        predict_widget = PredictWidget(viewer)
        predict_widget.model.value = ("user", train.model_name)
        predict_widget.image.value, predict_widget.device.value = image, "cpu"
        predict_widget.run(wait=True)
        np.testing.assert_array_equal(viewer.layers["img labels"].data, segment(stack, model, device="cpu"))
        image.axis_labels = ("time", "y", "x")  # no Z now: each slice is its own neighbour, as Predict reads it
        assert train._prepare().options["time_axis"] == (0,)
        assert train.train(wait=True) is not None
        assert train.model is not model and train.model.meta["z_context"] == 1, train.status.value
    finally:
        for name in [n for n in USER_MODELS.names() if n.endswith("z1")]:
            USER_MODELS.remove(name)


@pytest.mark.parametrize(("labels", "time_axis"), [
    (("z", "t", "y", "x"), (1,)),  # the others are slow: ~1 s each in the quick loop
    pytest.param(("t", "z", "y", "x"), (0,), marks=pytest.mark.slow),
    pytest.param(("t", "y", "x"), (0,), marks=pytest.mark.slow),
    pytest.param(("z", "y", "x"), (), marks=pytest.mark.slow),
])
def test_train_widget_passes_the_layers_time_axes(make_napari_viewer, labels, time_axis):
    """The job's options give `train` the axes labelled time; the slices it then prepares
    hold their neighbours along the axis labelled z, built here by hand."""
    from napari_unet_stack.napari._train_widget import TrainWidget
    from napari_unet_stack.training.data import prepare_data

    rng = np.random.default_rng(5)
    data = rng.random((3, 2, 24, 24)[-len(labels):]).astype(np.float32)
    mask = np.zeros(data.shape, np.uint8)
    mask[..., 4:12, 4:12] = 1
    viewer = make_napari_viewer()
    image, painted = viewer.add_image(data, name="img", axis_labels=labels), viewer.add_labels(mask, name="mask")
    train = TrainWidget(viewer)
    train.image.value, train.annotations.value = image, painted
    train.z_context.value = 1
    job = train._prepare()
    assert job.options["time_axis"] == time_axis and job.model.meta["z_context"] == 1
    norm = {"mode": "percentile", "low": 1.0, "high": 99.8, "scope": "slice"}
    prepared = prepare_data(job.image, job.labels, normalization=norm, z_context=1,
                            time_axes=job.options["time_axis"])

    def normalized(plane):
        lo, hi = np.percentile(plane.astype(np.float64), [1.0, 99.8])
        return ((plane - lo) / (hi - lo)).astype(np.float32)

    z = list(labels).index("z") if "z" in labels else None
    assert len(prepared.slices) == int(np.prod(data.shape[:-2]))
    for s in prepared.slices:
        lead, want = s.source[1], []
        for d in (-1, 0, 1):
            at = list(lead)
            if z is not None:
                at[z] = min(max(lead[z] + d, 0), data.shape[z] - 1)
            want.append(normalized(data[tuple(at)]))
        np.testing.assert_allclose(s.image, np.stack(want), atol=1e-5)
