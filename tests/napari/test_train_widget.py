"""The Train dock widget: a few steps on the sample, live plot, cancel, save, and Predict sees the model."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet_stack.napari._registry import USER_MODELS

pytestmark = pytest.mark.gui


@pytest.fixture
def clean_registry():
    before = set(USER_MODELS.names())
    yield
    for name in set(USER_MODELS.names()) - before:
        USER_MODELS.remove(name)


def _widgets(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet-stack", "nuclei_stack")
    _dock, train = viewer.window.add_plugin_dock_widget("napari-unet-stack", "Train")
    _dock, predict = viewer.window.add_plugin_dock_widget("napari-unet-stack", "Predict")
    train.image.value = viewer.layers["nuclei_stack"]
    train.annotations.value = viewer.layers["nuclei_stack ground truth"]
    train.base_channels.value, train.depth.value = 4, 2
    train.patch_size.value, train.batch_size.value = 64, 2
    train.device.value = "cpu"
    return viewer, train, predict


def test_train_a_few_steps_then_predict_with_it(make_napari_viewer, qtbot, tmp_path, clean_registry):
    from napari_unet_stack.checkpoints import load_model

    viewer, train, predict = _widgets(make_napari_viewer)
    train.steps.value = 6
    train.val_fraction.value = 0.2
    train.train()
    qtbot.waitUntil(lambda: train.worker is None, timeout=60_000)

    assert train.model is not None, train.status.value
    assert len(train.plot.points["loss"]) == 6
    assert train.plot.points["validation Dice"]  # validated at least once
    choice = ("user", train.model_name)
    assert choice in predict.model.choices
    assert predict.model.value == choice  # selected in Predict right away
    assert "UNet" in predict.model_info.value

    train.save_path.value = tmp_path / "nuclei-model.pt"
    saved = train.save()
    assert saved == tmp_path / "nuclei-model.pt" and saved.is_file()
    assert train.model_name == "nuclei-model" and ("user", "nuclei-model") in predict.model.choices
    assert len([c for c in predict.model.choices if c[0] == "user"]) == 1  # replaced, not piled up
    assert load_model(saved).out_channels == train.model.out_channels

    predict.image.value = viewer.layers["nuclei_stack"]
    predict.tile_size.value = None
    predict.run()
    qtbot.waitUntil(lambda: predict.worker is None, timeout=60_000)
    assert viewer.layers["nuclei_stack labels"].data.shape == (16, 256, 256)


def test_cancel_training_on_sparse_scribbles(make_napari_viewer, qtbot, clean_registry):
    viewer, train, _predict = _widgets(make_napari_viewer)
    truth = viewer.layers["nuclei_stack ground truth"].data
    scribbles = np.zeros(truth.shape, np.uint8)  # every 8th row painted: 1 background, 2 nucleus
    scribbles[:, ::8] = np.where(truth[:, ::8] > 0, 2, 1)
    train.annotations.value = viewer.add_labels(scribbles, name="scribbles")
    train.sparse.value = True
    train.steps.value = 10_000
    worker = train.train()
    worker.yielded.connect(lambda event: event.step >= 2 and train.cancel())
    qtbot.waitUntil(lambda: train.worker is None, timeout=60_000)
    assert "cancelled" in train.status.value
    assert train.model_name is not None and "stopped at" in train.model_name
    assert 2 <= len(train.plot.points["loss"]) < 10


def test_bad_settings_are_a_notification(make_napari_viewer, qtbot, clean_registry):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32)), name="img")
    viewer.add_labels(np.zeros((16, 16), np.uint8), name="small")
    from napari_unet_stack.napari._train_widget import TrainWidget

    train = TrainWidget(viewer)
    assert train.train() is None
    assert "shape" in train.status.value
