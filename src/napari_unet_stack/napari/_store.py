"""The Predict widget's re-threshold store (no Qt here).

`ProbabilityStore` is the ``out=`` sink the Predict widget hands to `iter_predict`: each
finished slice arrives as float32 probabilities ``(K, Y, X)``; the store keeps P(foreground)
as float32 (and, for models with several foreground classes, the class of each pixel), as
`napari_unet_stack.labels.LabelRule.foreground` gives them, and writes the labels of that
slice into any array (the Labels layer's data). A new threshold relabels from what is kept,
without running the network again: labels at any threshold ``t`` are exactly those of
``segment(..., threshold=t)``, since both are decided by the same `LabelRule`.

With ``keep=True`` (an instance model whose instances are asked for) the store also keeps
P(interior) (its marker channel) as float32: with P(foreground) it is all the model's own
decoding reads (`LabelRule.marker_map`), so `_redecode` decodes it again with other options
without the network, and a run keeps 4 more bytes per pixel, not every channel's (12 for
the bundled 3-class models).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..labels import LabelRule, smallest_uint

__all__ = ["ProbabilityStore"]


class ProbabilityStore:
    """An ``out=`` array for `iter_predict` that keeps float32 P(foreground) per pixel.

    Parameters
    ----------
    spatial : tuple of int
        The image's shape without its channel axis: leading axes, then Y, X.
    rule : LabelRule
        How the model's probabilities become labels (`LabelRule.for_model`); its threshold
        is the one labels are written at until `relabel` changes it.
    labels : array, optional
        Where each finished slice's labels go (the Labels layer's data); see `new_labels`.
    marker : int, optional
        Keep this channel's probabilities too (`marker`, else None): an instance model's
        P(interior).
    """

    dtype = np.dtype(np.float32)

    def __init__(self, spatial: tuple[int, ...], rule: LabelRule, labels: Any = None, *, marker: int | None = None):
        self.spatial = tuple(int(n) for n in spatial)
        self.rule = rule
        self.shape = (rule.n_channels, *self.spatial)
        self.ndim = len(self.shape)
        self.foreground = np.zeros(self.spatial, dtype=np.float32)
        self.classes = np.ones(self.spatial, smallest_uint(len(rule.values) - 1)) if rule.several else None
        self.labels = labels
        # reads the marker channel as the marker maps read it (its threshold is the decoding's)
        self.marker_rule = None if marker is None else rule.with_markers(int(marker), 0.5)
        self.marker = None if marker is None else np.zeros(self.spatial, np.float32)
        self.finished: set[tuple[int, ...]] = set()

    @classmethod
    def for_model(cls, spatial: tuple[int, ...], model: Any, threshold: float | None = None, labels: Any = None, *,
                  keep: bool = False):
        """The store for ``model``'s results (its activation and ``meta['class_values']``);
        ``keep``: an instance model's P(interior) too (what its own decoding reads)."""
        from ..postprocess import model_instances

        info = model_instances(model) if keep else None
        marker = None if info is None else int(info["classes"]["interior"])
        return cls(spatial, LabelRule.for_model(model, threshold), labels, marker=marker)

    @property
    def threshold(self) -> float:
        return float(self.rule.threshold)

    @property
    def labels_dtype(self) -> np.dtype:
        return self.rule.dtype

    def new_labels(self) -> np.ndarray:
        return np.zeros(self.spatial, dtype=self.labels_dtype)

    def __setitem__(self, key: tuple, probs: np.ndarray) -> None:
        lead = tuple(int(i) for i in key[1:])
        fg, cls = self.rule.foreground(probs)
        if self.classes is not None:
            self.classes[lead] = cls
        self.foreground[lead] = fg
        if self.marker is not None:
            self.marker[lead] = self.marker_rule.marker_probability(probs)
        self.finished.add(lead)
        if self.labels is not None:
            self.labels[lead] = self.slice_labels(lead)

    def slice_labels(self, lead: tuple[int, ...]) -> np.ndarray:
        """Labels of one finished slice at the current threshold."""
        cls = None if self.classes is None else self.classes[lead]
        return self.rule.decide(self.foreground[lead], cls)

    def relabel(self, threshold: float, labels: Any = None) -> Any:
        """Labels of every finished slice at ``threshold``, written into ``labels``."""
        self.rule = self.rule.with_threshold(threshold)
        labels = self.labels if labels is None else labels
        for lead in sorted(self.finished):
            labels[lead] = self.slice_labels(lead)
        return labels

    def probability(self) -> np.ndarray:
        """P(foreground) as uint8 (255 = 1.0), for the probability image layer."""
        return np.rint(np.clip(self.foreground, 0.0, 1.0) * 255).astype(np.uint8)
