"""Z context: 2D models that also see the neighbouring slices of a stack (2.5D input).

A model whose ``meta["z_context"]`` is k > 0 takes each slice together with the k slices
before and after it along the stack's Z axis, as (2k + 1) x C input channels for images of
C channels, neighbour-major: the C channels of slice z - k, then those of z - k + 1, ...,
up to z + k (the slice itself is the middle block). Past either end of the Z axis the
nearest slice is repeated. A slice with no Z axis (a 2D image, or a stack whose leading
axes are all time) is its own neighbour on both sides. Each neighbour is normalized on its
own, as a channel of its own (per-slice normalization), or with the stack's parameters.

This module holds the rule; the engine (`inference.layout.read_slice`) and training
(`training.data`) both build their inputs with it, and both find the Z axis with
`context_lead` from the same ``z_axis`` / ``time_axis`` arguments (axes of the image).

>>> neighbours(0, 5, 1), neighbours(4, 5, 2), neighbours(0, 1, 1)
([0, 0, 1], [2, 3, 4, 4, 4], [0, 0, 0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["KEY", "check_time_axis", "check_z_axis", "check_z_context", "context_lead", "image_channels", "lead_index",
           "neighbour_leads", "neighbours", "per_slice", "stack_context", "z_context_of", "z_lead"]

KEY = "z_context"


def check_z_context(value: Any, in_channels: int | None = None) -> int:
    """``value`` as the number of neighbours on each side (an int >= 0); with the network's
    ``in_channels``, also that they split into 2k + 1 equal blocks."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"`z_context` must be an int >= 0 (neighbouring slices on each side), got {value!r}")
    k = int(value)
    if in_channels is not None and int(in_channels) % (2 * k + 1):
        raise ValueError(f"`z_context={k}` needs input channels in {2 * k + 1} equal blocks (one per slice), "
                         f"but the network takes {in_channels}")
    return k


def z_context_of(model: Any) -> int:
    """The model's ``meta["z_context"]`` (0: a plain 2D model, or not one of ours)."""
    meta = getattr(model, "meta", None)
    return int(meta.get(KEY, 0) or 0) if isinstance(meta, dict) else 0


def image_channels(model: Any) -> int | None:
    """The channels of the *image* a model reads: its input channels over 2k + 1 (None: unknown)."""
    n = getattr(model, "in_channels", None)
    return None if n is None else int(n) // (2 * z_context_of(model) + 1)


def per_slice(model: Any) -> str:
    """The words every channel error puts after a z-context model's channel count, saying that
    it counts the channels of one slice ("" for a 2D model).

    >>> class Net: meta = {"z_context": 1}
    >>> per_slice(Net()), per_slice(None)
    (' per slice (z context 1: 3 slices in)', '')
    """
    k = z_context_of(model)
    return f" per slice (z context {k}: {2 * k + 1} slices in)" if k else ""


def neighbours(z: int, n: int, k: int, lo: int = 0, hi: int = 0) -> list[int]:
    """The Z indices slice ``z`` of ``n`` reads, z - k .. z + k, each clamped to the slices
    there are: ``-lo .. n - 1 + hi`` (``lo`` / ``hi``: slices readable before the first and
    after the last, e.g. a chunk's halo)."""
    return [min(max(z + d, -lo), n - 1 + hi) for d in range(-k, k + 1)]


def stack_context(planes: Sequence[np.ndarray]) -> np.ndarray:
    """(C, H, W) planes of slices z - k .. z + k -> one ((2k + 1) C, H, W) input."""
    return np.concatenate(list(planes), axis=0)


def z_lead(n_lead: int, time_leads: Sequence[int] = ()) -> int | None:
    """The Z axis among ``n_lead`` leading (stack) axes: the last one that is not a time
    axis (None: there is none). The axis a z-context model reads along and the one
    instance decoding links objects across.

    >>> z_lead(2), z_lead(2, (1,)), z_lead(1, (0,))
    (1, 0, None)
    """
    spatial = [a for a in range(n_lead) if a not in set(time_leads)]
    return spatial[-1] if spatial else None


