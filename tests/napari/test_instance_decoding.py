"""Instance labels in the Predict widget: decoded with the options under Advanced, equal to
`segment` with the same `InstanceOptions`; moving an option (or the threshold) decodes
again without the network; a cancelled decode leaves the layer as it was; touching objects
get colours far apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from napari_unet_stack import segment
from napari_unet_stack.models.base import SegmentationNetwork
from napari_unet_stack.napari._colours import PALETTE, instance_colours
from napari_unet_stack.napari._predict_widget import PredictWidget
from napari_unet_stack.postprocess import InstanceOptions
from napari_unet_stack.training import instance_meta

#: the smallest RGB distance promised between the colours of touching objects
APART = 0.5


class _Shared(list):
    """Shared, not copied, by `copy.deepcopy` (the engine runs a copy of the model)."""

    def __deepcopy__(self, memo):
        return self


class Counting(SegmentationNetwork):
    """A per-pixel "network" that counts its forward calls. ``instance``: a 3-class softmax
    instance model (background below 0.22 of the normalized image, interior above 0.6,
    boundary between); else a one-channel sigmoid model (foreground above 0.22)."""

    depth = 1

    def __init__(self, instance: bool):
        super().__init__()
        self.in_channels, self.out_channels = 1, 3 if instance else 1
        self.conv = nn.Conv2d(1, self.out_channels, 1)
        with torch.no_grad():
            if instance:
                self.conv.weight[:, 0, 0, 0] = torch.tensor([-40.0, 40.0, 0.0])
                self.conv.bias[:] = torch.tensor([40 * 0.22, -40 * 0.6, 0.0])
                self.meta["instances"] = instance_meta(marker_threshold=0.5)
                self.meta["class_values"] = [0, 1, 1]
            else:
                self.conv.weight.fill_(40.0)
                self.conv.bias.fill_(-40 * 0.22)
        self.calls = _Shared()

    def _reach(self) -> int:
        return 0

    def forward(self, x):
        self.calls.append(1)
        return self.conv(x)


@pytest.fixture(scope="module")
def nuclei():
    from napari_unet_stack.samples import load_sample

    return np.ascontiguousarray(load_sample("nuclei_stack").image[4:8, :128, :128])


def _touching(ids: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of ids whose objects touch (8-connected in a slice, or across Z), found by
    growing each object by one pixel."""
    structure = ndimage.generate_binary_structure(ids.ndim, ids.ndim)
    if ids.ndim == 3:
        structure[0] = structure[2] = False
        structure[0, 1, 1] = structure[2, 1, 1] = True  # Z: the face neighbour only
    pairs = set()
    for i, box in enumerate(ndimage.find_objects(ids), start=1):
        if box is None:
            continue
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)  # room to grow
        part = ids[box]
        grown = ndimage.binary_dilation(part == i, structure)
        pairs |= {(i, int(j)) for j in np.unique(part[grown]) if j > i}
    return pairs


def _colour_distance(layer, a: int, b: int) -> float:
    return float(np.linalg.norm(np.asarray(layer.get_color(a))[:3] - np.asarray(layer.get_color(b))[:3]))


def test_touching_objects_get_colours_far_apart():
    distances = np.linalg.norm(PALETTE[:, None] - PALETTE[None], axis=-1)
    assert distances[~np.eye(len(PALETTE), dtype=bool)].min() >= APART
    grid = np.kron(np.arange(1, 26).reshape(5, 5), np.ones((4, 4), int))  # 25 squares, 8 around the inner ones
    from napari_unet_stack.samples import load_sample

    for ids in (grid, load_sample("nuclei_stack").instances):
        colours = instance_colours(ids)
        pairs = _touching(ids)
        assert len(pairs) > 20  # the check has teeth
        assert all(colours[a] != colours[b] for a, b in pairs)
    assert len(set(instance_colours(grid)[1:])) == len(PALETTE)  # every colour is used, not just a few


def _widget(make_napari_viewer, image, choice):
    viewer = make_napari_viewer()
    layer = viewer.add_image(image, name="img")
    widget = PredictWidget(viewer)
    widget.image.value = layer
    widget.model.value = choice
    widget.instances.value = True
    return viewer, widget


def _expected(image, model, widget, threshold=0.5):
    """`segment` with the widget's options, run with a copy of ``model`` (its own call count)."""
    return segment(image, Counting(model.out_channels == 3), instances=widget.decoding.options(),
                   threshold=threshold)


