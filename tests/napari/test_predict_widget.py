"""The Predict dock widget in a real viewer (under Xvfb): run, grow, re-run, re-threshold, cancel,
errors, and the scripted-use example of the README as written."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from napari_unet_stack import UNet, predict, segment
from napari_unet_stack.devices import cpu_native_bf16
from napari_unet_stack.models.base import SegmentationNetwork
from napari_unet_stack.napari._predict_widget import FILE, PredictWidget
from napari_unet_stack.napari._registry import USER_MODELS

pytestmark = pytest.mark.gui


class _Shared(list):
    """A list that `copy.deepcopy` shares instead of copying (the engine runs a copy of the model)."""

    def __deepcopy__(self, memo):
        return self


#: precision="auto" on a CPU with native bfloat16 probes a new model once: two forwards
PROBE_CALLS = 2 if cpu_native_bf16() else 0

class Threshold(SegmentationNetwork):
    """A one-pixel 'network': sigmoid(40 (x - 0.22)) on the normalized image (Dice ~0.9 on the
    nuclei sample). ``delay`` slows every forward down, ``calls`` counts them and ``times`` are
    when they began (the engine's copies included)."""

    depth = 1

    def __init__(self, in_channels: int = 1, delay: float = 0.0):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, 1
        self.conv = nn.Conv2d(in_channels, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(40.0 / in_channels)
            self.conv.bias.fill_(-40.0 * 0.22)
        self.delay = delay
        self.times: list[float] = _Shared()

    @property
    def calls(self) -> int:
        return len(self.times)

    def _reach(self) -> int:
        return 0

    def forward(self, x):
        self.times.append(time.perf_counter())
        if self.delay:
            time.sleep(self.delay)
        return self.conv(x)


def dice(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@pytest.fixture
def user_model():
    """Register a model in the shared registry for the duration of a test."""
    names = []

    def add(model, name="threshold"):
        names.append(USER_MODELS.add(name, model))
        return ("user", names[-1])

    yield add
    for name in names:
        USER_MODELS.remove(name)


@pytest.fixture
def errors(monkeypatch):
    """Messages of the error notifications shown during a test."""
    from napari.utils.notifications import NotificationSeverity, notification_manager

    shown: list[str] = []

    def record(notification):
        if notification.severity == NotificationSeverity.ERROR:
            shown.append(str(notification.message))

    notification_manager.notification_ready.connect(record)
    yield shown
    notification_manager.notification_ready.disconnect(record)


def _sample_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet-stack", "nuclei_stack")
    image = viewer.layers["nuclei_stack"]
    image.scale = (2.0, 0.5, 0.5)
    image.translate = (10.0, -3.0, 4.0)
    image.axis_labels = ("z", "y", "x")
    image.units = ("micrometer", "micrometer", "micrometer")
    return viewer, image


def _run(qtbot, widget, timeout=60_000):
    worker = widget.run()
    assert worker is not None, widget.status.value
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)
    return worker


@pytest.mark.slow
def test_run_on_sample_from_the_plugin_menu(make_napari_viewer, qtbot, errors):
    from napari_unet_stack.checkpoints import list_models
    from napari_unet_stack.samples import load_sample

    viewer, image = _sample_viewer(make_napari_viewer)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-unet-stack", "Predict")
    widget.image.value = image
    assert list_models() == ["nuclei-unet", "nuclei-unet-z", "nuclei-unetpp"]
    assert widget.model.value == ("bundled", "nuclei-unet")  # the default
    assert "UNet" in widget.model_info.value and "interior" in widget.model_info.value  # instance model
    grown: list[int] = []
    worker = widget.run()
    worker.yielded.connect(lambda _e: grown.append(int((viewer.layers["nuclei_stack labels"].data > 0)
                                                        .any(axis=(1, 2)).sum())))
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)

    assert not errors
    labels = viewer.layers["nuclei_stack labels"]
    assert labels.data.shape == (16, 256, 256) and labels.data.dtype == np.uint8
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    assert tuple(labels.axis_labels) == ("z", "y", "x")
    assert [str(u) for u in labels.units] == ["micrometer"] * 3
    # 0.865 for the instance model trained on the varied data (the held-out stack is a hard scene)
    assert dice(labels.data, load_sample("nuclei_stack").labels) > 0.8
    assert widget.device_used.value.startswith("used: cpu")
    # the layer grew slice by slice while the worker ran
    assert grown == sorted(grown) and grown[-1] == 16 and any(0 < g < 16 for g in grown)


@pytest.mark.slow
def test_rerun_updates_the_layer_and_threshold_needs_no_rerun(make_napari_viewer, qtbot, user_model):
    viewer, image = _sample_viewer(make_napari_viewer)
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget)
    model = Threshold()
    widget.image.value = image
    widget.model.value = user_model(model)
    widget.instances.value = True
    widget.probability.value = True
    _run(qtbot, widget)
    names = [layer.name for layer in viewer.layers]
    assert {"nuclei_stack labels", "nuclei_stack instances", "nuclei_stack probability"} <= set(names)
    labels = viewer.layers["nuclei_stack labels"]
    before = labels.data.copy()
    prob = viewer.layers["nuclei_stack probability"].data
    assert prob.dtype == np.uint8 and prob.shape == before.shape  # P(foreground), 255 = 1.0

    calls = model.calls
    widget.threshold.value = 0.9
    assert model.calls == calls  # no network
    np.testing.assert_array_equal(labels.data, segment(image.data, model, threshold=0.9))
    assert labels.data.sum() < before.sum()
    np.testing.assert_array_equal(prob, np.rint(predict(image.data, model)[0] * 255))  # 255 = 1.0
    assert viewer.layers["nuclei_stack instances"].data.max() > 0

    widget.threshold.value = 0.5
    np.testing.assert_array_equal(labels.data, before)
    _run(qtbot, widget)  # a re-run updates the same layers
    assert [layer.name for layer in viewer.layers] == names
    np.testing.assert_array_equal(viewer.layers["nuclei_stack labels"].data, before)


