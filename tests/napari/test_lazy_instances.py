"""Instance labels of a lazy Predict run (issue 14 item 3): computed slice by slice into an
on-disk store, equal to `segment`'s, with bounded memory; Cancel leaves nothing; the store
goes with its layer."""

from __future__ import annotations

import gc
import threading
import tracemalloc

import dask.array as da
import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from napari_unet_stack import segment
from napari_unet_stack.models.base import SegmentationNetwork
from napari_unet_stack.napari._colours import instance_colours, slice_touching_pairs, touching_pairs
from napari_unet_stack.napari._lazy_instances import LazyInstanceJob, run_lazy_instances
from napari_unet_stack.postprocess import InstanceOptions
from napari_unet_stack.training import instance_meta


class PixelInstanceModel(SegmentationNetwork):
    """A per-pixel 3-class softmax instance model: background below 0.3 of the normalized
    image, interior above 0.7, boundary between."""

    depth = 1

    def __init__(self):
        super().__init__()
        self.in_channels, self.out_channels = 1, 3
        self.conv = nn.Conv2d(1, 3, 1)
        with torch.no_grad():
            self.conv.weight[:, 0, 0, 0] = torch.tensor([-40.0, 40.0, 0.0])
            self.conv.bias[:] = torch.tensor([40 * 0.3, -40 * 0.7, 0.0])
        self.meta["instances"] = instance_meta(marker_threshold=0.5)

    def _reach(self) -> int:
        return 0

    def forward(self, x):
        return self.conv(x)


def _blobs(n, size=48, seed=0):
    noise = np.random.default_rng(seed).random((n, size, size))
    smooth = ndimage.gaussian_filter(noise, (1.5, 2.5, 2.5))
    return ((smooth - smooth.min()) / np.ptp(smooth)).astype(np.float32)


def _drain(job):
    body = run_lazy_instances(job)
    try:
        while True:
            next(body)
    except StopIteration as stop:
        return stop.value


def _job(data, model, folder, decoding=None, **kw):
    return LazyInstanceJob("img", data, None, model, {"device": "cpu"}, decoding or InstanceOptions(), 0.5, {},
                           folder, **kw)


def test_slice_by_slice_touching_pairs_are_the_whole_array_pairs(rng):
    ids = rng.integers(0, 6, (3, 2, 7, 9))  # T, Z, Y, X: neighbours along both leading axes
    pairs, top = slice_touching_pairs(ids)
    np.testing.assert_array_equal(pairs, touching_pairs(ids))
    assert top == ids.max()
    np.testing.assert_array_equal(instance_colours(ids, by_slice=True), instance_colours(ids))


@pytest.mark.parametrize("model_kind", ["semantic", "instance"])
def test_lazy_instances_equal_segment_from_a_dask_layer(tmp_path, threshold_net, model_kind):
    stack = _blobs(5)
    model = PixelInstanceModel().eval() if model_kind == "instance" else threshold_net().eval()
    options = InstanceOptions(min_size=3)
    job = _job(da.from_array(stack, chunks=(1, 48, 48)), model, tmp_path, options)
    assert _drain(job) == ("done", None)
    expected = segment(stack, model, instances=options, device="cpu")
    assert expected.max() > 3
    np.testing.assert_array_equal(job.ids[...], expected)
    assert (tmp_path / "ids.zarr").is_dir()  # on disk, shown by the layer
    np.testing.assert_array_equal(job.colours, instance_colours(expected))


def test_lazy_instances_cancelled_or_failed_leave_no_store(tmp_path, threshold_net):
    stack = _blobs(3, 24)
    job = _job(stack, threshold_net().eval(), tmp_path / "cancelled")
    (tmp_path / "cancelled").mkdir()
    job.cancel.set()
    assert _drain(job) == ("cancelled", None)
    assert not (tmp_path / "cancelled").exists()
    job = _job(stack, threshold_net().eval(), tmp_path / "bad", InstanceOptions("markers"))  # no instance model
    (tmp_path / "bad").mkdir()
    status, err = _drain(job)
    assert status == "error" and "needs an instance model" in str(err)
    assert not (tmp_path / "bad").exists()


class _CollectingCancel(threading.Event):
    """A Cancel never pressed that collects cyclic garbage whenever the run checks it (each
    batch of tiles, each slice decoded or coloured)."""

    def is_set(self) -> bool:
        gc.collect()
        return super().is_set()