def test_a_redecode_stops_at_the_next_slice_once_cancelled(nuclei):
    """`run_decoding` (the worker body of a re-decode) stops on the engine's cancel before
    the next slice it reads: ("cancelled", ...), nothing returned; uncancelled it gives
    `segment`'s ids."""
    from napari_unet_stack import iter_predict
    from napari_unet_stack.napari._jobs import DecodeJob, run_decoding
    from napari_unet_stack.napari._store import ProbabilityStore

    model = Counting(instance=False)
    store = ProbabilityStore.for_model(nuclei.shape, model)
    for _event in iter_predict(nuclei, model, out=store):
        pass
    done = run_decoding(DecodeJob(store, model, InstanceOptions(), 0.5, None))
    assert done[0] == "done"
    np.testing.assert_array_equal(done[1][0], segment(nuclei, model, instances=True))
    job = DecodeJob(store, model, InstanceOptions(), 0.5, None)
    reads, foreground = [], store.foreground

    class Cancelling:  # P(foreground) whose second slice read is the last: Cancel is pressed then
        shape, dtype = foreground.shape, foreground.dtype

        def __getitem__(self, key):
            reads.append(key)
            if len(reads) == 2:
                job.cancel.set()
            return foreground[key]

    store.foreground = Cancelling()
    assert run_decoding(job) == ("cancelled", None, None)
    assert len(reads) == 2 < len(nuclei)


@pytest.mark.gui
@pytest.mark.slow
def test_instance_model_decodes_again_without_the_network(make_napari_viewer, registered, nuclei):
    model = Counting(instance=True)
    viewer, widget = _widget(make_napari_viewer, nuclei, registered(model, "instances"))
    assert widget.decoding.method.value == "auto" and "markers" in widget.decoding.method.choices
    assert widget.decoding.marker_threshold.enabled and widget.decoding.marker_threshold.value == 0.5
    widget.run(wait=True)
    layer = viewer.layers["img instances"]
    first = segment(nuclei, Counting(instance=True), instances=True)
    assert first.max() > 10
    np.testing.assert_array_equal(layer.data, first)
    calls = len(model.calls)

    widget.decoding.marker_threshold.value = 0.9
    widget.wait()
    changed = _expected(nuclei, model, widget)
    assert widget.decoding.options().marker_threshold == 0.9 and not np.array_equal(changed, first)
    np.testing.assert_array_equal(layer.data, changed)
    widget.decoding.min_size.value = 40
    widget.decoding.link_z.value = False
    widget.wait()
    np.testing.assert_array_equal(layer.data, _expected(nuclei, model, widget))
    widget.decoding.method.value = "watershed"
    widget.wait()
    np.testing.assert_array_equal(layer.data, _expected(nuclei, model, widget))
    widget.threshold.value = 0.3
    widget.wait()
    np.testing.assert_array_equal(layer.data, _expected(nuclei, model, widget, threshold=0.3))
    assert len(model.calls) == calls  # none of it ran the network
    assert "no network" in widget.status.value
    pairs = _touching(np.asarray(layer.data))
    assert pairs and all(_colour_distance(layer, a, b) >= APART for a, b in pairs)


@pytest.mark.gui
@pytest.mark.slow
def test_semantic_model_watershed_and_a_cancelled_decode(make_napari_viewer, registered, nuclei):
    model = Counting(instance=False)
    viewer, widget = _widget(make_napari_viewer, nuclei, registered(model, "semantic"))
    assert "markers" not in widget.decoding.method.choices and not widget.decoding.marker_threshold.enabled
    assert widget.run() is not None
    widget.decoding.min_distance.value = 5  # while it runs: decoded again once it has finished
    widget.wait()
    layer = viewer.layers["img instances"]
    np.testing.assert_array_equal(layer.data, segment(nuclei, Counting(instance=False), instances="watershed",
                                                           min_distance=5))
    assert not np.array_equal(layer.data, segment(nuclei, Counting(instance=False), instances="watershed"))
    calls = len(model.calls)
    widget.decoding.smoothing.value = 2.0
    widget.decoding.min_size.value = 30  # asked while the first re-decode runs: the latest wins
    widget.wait()
    np.testing.assert_array_equal(layer.data, _expected(nuclei, model, widget))
    assert widget.decoding.options() == InstanceOptions(min_size=30, min_distance=5, smoothing=2.0)
    assert len(model.calls) == calls

    data, copy, colormap = layer.data, layer.data.copy(), layer.colormap
    widget.decoding.method.value = "components"
    widget.cancel()
    widget.wait()
    assert widget.status.value.startswith("decoding cancelled")
    assert layer.data is data and layer.colormap is colormap
    np.testing.assert_array_equal(layer.data, copy)
    assert widget.run_button.enabled and not widget.cancel_button.enabled