@pytest.mark.parametrize(("rerun", "how"), [(False, "button"), (True, "button"), (True, "activity dock")])
@pytest.mark.slow
def test_cancel_mid_run_leaves_the_viewer_as_it_was(make_napari_viewer, qtbot, user_model, rerun, how):
    viewer, image = _sample_viewer(make_napari_viewer)
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image.value = image
    widget.tile_size.value = 256
    widget.model.value = user_model(Threshold())
    if rerun:
        _run(qtbot, widget)
    names = [layer.name for layer in viewer.layers]
    old = viewer.layers["nuclei_stack labels"].data if rerun else None
    old_copy = None if old is None else old.copy()

    widget.model.value = user_model(Threshold(delay=0.05), "slow")
    widget.batch_size.value = 1
    worker = widget.run()
    seen = []

    def cancel_once(event):
        seen.append(event.done)
        if event.slices and len(seen) < 3:
            # napari's activity dock cancels a task through worker.quit()
            widget.cancel() if how == "button" else worker.quit()

    worker.yielded.connect(cancel_once)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert 0 < seen[-1] < 16, seen  # stopped early
    assert widget.status.value.startswith("cancelled")
    assert [layer.name for layer in viewer.layers] == names
    assert not any(_inference_mode_in_pool_threads(qtbot))  # the engine was closed in its own thread
    if rerun:
        assert viewer.layers["nuclei_stack labels"].data is old
        np.testing.assert_array_equal(old, old_copy)


@pytest.mark.slow
def test_unetpp_fast_head(make_napari_viewer, qtbot, user_model):
    from napari_unet_stack import UNet
    from napari_unet_stack.samples import load_sample

    sample = load_sample("nuclei_stack")
    viewer = make_napari_viewer()
    viewer.add_image(sample.image[:3], name="img")
    widget = PredictWidget(viewer)
    widget.model.value = user_model(UNet(1, 2, base_channels=2, depth=2), "unet")
    assert not widget.head.enabled
    widget.set_model("nuclei-unetpp")
    assert widget.head.enabled
    model = widget._current_model()
    widget.head.value = "fast"
    seen = []
    worker = widget.run()
    worker.yielded.connect(lambda _e: seen.append(model.head))
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert seen and set(seen) == {"fast"}  # used while running
    assert model.head == "accurate"  # and given back
    assert dice(viewer.layers["img labels"].data, sample.labels[:3]) > 0.8  # the bundled models' ~0.86


