"""Probabilities -> labels: the one rule every caller uses.

`segment`, the engine's on-device labels, the dask tasks, the CLI, the Predict widget, its
re-threshold store and its lazy layer all decide labels here, so they cannot disagree.

The rule, for probabilities ``(K, ...)`` of a model with activation ``softmax`` or
``sigmoid`` (the default activation, when a model names none, is softmax for K > 1 and
sigmoid for K == 1):

- **P(foreground)** is ``1 - P(background)`` (channel 0) for softmax, the probability of
  the single channel for a one-channel sigmoid model, and the largest channel probability
  for a multilabel sigmoid model.
- A pixel is foreground where P(foreground) > ``threshold``, for every activation. The
  default threshold is the model's own (``meta["threshold"]``, chosen when it was trained
  and saved with it, `model_threshold`), else 0.5 (`DEFAULT_THRESHOLD`). Its class is then the most probable foreground class (softmax: channels
  1..K-1; multilabel sigmoid: every channel, numbered from 1); elsewhere it is class 0.
  For a two-class softmax model at 0.5 this is the argmax, except at float32 ties
  (``|p1 - p0|`` below about 1e-7, where ``1 - p0`` rounds to exactly 0.5).
- Class index ``i`` is written as ``values[i]``: the model's ``class_values`` (all of them,
  or for a multilabel sigmoid model one per channel, background then being 0), else ``i``.
- Pixels whose probabilities are NaN (non-finite input) are background.
- The *marker map* of an instance model (`LabelRule.with_markers`, what its instance
  decoding reads): 0 background, 1 foreground (as above), 2 foreground whose marker
  channel's probability (P(interior)) is above ``marker_threshold``.

The comparison is done in float32 on the device (`LabelRule.classes_torch`) and on the
host (`LabelRule.classes`) alike, so both give the same labels bit for bit.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_THRESHOLD",
    "LabelRule",
    "check_activation",
    "check_threshold",
    "default_activation",
    "label_values",
    "model_threshold",
    "smallest_uint",
]

ACTIVATIONS = ("softmax", "sigmoid")

#: The foreground threshold of a model whose metadata names none.
DEFAULT_THRESHOLD = 0.5


def check_activation(activation: Any) -> str:
    """``activation`` if it is one of `ACTIVATIONS`, else a ValueError naming the choices."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"`activation` must be 'softmax' or 'sigmoid', got {activation!r}")
    return activation


def default_activation(n_channels: int, activation: str | None = None) -> str:
    """The activation of a model with ``n_channels`` outputs: ``activation`` when given,
    else softmax for several channels and sigmoid for one.

    >>> default_activation(2), default_activation(1), default_activation(3, "sigmoid")
    ('softmax', 'sigmoid', 'sigmoid')
    """
    if activation is not None:
        return check_activation(activation)
    return "softmax" if int(n_channels) > 1 else "sigmoid"


def smallest_uint(max_value: int) -> np.dtype:
    """The smallest unsigned dtype holding ``max_value``.

    >>> smallest_uint(255), smallest_uint(256)
    (dtype('uint8'), dtype('uint16'))
    """
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"label value {max_value} does not fit in 64 bits")


def label_values(n_channels: int, activation: str, class_values: Sequence[int] | None) -> np.ndarray:
    """The value written for each class index.

    softmax: one value per channel. sigmoid: background plus one value per channel (a
    single-channel model gives 0/1; a multilabel model numbers its channels from 1).
    ``class_values`` may list every value, or, for a multilabel sigmoid model, one per
    channel (background is then 0).

    >>> label_values(3, "sigmoid", None)
    array([0, 1, 2, 3])
    >>> label_values(2, "sigmoid", [5, 9])
    array([0, 5, 9])
    """
    n = n_channels + 1 if activation == "sigmoid" else n_channels
    if class_values is None:
        return np.arange(n, dtype=np.int64)
    values = np.asarray(class_values, dtype=np.int64)
    if activation == "sigmoid" and n_channels > 1 and values.shape == (n_channels,):
        values = np.concatenate([[0], values])
    if values.shape != (n,) or values.min() < 0:
        raise ValueError(f"`class_values` must be {n} non-negative ints, got {list(class_values)}")
    return values


def check_threshold(threshold: Any) -> np.float32:
    """``threshold`` as a float32 in [0, 1]; TypeError for a non-number (a bool too: True
    is no threshold), ValueError outside."""
    if isinstance(threshold, (bool, np.bool_)):
        raise TypeError(f"`threshold` must be a number in [0, 1], got {threshold!r}")
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise TypeError(f"`threshold` must be a number in [0, 1], got {threshold!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`threshold` must be in [0, 1], got {threshold}")
    return np.float32(value)


