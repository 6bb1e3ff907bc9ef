"""Probabilities -> labels in `segment`: the one rule of `napari_unet_stack.labels` (threshold
for every activation, class values), checked against an independent numpy computation and
against `LabelRule.labels(predict(...))` bit for bit; dtypes, non-finite input, instances."""

import numpy as np
import pytest
import torch

import napari_unet_stack as nus


def foreground_numpy(probs, activation):
    """P(foreground) and the foreground class, written out independently of `napari_unet_stack.labels`."""
    probs = np.asarray(probs, np.float32)
    k = probs.shape[0]
    if activation == "softmax":
        fg = 1 - probs[0]
        cls = probs[1:].argmax(0) + 1 if k > 2 else np.ones(probs.shape[1:], int)
    elif k == 1:
        fg, cls = probs[0], np.ones(probs.shape[1:], int)
    else:
        fg, cls = probs.max(0), probs.argmax(0) + 1
    return fg, cls


def rule_numpy(probs, activation, threshold, values):
    """The documented rule: foreground where P(foreground) > threshold, class = the most
    probable foreground class, written as ``values[class]``."""
    fg, cls = foreground_numpy(probs, activation)
    values = np.asarray(values)
    return np.where(fg > np.float32(threshold), values[cls], values[0])


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_softmax_segment_thresholds_one_minus_background(stack, nets, threshold):
    """3-class softmax: the threshold applies to 1 - P(background) (issue 10)."""
    model = nets.MODELS["unet-transposed"]()
    probs = nus.predict(stack, model, tile_size=32, batch_size=5)
    labels = nus.segment(stack, model, tile_size=32, batch_size=5, threshold=threshold)
    assert labels.shape == stack.shape and labels.dtype == np.uint8
    expected = rule_numpy(probs, "softmax", threshold, [0, 1, 2])
    np.testing.assert_array_equal(labels, expected)
    assert len(np.unique(labels)) >= 2  # not trivially empty
    if threshold == 0.5:
        # differs from the argmax only where background is the most probable class yet <= 0.5
        differ = labels != probs.argmax(0)
        assert differ.any()
        assert (probs.argmax(0)[differ] == 0).all() and (probs[0][differ] <= 0.5).all()


def test_two_class_softmax_at_one_half_is_the_argmax(stack, nets):
    model = nets.MODELS["unet-bilinear"]()
    probs = nus.predict(stack, model, tile_size=None)
    labels = nus.segment(stack, model, tile_size=32, batch_size=5)
    np.testing.assert_array_equal(labels, probs.argmax(0))
    assert len(np.unique(labels)) == 2


@pytest.mark.parametrize(
    ("make", "activation", "class_values", "values"),
    [
        (lambda nus: nus.UNet(1, 2, base_channels=4, depth=2), "sigmoid", [5, 9], [0, 5, 9]),
        (lambda nus: nus.UNet(1, 3, base_channels=4, depth=2), "sigmoid", None, [0, 1, 2, 3]),
        (lambda nus: nus.UNet(1, 3, base_channels=4, depth=2), "softmax", [3, 7, 11], [3, 7, 11]),
        (lambda nus: nus.UNet(1, 2, base_channels=4, depth=2), None, [0, 255], [0, 255]),
        (lambda nus: nus.NestedUNet(1, 1, base_channels=4, depth=2, deep_supervision=True), None, None, [0, 1]),
    ],
    ids=["sigmoid2-class-values", "multilabel", "softmax3-class-values", "softmax2-class-values", "sigmoid1"],
)
@pytest.mark.parametrize("quantile", [0.3, 0.7])
def test_segment_follows_the_rule(nets, make, activation, class_values, values, quantile):
    model = nets.init(make(nus))
    if activation is not None:
        model.activation = activation
    if class_values is not None:
        model.meta["class_values"] = class_values
    image = np.random.default_rng(6).random((2, 40, 52)).astype(np.float32)
    probs = nus.predict(image, model, tile_size=16, batch_size=3)
    act = activation or ("softmax" if model.out_channels > 1 else "sigmoid")
    threshold = float(np.quantile(foreground_numpy(probs, act)[0], quantile))  # both sides occur
    labels = nus.segment(image, model, threshold=threshold, tile_size=16, batch_size=3)
    np.testing.assert_array_equal(labels, rule_numpy(probs, act, threshold, values))
    assert len(np.unique(labels)) >= 2  # not trivially empty
    assert set(np.unique(labels)) <= set(values)


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    ("name", "blend"),
    [
        ("unet-transposed", "crop"),
        ("unetpp", "gaussian"),
        ("unet-transposed", "gaussian"),
        pytest.param("unetpp", "crop", marks=SLOW),
        ("unet-valid", "crop"),
        ("unetpp-fast", "crop"),
        ("unetpp-fast", "gaussian"),
    ],
)
def test_segment_is_the_label_rule_of_predict_bit_for_bit(stack, nets, name, blend):
    """On-device labels (crop) and host labels (blend) both equal LabelRule.labels(predict)."""
    from napari_unet_stack.labels import LabelRule

    model = nets.MODELS[name]()
    image = stack[:, :48, :80]
    options = dict(tile_size=32, batch_size=3, blend=blend, halo="auto" if blend == "crop" else 16)
    probs = nus.predict(image, model, **options)
    median = float(np.median(LabelRule.for_model(model).foreground(probs)[0]))
    for threshold in (0.5, median):
        rule = LabelRule.for_model(model, threshold)
        labels = nus.segment(image, model, threshold=threshold, **options)
        expected = rule.labels(probs)
        assert labels.dtype == expected.dtype
        np.testing.assert_array_equal(labels, expected)
    assert len(np.unique(labels)) >= 2  # (at the median) not trivially empty