def _traced_peak(data, model, folder, batch_size) -> int:
    """Python's allocations at their peak while a lazy run computes ``data``'s instances, the
    garbage collected at each batch and slice: each slice a dask layer computes leaves some
    KB of reference cycles (its graph, zarr's futures) that wait for the cycle collector,
    whose timing depends on the objects earlier tests left (a full collection waits for a
    quarter of them to be new). Frozen, those objects are not scanned: the collections are
    cheap. What is measured is what the run keeps reachable (Python and numpy allocations:
    torch's own are not traced)."""
    job = LazyInstanceJob("img", data, None, model, {"device": "cpu", "batch_size": batch_size},
                          InstanceOptions(), 0.5, {}, folder, cancel=_CollectingCancel())
    gc.collect()
    gc.freeze()
    tracemalloc.start()
    try:
        assert _drain(job) == ("done", None)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        gc.unfreeze()


@pytest.mark.slow
def test_lazy_instance_memory_does_not_grow_with_the_stack(tmp_path, threshold_net):
    """Python's allocations at their peak for 8 and 68 slices of a dask layer (batches of 4
    slices, which both fill, the next batch read ahead), after two warm-up runs of 8 (the
    first pays first-use caches; in a fresh process the second still refills `abc`'s
    isinstance caches): the 60 more slices add less than 6 slices of uint32 ids, where
    holding the stack's ids, probabilities or image would add 60 (a quarter slice each, 15).
    What may grow is bookkeeping of about 1 KB per slice (dask's caches of each slice's graph
    keys, the engine's list of tiles) and O(objects) (the ids' pixel counts and merges, the
    colour table)."""
    model = threshold_net().eval()
    size = 96
    peaks = [_traced_peak(da.from_array(_blobs(n, size), chunks=(1, size, size)), model, tmp_path / f"s{k}", 4)
             for k, n in enumerate((8, 8, 8, 68))]  # the first two: the warm-up
    one_slice = size * size * 4
    assert peaks[3] - peaks[2] < 6 * one_slice, [peak / one_slice for peak in peaks]


def _lazy_widget(make_napari_viewer, registered, stack, model):
    from napari_unet_stack.napari._predict_widget import PredictWidget

    viewer = make_napari_viewer()
    layer = viewer.add_image(da.from_array(stack, chunks=(1, *stack.shape[1:])), name="img")
    widget = PredictWidget(viewer)
    widget.image.value = layer
    widget.model.value = registered(model, "lazy-instances")
    widget.lazy.value = True
    widget.instances.value = True
    widget.decoding.min_size.value = 3
    return viewer, widget


@pytest.mark.gui
@pytest.mark.slow
def test_lazy_run_with_instances_shows_an_on_disk_store_equal_to_segment(make_napari_viewer, registered,
                                                                          threshold_net):
    from napari.layers import Labels

    stack = _blobs(4)
    model = threshold_net().eval()
    viewer, widget = _lazy_widget(make_napari_viewer, registered, stack, model)
    assert widget.instances.enabled and "slice by slice" in widget.lazy_note.value
    worker = widget.run(wait=True)
    assert worker is not None, widget.status.value
    labels, instances = viewer.layers["img labels"], viewer.layers["img instances"]
    assert isinstance(labels.data, da.Array)  # the semantic labels stay lazy
    assert isinstance(instances, Labels) and not isinstance(instances.data, np.ndarray)  # the zarr store
    expected = segment(stack, model, instances=widget.decoding.options(), device="auto")
    np.testing.assert_array_equal(instances.data[...], expected)
    folder = widget.lazy_runs.scratch.folders["img instances"]
    assert folder.is_dir() and str(folder) in widget.status.value
    widget.run(wait=True)  # again: the new store replaces the old one, which goes
    newer = widget.lazy_runs.scratch.folders["img instances"]
    assert newer != folder and not folder.exists() and newer.is_dir()
    viewer.layers.remove(viewer.layers["img instances"])
    assert not newer.exists()


@pytest.mark.gui
@pytest.mark.slow
def test_lazy_instances_cancelled_leave_no_layer_and_no_store(make_napari_viewer, registered, threshold_net,
                                                              monkeypatch):
    import napari_unet_stack.napari._lazy_instances as lazy_module

    viewer, widget = _lazy_widget(make_napari_viewer, registered, _blobs(3, 32), threshold_net().eval())
    names = [layer.name for layer in viewer.layers]
    colours = lazy_module.instance_colours
    folders = []

    def cancelled(ids, **kwargs):  # Cancel pressed once the ids are made, as the colours are
        folders.append(widget._job.folder)
        kwargs["cancel"].set()
        return colours(ids, **kwargs)

    monkeypatch.setattr(lazy_module, "instance_colours", cancelled)
    widget.run(wait=True)
    assert widget.status.value.startswith("cancelled")
    assert [layer.name for layer in viewer.layers] == names  # the lazy labels taken back too
    assert len(folders) == 1 and not folders[0].exists()


