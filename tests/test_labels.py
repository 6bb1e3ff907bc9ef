"""The one probabilities -> labels rule (napari_unet_stack.labels), on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet_stack.labels import (
    LabelRule,
    check_activation,
    default_activation,
    label_values,
    smallest_uint,
)


def test_smallest_uint():
    assert smallest_uint(1) == np.uint8 and smallest_uint(65535) == np.uint16 and smallest_uint(65536) == np.uint32
    assert smallest_uint(2**40) == np.uint64
    with pytest.raises(ValueError, match="64 bits"):
        smallest_uint(2**64)


def test_default_activation_and_check():
    assert default_activation(1) == "sigmoid" and default_activation(4) == "softmax"
    assert default_activation(1, "softmax") == "softmax"
    with pytest.raises(ValueError, match="'softmax' or 'sigmoid'"):
        check_activation("relu")
    with pytest.raises(ValueError, match="'softmax' or 'sigmoid'"):
        default_activation(2, "tanh")


def test_label_values():
    np.testing.assert_array_equal(label_values(1, "sigmoid", None), [0, 1])
    np.testing.assert_array_equal(label_values(2, "softmax", [0, 255]), [0, 255])
    np.testing.assert_array_equal(label_values(2, "sigmoid", [5, 9]), [0, 5, 9])   # one per channel
    np.testing.assert_array_equal(label_values(2, "sigmoid", [1, 5, 9]), [1, 5, 9])  # every value
    with pytest.raises(ValueError, match="3 non-negative ints"):
        label_values(3, "softmax", [0, 1])
    with pytest.raises(ValueError, match="non-negative"):
        label_values(2, "softmax", [0, -1])


# probabilities of four pixels, worked out by hand
SOFTMAX3 = np.array([
    [0.40, 0.70, 0.20, 0.34],   # background
    [0.30, 0.20, 0.70, 0.33],
    [0.30, 0.10, 0.10, 0.33],
], dtype=np.float32)


@pytest.mark.parametrize("threshold, expected", [
    # P(foreground) = 1 - P(background) = 0.6, 0.3, 0.8, 0.66; class = argmax of channels 1..2
    (0.5, [1, 0, 1, 1]),
    (0.7, [0, 0, 1, 0]),
    (0.2, [1, 1, 1, 1]),
])
def test_softmax_threshold_on_one_minus_background(threshold, expected):
    rule = LabelRule.of(3, "softmax", threshold=threshold)
    np.testing.assert_array_equal(rule.classes(SOFTMAX3), expected)


def test_softmax_second_class_and_class_values():
    probs = np.array([[0.1, 0.1], [0.2, 0.7], [0.7, 0.2]], np.float32)
    rule = LabelRule.of(3, "softmax", class_values=[0, 10, 20])
    np.testing.assert_array_equal(rule.labels(probs), [20, 10])
    assert rule.labels(probs).dtype == np.uint8


def test_two_class_softmax_at_one_half_is_argmax():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 500)).astype(np.float32)
    probs = torch.softmax(torch.from_numpy(logits), 0).numpy()
    rule = LabelRule.of(2, "softmax")
    np.testing.assert_array_equal(rule.classes(probs), np.argmax(probs, axis=0))


def test_sigmoid_single_and_multilabel():
    single = LabelRule.of(1, None, threshold=0.5)
    assert single.activation == "sigmoid"
    np.testing.assert_array_equal(single.classes(np.array([[0.2, 0.5, 0.51]], np.float32)), [0, 0, 1])
    probs = np.array([[0.9, 0.2, 0.6], [0.3, 0.4, 0.8]], np.float32)
    multi = LabelRule.of(2, "sigmoid", [5, 9], threshold=0.5)
    # most probable channel, numbered from 1, if above the threshold
    np.testing.assert_array_equal(multi.classes(probs), [1, 0, 2])
    np.testing.assert_array_equal(multi.labels(probs), [5, 0, 9])


def test_nan_is_background():
    probs = np.array([[np.nan, 0.1], [np.nan, 0.9]], np.float32)
    np.testing.assert_array_equal(LabelRule.of(2, "softmax").labels(probs), [0, 1])
    np.testing.assert_array_equal(LabelRule.of(1, "sigmoid").labels(probs[:1] * 0 + [[np.nan, 0.9]]), [0, 1])


def test_decide_rethresholds_from_foreground():
    rule = LabelRule.of(3, "softmax", threshold=0.5)
    fg, cls = rule.foreground(SOFTMAX3)
    np.testing.assert_allclose(fg, [0.6, 0.3, 0.8, 0.66], rtol=1e-6)
    for t in (0.25, 0.5, 0.65, 0.9):
        np.testing.assert_array_equal(rule.decide(fg, cls, t), rule.with_threshold(t).labels(SOFTMAX3))


@pytest.mark.parametrize("n, activation, class_values", [
    (1, "sigmoid", None), (2, "softmax", None), (3, "softmax", [0, 7, 300]), (2, "sigmoid", [5, 9]),
    (3, "sigmoid", None),
])
@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.77])
def test_device_rule_equals_host_rule(n, activation, class_values, threshold):
    rng = np.random.default_rng(n)
    logits = torch.from_numpy(rng.normal(size=(3, n, 17, 19)).astype(np.float32))
    probs = torch.softmax(logits, 1) if activation == "softmax" else torch.sigmoid(logits)
    rule = LabelRule.of(n, activation, class_values, threshold)
    on_device = rule.classes_torch(probs).numpy()
    on_host = np.stack([rule.classes(p) for p in probs.numpy()])
    np.testing.assert_array_equal(on_device, on_host)
    assert 0 < (on_host > 0).mean() < 1  # both decisions occur
    assert rule.map_values(on_host).dtype == rule.dtype


def test_device_rule_ties_and_layouts_match_host():
    """Exact ties between foreground classes go to the first, as numpy's argmax does, in
    NCHW and channels-last tensors alike (the device rule must not depend on the layout)."""
    probs = np.zeros((2, 4, 8, 8), np.float32)
    probs[:, 0] = 0.2
    probs[:, 1:3] = 0.3  # classes 1 and 2 tie everywhere
    probs[1, 3, :4] = 0.5  # class 3 wins in half of the second image
    probs[1, 1:3, :4] = 0.15
    rule = LabelRule.of(4, "softmax")
    host = np.stack([rule.classes(p) for p in probs])
    assert set(np.unique(host)) == {1, 3}
    t = torch.from_numpy(probs)
    for layout in (t, t.to(memory_format=torch.channels_last)):
        np.testing.assert_array_equal(rule.classes_torch(layout).numpy(), host)


def test_bad_threshold_and_channels():
    with pytest.raises(ValueError, match=r"`threshold` must be in \[0, 1\], got 1.5"):
        LabelRule.of(1, threshold=1.5)
    with pytest.raises(TypeError, match="`threshold` must be a number"):
        LabelRule.of(1, threshold="high")
    with pytest.raises(ValueError, match="at least one output channel"):
        LabelRule.of(0)
    with pytest.raises(ValueError, match="2 channel"):
        LabelRule.of(2).labels(np.zeros((3, 4, 4), np.float32))


@pytest.mark.parametrize("class_values", [[0, 1, 1], [0, 4, 4, 4]])
def test_one_foreground_value_labels_need_no_class(class_values):
    """An instance model's interior and boundary classes written as one value ([0, 1, 1]):
    its labels are just P(foreground) = 1 - P(background) > threshold (NaN: background), on
    the host and on the device (``for_labels``), in NCHW and channels-last alike; without
    ``for_labels`` the device still chooses the class (what the bf16 check compares)."""
    n = len(class_values)
    rng = np.random.default_rng(n)
    probs = torch.softmax(torch.from_numpy(rng.normal(size=(2, n, 13, 11)).astype(np.float32)), 1)
    probs[0, :, 0, :3] = float("nan")
    rule = LabelRule.of(n, "softmax", class_values, 0.4)
    assert rule.one_foreground_value and rule.several
    p = probs.numpy()
    expected = np.where(np.nan_to_num(1 - p[:, 0], nan=0.0) > np.float32(0.4), class_values[1], 0)
    assert 0 < (expected > 0).mean() < 1
    np.testing.assert_array_equal(np.stack([rule.labels(q) for q in p]), expected)
    for layout in (probs, probs.to(memory_format=torch.channels_last)):
        np.testing.assert_array_equal(rule.map_values(rule.classes_torch(layout, for_labels=True).numpy()), expected)
    chosen = rule.classes_torch(probs).numpy()
    np.testing.assert_array_equal(chosen, np.stack([rule.classes(q) for q in p]))
    assert set(np.unique(chosen)) == set(range(n))  # every class still chosen where asked
    assert not LabelRule.of(3, "softmax", [0, 1, 2]).one_foreground_value
    assert not LabelRule.of(2, "sigmoid", [5, 5]).one_foreground_value
    assert not LabelRule.of(3, "softmax", [0, 1, 1]).with_markers(1, 0.5).one_foreground_value


def test_marker_map_from_foreground_and_marker_probability_is_the_marker_labels():
    """What the Predict store keeps of an instance model (P(foreground), P(interior)) gives
    its marker maps, hand-checked: 0 background, 1 foreground, 2 foreground with
    P(interior) above the marker threshold; NaN is background and no marker."""
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.2, 0.1, 0.7], [0.05, 0.5, 0.45],
                      [np.nan, np.nan, np.nan], [0.3, np.nan, 0.7]], np.float32).T  # (K=3, 6 pixels)
    rule = LabelRule.of(3).with_markers(1, 0.45)
    fg, _ = rule.foreground(probs)
    expected = [0, 2, 1, 2, 0, 1]
    assert rule.labels(probs).tolist() == expected
    assert rule.marker_map(fg, rule.marker_probability(probs)).tolist() == expected
    assert rule.marker_map(fg, rule.marker_probability(probs), threshold=0.75).tolist() == [0, 2, 1, 2, 0, 0]
