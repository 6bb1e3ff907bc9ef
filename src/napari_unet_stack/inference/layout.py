"""The input at the door: its layout (leading axes, channel axis, image axes) and reading
one slice of it, normalized, as (C, H, W) float32."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..normalization import apply_normalization, fit_normalization

__all__ = ["Layout", "fit_stack", "read_slice", "to_float", "validate_image"]


@dataclass
class Layout:
    """Where the axes of an image are."""

    shape: tuple[int, ...]
    channel_axis: int | None
    spatial: tuple[int, ...]  # image axes that are not the channel axis, in order
    lead_shape: tuple[int, ...]
    hw: tuple[int, int]
    n_channels: int

    @property
    def leads(self) -> list[tuple[int, ...]]:
        """Every leading index (``[()]`` for a 2D image)."""
        return [tuple(int(i) for i in idx) for idx in np.ndindex(*self.lead_shape)]

    def indexer(self, lead: tuple[int, ...]) -> tuple:
        index: list[Any] = [slice(None)] * len(self.shape)
        for ax, i in zip(self.spatial[:-2], lead, strict=True):
            index[ax] = i
        return tuple(index)

    def to_chw(self, block: np.ndarray) -> np.ndarray:
        """(remaining axes in original order) -> (C, H, W)."""
        if self.channel_axis is None:
            return block[None]
        # after integer indexing only the channel and the two YX axes remain, in order
        remaining = sorted([self.channel_axis, *self.spatial[-2:]])
        return np.moveaxis(block, remaining.index(self.channel_axis), 0)


def _check_channel_axis(channel_axis: Any, shape: tuple[int, ...]) -> int | None:
    if channel_axis is None:
        return None
    ndim = len(shape)
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
        raise TypeError(f"`channel_axis` must be an int or None, got {channel_axis!r}")
    if not -ndim <= channel_axis < ndim:
        raise ValueError(f"`channel_axis={channel_axis}` is out of range for an image of shape {shape}")
    return int(channel_axis) % ndim


def validate_image(image: Any, channel_axis: int | None, in_channels: int | None) -> Layout:
    """The `Layout` of ``image``, or a clear error (checked against the model's input channels)."""
    if isinstance(image, (list, tuple)):
        image = np.asarray(image)
    if not hasattr(image, "shape") or not hasattr(image, "dtype") or not hasattr(image, "__getitem__"):
        raise TypeError(f"`image` must be an array (numpy, dask, zarr, memmap), got {type(image).__name__}")
    dtype = np.dtype(image.dtype)
    if dtype.kind not in "uifb":
        raise TypeError(f"`image` must have a real integer or float dtype, got {dtype}")
    shape = tuple(int(s) for s in image.shape)
    ndim = len(shape)
    channel_axis = _check_channel_axis(channel_axis, shape)
    min_ndim = 2 + (channel_axis is not None)
    if ndim < min_ndim:
        raise ValueError(
            f"`image` must have at least {min_ndim} dimensions (Y, X{', channels' if channel_axis is not None else ''}), "
            f"got shape {shape}"
        )
    if 0 in shape:
        raise ValueError(f"`image` is empty (shape {shape})")
    spatial = tuple(ax for ax in range(ndim) if ax != channel_axis)
    n_channels = 1 if channel_axis is None else shape[channel_axis]
    if in_channels is not None and n_channels != in_channels:
        hint = ""
        if channel_axis is None and shape[-1] == in_channels:
            hint = "; if the last axis holds the channels, pass channel_axis=-1"
        elif channel_axis is None:
            hint = "; pass channel_axis= to name the channel axis"
        raise ValueError(
            f"the model expects {in_channels} input channel(s) but `image` (shape {shape}, "
            f"channel_axis={channel_axis}) has {n_channels}{hint}"
        )
    hw = (shape[spatial[-2]], shape[spatial[-1]])
    lead = tuple(shape[ax] for ax in spatial[:-2])
    return Layout(shape, channel_axis, spatial, lead, hw, n_channels)


def to_float(block: np.ndarray) -> np.ndarray:
    """float32, or float64 kept as it is."""
    return block.astype(np.float32, copy=False) if block.dtype != np.float64 else block


def fit_stack(image, layout: Layout, norm: dict) -> np.ndarray:
    """Stack-scope normalization: fit on up to 16 evenly spaced slices (bounded memory)."""
    leads = list(np.ndindex(*layout.lead_shape))
    pick = [leads[i] for i in np.unique(np.linspace(0, len(leads) - 1, min(16, len(leads))).astype(int))]
    chw = [layout.to_chw(np.asarray(image[layout.indexer(tuple(int(i) for i in lead))])) for lead in pick]
    return fit_normalization(to_float(np.stack(chw, axis=1)), norm)


def read_slice(image, layout: Layout, lead: tuple[int, ...], norm: dict | None,
               stack_params: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Slice ``lead`` as normalized (C, H, W) float32, and its non-finite pixels (or None)."""
    block = np.asarray(image[layout.indexer(lead)])
    data = to_float(layout.to_chw(block))
    bad = None
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            bad = ~finite.all(axis=0)
    if norm is None:
        params = np.tile([[0.0, 1.0]], (data.shape[0], 1))
    elif stack_params is not None:
        params = stack_params
    else:
        params = fit_normalization(data, norm)
    return apply_normalization(data, params), bad