def _forward_calls(model) -> list:
    """A list that grows by one at each forward call of ``model`` (the engine's copies share
    it: register it before the model's first run)."""
    calls: list = []
    model.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_kept_labels_decode_again_as_segment_without_the_network(tmp_path):
    from napari_unet_stack.napari._lazy_decode import run_lazy_decoding

    stack = _blobs(5)
    model = PixelInstanceModel().eval()
    calls = _forward_calls(model)  # before the engine's first (cached) copy of the model
    job = _job(stack, model, tmp_path, InstanceOptions(min_size=3))
    assert _drain(job) == ("done", None)
    assert calls  # the count sees the network's calls
    calls.clear()
    kept = job.kept
    assert (tmp_path / "maps.zarr").is_dir() and kept.ids is job.ids
    for options in (InstanceOptions(min_size=400), InstanceOptions(min_size=3, ndim=2)):
        decode = kept.job(options, layer=None)
        status, (ids, colours), err = run_lazy_decoding(decode)
        assert status == "done" and err is None and not calls
        expected = segment(stack, model, instances=options, device="cpu")
        assert not np.array_equal(expected, job.ids[...])  # the option matters
        np.testing.assert_array_equal(ids[...], expected)
        np.testing.assert_array_equal(colours, instance_colours(expected))
        old = kept.ids_path
        kept.adopt(decode)
        assert kept.ids is ids and decode.path.is_dir() and not old.exists()
        calls.clear()
    assert kept.needs_network(InstanceOptions(min_size=0, link_overlap=0.3, z_split=0.0), 0.5) is None
    assert kept.needs_network(InstanceOptions(), 0.3) == "a new threshold"
    assert kept.needs_network(InstanceOptions(marker_threshold=0.8), 0.5) == "another marker threshold"
    assert "markers" in kept.needs_network(InstanceOptions("watershed"), 0.5)


class _SliceReads:
    """An array whose reads are recorded (the shape of each)."""

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.reads = array, array.shape, array.dtype, []

    def __getitem__(self, key):
        part = np.asarray(self.array[key])
        self.reads.append(part.shape)
        return part


def test_a_semantic_model_decodes_its_kept_labels_as_components_slice_by_slice(tmp_path, threshold_net):
    from napari_unet_stack.napari._lazy_decode import run_lazy_decoding

    stack = _blobs(4)
    model = threshold_net().eval()
    job = _job(stack, model, tmp_path)  # watershed
    assert _drain(job) == ("done", None)
    options = InstanceOptions("components", min_size=5)
    assert job.kept.needs_network(options, 0.5) is None  # the same labels: any method but markers
    job.kept.maps = reads = _SliceReads(job.kept.maps)
    status, (ids, _), _ = run_lazy_decoding(job.kept.job(options, layer=None))
    expected = segment(stack, model, instances=options, device="cpu")
    assert status == "done" and not np.array_equal(expected, job.ids[...])
    np.testing.assert_array_equal(ids[...], expected)
    assert reads.reads and set(reads.reads) == {stack.shape[1:]}  # one slice at a time