def check_z_axis(value: Any, per_image: bool = False) -> Any:
    """``value`` as a ``z_axis`` argument: 'auto', None or an int (an axis of the image);
    with ``per_image`` also a list or tuple of those, one per image (as a list).

    >>> check_z_axis("auto"), check_z_axis(np.int64(1)), check_z_axis((0, None), per_image=True)
    ('auto', 1, [0, None])
    """
    if per_image and isinstance(value, (list, tuple)):
        return [check_z_axis(v) for v in value]
    if not (value in ("auto", None) or (isinstance(value, (int, np.integer)) and not isinstance(value, bool))):
        each = ", or a list of those (one per image)" if per_image else ""
        raise TypeError(f"`z_axis` must be 'auto', None or an int (an axis of the image){each}, got {value!r}")
    return value if value in ("auto", None) else int(value)


def check_time_axis(value: Any) -> tuple[int, ...]:
    """``value`` as a ``time_axis`` argument: None, an int or a sequence of int (axes of the
    image), as a tuple."""
    try:
        axes = () if value is None else (value,) if np.isscalar(value) else tuple(value)
    except TypeError:  # not a sequence
        axes = (value,)
    if any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in axes):
        raise TypeError(f"`time_axis` must be None, an int or a sequence of int (axes of the image), got {value!r}")
    return tuple(int(a) for a in axes)


def lead_index(axis: Any, shape: Sequence[int], channel_axis: int | None, name: str, where: str = "the image") -> int:
    """The position among the leading (stack) axes of an image of ``shape`` (channel axis
    ``channel_axis``, None: none) of its axis ``axis`` (negative: from the end); a
    ValueError naming the argument ``name``, the image (``where``) and its shape when
    ``axis`` is not one of them."""
    ndim = len(shape)
    channel = None if channel_axis is None else int(channel_axis) % ndim
    leads = [a for a in range(ndim) if a != channel][:-2]
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim or (
            int(axis) % ndim not in leads):
        raise ValueError(f"`{name}={axis!r}` is not a leading (stack) axis of {where} (shape {tuple(shape)}, "
                         f"channel_axis={channel_axis})")
    return leads.index(int(axis) % ndim)


def context_lead(shape: Sequence[int], channel_axis: int | None, z_axis: Any = "auto",
                 time_axes: Sequence[int] = (), where: str = "the image") -> int | None:
    """The leading axis (its position among the leading axes) a z-context model reads each
    slice's neighbours along, for an image of ``shape``: ``z_axis`` (an image axis); "auto":
    the last leading axis that is not one of ``time_axes`` (image axes too, `z_lead`); None
    (or no such axis): none, each slice is its own neighbour. ValueError (`lead_index`)
    when ``z_axis`` or a time axis is not a leading axis of the image."""
    if z_axis is None:
        return None
    n_lead = max(len(shape) - (channel_axis is not None) - 2, 0)
    if z_axis == "auto":
        return z_lead(n_lead, [lead_index(a, shape, channel_axis, "time_axis", where) for a in time_axes])
    return lead_index(z_axis, shape, channel_axis, "z_axis", where)


def neighbour_leads(lead: tuple[int, ...], lead_shape: Sequence[int], zl: int, k: int, lo: int = 0,
                    hi: int = 0) -> list[tuple[int, ...]]:
    """The leading indices of slice ``lead``'s neighbours z - k .. z + k along leading axis
    ``zl`` of ``lead_shape`` (`neighbours`: clamped, ``lo`` / ``hi`` extra slices)."""
    return [(*lead[:zl], z, *lead[zl + 1:]) for z in neighbours(lead[zl], int(lead_shape[zl]), k, lo, hi)]