def _inference_mode_in_pool_threads(qtbot) -> list[bool]:
    """torch's (thread-local) inference mode in every thread of Qt's pool, where workers run."""
    from napari.qt.threading import create_worker
    from qtpy.QtCore import QThreadPool

    def probe():
        time.sleep(0.2)  # keep this thread busy so that the next probe gets another one
        return torch.is_inference_mode_enabled()

    seen: list[bool] = []
    workers = [create_worker(probe, _start_thread=False) for _ in range(QThreadPool.globalInstance().maxThreadCount())]
    for worker in workers:
        worker.returned.connect(seen.append)
        worker.start()
    qtbot.waitUntil(lambda: len(seen) == len(workers), timeout=10_000)
    return seen


@pytest.mark.parametrize(("shape", "per_slice"), [
    ((3, 96, 96), 1),  # a slice smaller than the tile: one tile each
    ((3, 300, 520), 2 * 3),  # ceil(300 / 256) x ceil(520 / 256) tiles of 256 x 256 each
])
@pytest.mark.slow
def test_progress_bar_counts_slices_times_tiles(make_napari_viewer, qtbot, user_model, progress_bars,
                                                shape, per_slice):
    from napari.utils import progress

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random(shape, np.float32), name="img")
    widget = PredictWidget(viewer)
    model = Threshold()
    widget.model.value = user_model(model)
    widget.tile_size.value = 256
    widget.batch_size.value = 1
    _run(qtbot, widget)

    total = shape[0] * per_slice
    assert [bar.closed for bar in progress_bars] == [True]  # one bar, gone from the activity dock
    bar = progress_bars[0]
    assert bar not in progress._all_instances
    assert bar.total == total
    assert bar.n == total and bar.values[-1] == total  # reached the end
    assert bar.values == sorted(bar.values) and len(set(bar.values)) > 1  # moved forward, tile by tile
    assert bar.closed and widget._pbar is None
    assert model.calls == total + PROBE_CALLS  # one forward per tile (batch size 1), and the precision probe
    assert widget.status.value.startswith(f"img: {total} tile(s) of ")


@pytest.mark.parametrize("wait", [False, True])
@pytest.mark.slow
def test_the_viewer_stays_responsive_while_predicting(make_napari_viewer, qtbot, user_model, ticks, wait):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((3, 300, 520), np.float32), name="img")
    widget = PredictWidget(viewer)
    model = Threshold(delay=0.05)  # 18 tiles: about a second of work
    widget.model.value = user_model(model)
    widget.tile_size.value = 256
    widget.batch_size.value = 1

    worker = widget.run(wait=wait)
    assert worker is not None, widget.status.value
    if wait:
        assert widget.worker is None and model.calls == 18 + PROBE_CALLS  # returned when done...
    else:
        assert widget.worker is worker and model.calls < 18 + PROBE_CALLS  # returned at once, the worker runs on
        assert not widget.run_button.enabled and widget.cancel_button.enabled
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)

    assert model.calls == 18 + PROBE_CALLS
    # ...and while the network ran the GUI thread went on processing events: a blocked loop
    # gives no tick
    start, end = model.times[0], model.times[-1] + model.delay
    assert end - start > 0.8
    assert ticks.count(start, end) > 0.3 * (end - start) / ticks.interval
    assert ticks.longest_pause(start, end) < 0.5 * (end - start)
    labels = viewer.layers["img labels"].data
    assert labels.shape == (3, 300, 520)
    np.testing.assert_array_equal(labels, segment(viewer.layers["img"].data, model, tile_size=256))


def test_bad_checkpoint_shows_a_notification(make_napari_viewer, qtbot, tmp_path, errors):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.uint8), name="img")
    widget = PredictWidget(viewer)
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a checkpoint")
    widget.model.value = FILE
    widget.checkpoint.value = bad
    assert errors and "broken.pt" in errors[-1]
    assert widget.model_info.value.startswith("cannot load")
    n = len(errors)
    assert widget.run() is None  # nothing starts, nothing crashes
    assert len(errors) == n + 1
    assert [layer.name for layer in viewer.layers] == ["img"]