def test_a_cancelled_or_failed_decode_leaves_the_kept_ids(tmp_path):
    from napari_unet_stack.napari._lazy_decode import run_lazy_decoding

    stack = _blobs(3, 24)
    job = _job(stack, PixelInstanceModel().eval(), tmp_path)
    assert _drain(job) == ("done", None)
    shown = job.ids[...]
    cancelled = job.kept.job(InstanceOptions(min_size=50), layer=None)
    cancelled.cancel.set()
    assert run_lazy_decoding(cancelled) == ("cancelled", None, None)
    failed = job.kept.job(InstanceOptions(time_axis=5), layer=None)  # not an axis of this image
    status, _, err = run_lazy_decoding(failed)
    assert status == "error" and "time_axis" in str(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.zarr", "maps.zarr"]
    np.testing.assert_array_equal(job.kept.ids[...], shown)


@pytest.mark.gui
@pytest.mark.slow
def test_lazy_instances_decode_again_in_the_widget_without_the_network(make_napari_viewer, registered):
    """After a lazy run, min size (moved while it ran) and per slice decode the kept labels
    again (equal to `segment` with the new options, no forward call, the old ids array
    gone); a cancelled decode leaves the layer as it was; the threshold and the marker
    threshold need Run."""
    stack = _blobs(4)
    model, fresh = PixelInstanceModel().eval(), PixelInstanceModel().eval()
    calls = _forward_calls(model)
    viewer, widget = _lazy_widget(make_napari_viewer, registered, stack, model)
    assert widget.run() is not None, widget.status.value
    widget.decoding.min_size.value = 400  # while it runs: decoded again once it has finished
    widget.wait()
    layer = viewer.layers["img instances"]
    folder = widget.lazy_runs.scratch.folders["img instances"]
    np.testing.assert_array_equal(layer.data[...], segment(stack, fresh, instances=widget.decoding.options()))
    assert not np.array_equal(layer.data[...], segment(stack, fresh, instances=InstanceOptions(min_size=3)))
    assert not (folder / "ids.zarr").exists() and len(list(folder.glob("ids-*.zarr"))) == 1  # the run's ids went
    viewer.layers["img labels"].visible = False  # the lazy labels on view would run the network
    first, ran = layer.data[...], len(calls)
    assert ran > 0
    widget.decoding.link_z.value = False
    widget.wait()
    assert len(calls) == ran and "no network" in widget.status.value
    expected = segment(stack, fresh, instances=widget.decoding.options(), device="auto")
    assert not np.array_equal(expected, first)
    np.testing.assert_array_equal(layer.data[...], expected)
    assert len(list(folder.glob("ids-*.zarr"))) == 1  # the ids it replaced went

    data, colormap, names = layer.data, layer.colormap, sorted(p.name for p in folder.iterdir())
    widget.decoding.min_size.value = 3
    widget.cancel()
    widget.wait()
    assert widget.status.value.startswith("decoding cancelled")
    assert layer.data is data and layer.colormap is colormap
    assert sorted(p.name for p in folder.iterdir()) == names  # the cancelled decode's array went

    widget.threshold.value = 0.3
    widget.wait()
    assert "threshold 0.30 applied to the lazy labels" in widget.status.value
    assert "a new threshold" in widget.status.value and "press Run" in widget.status.value
    widget.threshold.value = 0.5
    widget.decoding.marker_threshold.value = 0.8
    widget.wait()
    assert "another marker threshold" in widget.status.value and "press Run" in widget.status.value
    assert layer.data is data and len(calls) == ran
    np.testing.assert_array_equal(layer.data[...], expected)


@pytest.mark.gui
@pytest.mark.slow
def test_choosing_another_model_is_no_new_threshold_for_a_lazy_run(make_napari_viewer, registered):
    """After a lazy run, choosing a model moves the slider to its own threshold, not the
    labels shown: a decoding option moved then decodes the kept labels at theirs (no Run
    asked for); moving the slider still needs Run."""
    stack = _blobs(4)
    model = PixelInstanceModel().eval()
    model.meta["threshold"] = 0.2
    viewer, widget = _lazy_widget(make_napari_viewer, registered, stack, model)
    assert widget.threshold.value == pytest.approx(0.2)
    assert widget.run(wait=True) is not None, widget.status.value
    layer = viewer.layers["img instances"]
    np.testing.assert_array_equal(layer.data[...], segment(stack, model, instances=widget.decoding.options()))
    widget.model.value = registered(PixelInstanceModel().eval(), "no threshold")
    assert widget.threshold.value == pytest.approx(0.5)
    widget.decoding.min_size.value = 40
    widget.wait()
    assert "press Run" not in widget.status.value and "no network" in widget.status.value
    expected = segment(stack, model, instances=widget.decoding.options())  # at its own 0.2
    assert not np.array_equal(expected, segment(stack, model, instances=widget.decoding.options(), threshold=0.5))
    np.testing.assert_array_equal(layer.data[...], expected)
    widget.threshold.value = 0.3
    widget.wait()
    assert "a new threshold" in widget.status.value and "press Run" in widget.status.value


@pytest.mark.gui
@pytest.mark.slow
def test_the_slider_moved_while_a_lazy_instance_run_runs_applies_when_it_finishes(make_napari_viewer, registered):
    """Moved by hand while the lazy instance run runs: the lazy labels are rebuilt at it when
    the run finishes, and the status says the instances need Run (they were made before)."""
    stack = _blobs(4)
    model = PixelInstanceModel().eval()
    viewer, widget = _lazy_widget(make_napari_viewer, registered, stack, model)
    assert widget.run() is not None, widget.status.value
    widget.threshold.value = 0.3  # while it runs
    widget.wait()
    widget.wait()  # the re-threshold queued for when the worker is gone
    labels = viewer.layers["img labels"]
    np.testing.assert_array_equal(np.asarray(labels.data), segment(stack, model, threshold=0.3))
    assert not np.array_equal(np.asarray(labels.data), segment(stack, model, threshold=0.5))
    assert "a new threshold" in widget.status.value and "press Run" in widget.status.value
    np.testing.assert_array_equal(viewer.layers["img instances"].data[...],
                                  segment(stack, model, instances=widget.decoding.options(), threshold=0.5))