def test_sigmoid_threshold(stack, nets):
    model = nets.MODELS["unetpp"]()
    probs = nus.predict(stack, model, tile_size=None)[0]
    for threshold in (0.3, 0.7):
        labels = nus.segment(stack, model, threshold=threshold, tile_size=48)
        np.testing.assert_array_equal(labels, (probs > threshold).astype(np.uint8))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64, bool])
def test_dtypes(dtype, nets):
    model = nets.MODELS["unet-transposed"]()
    image = (np.random.default_rng(0).random((33, 40)) * 100).astype(dtype)
    labels = nus.segment(image, model, tile_size=16)
    assert labels.shape == image.shape and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, nus.segment(image.astype(np.float64), model, tile_size=None))


def test_nonfinite_pixels(nets):
    """NaN/inf pixels: ignored by normalization, filled before the network; probabilities NaN, labels 0."""
    model = nets.MODELS["unet-transposed"]()
    image = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    bad = image.copy()
    bad[5, 7] = np.nan
    bad[20, 30] = np.inf
    probs = nus.predict(bad, model, tile_size=16)
    assert np.isnan(probs[:, 5, 7]).all() and np.isnan(probs[:, 20, 30]).all()
    assert np.isfinite(np.delete(probs.reshape(3, -1), [5 * 40 + 7, 20 * 40 + 30], axis=1)).all()
    labels = nus.segment(bad, model, tile_size=16)
    assert labels[5, 7] == 0 and labels[20, 30] == 0


def test_instances_and_min_size(threshold_net):
    image = np.zeros((2, 30, 30), np.float32)
    image[:, 2:8, 2:8] = 1
    image[:, 20:28, 20:28] = 1
    image[:, 15, 15] = 1  # one-pixel speck
    labels = nus.segment(image, threshold_net(), normalization=None, instances=True, min_size=3)
    assert labels.dtype == np.uint8
    # 3D connectivity over Z by default: each square is one object through both slices
    assert set(np.unique(labels)) == {0, 1, 2}
    assert labels[0, 3, 3] == labels[1, 3, 3] != labels[0, 21, 21]
    assert labels[0, 15, 15] == 0
    per_slice = nus.segment(image, threshold_net(), normalization=None, instances=True, instance_ndim=2)
    assert len(np.unique(per_slice)) == 1 + 3 * 2


def test_class_values_map_labels(nets):
    model = nets.MODELS["unet-bilinear"]()
    model.meta["class_values"] = [0, 255]
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    labels = nus.segment(image, model, tile_size=None)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 255}
    classes = nus.predict(image, model, tile_size=None).argmax(0)
    np.testing.assert_array_equal(labels, np.where(classes == 1, 255, 0))


def test_callable_with_many_classes_gets_a_wide_enough_dtype():
    """A plain callable's class count is probed, so 300 classes do not wrap in uint8."""
    image = np.zeros((32, 32), np.float32)

    def many(x):
        logits = torch.zeros(x.shape[0], 300, *x.shape[-2:])
        logits[:, 280] = 5.0
        return logits

    labels = nus.segment(image, many, normalization=None, tile_size=None, halo=0)
    assert labels.dtype == np.uint16
    assert (labels == 280).all()