class _OutOfMemory(Threshold):
    def forward(self, x):
        raise RuntimeError("CUDA out of memory (simulated)")


@pytest.mark.slow
def test_error_in_the_worker_is_a_notification_and_restores(make_napari_viewer, qtbot, user_model, errors):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((2, 64, 64)), name="img")
    widget = PredictWidget(viewer)
    widget.model.value = user_model(_OutOfMemory())
    _run(qtbot, widget)
    assert errors and "out of memory" in errors[-1]
    assert widget.status.value.startswith("failed")
    assert [layer.name for layer in viewer.layers] == ["img"]


def test_channels_that_do_not_fit_the_model_are_refused_before_a_run(make_napari_viewer, user_model, errors):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((2, 64, 64)), name="img")
    widget = PredictWidget(viewer)
    widget.model.value = user_model(Threshold(in_channels=3))  # 3 channels expected, 1 given
    widget.channel_axis.value = None
    assert widget.run() is None
    assert errors and "3 input channel" in errors[-1] and "'img'" in errors[-1]
    assert [layer.name for layer in viewer.layers] == ["img"]


@pytest.mark.slow
def test_rgb_image(make_napari_viewer, qtbot, user_model):
    viewer = make_napari_viewer()
    rgb = np.zeros((96, 80, 3), np.uint8)
    rgb[20:50, 30:60] = 200
    image = viewer.add_image(rgb, name="photo", scale=(0.5, 0.25))
    assert image.rgb
    widget = PredictWidget(viewer)
    widget.model.value = user_model(Threshold(in_channels=3))
    widget.image.value = image
    assert widget.channel_axis.value == -1
    _run(qtbot, widget)
    labels = viewer.layers["photo labels"]
    assert labels.data.shape == (96, 80)
    np.testing.assert_allclose(labels.scale, (0.5, 0.25))
    assert labels.data[30, 40] == 1 and labels.data[5, 5] == 0


@pytest.mark.slow
def test_multichannel_axis_follows_the_model(make_napari_viewer, qtbot, user_model):
    viewer = make_napari_viewer()
    data = np.zeros((4, 2, 64, 64), np.float32)  # Z, C, Y, X
    data[:, :, 10:30, 10:30] = 1.0
    image = viewer.add_image(data, name="two", scale=(3.0, 1.0, 0.5, 0.5))
    widget = PredictWidget(viewer)
    widget.model.value = user_model(Threshold(in_channels=2))
    widget.image.value = image
    assert widget.channel_axis.value == 1
    _run(qtbot, widget)
    labels = viewer.layers["two labels"]
    assert labels.data.shape == (4, 64, 64)
    np.testing.assert_allclose(labels.scale, (3.0, 0.5, 0.5))
    assert labels.data[:, 20, 20].all() and not labels.data[:, 50, 50].any()


