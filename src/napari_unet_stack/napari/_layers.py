"""Layer helpers without Qt: what goes into the network, how results look, layer data tuples.

`ProbabilityStore` is the ``out=`` sink the Predict widget hands to `iter_predict`: each
finished slice arrives as float probabilities ``(K, Y, X)``; the store keeps only the
foreground probability, quantized to uint8 (one byte per pixel for the whole stack, plus
one for the class of multi-class softmax models), and writes the labels of that slice
into any array (the Labels layer's data). A new threshold relabels from the bytes kept,
without running the network again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..postprocess import label_values, smallest_uint

__all__ = [
    "METADATA_KEY",
    "ProbabilityStore",
    "channel_choices",
    "check_channels",
    "foreground",
    "image_input",
    "output_geometry",
]

#: key in ``layer.metadata`` that marks layers this plugin made (and what made them)
METADATA_KEY = "napari-unet-stack"


def image_input(layer: Any, channel_axis: int | None) -> tuple[Any, int | None]:
    """The array and channel axis to feed the engine for an Image layer.

    RGB(A) layers have their colour on the last axis (``channel_axis=-1``, whatever is
    passed). Multiscale layers are segmented at full resolution (level 0).
    """
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    if getattr(layer, "rgb", False):
        return data, -1
    if channel_axis is not None:
        ndim = len(data.shape)
        if not -ndim <= channel_axis < ndim:
            raise ValueError(f"channel axis {channel_axis} is out of range for an image of shape {data.shape}")
        channel_axis = channel_axis % ndim
        if ndim - 1 < 2:
            raise ValueError(f"an image of shape {data.shape} has no Y, X axes besides channel axis {channel_axis}")
    return data, channel_axis


def channel_choices(layer: Any) -> list[tuple[str, int | None]]:
    """(text, axis) choices of a widget's "channel axis" for an Image layer (or None).

    RGB(A) layers offer only their last axis; other layers "none" and each axis of at most
    64 entries (an image of 2 dimensions has no room for one).
    """
    if layer is None:
        return [("none", None)]
    if getattr(layer, "rgb", False):
        return [(f"RGB{'A' if layer.data.shape[-1] == 4 else ''} (last axis)", -1)]
    shape = image_input(layer, None)[0].shape
    axes = [(f"axis {ax} ({n})", ax) for ax, n in enumerate(shape) if len(shape) > 2 and n <= 64]
    return [("none", None), *axes]


def check_channels(layer: Any, data: Any, channel_axis: int | None, model: Any) -> None:
    """Raise ValueError, naming the layer, when its channels do not fit ``model``'s input."""
    wanted = getattr(model, "in_channels", None)
    given = 1 if channel_axis is None else int(data.shape[channel_axis])
    if wanted is None or given == wanted:
        return
    name = getattr(layer, "name", "image")
    if getattr(layer, "rgb", False):
        kind = "RGBA" if given == 4 else "RGB"
        hint = ("; add it without its alpha channel (viewer.add_image(layer.data[..., :3]))"
                if given == 4 and wanted == 3 else "")
        raise ValueError(f"image {name!r} is {kind} ({given} channels) but the model expects {wanted}{hint}")
    where = "no channel axis chosen" if channel_axis is None else f"channel axis {channel_axis}"
    fits = [ax for ax, n in enumerate(data.shape) if n == wanted and ax < len(data.shape) - 2]
    hint = f"; choose channel axis {fits[-1]}" if fits else ""
    raise ValueError(f"the model expects {wanted} input channel(s) but image {name!r} (shape {tuple(data.shape)}, "
                     f"{where}) has {given}{hint}")


def spatial_shape(shape: tuple[int, ...], channel_axis: int | None) -> tuple[int, ...]:
    """``shape`` without the channel axis."""
    if channel_axis is None:
        return tuple(shape)
    channel_axis %= len(shape)
    return tuple(n for ax, n in enumerate(shape) if ax != channel_axis)


def output_geometry(layer: Any, channel_axis: int | None) -> dict[str, Any]:
    """scale, translate, axis_labels, units, rotate, shear and affine of ``layer`` for a
    result without channels (so that the result lies on the image in the viewer).

    For RGB layers napari already leaves the colour axis out; for a channel axis of a
    plain layer that axis is dropped (its row and column of the matrices too).
    """
    keys = ("scale", "translate", "axis_labels", "units")
    values: dict[str, Any] = {key: list(getattr(layer, key)) for key in keys if hasattr(layer, key)}
    matrices = {key: m for key in ("rotate", "shear", "affine") if (m := _matrix(layer, key)) is not None}
    if channel_axis is not None and not getattr(layer, "rgb", False):
        axis = channel_axis % layer.ndim
        values = {key: [v for ax, v in enumerate(seq) if ax != axis] for key, seq in values.items()}
        matrices = {key: np.delete(np.delete(m, axis, axis=0), axis, axis=1) for key, m in matrices.items()}
    if "units" in values:
        values["units"] = [str(u) for u in values["units"]]
    return {**values, **matrices}


