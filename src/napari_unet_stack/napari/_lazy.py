"""Lazy labels for the Predict widget: slices computed as the user browses (no Qt here).

`lazy_labels` wraps an Image layer's array as a dask array with one chunk per slice of the
leading (Z, T, ...) axes, the channel and Y, X axes whole in each chunk, and hands it to
the engine (`predict` on a dask array: one task per slice, nothing computed); one more task
per slice turns the probabilities into labels with `napari_unet_stack.labels.LabelRule`, the
rule `segment` uses (so each slice equals ``segment(slice, threshold=t)``). napari computes
the slices it shows, when it shows them, with dask's default local scheduler (nothing here
starts a dask.distributed client), and its opportunistic dask cache (see
`napari.utils.resize_dask_cache` and the dask cache preference) keeps what was computed:
going back to a slice costs nothing, and a new threshold is a new labels graph over the same
probability tasks, so slices still in the cache are relabelled without the network.

Only the semantic labels can be lazy: instance labels (3D connected components) and the
probability image need the whole stack. A 2D image has nothing to browse; the widget
computes it as usual.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..labels import LabelRule

__all__ = ["LazyLabels", "is_stack", "lazy_input", "lazy_labels", "lazy_model"]


def _leading_axes(ndim: int, channel_axis: int | None) -> list[int]:
    spatial = [ax for ax in range(ndim) if channel_axis is None or ax != channel_axis % ndim]
    return spatial[:-2]


def is_stack(shape: tuple[int, ...], channel_axis: int | None) -> bool:
    """Whether an image of ``shape`` has leading axes to browse (lazy mode applies)."""
    return len(_leading_axes(len(shape), channel_axis)) > 0


def lazy_input(data: Any, channel_axis: int | None):
    """``data`` as a dask array chunked one slice per chunk along the leading axes.

    numpy, zarr, memmaps and other array-likes are wrapped without copying (and without
    hashing their contents); a dask array is rechunked.
    """
    import dask.array as da

    leading = _leading_axes(len(data.shape), channel_axis)
    chunks = tuple(1 if ax in leading else -1 for ax in range(len(data.shape)))
    if isinstance(data, da.Array):
        return data.rechunk(chunks)
    return da.from_array(data, chunks=chunks, name=False)  # name=False: a random key, no hashing


def lazy_model(model: Any, head: Any = None) -> Any:
    """The model the lazy graph keeps.

    The widget's model itself, except for a UNet++ with deep supervision: a copy with
    ``head`` fixed, since slices are computed at any later time while an ordinary run
    sets (and puts back) the head of the shared model.
    """
    if not getattr(model, "deep_supervision", False):
        return model
    fixed = copy.deepcopy(model)
    if head is not None:
        fixed.head = head
    return fixed


def check_options(shape: tuple[int, ...], channel_axis: int | None, model: Any, options: dict,
                  threshold: float) -> None:
    """Raise what a run with these options would raise before its first network call.

    Runs the engine on one blank slice up to its first progress event (device, precision,
    tile size, blending, channels are checked there), so that a bad option is reported
    once, now, instead of at every slice napari draws.
    """
    from ..inference import iter_predict

    LabelRule.for_model(model, threshold)  # a bad threshold or class_values raise here
    leading = _leading_axes(len(shape), channel_axis)
    blank = np.zeros([1 if ax in leading else n for ax, n in enumerate(shape)], np.float32)
    engine = iter_predict(blank, model, **options)
    try:
        next(engine)
    finally:
        engine.close()


@dataclass
class LazyLabels:
    """A lazy result: lazy probabilities, the labels made from them, and how."""

    image: str  # the Image layer's name
    model: Any
    options: dict  # predict options (channel_axis, tile_size, device, ...)
    probabilities: Any  # (K, ..., Y, X) dask array, one task per slice
    threshold: float
    data: Any = None  # the lazy labels
    info: dict = field(default_factory=dict)  # n_tasks, model_transport
    key: str = ""  # ``data.name`` when built (painting on a dask array changes it)

    def build(self, threshold: float | None = None):
        """(Re)build ``data`` at ``threshold``: a new graph over the same probability
        tasks, nothing computed."""
        if threshold is not None:
            self.threshold = float(threshold)
        rule = LabelRule.for_model(self.model, self.threshold, n_channels=self.probabilities.shape[0])
        dtype = rule.dtype
        self.data = self.probabilities.map_blocks(
            rule.labels, drop_axis=0, dtype=dtype, meta=np.empty((0,) * (self.probabilities.ndim - 1), dtype),
            name=f"lazy-labels-{uuid.uuid4().hex}",
        )
        self.key = self.data.name
        return self.data

    def shown_by(self, layer: Any) -> bool:
        """Whether ``layer`` shows these labels as built (not replaced, not painted on)."""
        return layer.data is self.data and getattr(layer.data, "name", None) == self.key

    def placeholder(self):
        """Zeros of the result's shape and dtype (a layer made with them computes nothing)."""
        import dask.array as da

        return da.zeros(self.data.shape, dtype=self.data.dtype, chunks=self.data.chunks)


def lazy_labels(image: str, data: Any, channel_axis: int | None, model: Any, options: dict,
                threshold: float, *, head: Any = None) -> LazyLabels:
    """Lazy labels of ``data`` (an Image layer's array); see the module docstring.

    ``model`` is a model of this package (its ``activation`` and ``meta``), ``options``
    are `predict`'s (tile_size, halo, blend, batch_size, device, precision; ``z_axis``: the
    axis a z-context model reads neighbours along, never a time axis: the engine reads
    the one-slice chunks with that many slices of overlap along it), ``head`` the
    UNet++ head to use. Raises ValueError / TypeError for bad input or options, like an
    ordinary run would.
    """
    from ..inference import predict

    if not is_stack(tuple(data.shape), channel_axis):
        raise ValueError(f"image {image!r} (shape {tuple(data.shape)}) has no slices to browse: lazy "
                         "labels are for stacks")
    model = lazy_model(model, head)
    options = {**options, "channel_axis": channel_axis}
    check_options(tuple(data.shape), channel_axis, model, options, threshold)
    info: dict = {}
    probabilities = predict(lazy_input(data, channel_axis), model, info=info, **options)
    lazy = LazyLabels(image, model, options, probabilities, float(threshold), info=info)
    lazy.build()
    return lazy