def model_threshold(model: Any, threshold: Any = None) -> float:
    """The foreground threshold to use with ``model`` (a network, a spec or a meta dict):
    ``threshold`` when given, else the model's ``meta["threshold"]``, else 0.5; checked.

    >>> model_threshold({"threshold": 0.7}), model_threshold({}), model_threshold({"threshold": 0.7}, 0.4)
    (0.7, 0.5, 0.4)
    """
    if threshold is not None:
        check_threshold(threshold)
        return float(threshold)
    meta = model if isinstance(model, dict) else (getattr(model, "meta", None) or {})
    own = meta.get("threshold") if isinstance(meta, dict) else None
    if own is None:
        own = getattr(model, "threshold", None)  # a ModelSpec carries it as an attribute
    if own is None:
        return DEFAULT_THRESHOLD
    try:
        check_threshold(own)
    except (TypeError, ValueError) as err:  # the caller passed none: say whose it is
        raise type(err)(f"the model's own threshold, meta['threshold']: {err}") from None
    return float(own)


@dataclass(frozen=True)
class LabelRule:
    """How one model's probabilities become labels (see the module docstring).

    Build it with `LabelRule.of`; ``values[i]`` is the label of class index ``i``.
    """

    activation: str
    n_channels: int
    values: np.ndarray
    threshold: np.float32
    marker: int | None = None  # the marker channel of a marker map (see the module docstring)
    marker_threshold: np.float32 | None = None

    @classmethod
    def of(cls, n_channels: int, activation: str | None = None, class_values: Sequence[int] | None = None,
           threshold: float = DEFAULT_THRESHOLD) -> LabelRule:
        """The rule for a model with ``n_channels`` outputs (``activation`` None: the default;
        no model here, so no model threshold: `for_model` reads it).

        >>> rule = LabelRule.of(2, "sigmoid", [5, 9])
        >>> rule.values.tolist(), rule.dtype
        ([0, 5, 9], dtype('uint8'))
        """
        n = int(n_channels)
        if n < 1:
            raise ValueError(f"a model needs at least one output channel, got {n_channels}")
        act = default_activation(n, activation)
        return cls(act, n, label_values(n, act, class_values), check_threshold(threshold))

    @classmethod
    def for_model(cls, model: Any, threshold: float | None = None, n_channels: int | None = None) -> LabelRule:
        """The rule of a `SegmentationNetwork` (its activation and ``meta['class_values']``);
        ``threshold`` None: the model's own (`model_threshold`)."""
        meta = getattr(model, "meta", None) or {}
        n = model.out_channels if n_channels is None else n_channels
        return cls.of(n, getattr(model, "activation", None), meta.get("class_values"),
                      model_threshold(model, threshold))

    def with_threshold(self, threshold: float) -> LabelRule:
        return LabelRule(self.activation, self.n_channels, self.values, check_threshold(threshold),
                         self.marker, self.marker_threshold)

    def with_markers(self, channel: int, marker_threshold: float) -> LabelRule:
        """The marker-map rule of an instance model (softmax): 0 background, 1 foreground,
        2 foreground with P(``channel``) > ``marker_threshold``.

        >>> rule = LabelRule.of(3).with_markers(1, 0.5)
        >>> rule.labels(np.array([[0.9, 0.1, 0.1], [0.05, 0.25, 0.8], [0.05, 0.9, 0.1]])).tolist()
        [0, 1, 2]
        """
        if self.activation != "softmax" or not 0 < int(channel) < self.n_channels:
            raise ValueError(f"a marker map needs a softmax model and a foreground channel, got "
                             f"{self.activation} with {self.n_channels} channel(s) and channel {channel}")
        t = float(marker_threshold)
        if not 0 < t < 1:
            raise ValueError(f"`marker_threshold` must be in (0, 1), got {marker_threshold}")
        return LabelRule(self.activation, self.n_channels, np.arange(3, dtype=np.int64), self.threshold,
                         int(channel), np.float32(t))

    @property
    def dtype(self) -> np.dtype:
        """The smallest unsigned dtype holding every label value."""
        return smallest_uint(int(self.values.max()))

    @property
    def several(self) -> bool:
        """Whether there is more than one foreground class."""
        return len(self.values) > 2

    @functools.cached_property
    def one_foreground_value(self) -> bool:
        """Whether a softmax model writes every foreground class as the same label value
        (e.g. an instance model's interior and boundary, ``class_values`` [0, 1, 1]): its
        labels then need no choice of class, only P(foreground)."""
        return self.activation == "softmax" and self.marker is None and len(set(self.values[1:].tolist())) == 1

    # -- host (numpy) ------------------------------------------------------------------
    def foreground(self, probs: np.ndarray, choose: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """P(foreground) (float32, NaN as 0) and the foreground class index of each pixel
        (from 1; None when there is one foreground class, or a softmax model's class is not
        to be chosen: ``choose=False``), from ``probs`` ``(K, ...)``."""
        probs = np.asarray(probs, dtype=np.float32)
        if probs.shape[0] != self.n_channels:
            raise ValueError(f"expected probabilities with {self.n_channels} channel(s) first, "
                             f"got shape {probs.shape}")
        cls = None
        if self.activation == "softmax":
            fg = np.float32(1) - probs[0]
            if self.several and choose:
                cls = np.argmax(probs[1:], axis=0) + 1
        elif self.several:
            best = np.argmax(probs, axis=0)
            fg = np.take_along_axis(probs, best[None], axis=0)[0]
            cls = best + 1
        else:
            fg = probs[0]
        return np.nan_to_num(fg, nan=0.0), cls

    def decide(self, fg: np.ndarray, cls: np.ndarray | None, threshold: float | None = None) -> np.ndarray:
        """Labels from `foreground`'s output (at ``threshold``, default the rule's own)."""
        t = self.threshold if threshold is None else check_threshold(threshold)
        chosen = self.values[1] if cls is None else self.values[cls]
        return np.where(fg > t, chosen, self.values[0]).astype(self.dtype, copy=False)

    def classes(self, probs: np.ndarray) -> np.ndarray:
        """Class indices (0 = background) from probabilities ``(K, ...)``."""
        fg, cls = self.foreground(probs, choose=self.marker is None)  # a marker map needs no class
        if self.marker is not None:
            return self._marker_classes(fg, self.marker_probability(probs), self.threshold)
        return np.where(fg > self.threshold, 1 if cls is None else cls, 0)

    def marker_probability(self, probs: np.ndarray) -> np.ndarray:
        """P(marker channel) (float32, NaN as 0) of a marker-map rule, from ``probs`` ``(K, ...)``:
        with `foreground`'s P(foreground), all a marker map needs (`marker_map`)."""
        return np.nan_to_num(np.asarray(probs, dtype=np.float32)[self.marker], nan=0.0)

    def marker_map(self, fg: np.ndarray, marker: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """The marker map (`dtype`) from `foreground`'s P(foreground) and `marker_probability`
        (at ``threshold``, default the rule's own): equal to `labels` of the probabilities."""
        t = self.threshold if threshold is None else check_threshold(threshold)
        return self.map_values(self._marker_classes(fg, marker, t))

    def _marker_classes(self, fg: np.ndarray, marker: np.ndarray, threshold: np.float32) -> np.ndarray:
        passed = fg > threshold
        return passed.astype(np.uint8) + (passed & (marker > self.marker_threshold))

    def labels(self, probs: np.ndarray) -> np.ndarray:
        """Label values (`dtype`) from probabilities ``(K, ...)``."""
        if self.marker is not None:
            return self.map_values(self.classes(probs))
        if self.one_foreground_value and self.several:  # the same labels without choosing a class
            return self.decide(self.foreground(probs, choose=False)[0], None)
        return self.decide(*self.foreground(probs))

    # -- device (torch) ----------------------------------------------------------------
    def classes_torch(self, probs, for_labels: bool = False):
        """Class indices (B, H, W) from probabilities (B, K, H, W), on their device, as
        uint8 (int32 beyond 254 classes): the same decision as `classes`.

        ``for_labels``: only their label values matter, so where every foreground class
        has one value (`one_foreground_value`) foreground is class 1 (the same labels
        after `map_values`, without choosing a class)."""
        import torch

        small = torch.uint8 if len(self.values) <= 255 else torch.int32
        probs = probs.float()
        # torch's argmax over dim 1 of an NCHW tensor is ~30x slower on the CPU than
        # max(dim=1).indices (same first-maximum rule); a marker model needs no class
        several = self.several and self.marker is None and not (for_labels and self.one_foreground_value)
        if self.activation == "softmax":
            fg = 1 - probs[:, 0]
            cls = probs[:, 1:].max(dim=1).indices + 1 if several else None
        elif self.several:
            best = probs.max(dim=1, keepdim=True)
            fg, cls = best.values[:, 0], best.indices[:, 0] + 1
        else:
            fg, cls = probs[:, 0], None
        t = torch.tensor(float(self.threshold), dtype=torch.float32, device=probs.device)
        passed = torch.nan_to_num(fg, nan=0.0) > t
        if self.marker is not None:
            m = torch.tensor(float(self.marker_threshold), dtype=torch.float32, device=probs.device)
            marked = torch.nan_to_num(probs[:, self.marker], nan=0.0) > m
            return passed.to(small) + (passed & marked).to(small)
        if cls is None:
            return passed.to(small)
        return torch.where(passed, cls, torch.zeros_like(cls)).to(small)

    def map_values(self, classes: np.ndarray) -> np.ndarray:
        """Label values of class indices."""
        return self.values[classes].astype(self.dtype, copy=False)
