"""Layer helpers without a viewer: the re-threshold store (against `segment`), geometry of results."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from napari_unet_stack import iter_predict, segment
from napari_unet_stack.labels import LabelRule
from napari_unet_stack.napari._layers import (
    image_input,
    leading_axes,
    output_geometry,
    spatial_shape,
    time_axes,
)
from napari_unet_stack.napari._store import ProbabilityStore


def _tiny(n_classes: int, activation: str | None = None, class_values=None, seed: int = 0):
    """A small UNet with random weights (probabilities spread around the thresholds)."""
    from napari_unet_stack import UNet

    torch.manual_seed(seed)
    model = UNet(1, n_classes, base_channels=4, depth=1)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # wider logits: pixels on both sides of every threshold
    if activation is not None:
        model.activation = activation
    if class_values is not None:
        model.meta["class_values"] = class_values
    return model.eval()


MODELS = {
    "sigmoid [5, 9]": lambda: _tiny(2, "sigmoid", [5, 9]),
    "softmax 3": lambda: _tiny(3),
    "sigmoid 1": lambda: _tiny(1, seed=1),
}


@pytest.mark.parametrize("kind", [pytest.param(kind, marks=() if kind == "sigmoid [5, 9]" else pytest.mark.slow)
                                  for kind in MODELS])
def test_store_labels_equal_segment_at_every_threshold(kind):
    """The store fed by `iter_predict` (as the widget does) gives `segment`'s labels, at the
    first threshold and after relabelling."""
    model = MODELS[kind]()
    image = np.random.default_rng(3).random((3, 40, 48)).astype(np.float32)
    store = ProbabilityStore.for_model((3, 40, 48), model, threshold=0.5)
    store.labels = store.new_labels()
    assert store.shape == (model.out_channels, 3, 40, 48) and store.dtype == np.float32
    for _event in iter_predict(image, model, out=store, device="cpu"):
        pass
    assert store.foreground.dtype == np.float32  # P(foreground) itself, not bytes
    expected = segment(image, model, device="cpu")
    np.testing.assert_array_equal(store.labels, expected)
    assert store.labels.dtype == expected.dtype
    if kind == "sigmoid [5, 9]":
        assert set(np.unique(store.labels)) <= {0, 5, 9} and {5, 9} <= set(np.unique(store.labels))
    for t in (0.3, 0.71, 0.5):
        store.relabel(t)
        np.testing.assert_array_equal(store.labels, segment(image, model, threshold=t, device="cpu"))
    probability = store.probability()
    assert probability.dtype == np.uint8 and probability.shape == (3, 40, 48)


def test_multiclass_softmax_with_class_values():
    # (4, 1, 2) probabilities worked out by hand: P(fg) = 0.9 (class 3) and 0.3 (class 1)
    probs = np.array([[[0.1, 0.7]], [[0.2, 0.2]], [[0.3, 0.05]], [[0.4, 0.05]]], np.float32)
    store = ProbabilityStore((1, 2), LabelRule.of(4, "softmax", [0, 10, 20, 300]))
    assert store.labels_dtype == np.uint16
    labels = store.new_labels()
    store.labels = labels
    store[(slice(None),)] = probs  # a 2D image: no leading index
    np.testing.assert_array_equal(labels, [[300, 0]])
    store.relabel(0.25)
    np.testing.assert_array_equal(labels, [[300, 10]])


def test_multilabel_sigmoid_numbers_channels_from_one():
    probs = np.zeros((2, 1, 4, 4), np.float32)
    probs[0, 0, 0, 0] = 0.9
    probs[1, 0, 1, 1] = 0.8
    store = ProbabilityStore((1, 4, 4), LabelRule.of(2, "sigmoid"), labels=np.zeros((1, 4, 4), np.uint8))
    store[(slice(None), 0)] = probs[:, 0]
    assert store.labels[0, 0, 0] == 1 and store.labels[0, 1, 1] == 2 and store.labels.sum() == 3


def test_nan_probabilities_are_background():
    probs = np.full((1, 4, 4), np.nan, np.float32)
    store = ProbabilityStore((4, 4), LabelRule.of(1), labels=np.zeros((4, 4), np.uint8))
    store[(slice(None),)] = probs
    assert not store.labels.any() and not store.foreground.any()


def test_geometry_drops_the_channel_axis():
    layer = SimpleNamespace(ndim=4, rgb=False, scale=(5.0, 1.0, 0.5, 0.25), translate=(1.0, 0.0, 2.0, 3.0),
                            axis_labels=("z", "c", "y", "x"), units=("um", "", "um", "um"),
                            data=np.zeros((2, 3, 8, 8)), multiscale=False)
    geo = output_geometry(layer, 1)
    assert geo["scale"] == [5.0, 0.5, 0.25] and geo["translate"] == [1.0, 2.0, 3.0]
    assert geo["axis_labels"] == ["z", "y", "x"]
    assert image_input(layer, -3) == (layer.data, 1)
    assert spatial_shape(layer.data.shape, 1) == (2, 8, 8)
    rgb = SimpleNamespace(ndim=2, rgb=True, scale=(0.5, 0.5), translate=(0.0, 0.0), data=np.zeros((8, 8, 3)),
                          multiscale=False)
    assert output_geometry(rgb, -1)["scale"] == [0.5, 0.5]  # napari already leaves colour out
    assert image_input(rgb, None)[1] == -1
    with pytest.raises(ValueError, match="out of range"):
        image_input(layer, 4)


def _layer(shape, labels, rgb=False):
    return SimpleNamespace(ndim=len(labels), rgb=rgb, scale=(1.0,) * len(labels), axis_labels=labels,
                           data=np.zeros(shape, np.uint8), multiscale=False)


@pytest.mark.parametrize(("shape", "labels", "channel_axis", "leading", "times"), [
    ((3, 8, 8), ("t", "y", "x"), None, [(0, "t")], (0,)),
    ((2, 3, 8, 8), ("T", "z", "y", "x"), None, [(0, "T"), (1, "z")], (0,)),
    ((2, 3, 8, 8), ("z", "Time", "y", "x"), None, [(0, "z"), (1, "Time")], (1,)),  # time second
    ((3, 2, 8, 8), ("t", "c", "y", "x"), 1, [(0, "t")], (0,)),  # the channel axis is no leading axis
    ((2, 3, 8, 8), ("c", "t", "y", "x"), 0, [(1, "t")], (1,)),  # numbered as the image's axes
    ((2, 8, 8, 3), ("t", "y", "x"), None, [(0, "t")], (0,)),  # RGB: napari's labels leave colour out
    ((2, 3, 8, 8), ("-4", "-3", "-2", "-1"), None, [(0, "-4"), (1, "-3")], ()),  # napari's default labels
    ((8, 8), ("t", "x"), None, [], ()),  # Y, X are never time
])
def test_time_axes_of_a_layer_are_its_leading_axes_labelled_time(shape, labels, channel_axis, leading, times):
    """The axes `segment(time_axis=...)` takes: labelled t or time, numbered as the image's axes."""
    layer = _layer(shape, labels, rgb=len(shape) > len(labels))
    assert leading_axes(layer, channel_axis) == leading
    assert time_axes(layer, channel_axis) == times