# -- the README example ------------------------------------------------------------------
DOC = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    """The README's one python example that docks the Predict widget, as written."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    docked = [b for b in blocks if 'add_plugin_dock_widget("napari-unet-stack", "Predict")' in b]
    assert len(docked) == 1, "README.md should hold one python example docking Predict"
    return docked[0]


@pytest.mark.slow
def test_scripted_predict_example(make_napari_viewer, monkeypatch, tmp_path):
    import napari
    import napari_unet_stack.checkpoints as checkpoints
    from napari_unet_stack.samples import load_sample

    assert "nuclei-unet" in checkpoints.list_models()
    monkeypatch.setattr(napari, "Viewer", lambda: make_napari_viewer())
    monkeypatch.setattr(napari, "run", lambda: None)
    monkeypatch.chdir(tmp_path)

    namespace: dict = {}
    exec(compile(_example(), str(DOC), "exec"), namespace)

    viewer, labels = namespace["viewer"], namespace["labels"]
    assert labels.data.shape == (16, 256, 256)
    assert "nuclei_stack instances" in viewer.layers
    assert namespace["predict"].device_used.value.startswith("used:")
    truth = load_sample("nuclei_stack").labels > 0
    at_07 = labels.data > 0
    assert 2 * (at_07 & truth).sum() / (at_07.sum() + truth.sum()) > 0.8  # ~0.86 at 0.5
    from napari_unet_stack.io import read_image

    with read_image(tmp_path / "nuclei_labels.tif") as back:
        np.testing.assert_array_equal(np.asarray(back.data[...]), labels.data)


# -- robustness: odd layers, and layers / widget / viewer going away mid-run ---------------
@pytest.mark.slow
def test_labels_keep_the_images_rotate_shear_and_affine(make_napari_viewer, qtbot, user_model):
    viewer = make_napari_viewer()
    data = np.random.default_rng(0).random((2, 2, 32, 32)).astype(np.float32)  # Z, C, Y, X
    affine = np.eye(5)
    affine[2:4, 2:4] = [[0.8, -0.6], [0.6, 0.8]]
    affine[2:4, 4] = [5.0, 2.0]
    image = viewer.add_image(data, name="img", scale=(3.0, 1.0, 0.5, 0.25), rotate=30,
                             shear=[0.0, 0.1, 0.2, 0.0, 0.0, 0.3], affine=affine)
    widget = PredictWidget(viewer)
    widget.model.value = user_model(Threshold(in_channels=2))
    widget.image.value = image
    assert widget.channel_axis.value == 1
    _run(qtbot, widget)
    labels = viewer.layers["img labels"]
    assert labels.data.shape == (2, 32, 32)
    for point in ([0, 0, 0], [1, 10, 20], [1, 31, 5]):
        z, y, x = point
        world = np.asarray(image.data_to_world([z, 0, y, x]))
        np.testing.assert_allclose(labels.data_to_world(point), world[[0, 2, 3]], atol=1e-9)
    assert not np.allclose(labels.rotate, np.eye(3))  # the rotation itself, not just where it lands


def test_multiscale_image_is_segmented_at_full_resolution(make_napari_viewer, qtbot, user_model, errors):
    viewer = make_napari_viewer()
    base = np.zeros((2, 128, 128), np.float32)
    base[:, 40:80, 40:80] = 1.0
    image = viewer.add_image([base, base[:, ::2, ::2], base[:, ::4, ::4]], multiscale=True, name="pyr",
                             scale=(3.0, 0.5, 0.5), translate=(1.0, 2.0, 3.0))
    widget = PredictWidget(viewer)
    widget.model.value = user_model(Threshold())
    widget.image.value = image
    _run(qtbot, widget)
    assert not errors
    labels = viewer.layers["pyr labels"]
    assert labels.data.shape == (2, 128, 128)
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    np.testing.assert_array_equal(labels.data > 0, base > 0)


def test_rgba_image_with_an_rgb_model_is_refused_before_anything_starts(make_napari_viewer, user_model, errors):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((64, 64, 4), np.uint8), name="shot")
    assert image.rgb
    widget = PredictWidget(viewer)
    widget.model.value = user_model(Threshold(in_channels=3))
    widget.image.value = image
    assert widget.run() is None
    assert errors and "RGBA" in errors[-1] and "alpha" in errors[-1]
    assert widget.status.value.startswith("not started")
    assert [layer.name for layer in viewer.layers] == ["shot"]


@pytest.mark.parametrize("what", ["image", "labels", "labels of an earlier run", "dock", "viewer"])
@pytest.mark.slow
def test_a_run_stops_when_its_layers_the_widget_or_the_viewer_go(make_napari_viewer, qtbot, user_model, errors,
                                                                 what):
    import sys

    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(0).random((8, 64, 64)).astype(np.float32), name="img")
    widget = PredictWidget(viewer)
    dock = viewer.window.add_dock_widget(widget)
    widget.image.value = image
    widget.batch_size.value = 1
    if what == "labels of an earlier run":
        widget.model.value = user_model(Threshold(), "fast")
        _run(qtbot, widget)
    model = Threshold(delay=0.05)
    widget.model.value = user_model(model, "slow")
    uncaught: list = []
    hook, sys.excepthook = sys.excepthook, lambda *exc: uncaught.append(exc)
    try:
        worker = widget.run()
        finished: list = []
        worker.finished.connect(lambda: finished.append(True))
        qtbot.waitUntil(lambda: model.calls >= 2, timeout=10_000)
        if what == "image":
            viewer.layers.remove(image)
        elif what.startswith("labels"):
            viewer.layers.remove("img labels")
        elif what == "dock":
            viewer.window.remove_dock_widget(dock)
        else:
            viewer.close()
        qtbot.waitUntil(lambda: bool(finished), timeout=10_000)
        qtbot.wait(50)  # let the last queued signals through
    finally:
        sys.excepthook = hook
    assert not uncaught and not errors
    assert model.calls < 8  # stopped early
    assert widget.worker is None and widget._job is None
    if what == "viewer":
        return  # its controls are gone with it
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    assert widget.status.value.startswith("cancelled")
    assert [layer.name for layer in viewer.layers] == ([] if what == "image" else ["img"])
    if what != "dock":
        assert "was removed" in widget.status.value


@pytest.mark.slow
def test_cancel_at_once_and_a_second_run_while_one_runs(make_napari_viewer, qtbot, user_model):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((6, 64, 64)).astype(np.float32), name="img")
    widget = PredictWidget(viewer)
    model = Threshold(delay=0.02)
    widget.model.value = user_model(model)
    widget.batch_size.value = 1
    worker = widget.run()
    assert widget.run() is None  # refused, the first run goes on
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
    assert worker is not None and model.calls < 6
    assert widget.status.value == "cancelled: the viewer is as it was"
    assert [layer.name for layer in viewer.layers] == ["img"]
    widget.threshold.value = 0.3  # moved while running: the result uses the new threshold
    worker = widget.run()
    widget.threshold.value = 0.9
    qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
    assert widget.results.eager["img labels"].labels is viewer.layers["img labels"].data
    image = viewer.layers["img"].data
    np.testing.assert_array_equal(viewer.layers["img labels"].data, segment(image, model, threshold=0.9))


@pytest.mark.parametrize("what", ["image", "labels"])
@pytest.mark.slow
def test_a_run_stops_when_its_layer_goes_in_the_widget_napari_makes(make_napari_viewer, qtbot, user_model, errors,
                                                                     what):
    """Issue 11, item 21: napari gives a plugin's widget a PublicOnlyProxy of the viewer (its
    ``add_labels`` returns a proxy, ``layers.events.removed`` the layer itself): removing the
    labels layer mid-run must still cancel the run, and no result is kept for a layer gone."""
    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(0).random((16, 64, 64)).astype(np.float32), name="img")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-unet-stack", "Predict")
    assert type(widget._viewer).__name__ == "PublicOnlyProxy"  # what napari hands plugins
    widget.image.value = viewer.layers["img"]
    widget.batch_size.value = 1
    model = Threshold(delay=0.05)
    widget.model.value = user_model(model, "slow")
    worker = widget.run()
    finished: list = []
    worker.finished.connect(lambda: finished.append(True))
    qtbot.waitUntil(lambda: model.calls >= 2, timeout=10_000)
    viewer.layers.remove(image if what == "image" else "img labels")
    qtbot.waitUntil(lambda: bool(finished), timeout=10_000)
    qtbot.wait(50)
    assert not errors and model.calls < 16  # stopped early
    removed = "img" if what == "image" else "img labels"
    assert widget.status.value == f"cancelled: layer {removed!r} was removed"
    assert [layer.name for layer in viewer.layers] == ([] if what == "image" else ["img"])
    assert "img labels" not in widget.results.eager


@pytest.mark.parametrize("channel", [1, "mean"])
def test_a_one_channel_model_on_an_rgb_image_offers_a_channel_choice(make_napari_viewer, qtbot, user_model,
                                                                      channel):
    """Issue 11, item 2: the channel counts differ, so the form offers each channel and their
    mean; the labels are segment's with that ``channel=``."""
    viewer = make_napari_viewer()
    rgb = np.random.default_rng(0).integers(0, 60, (48, 40, 3), dtype=np.uint8)
    rgb[10:30, 10:25, 1] = 250  # an object in green only
    image = viewer.add_image(rgb, name="photo")
    widget = PredictWidget(viewer)
    model = Threshold()
    widget.model.value = user_model(model)
    widget.image.value = image
    assert widget.channel.choices == (0, 1, 2, "mean") and widget.channel.enabled
    widget.channel.value = channel
    _run(qtbot, widget)
    assert widget.status.value.startswith("photo:"), widget.status.value
    expected = segment(rgb, model, channel_axis=-1, channel=channel, tile_size=None)
    np.testing.assert_array_equal(viewer.layers["photo labels"].data, expected)
    # a model taking the three colours: nothing to choose
    widget.model.value = user_model(Threshold(in_channels=3), "three")
    assert widget.channel.choices == (None,) and not widget.channel.enabled


