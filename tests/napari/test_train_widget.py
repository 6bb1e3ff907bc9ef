"""The Train dock widget: a few steps on the sample, live plot, cancel, save, and Predict sees the model."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet_stack import segment
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


@pytest.mark.slow
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
    assert not predict.head.enabled  # no UNet++ head to choose

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
    labels = viewer.layers["nuclei_stack labels"].data
    assert labels.shape == (16, 256, 256)
    np.testing.assert_array_equal(labels, segment(viewer.layers["nuclei_stack"].data, train.model, tile_size=None))


@pytest.mark.slow
def test_train_unetpp_then_predict_with_its_fast_head(make_napari_viewer, qtbot, clean_registry):
    from napari_unet_stack.models import NestedUNet

    viewer, train, predict = _widgets(make_napari_viewer)
    train.architecture.value = "NestedUNet"  # UNet++, by its name in `ARCHITECTURES`
    train.steps.value = 3
    train.val_fraction.value = 0.2
    assert train.train(wait=True) is not None

    model = train.model
    assert model is not None, train.status.value
    assert type(model) is NestedUNet and model.deep_supervision
    assert (model.base_channels, model.depth) == (4, 2)
    assert model.meta["provenance"]["steps"] == 3
    assert 1 <= model.meta["fast_head"] <= model.full_depth  # chosen on the validation slices
    assert "NestedUNet" in train.model_name
    choice = ("user", train.model_name)
    assert choice in predict.model.choices and predict.model.value == choice
    assert "NestedUNet" in predict.model_info.value
    assert predict.head.enabled  # the UNet++ head choice applies to it

    predict.image.value = viewer.layers["nuclei_stack"]
    predict.head.value = "fast"
    heads: list = []
    worker = predict.run()
    worker.yielded.connect(lambda _event: heads.append(model.head))
    qtbot.waitUntil(lambda: predict.worker is None, timeout=60_000)
    assert heads and set(heads) == {"fast"}
    assert model.head == "accurate"  # given back
    labels = viewer.layers["nuclei_stack labels"].data
    assert labels.shape == (16, 256, 256)
    model.head = "fast"
    try:
        np.testing.assert_array_equal(labels, segment(viewer.layers["nuclei_stack"].data, model))
    finally:
        model.head = "accurate"
    assert predict.status.value.startswith("nuclei_stack: ")


@pytest.mark.slow
def test_training_keeps_the_viewer_responsive(make_napari_viewer, qtbot, clean_registry, progress_bars, ticks):
    import time

    _viewer, train, _predict = _widgets(make_napari_viewer)
    train.steps.value = 12
    train.val_fraction.value = 0.2
    worker = train.train()
    start = time.perf_counter()
    assert worker is not None and train.worker is worker  # returned at once, the worker runs on
    assert train.model is None and not train.plot.points["loss"]
    assert not train.train_button.enabled and train.cancel_button.enabled
    qtbot.waitUntil(lambda: train.worker is None, timeout=60_000)
    end = time.perf_counter()

    assert train.model is not None, train.status.value
    assert len(train.plot.points["loss"]) == 12
    # the GUI thread went on processing events meanwhile: a blocked loop gives no tick
    assert ticks.count(start, end) > 0.3 * (end - start) / ticks.interval
    assert ticks.longest_pause(start, end) < 0.5 * (end - start)
    assert [bar.closed for bar in progress_bars] == [True]


@pytest.mark.parametrize("gui_busy", [False, True])
@pytest.mark.slow
def test_progress_bar_counts_the_steps(make_napari_viewer, qtbot, clean_registry, progress_bars, gui_busy):
    from qtpy.QtCore import QThreadPool

    from napari_unet_stack.napari._train_widget import TrainWidget

    viewer = make_napari_viewer()
    image = np.zeros((32, 32), np.float32)
    image[8:20, 8:20] = 1.0
    layers = viewer.add_image(image, name="img"), viewer.add_labels((image > 0).astype(np.uint8), name="mask")
    train = TrainWidget(viewer)
    train.image.value, train.annotations.value = layers
    train.base_channels.value, train.depth.value = 2, 1
    train.patch_size.value, train.batch_size.value = 16, 1
    train.val_fraction.value = 0.0
    train.steps.value = 40
    train.device.value = "cpu"
    assert train.train() is not None
    if gui_busy:  # the GUI thread is busy until training is over: every event waits in the queue
        assert QThreadPool.globalInstance().waitForDone(30_000)
    qtbot.waitUntil(lambda: train.worker is None, timeout=30_000)

    assert train.model is not None, train.status.value
    assert [bar.closed for bar in progress_bars] == [True]  # one bar, gone from the activity dock
    bar = progress_bars[0]
    assert bar.total == 40 and bar.n == 40 and bar.values[-1] == 40
    assert bar.values == sorted(bar.values)


@pytest.mark.slow
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


@pytest.mark.slow
def test_bad_settings_are_a_notification(make_napari_viewer, qtbot, clean_registry):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32)), name="img")
    viewer.add_labels(np.zeros((16, 16), np.uint8), name="small")
    from napari_unet_stack.napari._train_widget import TrainWidget

    train = TrainWidget(viewer)
    assert train.train() is None
    assert "shape" in train.status.value


def _small(make_napari_viewer, steps):
    from napari_unet_stack.napari._train_widget import TrainWidget

    viewer = make_napari_viewer()
    labels = np.zeros((2, 64, 64), np.uint8)
    labels[:, 10:30, 10:30] = 1
    image = viewer.add_image(labels * 0.8 + np.random.default_rng(0).random(labels.shape) * 0.2, name="img")
    painted = viewer.add_labels(labels, name="painted")
    train = TrainWidget(viewer)
    dock = viewer.window.add_dock_widget(train)
    train.image.value, train.annotations.value = image, painted
    train.base_channels.value, train.depth.value = 4, 2
    train.patch_size.value, train.batch_size.value = 32, 2
    train.steps.value = steps
    train.device.value = "cpu"
    return viewer, train, dock


@pytest.mark.parametrize("what", ["dock", "viewer"])
@pytest.mark.slow
def test_closing_the_widget_or_the_viewer_stops_training(make_napari_viewer, qtbot, clean_registry, what):
    import sys

    viewer, train, dock = _small(make_napari_viewer, 100_000)
    uncaught: list = []
    hook, sys.excepthook = sys.excepthook, lambda *exc: uncaught.append(exc)
    try:
        worker = train.train()
        finished: list = []
        worker.finished.connect(lambda: finished.append(True))
        qtbot.waitUntil(lambda: train.status.value.startswith("step"), timeout=30_000)
        if what == "dock":
            viewer.window.remove_dock_widget(dock)
        else:
            viewer.close()
        qtbot.waitUntil(lambda: bool(finished), timeout=30_000)
        qtbot.wait(50)
    finally:
        sys.excepthook = hook
    assert not uncaught
    assert train.worker is None and train.model is None
    assert not [name for name in USER_MODELS.names() if name.startswith("img ")]  # nothing kept
    if what == "dock":
        assert train.train_button.enabled and not train.cancel_button.enabled


@pytest.mark.parametrize("where", ["folder", "missing folder", "write fails"])
@pytest.mark.slow
def test_saving_where_it_cannot_is_a_notification_and_leaves_no_file(make_napari_viewer, qtbot, clean_registry,
                                                                    tmp_path, monkeypatch, where):
    import torch
    from napari.utils.notifications import NotificationSeverity, notification_manager

    _viewer, train, _dock = _small(make_napari_viewer, 1)
    train.train(wait=True)
    assert train.model is not None, train.status.value
    shown: list[str] = []

    def record(notification):
        if notification.severity == NotificationSeverity.ERROR:
            shown.append(str(notification.message))

    target = {"folder": tmp_path, "missing folder": tmp_path / "nope" / "m.pt", "write fails": tmp_path / "m.pt"}
    if where == "write fails":  # e.g. a read-only folder, or the disk filling up half way
        def half_then_fail(obj, f, *args, **kwargs):
            with open(f, "wb") as handle:
                handle.write(b"half a checkpoint")
            raise PermissionError(13, "Permission denied", str(f))

        monkeypatch.setattr(torch, "save", half_then_fail)
    train.save_path.value = target[where]
    before = sorted(tmp_path.parent.iterdir())
    notification_manager.notification_ready.connect(record)
    try:
        assert train.save() is None
    finally:
        notification_manager.notification_ready.disconnect(record)
    assert shown, "no error notification"
    assert sorted(tmp_path.parent.iterdir()) == before  # not "<folder>.pt" beside the folder
    assert list(tmp_path.rglob("*")) == []  # and nothing (half) written


def _two_channels(make_napari_viewer):
    """A (Z, C, Y, X) image whose object shows in channel 1 only, its labels, and both widgets."""
    from napari_unet_stack.napari._predict_widget import PredictWidget
    from napari_unet_stack.napari._train_widget import TrainWidget

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    labels = np.zeros((3, 32, 32), np.uint8)
    labels[:, 8:20, 10:24] = 1
    image = rng.random((3, 2, 32, 32)).astype(np.float32) * 0.2
    image[:, 1] += labels * 0.8  # channel 0 is noise only
    layers = viewer.add_image(image, name="two"), viewer.add_labels(labels, name="painted")
    train, predict = TrainWidget(viewer), PredictWidget(viewer)
    train.image.value, train.annotations.value = layers
    train.base_channels.value, train.depth.value = 2, 1
    train.patch_size.value, train.batch_size.value = 16, 2
    train.val_fraction.value = 0.0
    train.steps.value = 3
    train.device.value = "cpu"
    return viewer, train, predict


@pytest.mark.slow
def test_train_on_a_channel_axis_then_predict_with_it(make_napari_viewer, qtbot, clean_registry):
    viewer, train, predict = _two_channels(make_napari_viewer)
    assert train.channel_axis.value is None and train.channel_axis.enabled  # default: none
    assert (None in train.channel_axis.choices) and (1 in train.channel_axis.choices)
    train.channel_axis.value = 1
    assert train.train(wait=True) is not None
    assert train.model is not None, train.status.value
    assert train.model.in_channels == 2
    choice = ("user", train.model_name)
    assert predict.model.value == choice  # in Predict right away

    predict.image.value = viewer.layers["two"]
    assert predict.channel_axis.value == 1  # the axis with the model's 2 channels
    predict.tile_size.value = None
    predict.run(wait=True)
    assert predict.status.value.startswith("two: "), predict.status.value
    labels = viewer.layers["two labels"].data
    assert labels.shape == (3, 32, 32)
    np.testing.assert_array_equal(labels, segment(viewer.layers["two"].data, train.model, channel_axis=1,
                                                  tile_size=None))


@pytest.mark.slow
def test_labels_that_do_not_match_the_channel_axis_are_a_notification(make_napari_viewer, clean_registry):
    from napari.utils.notifications import NotificationSeverity, notification_manager

    _viewer, train, _predict = _two_channels(make_napari_viewer)
    shown: list[str] = []

    def record(notification):
        if notification.severity == NotificationSeverity.ERROR:
            shown.append(str(notification.message))

    notification_manager.notification_ready.connect(record)
    try:
        for axis in (None, 0):  # none: (3, 2, 32, 32); axis 0: (2, 32, 32); the labels are (3, 32, 32)
            train.channel_axis.value = axis
            assert train.train() is None
            assert train.worker is None and train.model is None
    finally:
        notification_manager.notification_ready.disconnect(record)
    assert len(shown) == 2
    assert "no channel axis chosen" in shown[0] and "choose channel axis 1" in shown[0]
    assert "channel axis 0: (2, 32, 32)" in shown[1] and "choose channel axis 1" in shown[1]
    assert "choose channel axis 1" in train.status.value


def test_rgb_images_train_on_their_three_colours(make_napari_viewer, clean_registry):
    from napari_unet_stack.napari._train_widget import TrainWidget

    viewer = make_napari_viewer()
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[8:20, 8:20, 0] = 200
    layers = viewer.add_image(rgb, name="rgb", rgb=True), viewer.add_labels((rgb[..., 0] > 0).astype(np.uint8))
    train = TrainWidget(viewer)
    train.image.value, train.annotations.value = layers
    assert not train.channel_axis.enabled and train.channel_axis.value == -1
    train.base_channels.value, train.depth.value = 2, 1
    train.patch_size.value, train.batch_size.value = 16, 1
    train.val_fraction.value, train.steps.value, train.device.value = 0.0, 2, "cpu"
    assert train.train(wait=True) is not None
    assert train.model is not None and train.model.in_channels == 3, train.status.value


@pytest.mark.parametrize("state", [True, False])
@pytest.mark.slow
def test_save_with_or_without_the_optimizer_state(make_napari_viewer, clean_registry, tmp_path, state):
    from napari_unet_stack import load_model

    _viewer, train, _dock = _small(make_napari_viewer, 2)
    assert train.save_state.value  # on by default, as save_model
    train.train(wait=True)
    assert train.model is not None, train.status.value
    assert train.model.training_state is not None
    train.save_state.value = state
    train.save_path.value = tmp_path / "m.pt"
    saved = train.save()
    assert saved is not None and saved.is_file()
    loaded = load_model(saved)
    assert (loaded.training_state is not None) is state
    if not state:  # smaller than with the state
        train.save_state.value = True
        train.save_path.value = tmp_path / "full.pt"
        full = train.save()
        assert saved.stat().st_size < full.stat().st_size


def test_the_form_starts_from_the_librarys_defaults(make_napari_viewer):
    """One set of training defaults: the widget's are `train`'s (and ``unet-stack train``'s)."""
    from napari_unet_stack.models import ARCHITECTURES
    from napari_unet_stack.napari._train_widget import TrainWidget
    from napari_unet_stack.training.settings import DEFAULT_STEPS, ModelSettings, TrainSettings

    train = TrainWidget(make_napari_viewer())
    network, settings = ModelSettings(), TrainSettings()
    assert list(train.architecture.choices) == list(ARCHITECTURES)
    assert train.architecture.value == network.architecture
    assert (train.base_channels.value, train.depth.value) == (network.base_channels, network.depth) == (16, 4)
    assert train.downsampling.value == network.downsampling == "maxpool"
    assert list(train.downsampling.choices) == ["maxpool", "strided"] and train.downsampling.enabled
    train.architecture.value = "NestedUNet"  # a UNet option only
    assert not train.downsampling.enabled
    train.architecture.value = "UNet"
    assert train.downsampling.enabled
    assert train.steps.value == DEFAULT_STEPS == 1000
    assert (train.patch_size.value, train.batch_size.value) == (settings.patch_size, settings.batch_size)
    assert train.val_fraction.value == pytest.approx(settings.val_fraction)
    assert train.device.value == settings.device


def test_a_failed_save_says_so_in_the_status(make_napari_viewer, clean_registry, tmp_path, monkeypatch):
    """Issue 11, item 24: after a failed save the status says it failed, not "saved to ..."."""
    import torch

    from napari_unet_stack.models import UNet
    from napari_unet_stack.napari._train_widget import TrainWidget

    widget = TrainWidget(make_napari_viewer())
    widget.model = UNet(1, 2, base_channels=2, depth=1)  # as a finished run leaves it
    widget.save_path.value = tmp_path / "first.pt"
    assert widget.save() == tmp_path / "first.pt"
    assert widget.status.value == f"saved to {tmp_path / 'first.pt'}"

    def disk_full(obj, f, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    widget.save_path.value = tmp_path / "second.pt"
    assert widget.save() is None
    assert widget.status.value.startswith("not saved: ") and "No space left on device" in widget.status.value
    assert not (tmp_path / "second.pt").exists()
    widget.save_path.value = tmp_path  # a folder: not saved either, and the status says why
    assert widget.save() is None
    assert widget.status.value == "not saved: choose a file name to save the model to"


@pytest.mark.slow
def test_train_on_one_channel_of_a_multichannel_image_then_predict(make_napari_viewer, qtbot, clean_registry):
    """Issue 11, item 2: the Train widget trains a one-channel model on the channel chosen (or
    their mean); Predict then offers the same choice for that image."""
    import torch

    from napari_unet_stack import train as train_api

    viewer, train, predict = _two_channels(make_napari_viewer)
    assert train.channel.choices == (None,) and not train.channel.enabled  # no channel axis yet
    train.channel_axis.value = 1
    assert train.channel.choices == (None, 0, 1, "mean") and train.channel.value is None
    train.channel.value = 1
    torch.manual_seed(0)
    train.train(wait=True)
    assert train.model is not None, train.status.value
    assert train.model.in_channels == 1
    image, labels = viewer.layers["two"].data, viewer.layers["painted"].data
    options = {"steps": 3, "patch_size": 16, "batch_size": 2, "val_fraction": 0.0, "device": "cpu"}
    torch.manual_seed(0)
    expected, _ = train_api(image, labels, train.model.__class__(1, 2, base_channels=2, depth=1),
                            channel_axis=1, channel=1, **options)
    for key, value in expected.state_dict().items():
        torch.testing.assert_close(train.model.state_dict()[key], value)
    predict.image.value = viewer.layers["two"]
    predict.channel_axis.value = 1
    assert predict.channel.choices == (0, 1, "mean") and predict.channel.enabled


def test_a_0_255_mask_makes_a_two_class_network_in_the_widget(make_napari_viewer, clean_registry):
    """Issue 11, item 22: the widget sizes its network by the training rule (a 0/255 mask is
    binary, with the note), not by the largest value."""
    viewer, train, _predict = _two_channels(make_napari_viewer)
    viewer.layers["painted"].data = viewer.layers["painted"].data * 255
    train.channel_axis.value = 1
    train.binarize.value = False
    with pytest.warns(UserWarning, match="only the values 0 and 255: trained as a binary mask"):
        job = train._prepare()
    assert job.model.out_channels == 2


@pytest.mark.slow
def test_train_a_strided_unet(make_napari_viewer, clean_registry):
    from napari_unet_stack.models import UNet

    viewer, train, _predict = _widgets(make_napari_viewer)
    train.downsampling.value = "strided"
    train.steps.value, train.val_fraction.value = 2, 0.0
    assert train.train(wait=True) is not None
    model = train.model
    assert model is not None, train.status.value
    assert type(model) is UNet and model.downsampling == "strided" and model.depth == 2
    assert train.model_name.endswith("strided")
    image = viewer.layers["nuclei_stack"].data[:2]
    np.testing.assert_array_equal(segment(image, model, tile_size=64), segment(image, model, tile_size=None))


@pytest.mark.slow
def test_a_zip_name_saves_a_bioimageio_package(make_napari_viewer, clean_registry, tmp_path):
    pytest.importorskip("bioimageio.spec")
    from napari_unet_stack import load_model
    from napari_unet_stack.models import UNet
    from napari_unet_stack.napari._train_widget import TrainWidget

    widget = TrainWidget(make_napari_viewer())
    widget.model = UNet(1, 2, base_channels=4, depth=2).eval()  # as a finished run leaves it
    widget.save_path.value = tmp_path / "pkg.zip"
    assert widget.save(wait=True) == tmp_path / "pkg.zip", widget.status.value
    assert widget.status.value == f"saved to {tmp_path / 'pkg.zip'}"
    assert load_model(tmp_path / "pkg.zip").config() == widget.model.config()


@pytest.mark.slow
def test_a_package_is_written_off_the_main_thread(make_napari_viewer, clean_registry, qtbot, tmp_path):
    """Writing a package takes seconds: save() returns at once, the UI says what happens and
    neither a second save nor training starts until it is written."""
    pytest.importorskip("bioimageio.spec")
    import threading

    from napari_unet_stack.models import UNet
    from napari_unet_stack.napari import _train_widget
    from napari_unet_stack.napari._train_widget import TrainWidget

    release, threads = threading.Event(), []
    real = _train_widget.write_package

    def held(model, path):  # the export, held until the test has looked at the widget
        threads.append(threading.current_thread())
        release.wait(30)
        return real(model, path)

    widget = TrainWidget(make_napari_viewer())
    widget.model = UNet(1, 2, base_channels=4, depth=2).eval()
    widget.save_path.value = tmp_path / "pkg.zip"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_train_widget, "write_package", held)
        assert widget.save() is None
        assert widget.status.value == "writing the bioimage.io package pkg.zip..."
        assert not widget.save_button.enabled and not widget.train_button.enabled
        assert widget.train() is None and "being written" in widget.status.value
        assert widget.save() is None and "being written" in widget.status.value
        release.set()
        qtbot.waitUntil(lambda: widget.status.value.startswith("saved to"), timeout=60_000)
    assert threads and threads[0] is not threading.main_thread()
    assert (tmp_path / "pkg.zip").is_file() and widget.save_button.enabled and widget.train_button.enabled


def test_a_zip_name_without_the_extra_says_how_to_install(make_napari_viewer, clean_registry, tmp_path, monkeypatch):
    import sys

    from napari_unet_stack.models import UNet
    from napari_unet_stack.napari._train_widget import TrainWidget

    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)
    widget = TrainWidget(make_napari_viewer())
    widget.model = UNet(1, 2, base_channels=2, depth=1)
    widget.save_path.value = tmp_path / "pkg.zip"
    assert widget.save(wait=True) is None
    assert widget.status.value.startswith("not saved: ") and "[bioimageio]" in widget.status.value
    assert not (tmp_path / "pkg.zip").exists()


