"""`InstanceOptions`: the one set of instance-decoding options (and their defaults).

`segment`, its dask path, ``unet-stack predict`` and the Predict widget all build one and
pass it on; its checks are the only ones. ``resolve(model)`` picks the concrete method for
a model: an instance model (``meta["instances"]``, see
`napari_unet_stack.training.instance_meta`) is decoded from its own markers, any other by a
distance-transform watershed of its foreground.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..zcontext import check_time_axis
from .checks import check_decoding, check_number
from .linking import DEFAULT_LINK_OVERLAP
from .slices import DEFAULT_MIN_DISTANCE, DEFAULT_SMOOTHING
from .zsplit import DEFAULT_Z_SPLIT

__all__ = ["DEFAULT_MARKER_THRESHOLD", "METHOD_CHOICES", "InstanceOptions", "check_instance_info", "model_instances"]

#: What ``method`` may be: 'auto' is 'markers' for an instance model, else 'watershed'.
METHOD_CHOICES = ("auto", "markers", "watershed", "components")
#: P(interior) above which a foreground pixel is a marker, when the model names none.
DEFAULT_MARKER_THRESHOLD = 0.5


def model_instances(model: Any) -> dict | None:
    """``meta["instances"]`` of an instance model (a network, a spec or a meta dict), else None."""
    meta = model if isinstance(model, dict) else (getattr(model, "meta", None) or {})
    info = meta.get("instances") if isinstance(meta, dict) else None
    if info is None:
        info = getattr(model, "instances", None)  # a ModelSpec carries it as an attribute
    return info if isinstance(info, dict) and info.get("decoding") == "seeded_watershed" else None


def check_instance_info(info: Any, n_channels: int) -> dict:
    """``meta["instances"]`` checked for a softmax model with ``n_channels`` outputs."""
    if not isinstance(info, dict) or info.get("decoding") != "seeded_watershed":
        raise ValueError(f"`instances` metadata must be a dict with decoding 'seeded_watershed', got {info!r}")
    classes = info.get("classes")
    if not isinstance(classes, dict) or not all(isinstance(classes.get(k), int) and 0 <= classes[k] < n_channels
                                                 for k in ("background", "interior", "boundary")):
        raise ValueError(f"`instances['classes']` must give background, interior and boundary output channels "
                         f"(0..{n_channels - 1}), got {classes!r}")
    if "marker_threshold" in info:
        check_number("marker_threshold", info["marker_threshold"], 0, 1, open_low=True, open_high=True)
    if "min_size" in info and (not isinstance(info["min_size"], int) or info["min_size"] < 0):
        raise ValueError(f"`instances['min_size']` must be an int >= 0, got {info['min_size']!r}")
    return info


@dataclass(frozen=True)
class InstanceOptions:
    """How labels become instances (each object its own id, unique over the result).

    Parameters
    ----------
    method : {'auto', 'markers', 'watershed', 'components'}
        'markers': an instance model's own decoding: markers are the connected components
        of P(interior) > ``marker_threshold`` inside the foreground, grown into the
        foreground (each pixel to its nearest marker, by a watershed of the distance to
        the markers). 'watershed': the foreground
        (per class) split by a watershed of its distance transform seeded by the
        transform's maxima (any model). 'components': connected components (3D over Z).
        'auto' (``instances=True``): 'markers' for an instance model, else 'watershed'.
    min_size : int or None
        Objects (all their slices together) with fewer pixels become 0. None: the model's
        ``meta["instances"]["min_size"]``, else 0.
    min_distance : int
        'watershed' markers: maxima of the distance transform at least this far apart.
    smoothing : float
        'watershed': Gaussian sigma of the distance transform before its maxima (0: none).
    marker_threshold : float or None
        'markers': in (0, 1); None: the model's ``meta["instances"]["marker_threshold"]``,
        else `DEFAULT_MARKER_THRESHOLD`.
    link_overlap : float
        'markers' and 'watershed' Z links, in (0, 1]: objects of neighbouring slices are
        one when the smaller lies at least this much inside the other (one to one; a
        leftover lying this much inside one joins it). See
        `napari_unet_stack.postprocess.overlap_links`.
    z_split : float
        'markers' and 'watershed' Z links, in [0, 1): a linked object is cut where its
        cross-section shrinks below this fraction of its largest ones above and below
        (nuclei stacked in Z); 0: never. See `napari_unet_stack.postprocess.z_cuts`.
    ndim : {None, 2, 3}
        2: objects per slice; 3 (None, when there is a Z axis): linked across Z.
    time_axis : int, sequence of int or None
        Axes of the *image* (numbered like ``channel_axis``) that are time: never linked.
    """

    method: str = "auto"
    min_size: int | None = None
    min_distance: int = DEFAULT_MIN_DISTANCE
    smoothing: float = DEFAULT_SMOOTHING
    marker_threshold: float | None = None
    link_overlap: float = DEFAULT_LINK_OVERLAP
    z_split: float = DEFAULT_Z_SPLIT
    ndim: int | None = None
    time_axis: Any = None

    def __post_init__(self) -> None:
        if self.method not in METHOD_CHOICES:
            raise ValueError(f"`instances` (method) must be True, False or one of {METHOD_CHOICES}, got {self.method!r}")
        check_decoding(self.min_size, self.min_distance, self.smoothing, self.link_overlap, model_min_size=True,
                       z_split=self.z_split)
        if self.marker_threshold is not None:
            check_number("marker_threshold", self.marker_threshold, 0, 1, open_low=True, open_high=True)
        check_time_axis(self.time_axis)
        if self.ndim not in (None, 2, 3):
            raise ValueError(f"`instance_ndim` must be None, 2 (per slice) or 3 (linked across Z), got {self.ndim!r}")

    @classmethod
    def from_instances(cls, instances: Any, **options) -> InstanceOptions | None:
        """The options of ``segment(instances=...)``: None for False/None, 'auto' for True."""
        if isinstance(instances, InstanceOptions):
            return dataclasses.replace(instances, **options) if options else instances
        if instances is False or instances is None:
            return None
        if instances is True:
            return cls("auto", **options)
        if isinstance(instances, str) and instances in METHOD_CHOICES:
            return cls(instances, **options)
        raise ValueError(f"`instances` must be True, False or one of {METHOD_CHOICES}, got {instances!r}")

    def replace(self, **changes) -> InstanceOptions:
        return dataclasses.replace(self, **changes)

    def resolve(self, model: Any = None) -> InstanceOptions:
        """The options with the model's choices filled in: a concrete ``method``,
        ``marker_threshold`` and ``min_size``. ValueError for 'markers' without an
        instance model."""
        info = model_instances(model) if model is not None else None
        method = self.method
        if method == "auto":
            method = "markers" if info is not None else "watershed"
        if method == "markers" and info is None:
            raise ValueError("`instances='markers'` needs an instance model (trained with instances=True); "
                             "use instances=True or 'watershed' for this model")
        threshold = self.marker_threshold
        if threshold is None:
            threshold = float((info or {}).get("marker_threshold", DEFAULT_MARKER_THRESHOLD))
        min_size = self.min_size
        if min_size is None:
            min_size = int((info or {}).get("min_size", 0)) if method == "markers" else 0
        return dataclasses.replace(self, method=method, marker_threshold=threshold, min_size=min_size)

    @property
    def markers(self) -> bool:
        """Whether the labels to decode are an instance model's marker maps (0/1/2)."""
        return self.method == "markers"

    def time_axes(self, image_ndim: int, channel_axis: int | None) -> tuple[int, ...]:
        """The time axes as axes of the labels (the channel axis dropped)."""
        if self.time_axis is None:
            return ()
        given = check_time_axis(self.time_axis)
        found = []
        for axis in given:
            a = int(axis) + (image_ndim if int(axis) < 0 else 0)
            channel = None if channel_axis is None else channel_axis % image_ndim
            label_axis = a - (1 if channel is not None and a > channel else 0)
            leading = image_ndim - (channel is not None) - 2
            if not 0 <= a < image_ndim or a == channel or label_axis >= leading:
                raise ValueError(f"`time_axis` {axis} is not a leading (stack) axis of the image (ndim {image_ndim})")
            found.append(label_axis)
        return tuple(found)

    def apply(self, labels: Any, time_axes: tuple[int, ...] = (), out: Any = None, *, cancel: Any = None) -> Any:
        """Instance ids of ``labels`` (semantic labels, or marker maps for 'markers'), slice
        by slice into ``out`` (may be ``labels``); ``cancel`` (an object with ``is_set()``)
        is checked before each slice (`InferenceCancelled`). Call on resolved options."""
        from .stack import instance_labels

        if self.method == "auto" or self.min_size is None or self.marker_threshold is None:
            raise ValueError("InstanceOptions.apply needs resolved options: call .resolve(model) first")
        return instance_labels(labels, ndim=self.ndim, method=self.method, min_size=self.min_size,
                               min_distance=self.min_distance, smoothing=self.smoothing, link_overlap=self.link_overlap,
                               z_split=self.z_split, time_axes=time_axes, out=out, cancel=cancel)

    def check(self, shape: tuple[int, ...], time_axes: tuple[int, ...]) -> None:
        """The errors of these (resolved) options for labels of ``shape``, before any work."""
        self.apply(np.zeros((1,) * (len(shape) - 2) + (2, 2), np.uint8), time_axes)
