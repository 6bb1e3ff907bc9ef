"""Layer helpers without a viewer: probability store, re-thresholding, geometry of results."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_unet_stack.napari._layers import (
    ProbabilityStore,
    image_input,
    output_geometry,
    spatial_shape,
)
from napari_unet_stack.postprocess import probabilities_to_classes


def _feed(store, probs):
    """Write (K, *lead, Y, X) probabilities slice by slice, as the engine does."""
    lead_shape = probs.shape[1:-2]
    for lead in np.ndindex(*lead_shape):
        store[(slice(None), *lead)] = probs[(slice(None), *lead)]


def _softmax(rng, k, shape):
    z = rng.normal(size=(k, *shape)) * 3
    e = np.exp(z - z.max(axis=0))
    return (e / e.sum(axis=0)).astype(np.float32)


def test_sigmoid_store_matches_thresholding_and_rethresholds():
    rng = np.random.default_rng(0)
    probs = rng.random((1, 3, 20, 24)).astype(np.float32)
    labels = np.zeros((3, 20, 24), np.uint8)
    store = ProbabilityStore((3, 20, 24), 1, "sigmoid", labels=labels)
    assert store.shape == (1, 3, 20, 24) and store.dtype == np.float32
    _feed(store, probs)
    q = np.rint(probs[0] * 255)
    np.testing.assert_array_equal(labels, q > 127.5)
    assert store.foreground.dtype == np.uint8 and store.classes is None  # one byte per pixel
    store.relabel(0.8)
    np.testing.assert_array_equal(labels, q > 0.8 * 255)


def test_two_class_softmax_at_half_is_the_argmax():
    rng = np.random.default_rng(1)
    probs = _softmax(rng, 2, (2, 16, 16))
    # keep away from the quantization step around 0.5
    probs[1] = np.where(np.abs(probs[1] - 0.5) < 0.01, 0.9, probs[1])
    probs[0] = 1 - probs[1]
    store = ProbabilityStore((2, 16, 16), 2, "softmax", labels=np.zeros((2, 16, 16), np.uint8))
    _feed(store, probs)
    np.testing.assert_array_equal(store.labels, probabilities_to_classes(probs, "softmax"))


def test_multiclass_softmax_with_class_values():
    rng = np.random.default_rng(2)
    probs = _softmax(rng, 4, (32, 32))
    store = ProbabilityStore((32, 32), 4, "softmax", class_values=[0, 10, 20, 300])
    assert store.labels_dtype == np.uint16
    labels = store.new_labels()
    store.labels = labels
    store[(slice(None),)] = probs  # a 2D image: no leading index
    fg = np.rint((1 - probs[0]) * 255) > 127.5
    best = np.argmax(probs[1:], axis=0) + 1
    np.testing.assert_array_equal(labels, np.where(fg, np.array([0, 10, 20, 300])[best], 0))


def test_multilabel_sigmoid_numbers_channels_from_one():
    probs = np.zeros((2, 1, 4, 4), np.float32)
    probs[0, 0, 0, 0] = 0.9
    probs[1, 0, 1, 1] = 0.8
    store = ProbabilityStore((1, 4, 4), 2, "sigmoid", labels=np.zeros((1, 4, 4), np.uint8))
    _feed(store, probs)
    assert store.labels[0, 0, 0] == 1 and store.labels[0, 1, 1] == 2 and store.labels.sum() == 3


def test_nan_probabilities_are_background():
    probs = np.full((1, 4, 4), np.nan, np.float32)
    store = ProbabilityStore((4, 4), 1, "sigmoid", labels=np.zeros((4, 4), np.uint8))
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
