"""Instance labels of a Predict run decoded from what its store kept, without the network
(no Qt here).

`decode_run` is what a run with *instance labels* and every later re-decode (a decoding
option or the threshold moved) compute: ``segment(image, model, instances=options,
threshold=threshold)``, from the run's `ProbabilityStore`. The store keeps P(foreground),
whose labels at ``threshold`` (the one rule, `LabelRule.decide`) are decoded by
`InstanceOptions.apply`, as `segment` decodes the engine's labels; an instance model's store
also keeps P(interior), whose marker maps (`LabelRule.marker_map`, the rule of the engine's
marker maps) are decoded the same way for its own decoding ('markers').
The labels are made slice by slice as the decoding reads them (`SliceLabels`). A cancel
stops the decoding before its next slice (the decoding's own ``cancel``: the engine's
`InferenceCancelled`); nothing is written anywhere but into a new array. The time axes
are the options' ``time_axis`` (image axes, as `segment` takes them), never linked.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..labels import smallest_uint
from ..postprocess import InstanceOptions, labels_rule
from ._store import ProbabilityStore

__all__ = ["SliceLabels", "decode_run", "store_labels"]


class SliceLabels:
    """A read-only array of ``shape`` whose slice at ``key`` is ``read(key)``, made as it is read."""

    def __init__(self, shape: tuple[int, ...], read: Any, dtype: Any):
        self.shape = tuple(shape)
        self.ndim = len(self.shape)
        self.read = read
        self.dtype = np.dtype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.read(key)


def store_labels(store: ProbabilityStore, threshold: float, rule: Any = None) -> SliceLabels:
    """The store's labels at ``threshold``, made slice by slice as they are read; with a
    marker-map ``rule`` (`labels_rule` of 'markers'), its marker maps."""
    foreground, classes, marker = store.foreground, store.classes, store.marker
    if rule is not None:
        return SliceLabels(store.spatial, lambda lead: rule.marker_map(foreground[lead], marker[lead], threshold),
                           rule.dtype)
    rule = store.rule

    def read(lead):
        return rule.decide(foreground[lead], None if classes is None else classes[lead], threshold)

    return SliceLabels(store.spatial, read, rule.dtype)


def decode_run(store: ProbabilityStore, model: Any, options: InstanceOptions, threshold: float,
               cancel: threading.Event | None = None, *, channel_axis: int | None = None) -> np.ndarray:
    """Instance ids of a finished run, equal to ``segment(image, model, instances=options,
    threshold=threshold, channel_axis=channel_axis)``; the engine's `InferenceCancelled`
    before the next slice once ``cancel`` is set."""
    shape = store.spatial
    ids = np.zeros(shape, np.uint32 if np.prod(shape) < 2**32 else np.uint64)
    time_axes = options.time_axes(len(shape) + (channel_axis is not None), channel_axis)
    resolved = options.resolve(model)
    rule = None
    if resolved.markers:
        if store.marker is None:
            raise ValueError("the instance model's own decoding needs the probabilities this run did not keep: "
                             "run again with instance labels checked")
        rule = labels_rule(model, resolved, threshold)
    resolved.apply(store_labels(store, threshold, rule), time_axes, out=ids, cancel=cancel)
    return ids.astype(smallest_uint(int(ids.max(initial=0))), copy=False)