@pytest.mark.gui
@pytest.mark.slow
def test_a_run_cancelled_while_it_decodes_leaves_the_viewer_as_it_was(make_napari_viewer, registered, nuclei,
                                                                      monkeypatch):
    import napari_unet_stack.napari._jobs as jobs

    viewer, widget = _widget(make_napari_viewer, nuclei, registered(Counting(instance=True), "instances"))
    names = [layer.name for layer in viewer.layers]
    reached = []
    decode_run = jobs.decode_run

    def cancelled_decode(store, model, options, threshold, cancel, **kwargs):
        reached.append(store.marker is not None)  # an instance model's run kept P(interior)
        cancel.set()  # what Cancel does while the run decodes
        return decode_run(store, model, options, threshold, cancel, **kwargs)

    monkeypatch.setattr(jobs, "decode_run", cancelled_decode)
    widget.run(wait=True)
    assert reached == [True]
    assert widget.status.value.startswith("cancelled")
    assert [layer.name for layer in viewer.layers] == names


@pytest.mark.gui
@pytest.mark.slow
def test_time_axis_from_axis_labels_and_link_overlap_decode_again_without_the_network(make_napari_viewer, registered,
                                                                                     nuclei):
    """A TYX layer (axis labels t, y, x) whose frames overlap: each frame's objects get ids of
    their own, as ``segment(..., time_axis=0)``; without the time axis they are linked like
    Z slices; the link overlap and the time axis re-decode without the network."""
    from napari_unet_stack.napari._decode_controls import NO_TIME, TIME_FROM_LABELS

    frames = nuclei[:3]
    model = Counting(instance=False)
    viewer = make_napari_viewer()
    layer = viewer.add_image(frames, name="img", axis_labels=("t", "y", "x"))
    widget = PredictWidget(viewer)
    widget.image.value = layer
    widget.model.value = registered(model, "semantic")
    widget.instances.value = True
    defaults = InstanceOptions()
    assert widget.decoding.link_overlap.value == defaults.link_overlap
    assert widget.decoding.z_split.value == defaults.z_split and widget.decoding.options().z_split == defaults.z_split
    assert widget.decoding.time_axis.value == TIME_FROM_LABELS and widget.decoding.options().time_axis == (0,)
    widget.run(wait=True)
    ids = viewer.layers["img instances"]
    fresh = Counting(instance=False)
    per_frame = segment(frames, fresh, instances=True, time_axis=0)
    linked = segment(frames, fresh, instances=True)
    np.testing.assert_array_equal(ids.data, per_frame)
    foreground = per_frame > 0
    assert (foreground[0] & foreground[1]).sum() > 1000  # the frames' objects overlap...
    shared = set(np.unique(linked[0])) & set(np.unique(linked[1]))
    assert len(shared - {0}) > 5  # ...so that Z links would join them
    for a, b in ((0, 1), (1, 2), (0, 2)):
        assert set(np.unique(ids.data[a])) & set(np.unique(ids.data[b])) == {0}  # time is never linked
    calls = len(model.calls)

    widget.decoding.time_axis.value = NO_TIME
    widget.wait()
    np.testing.assert_array_equal(ids.data, linked)
    widget.decoding.link_overlap.value = 0.3
    widget.wait()
    loose = segment(frames, fresh, instances=True, link_overlap=0.3)
    assert not np.array_equal(loose, linked)  # the overlap matters here
    np.testing.assert_array_equal(ids.data, loose)
    np.testing.assert_array_equal(ids.data, _expected(frames, model, widget))
    widget.decoding.z_split.value = 0.0  # reaches the options (3 frames are too few to cut: same ids)
    widget.wait()
    assert widget.decoding.options().z_split == 0.0
    np.testing.assert_array_equal(ids.data, segment(frames, fresh, instances=True, link_overlap=0.3, z_split=0.0))
    widget.decoding.time_axis.value = 0  # an axis chosen by hand
    widget.wait()
    np.testing.assert_array_equal(ids.data, per_frame)
    assert len(model.calls) == calls  # none of it ran the network
    assert widget.decoding.time_axis.choices == (TIME_FROM_LABELS, NO_TIME, 0)