@pytest.mark.slow
def test_an_instance_labels_layer_trains_an_instance_model(make_napari_viewer, qtbot, clean_registry):
    from napari_unet_stack.training import is_instance_model

    viewer, train, _predict = _widgets(make_napari_viewer)  # the sample's ground truth: one id per nucleus
    assert train.instances.value and not train.binarize.enabled
    semantic = viewer.add_labels((viewer.layers["nuclei_stack ground truth"].data > 0).astype(np.uint8), name="mask")
    train.annotations.value = semantic
    assert not train.instances.value and train.binarize.enabled  # one id: a semantic mask
    train.annotations.value = viewer.layers["nuclei_stack ground truth"]
    train.steps.value, train.val_fraction.value = 2, 0.2
    train.train(wait=True)
    assert train.model is not None, train.status.value
    assert is_instance_model(train.model) and train.model.out_channels == 3
    assert "instance F1" in train.status.value
    # the 3 validation slices of the sample's dense labels hold enough nuclei to choose the decoding
    chosen = train.model.meta["provenance"]["decoding"]
    assert train.status.value.endswith(
        f"; decoding chosen on {chosen['data']}: threshold {chosen['threshold']:g}, "
        f"marker threshold {chosen['marker_threshold']:g}"
    )
    labels = segment(viewer.layers["nuclei_stack"].data[:2], train.model, instances=True, device="cpu")
    assert labels.shape == (2, 256, 256)
