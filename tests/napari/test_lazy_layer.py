"""Lazy labels in the Predict widget: a dask-backed Labels layer whose slices the network
computes only when napari shows them (issue 6, item 5)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from napari_unet_stack import segment
from napari_unet_stack.napari._lazy import is_stack, lazy_input, lazy_labels, lazy_model
from napari_unet_stack.napari._predict_widget import PredictWidget

N_SLICES = 4


@pytest.fixture(scope="module")
def stack():
    from napari_unet_stack.samples import load_sample

    return np.ascontiguousarray(load_sample("nuclei_stack").image[4:4 + N_SLICES, 40:136, 60:156])


@pytest.fixture
def computed(monkeypatch, stack):
    """Indices of the slices the network ran on, in order (the engine's task per chunk)."""
    import napari_unet_stack.inference.dask_tasks as dask_module  # the engine's task per chunk

    done: list[int] = []
    original = dask_module._predict_block

    def counting(block, *args):
        matches = [k for k in range(len(stack)) if np.array_equal(block.reshape(stack.shape[1:]), stack[k])]
        done.append(matches[0] if len(matches) == 1 else -1)
        return original(block, *args)

    monkeypatch.setattr(dask_module, "_predict_block", counting)
    return done


def _viewer(make_napari_viewer, stack):
    viewer = make_napari_viewer()
    image = viewer.add_image(stack, name="img", scale=(2.0, 0.5, 0.5), translate=(10.0, -3.0, 4.0),
                             axis_labels=("z", "y", "x"), units=("micrometer",) * 3)
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image.value = image
    return viewer, image, widget


# -- without a viewer ------------------------------------------------------------------
def test_lazy_input_has_one_slice_per_chunk():
    data = np.zeros((3, 2, 5, 40, 30), np.uint16)  # T, C, Z, Y, X
    lazy = lazy_input(data, 1)
    assert lazy.chunks == ((1,) * 3, (2,), (1,) * 5, (40,), (30,))
    rechunked = lazy_input(da.zeros((6, 40, 30, 3), chunks=(4, 20, 10, 1)), -1)  # RGB stack
    assert rechunked.chunks == ((1,) * 6, (40,), (30,), (3,))
    assert is_stack((6, 40, 30, 3), -1) and is_stack((2, 40, 30), None)
    assert not is_stack((3, 40, 30), 0) and not is_stack((40, 30), None)


def test_lazy_labels_compute_nothing_until_asked(stack, computed):
    from napari_unet_stack.checkpoints import load_model

    model = load_model("nuclei-unet")
    lazy = lazy_labels("img", stack, None, model, {"device": "cpu"}, 0.5)
    assert isinstance(lazy.data, da.Array) and lazy.data.shape == stack.shape and lazy.data.dtype == np.uint8
    assert lazy.data.numblocks == (N_SLICES, 1, 1) and lazy.info["n_tasks"] == N_SLICES
    assert lazy.model is model  # a plain UNet is used as loaded
    assert computed == []
    np.testing.assert_array_equal(lazy.data[1].compute(), segment(stack[1], model, threshold=0.5))
    assert computed == [1]
    with pytest.raises(ValueError, match="no slices to browse"):
        lazy_labels("img", stack[0], None, model, {}, 0.5)
    with pytest.raises(ValueError, match="device"):  # reported now, not at every slice drawn
        lazy_labels("img", stack, None, model, {"device": "cuda:7"}, 0.5)


# -- in the widget ---------------------------------------------------------------------
@pytest.mark.gui
@pytest.mark.slow
def test_lazy_run_computes_only_the_slices_on_view(make_napari_viewer, stack, computed):
    viewer, image, widget = _viewer(make_napari_viewer, stack)
    widget.set_model("nuclei-unet")
    model = widget._current_model()
    widget.instances.value = False  # lazy instances are a worker's job: tests/napari/test_lazy_instances.py
    widget.lazy.value = True
    # the outputs that need the whole stack are off in lazy mode, and the widget says why
    # (instance labels are computed slice by slice into an on-disk store)
    assert widget.instances.enabled and not widget.probability.enabled and not widget.semantic.enabled
    assert not widget.lazy_note.native.isHidden() and "whole stack" in widget.lazy_note.value
    viewer.dims.set_current_step(0, 2)

    assert widget.run() is None and widget.worker is None  # nothing to wait for
    labels = viewer.layers["img labels"]
    assert isinstance(labels.data, da.Array)
    assert labels.data.shape == stack.shape and labels.data.dtype == np.uint8
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    assert tuple(labels.axis_labels) == ("z", "y", "x")
    assert [str(u) for u in labels.units] == ["micrometer"] * 3
    assert "img instances" not in viewer.layers and "img probability" not in viewer.layers
    assert computed == [2]  # the slice on view, and nothing else
    assert viewer.layers.selection.active is labels
    assert widget.status.value.startswith(f"img: lazy labels, {N_SLICES} slice(s)")
    assert widget.device_used.value.startswith("lazy, on view: cpu")

    viewer.dims.set_current_step(0, 0)  # browsing computes the new slice
    assert computed == [2, 0]
    viewer.dims.set_current_step(0, 2)  # napari's dask cache kept slice 2
    assert computed == [2, 0]
    eager = segment(stack, model)
    np.testing.assert_array_equal(np.asarray(labels.data[2]), eager[2])
    np.testing.assert_array_equal(np.asarray(labels.data[0]), eager[0])

    import distributed

    with pytest.raises(ValueError, match="No clients"):  # dask's local scheduler, no cluster started
        distributed.default_client()

    # running again updates the same layer
    first = labels.data
    n_layers = len(viewer.layers)
    del computed[:]
    widget.run()
    assert len(viewer.layers) == n_layers and viewer.layers["img labels"] is labels
    assert labels.data is not first and computed == [2]

    # unchecked: an ordinary run fills the same layer with a numpy array
    widget.lazy.value = False
    assert widget.instances.enabled and widget.lazy_note.native.isHidden()
    widget.instances.value = False
    widget.run(wait=True)
    assert isinstance(labels.data, np.ndarray)
    np.testing.assert_array_equal(labels.data, eager)  # one labels rule: lazy, eager, segment
    assert widget.results.lazy == {}


@pytest.mark.gui
@pytest.mark.slow
def test_lazy_threshold_relabels_without_the_network(make_napari_viewer, stack, computed):
    viewer, _image, widget = _viewer(make_napari_viewer, stack)
    widget.set_model("nuclei-unet")  # softmax: the threshold applies to 1 - P(background)
    model = widget._current_model()
    widget.lazy.value = True
    viewer.dims.set_current_step(0, 1)
    widget.run()
    labels = viewer.layers["img labels"]
    first = labels.data
    assert computed == [1]

    widget.threshold.value = 0.95
    assert isinstance(labels.data, da.Array) and labels.data is not first
    # the probabilities of slice 1 were still in napari's dask cache: relabelled, no network
    assert computed == [1]
    assert widget.status.value.startswith("threshold 0.95 applied")
    viewer.dims.set_current_step(0, 3)  # a slice never shown: the network runs
    assert computed == [1, 3]
    # (computed here, outside napari's slicing, without its cache)
    at_095 = np.asarray(labels.data)
    np.testing.assert_array_equal(at_095, segment(stack, model, threshold=0.95))
    assert at_095.sum() < np.asarray(first).sum()

    # painted on (napari writes into the dask array): a new threshold leaves the paint alone
    painted = labels.data
    labels.paint((3, 5, 5), 1)
    widget.threshold.value = 0.5
    assert labels.data is painted and "painted" in widget.status.value


@pytest.mark.gui
@pytest.mark.slow
def test_lazy_unetpp_keeps_its_head_and_device(make_napari_viewer, stack, computed):
    viewer, _image, widget = _viewer(make_napari_viewer, stack[:2])
    widget.set_model("nuclei-unetpp")
    model = widget._current_model()
    widget.head.value = "fast"
    widget.device.value = "cpu"
    widget.lazy.value = True
    widget.run()
    lazy = widget.results.lazy["img labels"]
    assert lazy.model is not model and lazy.model.head == "fast"  # a copy with the head fixed
    assert model.head == "accurate"  # the shared model is untouched
    assert lazy.options["device"] == "cpu"
    fast = lazy_model(model, "fast")
    np.testing.assert_array_equal(np.asarray(viewer.layers["img labels"].data[0]), segment(stack[0], fast))


@pytest.mark.gui
@pytest.mark.slow
def test_lazy_on_a_2d_image_is_computed_as_usual(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(0).random((64, 64)), name="flat")
    widget = PredictWidget(viewer)
    widget.image.value = image
    widget.lazy.value = True
    assert not widget.lazy.enabled and "2D" in widget.lazy_note.value
    assert widget.instances.enabled  # nothing is lazy, so nothing is left out
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert isinstance(viewer.layers["flat labels"].data, np.ndarray)


@pytest.mark.gui
def test_lazy_with_a_wrong_model_is_a_notification(make_napari_viewer, stack):
    from napari.utils.notifications import NotificationSeverity, notification_manager

    from napari_unet_stack import UNet
    from napari_unet_stack.napari._registry import USER_MODELS

    viewer, _image, widget = _viewer(make_napari_viewer, stack)
    name = USER_MODELS.add("rgb", UNet(3, 1, base_channels=2, depth=2))
    shown: list[str] = []

    def record(notification):
        if notification.severity == NotificationSeverity.ERROR:
            shown.append(str(notification.message))

    notification_manager.notification_ready.connect(record)
    try:
        widget.model.value = ("user", name)
        widget.lazy.value = True
        assert widget.run() is None
    finally:
        notification_manager.notification_ready.disconnect(record)
        USER_MODELS.remove(name)
    assert shown and "3 input channel" in shown[-1]
    assert widget.status.value.startswith("not started")
    assert [layer.name for layer in viewer.layers] == ["img"]
