"""The Predict widget writes exactly the labels `segment` writes (one rule, `labels.LabelRule`):
for a 2-channel sigmoid model with class values [5, 9], a 3-class softmax model and the bundled
model, at the default threshold and after moving the threshold; the lazy layer too."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet_stack import segment
from napari_unet_stack.napari._predict_widget import PredictWidget

pytestmark = pytest.mark.gui


def _tiny(n_classes: int, activation: str | None = None, class_values=None):
    """A small UNet with random weights, logits widened so that pixels fall on both sides of
    every threshold (and every class shows up)."""
    from napari_unet_stack import UNet

    torch.manual_seed(0)
    model = UNet(1, n_classes, base_channels=4, depth=1)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    if activation is not None:
        model.activation = activation
    if class_values is not None:
        model.meta["class_values"] = class_values
    return model.eval()


@pytest.fixture(scope="module")
def nuclei():
    from napari_unet_stack.samples import load_sample

    return np.ascontiguousarray(load_sample("nuclei_stack").image[5:8, 40:136, 60:156])


def _widget(make_napari_viewer, image):
    viewer = make_napari_viewer()
    layer = viewer.add_image(image, name="img")
    widget = PredictWidget(viewer)
    widget.image.value = layer
    return viewer, widget


def _check(viewer, widget, image, model, values=None):
    """Run the widget, compare with segment at 0.5, move the threshold, compare again."""
    assert widget.run(wait=True) is not None, widget.status.value
    labels = viewer.layers["img labels"]
    expected = segment(image, model)
    np.testing.assert_array_equal(labels.data, expected)
    assert labels.data.dtype == expected.dtype
    if values is not None:
        assert set(np.unique(expected)) == values  # every class shows: the check has teeth
    widget.threshold.value = 0.3
    at_03 = segment(image, model, threshold=0.3)
    assert (at_03 != expected).any()  # the threshold matters here
    np.testing.assert_array_equal(labels.data, at_03)


def test_two_channel_sigmoid_with_class_values(make_napari_viewer, registered):
    image = np.random.default_rng(0).random((2, 48, 64)).astype(np.float32)
    model = _tiny(2, "sigmoid", [5, 9])
    viewer, widget = _widget(make_napari_viewer, image)
    widget.model.value = registered(model, "sigmoid [5, 9]")
    _check(viewer, widget, image, model, values={0, 5, 9})


@pytest.mark.slow
def test_three_class_softmax(make_napari_viewer, registered):
    image = np.random.default_rng(1).random((2, 48, 64)).astype(np.float32)
    model = _tiny(3)
    assert model.activation == "softmax"
    viewer, widget = _widget(make_napari_viewer, image)
    widget.model.value = registered(model, "softmax 3")
    _check(viewer, widget, image, model, values={0, 1, 2})


@pytest.mark.slow
def test_bundled_model(make_napari_viewer, nuclei):
    viewer, widget = _widget(make_napari_viewer, nuclei)
    widget.set_model("nuclei-unet")
    _check(viewer, widget, nuclei, widget.loaded.get(("bundled", "nuclei-unet"), None), values={0, 1})


@pytest.mark.slow
def test_lazy_layer_with_class_values(make_napari_viewer, registered):
    image = np.random.default_rng(2).random((3, 48, 64)).astype(np.float32)
    model = _tiny(2, "sigmoid", [5, 9])
    viewer, widget = _widget(make_napari_viewer, image)
    widget.model.value = registered(model, "sigmoid [5, 9]")
    widget.lazy.value = True
    assert widget.run() is None and "lazy labels" in widget.status.value
    labels = viewer.layers["img labels"]
    expected = segment(image, model)
    assert set(np.unique(expected)) == {0, 5, 9}
    np.testing.assert_array_equal(np.asarray(labels.data), expected)
    widget.threshold.value = 0.3
    np.testing.assert_array_equal(np.asarray(labels.data), segment(image, model, threshold=0.3))


@pytest.mark.slow
def test_the_slider_starts_at_the_models_own_threshold(make_napari_viewer, registered):
    """A model's ``meta["threshold"]`` is where the slider starts, and the run equals
    `segment` at its default (that threshold); choosing another model moves the slider to
    its own without relabelling the layer already shown."""
    image = np.random.default_rng(3).random((2, 48, 64)).astype(np.float32)
    model = _tiny(3)
    model.meta["threshold"] = 0.3
    plain = _tiny(2)
    viewer, widget = _widget(make_napari_viewer, image)
    widget.model.value = registered(model, "own threshold")
    assert widget.threshold.value == pytest.approx(0.3)
    assert widget.run(wait=True) is not None, widget.status.value
    shown = np.array(viewer.layers["img labels"].data)
    np.testing.assert_array_equal(shown, segment(image, model))
    assert (shown != segment(image, model, threshold=0.5)).any()  # the default is not 0.5 here
    widget.model.value = registered(plain, "no threshold")
    assert widget.threshold.value == pytest.approx(0.5)
    np.testing.assert_array_equal(viewer.layers["img labels"].data, shown)


@pytest.mark.slow
def test_a_model_chosen_while_a_run_runs_leaves_its_labels_at_their_threshold(make_napari_viewer, registered):
    """Choosing another model while a run runs moves the slider (to that model's threshold),
    not the threshold of the result: it finishes equal to `segment` at its own model's; the
    slider moved by hand while it runs still applies when it finishes."""
    image = np.random.default_rng(3).random((2, 48, 64)).astype(np.float32)
    model = _tiny(3)
    model.meta["threshold"] = 0.3
    viewer, widget = _widget(make_napari_viewer, image)
    widget.model.value = registered(model, "own threshold")
    assert widget.run() is not None, widget.status.value
    widget.model.value = registered(_tiny(2), "no threshold")  # while it runs
    widget.wait()
    assert widget.threshold.value == pytest.approx(0.5)
    shown = np.array(viewer.layers["img labels"].data)
    np.testing.assert_array_equal(shown, segment(image, model))
    assert (shown != segment(image, model, threshold=0.5)).any()  # the check has teeth
    widget.model.value = registered(model, "own threshold again")
    assert widget.run() is not None, widget.status.value
    widget.threshold.value = 0.6  # by hand, while it runs
    widget.wait()
    np.testing.assert_array_equal(viewer.layers["img labels"].data, segment(image, model, threshold=0.6))


@pytest.mark.slow
def test_a_threshold_beyond_the_slider_is_said(make_napari_viewer, registered):
    """The slider spans 0.01-0.99: a model's own threshold beyond it is used at the nearest
    end, and the note under the slider says so."""
    image = np.random.default_rng(3).random((2, 48, 64)).astype(np.float32)
    model = _tiny(2, activation="sigmoid")
    model.meta["threshold"] = 0.995
    _viewer, widget = _widget(make_napari_viewer, image)
    widget.model.value = registered(model, "high threshold")
    assert widget.threshold.value == pytest.approx(0.99)
    assert "its own threshold 0.995 is beyond the slider: 0.99" in widget.threshold_note.value
    widget.model.value = registered(_tiny(3), "no threshold")
    assert widget.threshold.value == pytest.approx(0.5) and "beyond" not in widget.threshold_note.value