def _matrix(layer: Any, key: str) -> np.ndarray | None:
    """``layer``'s rotate / shear / affine as a matrix (shear as given napari takes a vector)."""
    value = getattr(layer, key, None)
    if value is None:
        return None
    value = np.asarray(getattr(value, "affine_matrix", value), dtype=np.float64)  # affine: a transform
    if key == "shear" and value.ndim == 1:
        from napari.utils.transforms.transform_utils import shear_to_matrix

        value = shear_to_matrix(value, ndim=layer.ndim)
    return value


def _values(n_classes: int, activation: str, class_values: Any) -> np.ndarray:
    """Label value per class index (0 is background); multi-label sigmoid models count from 1."""
    n_labels = n_classes + 1 if activation == "sigmoid" and n_classes > 1 else None
    if n_labels is None:
        return label_values(n_classes, activation, class_values)
    if class_values is not None and len(class_values) == n_labels:
        return np.asarray(class_values, dtype=np.int64)
    return np.arange(n_labels, dtype=np.int64)


def foreground(probs: np.ndarray, activation: str) -> tuple[np.ndarray, np.ndarray | None]:
    """What the widget's threshold applies to, from probabilities ``(K, ...)``.

    Returns the foreground probability (NaN as 0) and the class index of each pixel
    (from 1), or None when there is one foreground class. sigmoid: the probability of
    the (most probable) channel; softmax: one minus the background probability, the
    class being the most probable non-background one (for two classes at 0.5 that is the
    argmax).
    """
    probs = np.asarray(probs, dtype=np.float32)
    cls = None
    if activation == "softmax":
        fg = 1.0 - probs[0]
        if probs.shape[0] > 2:
            cls = np.argmax(probs[1:], axis=0) + 1
    elif probs.shape[0] > 1:
        best = np.argmax(probs, axis=0)
        fg = np.take_along_axis(probs, best[None], axis=0)[0]
        cls = best + 1
    else:
        fg = probs[0]
    # NaN marks pixels whose input was not finite: background
    return np.nan_to_num(fg, nan=0.0), cls


class ProbabilityStore:
    """An ``out=`` array for `iter_predict` that keeps uint8 foreground probabilities.

    Parameters
    ----------
    spatial : tuple of int
        The image's shape without its channel axis: leading axes, then Y, X.
    n_classes : int
        Output channels of the model.
    activation : {'sigmoid', 'softmax'}
    class_values : list of int, optional
        Value written for each class (the checkpoint's ``class_values``).
    labels : array, optional
        Where each finished slice's labels go (the Labels layer's data); see `labels_dtype`.
    threshold : float
        Foreground where the foreground probability exceeds it. For sigmoid models the
        probability of the (most probable) channel; for softmax models one minus the
        background probability, the class being the most probable non-background one
        (for two classes at 0.5 that is the argmax).
    """

    dtype = np.dtype(np.float32)

    def __init__(self, spatial: tuple[int, ...], n_classes: int, activation: str,
                 class_values: Any = None, labels: Any = None, threshold: float = 0.5):
        self.spatial = tuple(int(n) for n in spatial)
        self.n_classes = int(n_classes)
        self.activation = activation
        self.values = _values(self.n_classes, activation, class_values)
        self.labels_dtype = smallest_uint(int(self.values.max()))
        self.shape = (self.n_classes, *self.spatial)
        self.ndim = len(self.shape)
        self.foreground = np.zeros(self.spatial, dtype=np.uint8)
        several = (activation == "softmax" and self.n_classes > 2) or (activation == "sigmoid" and self.n_classes > 1)
        self.classes = np.ones(self.spatial, dtype=smallest_uint(len(self.values) - 1)) if several else None
        self.labels = labels
        self.threshold = float(threshold)
        self.finished: set[tuple[int, ...]] = set()

    def new_labels(self) -> np.ndarray:
        return np.zeros(self.spatial, dtype=self.labels_dtype)

    def __setitem__(self, key: tuple, probs: np.ndarray) -> None:
        lead = tuple(int(i) for i in key[1:])
        fg, cls = foreground(probs, self.activation)
        if self.classes is not None:
            self.classes[lead] = cls
        self.foreground[lead] = np.rint(np.clip(fg, 0.0, 1.0) * 255)
        self.finished.add(lead)
        if self.labels is not None:
            self.labels[lead] = self.slice_labels(lead, self.threshold)

    def slice_labels(self, lead: tuple[int, ...], threshold: float) -> np.ndarray:
        fg = self.foreground[lead] > threshold * 255
        cls = self.classes[lead] if self.classes is not None else 1
        return np.where(fg, self.values[cls], self.values[0]).astype(self.labels_dtype, copy=False)

    def relabel(self, threshold: float, labels: Any = None) -> Any:
        """Labels of every finished slice at ``threshold``, written into ``labels``."""
        self.threshold = float(threshold)
        labels = self.labels if labels is None else labels
        for lead in sorted(self.finished):
            labels[lead] = self.slice_labels(lead, self.threshold)
        return labels

    def probability(self) -> np.ndarray:
        """The foreground probability as uint8 (255 = 1.0); the array itself, not a copy."""
        return self.foreground


def labels_tuple(data: np.ndarray, name: str, geometry: dict, source: str, **kwargs: Any) -> tuple:
    """A Labels layer data tuple carrying the image's geometry and our metadata tag."""
    meta = {"name": name, **geometry, "metadata": {METADATA_KEY: {"source": source}}, **kwargs}
    return (data, meta, "labels")
