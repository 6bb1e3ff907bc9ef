"""Re-thresholding the Predict widget's results without the network (no Qt here).

`Results` keeps, per labels layer name, what a finished run left: an eager result (its
`ProbabilityStore`, relabelled in place) or a lazy one (`LazyLabels`, rebuilt as a new dask
graph over the same probability tasks). `Results.rethreshold` applies a new threshold to
the result on view and says what it did; the instance labels of an eager result are
decoded again from the same store in a worker (`_decode_controls.Redecoder`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._lazy import LazyLabels
from ._outputs import OutputLayers
from ._store import ProbabilityStore

__all__ = ["PredictResult", "Results"]


@dataclass
class PredictResult:
    """A finished run, kept so the threshold (and the instance decoding) can be changed afterwards."""

    store: ProbabilityStore
    labels: np.ndarray
    geometry: dict
    model: Any  # the model that ran (its decoding reads it)
    channel_axis: int | None = None  # of the image it ran on (the decoding's time axes are its axes)


class Results:
    """The results the threshold can still change, by labels layer name."""

    def __init__(self, outputs: OutputLayers):
        self.outputs = outputs
        self.eager: dict[str, PredictResult] = {}
        self.lazy: dict[str, LazyLabels] = {}

    def keep_eager(self, name: str, result: PredictResult, *, shown: bool) -> None:
        """Keep ``result`` for layer ``name`` (``shown``: it is in that layer now, so a lazy
        result there is no longer on view); results of layers gone are dropped."""
        names = self.outputs.names()
        self.eager = {key: kept for key, kept in self.eager.items() if key in names}
        self.eager[name] = result
        if shown:
            self.lazy.pop(name, None)

    def keep_lazy(self, name: str, lazy: LazyLabels) -> None:
        """Keep lazy labels shown in layer ``name`` (the eager result there is gone)."""
        names = self.outputs.names()
        self.lazy = {key: kept for key, kept in self.lazy.items() if key in names}
        self.lazy[name] = lazy
        self.eager.pop(name, None)

    def rethreshold(self, image: str, value: float) -> str | None:
        """Apply threshold ``value`` to image ``image``'s result; the status to show, or None
        when there is no result to change."""
        name = f"{image} labels"
        layer = self.outputs.layer(name)
        lazy = self.lazy.get(name)
        if lazy is not None and layer is not None:
            if lazy.shown_by(layer):
                layer.data = lazy.build(value)  # new labels over the same (cached) probability tasks
                return f"threshold {value:.2f} applied to the lazy labels"
            if layer.data is lazy.data:
                return "the lazy labels were painted on: run again to apply a new threshold"
        result = self.eager.get(name)
        if result is None:
            return None
        result.store.relabel(value, result.labels)
        if layer is not None and layer.data is result.labels:
            layer.refresh()
        return f"threshold {value:.2f} applied (no re-run needed)"
