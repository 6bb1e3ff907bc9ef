"""Instance labels of a Predict run decoded from what its store kept, without the network
(no Qt here).

`decode_run` is what a run with *instance labels* and every later re-decode (a decoding
option or the threshold moved) compute: ``segment(image, model, instances=options,
threshold=threshold)``, from the run's `ProbabilityStore`. The store keeps P(foreground),
whose labels at ``threshold`` (the one rule, `LabelRule.decide`) are decoded by
`InstanceOptions.apply`, as `segment` decodes the engine's labels; an instance model's store
also keeps P(interior), whose marker maps (`LabelRule.marker_map`, the rule of the engine's
marker maps) are decoded the same way for its own decoding ('markers').
Both read and write slice by slice through `Checked` arrays, so a cancel
stops the decoding at the next slice (`DecodeCancelled`); nothing is written anywhere but
into a new array.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..labels import smallest_uint
from ..postprocess import InstanceOptions, labels_rule
from ._store import ProbabilityStore

__all__ = ["Checked", "DecodeCancelled", "decode_run"]


class DecodeCancelled(Exception):
    """The decoding was cancelled (raised when the next slice is read)."""


class Checked:
    """``array`` read slice by slice by a decoding that stops once ``cancel`` is set.

    ``read`` (default: ``array[key]``) gives the slice at ``key``; writes go to ``array``.
    """

    def __init__(self, array: Any, cancel: threading.Event, read: Any = None, dtype: Any = None):
        self.array = array
        self.cancel = cancel
        self.read = read if read is not None else array.__getitem__
        self.shape = tuple(array.shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(array.dtype if dtype is None else dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        if self.cancel.is_set():
            raise DecodeCancelled
        return self.read(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.array[key] = value


def store_labels(store: ProbabilityStore, threshold: float, cancel: threading.Event, rule: Any = None) -> Checked:
    """The store's labels at ``threshold``, made slice by slice as they are read; with a
    marker-map ``rule`` (`labels_rule` of 'markers'), its marker maps."""
    foreground, classes, marker = store.foreground, store.classes, store.marker
    if rule is not None:
        return Checked(foreground, cancel, lambda lead: rule.marker_map(foreground[lead], marker[lead], threshold),
                       dtype=rule.dtype)
    rule = store.rule

    def read(lead):
        return rule.decide(foreground[lead], None if classes is None else classes[lead], threshold)

    return Checked(foreground, cancel, read, dtype=rule.dtype)


def decode_run(store: ProbabilityStore, model: Any, options: InstanceOptions, threshold: float,
               cancel: threading.Event | None = None) -> np.ndarray:
    """Instance ids of a finished run, equal to ``segment(image, model, instances=options,
    threshold=threshold)``; `DecodeCancelled` once ``cancel`` is set."""
    cancel = threading.Event() if cancel is None else cancel
    shape = store.spatial
    out = Checked(np.zeros(shape, np.uint32 if np.prod(shape) < 2**32 else np.uint64), cancel)
    resolved = options.resolve(model)
    rule = None
    if resolved.markers:
        if store.marker is None:
            raise ValueError("the instance model's own decoding needs the probabilities this run did not keep: "
                             "run again with instance labels checked")
        rule = labels_rule(model, resolved, threshold)
    resolved.apply(store_labels(store, threshold, cancel, rule), (), out=out)
    ids = out.array
    return ids.astype(smallest_uint(int(ids.max(initial=0))), copy=False)