def test_the_channel_choice_follows_the_channel_axis(make_napari_viewer, user_model):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((2, 3, 32, 32)).astype(np.float32), name="img")
    widget = PredictWidget(viewer)
    widget.model.value = user_model(Threshold())
    widget.channel_axis.value = 1
    assert widget.channel.choices == (0, 1, 2, "mean")
    widget.channel_axis.value = None  # one channel: the choice no longer applies
    assert widget.channel.choices == (None,) and not widget.channel.enabled


@pytest.mark.slow
def test_a_bioimageio_package_is_a_checkpoint_file(make_napari_viewer, qtbot, tmp_path):
    """Issue 12: Predict offers and loads bioimage.io packages (a zip with an rdf.yaml)."""
    import zipfile

    import yaml

    from napari_unet_stack.bioimageio.export import package_fields, write_files
    from napari_unet_stack.models import UNet

    model = UNet(1, 2, base_channels=4, depth=2).eval()
    files = tmp_path / "files"
    files.mkdir()
    rdf = write_files(model, files, package_fields(model, None, None, "Tester", None, "CC-BY-4.0", None, {}))
    (files / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    package = tmp_path / "model.zip"
    with zipfile.ZipFile(package, "w") as archive:
        for path in sorted(files.iterdir()):
            archive.write(path, path.name)
    viewer = make_napari_viewer()
    image = np.random.default_rng(0).random((2, 64, 64)).astype(np.float32)
    viewer.add_image(image, name="img")
    widget = PredictWidget(viewer)
    assert "*.zip" in widget.checkpoint.filter and "*.yaml" in widget.checkpoint.filter
    widget.model.value = FILE
    widget.checkpoint.value = package
    _run(qtbot, widget)
    np.testing.assert_array_equal(viewer.layers["img labels"].data, segment(image, model))


def _lively_unet(seed: int) -> UNet:
    """A small UNet with He-initialized convolutions: its outputs follow the input."""
    torch.manual_seed(seed)
    model = UNet(1, 2, base_channels=4, depth=2).eval()
    for conv in (m for m in model.modules() if isinstance(m, nn.Conv2d)):
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    return model


def test_border_from_the_advanced_section_reaches_the_engine(make_napari_viewer, qtbot, user_model):
    viewer = make_napari_viewer()
    image = np.random.default_rng(3).random((40, 52)).astype(np.float32)
    viewer.add_image(image, name="img")
    widget = PredictWidget(viewer)
    model = _lively_unet(0)
    widget.model.value = user_model(model)
    widget.probability.value = True
    widget.border.value = 0
    _run(qtbot, widget)
    expected = np.rint(predict(image, model, border=0)[1] * 255)  # 255 = 1.0
    np.testing.assert_array_equal(viewer.layers["img probability"].data, expected)
    assert (expected != np.rint(predict(image, model)[1] * 255)).any()  # the default border differs


@pytest.mark.slow
def test_test_time_flips_from_the_advanced_section_reach_the_engine(make_napari_viewer, qtbot, user_model):
    viewer = make_napari_viewer()
    image = np.random.default_rng(4).random((40, 52)).astype(np.float32)
    viewer.add_image(image, name="img")
    widget = PredictWidget(viewer)
    model = _lively_unet(1)  # not mirror symmetric
    widget.model.value = user_model(model)
    widget.probability.value = True
    widget.tta.value = "flips"
    _run(qtbot, widget)
    expected = np.rint(predict(image, model, tta="flips")[1] * 255)
    np.testing.assert_array_equal(viewer.layers["img probability"].data, expected)
    assert (expected != np.rint(predict(image, model)[1] * 255)).any()  # flips change this model's output
