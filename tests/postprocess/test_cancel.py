"""Cancelling the instance decoding (`instance_labels`, `decode_probabilities`, and the
decoding step of `segment(instances=...)`): the engine's ``cancel`` (an object with
``is_set()``) is checked before each slice is read, and the engine's `InferenceCancelled`
is raised; no slice is read once it is set."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import napari_unet_stack as nus
from napari_unet_stack.postprocess import InstanceOptions, decode_probabilities, instance_labels


class Reads:
    """Counts the slice reads of the arrays it wraps and sets ``cancel`` after ``k`` of them."""

    def __init__(self, k: int):
        self.k, self.n, self.cancel = k, 0, threading.Event()

    def wrap(self, data):
        return Array(data, self)

    def read(self) -> None:
        assert not self.cancel.is_set(), "a slice was read after the cancel"
        self.n += 1
        if self.n == self.k:
            self.cancel.set()


class Array:
    def __init__(self, data, reads: Reads):
        self.data, self.reads, self.shape, self.dtype = data, reads, data.shape, data.dtype

    def __getitem__(self, key):
        self.reads.read()
        return self.data[key]

    def __setitem__(self, key, value):
        self.data[key] = value


def cylinders(n=5):
    """(n, 30, 40) semantic labels: two touching discs in every slice."""
    yy, xx = np.indices((30, 40))
    disc = ((yy - 15) ** 2 + (xx - 12) ** 2 <= 64) | ((yy - 15) ** 2 + (xx - 26) ** 2 <= 64)
    return np.stack([disc] * n).astype(np.uint8)


@pytest.mark.parametrize("method", ["watershed", "components"])
@pytest.mark.parametrize("k", [1, 3, 6, 9])
def test_instance_labels_stop_at_the_slice_after_the_cancel(method, k):
    """5 slices: 'watershed' reads each once, then (min_size) each of ``out`` once more;
    'components' reads each twice: a cancel after k reads stops every pass."""
    semantic = cylinders()
    expected = instance_labels(semantic, method=method, min_size=3)
    assert expected.max() == (2 if method == "watershed" else 1)  # the discs touch
    reads = Reads(k)
    out = np.zeros(semantic.shape, np.uint32)
    with pytest.raises(nus.InferenceCancelled, match="instance decoding was cancelled"):
        instance_labels(reads.wrap(semantic), method=method, min_size=3, out=reads.wrap(out),
                        cancel=reads.cancel)
    assert reads.n == k
    uncancelled = Reads(100)  # never reached: the same wrapped arrays decode as before
    out = np.zeros(semantic.shape, np.uint32)
    instance_labels(uncancelled.wrap(semantic), method=method, min_size=3, out=uncancelled.wrap(out),
                    cancel=uncancelled.cancel)
    assert uncancelled.n == 10
    np.testing.assert_array_equal(out, expected)


def test_decode_probabilities_stops_at_the_slice_after_the_cancel(threshold_net):
    net = threshold_net()
    image = np.stack([cylinders(4)] * 2).astype(np.float32)  # T Z Y X
    probs = nus.predict(image, net, normalization=None)
    options = InstanceOptions(min_size=3, time_axis=0)
    expected = nus.segment(image, net, normalization=None, instances=options)
    assert expected.max() == 4
    for k in (1, 5, 8):  # the probabilities' 8 slices are read first, then the labels' passes
        reads = Reads(k)
        with pytest.raises(nus.InferenceCancelled):
            decode_probabilities(reads.wrap(probs), net, options, time_axes=(0,), cancel=reads.cancel)
        assert reads.n == k
    cancel = threading.Event()
    np.testing.assert_array_equal(decode_probabilities(probs, net, options, time_axes=(0,), cancel=cancel),
                                  expected)
    cancel.set()  # set before the call: not a slice is read
    reads = Reads(100)
    with pytest.raises(nus.InferenceCancelled):
        decode_probabilities(reads.wrap(probs), net, options, time_axes=(0,), cancel=cancel)
    assert reads.n == 0


def test_segment_cancel_stops_its_decoding_too(threshold_net):
    """The cancel set when the network's last batch is done stops the decoding that follows."""
    net = threshold_net()
    image = cylinders(4).astype(np.float32)
    cancel = threading.Event()

    def progress(done, total):
        if done == total:
            cancel.set()

    with pytest.raises(nus.InferenceCancelled, match="instance decoding"):
        nus.segment(image, net, normalization=None, instances=True, progress=progress, cancel=cancel)
    cancel.clear()
    assert nus.segment(image, net, normalization=None, instances=True, progress=progress).max() == 2


def test_a_cancel_without_is_set_is_refused_before_the_work(threshold_net):
    net = threshold_net()
    probs = nus.predict(cylinders(2).astype(np.float32), net, normalization=None)
    for call in (lambda c: instance_labels(cylinders(2), cancel=c),
                 lambda c: decode_probabilities(probs, net, True, cancel=c)):
        with pytest.raises(TypeError, match="is_set"):
            call(lambda: True)  # a plain callable: the engine's cancel is an Event-like object