@pytest.mark.gui
@pytest.mark.slow
def test_a_layer_with_time_second_links_z_within_each_time_point_eager_and_lazy(make_napari_viewer, registered,
                                                                              nuclei):
    """A Z T Y X layer (axis labels z, t, y, x): linked along Z (axis 0), never along T
    (without the time axis the last leading axis, T, would be taken as Z)."""
    stack = np.stack([nuclei[:2], nuclei[2:]], axis=1)  # Z T Y X
    model = Counting(instance=True)
    viewer = make_napari_viewer()
    layer = viewer.add_image(stack, name="img", axis_labels=("z", "t", "y", "x"))
    widget = PredictWidget(viewer)
    widget.image.value = layer
    widget.model.value = registered(model, "instances")
    widget.instances.value = True
    assert widget.decoding.options().time_axis == (1,)
    widget.run(wait=True)
    fresh = Counting(instance=True)
    expected = segment(stack, fresh, instances=True, time_axis=1)
    assert not np.array_equal(expected, segment(stack, fresh, instances=True))  # the time axis matters
    np.testing.assert_array_equal(viewer.layers["img instances"].data, expected)
    assert set(np.unique(expected[:, 0])) & set(np.unique(expected[:, 1])) == {0}
    widget.lazy.value = True  # the lazy run's instances (a worker, into a zarr store) too
    assert widget.run(wait=True) is not None, widget.status.value
    np.testing.assert_array_equal(viewer.layers["img instances"].data[...], expected)


@pytest.mark.gui
@pytest.mark.slow
def test_a_decoding_option_decodes_at_the_threshold_of_the_labels_shown(make_napari_viewer, registered, nuclei):
    """Choosing another model moves the slider to its own threshold without relabelling the
    result shown; a decoding option moved afterwards decodes that result at the threshold
    its labels are at (the first model's own), so labels and instances still agree; a
    moved slider then applies to both."""
    model = Counting(instance=False)
    model.meta["threshold"] = 0.02  # P(foreground) > 0.02: a wider foreground than at 0.5
    viewer, widget = _widget(make_napari_viewer, nuclei, registered(model, "own threshold"))
    assert widget.threshold.value == pytest.approx(0.02)
    widget.run(wait=True)
    labels, layer = viewer.layers["img labels"], viewer.layers["img instances"]
    shown = np.array(labels.data)
    np.testing.assert_array_equal(shown, segment(nuclei, model))  # its own threshold
    widget.model.value = registered(Counting(instance=False), "no threshold")
    assert widget.threshold.value == pytest.approx(0.5)
    widget.decoding.min_size.value = 30
    widget.wait()
    at_own = segment(nuclei, model, instances="watershed", min_size=30, threshold=0.02)
    assert not np.array_equal(at_own > 0, _expected(nuclei, model, widget, threshold=0.5) > 0)  # they differ
    np.testing.assert_array_equal(layer.data, at_own)
    np.testing.assert_array_equal(labels.data, shown)
    np.testing.assert_array_equal(np.asarray(layer.data) > 0, (shown > 0) & (np.asarray(layer.data) > 0))
    widget.threshold.value = 0.3
    widget.wait()
    np.testing.assert_array_equal(layer.data, _expected(nuclei, model, widget, threshold=0.3))
    np.testing.assert_array_equal(labels.data, segment(nuclei, model, threshold=0.3))


@pytest.mark.gui
@pytest.mark.slow
@pytest.mark.parametrize("lazy", [False, True])
def test_a_decoding_option_keeps_the_marker_threshold_of_the_model_that_made_the_result(
        make_napari_viewer, registered, nuclei, lazy):
    """Choosing another instance model moves the form's marker threshold to its own; a
    decoding option moved afterwards decodes the result shown with the marker threshold of
    the model that made it (as `segment` with that model), eager or lazy, not the new one's."""
    a, b = Counting(instance=True), Counting(instance=True)
    a.meta["instances"] = {**a.meta["instances"], "marker_threshold": 0.2}
    b.meta["instances"] = {**b.meta["instances"], "marker_threshold": 0.95}
    viewer, widget = _widget(make_napari_viewer, nuclei, registered(a, "markers 0.2"))
    widget.lazy.value = lazy
    assert widget.run(wait=True) is not None, widget.status.value
    layer = viewer.layers["img instances"]
    widget.model.value = registered(b, "markers 0.95")
    assert widget.decoding.marker_threshold.value == pytest.approx(0.95)
    widget.decoding.min_size.value = 30
    widget.wait()
    own = segment(nuclei, Counting(instance=True), instances=True, min_size=30, marker_threshold=0.2)
    other = segment(nuclei, Counting(instance=True), instances=True, min_size=30, marker_threshold=0.95)
    assert not np.array_equal(own, other)  # the marker threshold matters here
    np.testing.assert_array_equal(np.asarray(layer.data[...]), own)
    assert "press Run" not in widget.status.value
    widget.decoding.marker_threshold.value = 0.9  # by hand: now it applies to the result shown
    widget.wait()
    assert ("press Run" in widget.status.value) == lazy  # a lazy run keeps no probabilities
    if not lazy:
        np.testing.assert_array_equal(layer.data, segment(nuclei, Counting(instance=True), instances=True,
                                                          min_size=30, marker_threshold=0.9))
