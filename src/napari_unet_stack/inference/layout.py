"""The input at the door: what is accepted as an image (`as_image`), its layout (leading
axes, channel axis and channel choice, image axes, the Z axis a z-context model reads
along) and reading one slice of it, normalized, as (C, H, W) float32 (with a z-context
model, the slice and its neighbours: `napari_unet_stack.zcontext`)."""

from __future__ import annotations

import sys
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..channels import check_channel, pick_channels
from ..normalization import PER_CHANNEL_FITS, apply_normalization, fit_normalization
from ..zcontext import context_lead, neighbour_leads, stack_context

__all__ = ["Layout", "PlaneCache", "ZHalo", "as_image", "caller_stacklevel", "fit_stack", "plane_cache", "read_slice",
           "spatial_shape", "to_float", "validate_image", "with_z_context"]

#: Normalization modes that a constant offset does not change (64-bit ints are shifted exactly).
SHIFT_INVARIANT = ("percentile", "zscore")
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


def caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside this package (the user's call)."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


@dataclass
class Layout:
    """Where the axes of an image are, and which channels the model sees."""

    shape: tuple[int, ...]
    channel_axis: int | None
    spatial: tuple[int, ...]  # image axes that are not the channel axis, in order
    lead_shape: tuple[int, ...]
    hw: tuple[int, int]
    n_channels: int  # of the image
    channel: int | str | None = None  # the `channels.check_channel` choice
    z_context: int = 0  # neighbouring slices on each side a z-context model reads
    z_lead: int | None = None  # the index in a lead of the Z axis they are read along

    @property
    def n_inputs(self) -> int:
        """Channels the model sees."""
        return (self.n_channels if self.channel is None else 1) * (2 * self.z_context + 1)

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
        """(remaining axes in original order) -> (C, H, W), all of the image's channels."""
        if self.channel_axis is None:
            return block[None]
        # after integer indexing only the channel and the two YX axes remain, in order
        remaining = sorted([self.channel_axis, *self.spatial[-2:]])
        return np.moveaxis(block, remaining.index(self.channel_axis), 0)

    def model_input(self, block: np.ndarray, shift: int | None = None) -> np.ndarray:
        """A read slice as the model's (C, H, W) float input, before normalization."""
        return pick_channels(to_float(self.to_chw(np.asarray(block)), shift), self.channel)


def as_image(image: Any) -> Any:
    """``image`` as an array the engine reads: torch tensors move to numpy, lists become
    numpy arrays; numpy, memmap, zarr and dask arrays stay as they are."""
    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.dtype in (torch.bfloat16, torch.float16):  # numpy has no bfloat16
            tensor = tensor.float()
        return tensor.numpy()
    if isinstance(image, (list, tuple)):
        try:
            return np.asarray(image)
        except ValueError as err:
            raise ValueError(f"`image` as a list must be rectangular (a nested list of numbers): {err}") from None
    if isinstance(image, (str, bytes)) or not all(hasattr(image, a) for a in ("shape", "dtype", "__getitem__")):
        raise TypeError(f"`image` must be an array (numpy, memmap, zarr, dask), a torch tensor or a list of "
                        f"numbers, got {type(image).__name__} (to read a file use napari_unet_stack.io)")
    return image


def _check_channel_axis(channel_axis: Any, shape: tuple[int, ...]) -> int | None:
    if channel_axis is None:
        return None
    ndim = len(shape)
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
        raise TypeError(f"`channel_axis` must be an int or None, got {channel_axis!r}")
    if not -ndim <= channel_axis < ndim:
        raise ValueError(f"`channel_axis={channel_axis}` is out of range for an image of shape {shape}")
    return int(channel_axis) % ndim


def spatial_shape(shape: tuple[int, ...], channel_axis: Any) -> tuple[int, ...]:
    """``shape`` without its channel axis: the shape of the labels."""
    axis = _check_channel_axis(channel_axis, tuple(shape))
    return tuple(int(n) for ax, n in enumerate(shape) if ax != axis)


def _warn_if_rgb(shape: tuple[int, ...], channel_axis: int | None) -> None:
    """An (..., H, W, 3 or 4) array without channel_axis is read as slices W x 3 wide: say so."""
    if channel_axis is None and len(shape) >= 3 and shape[-1] in (3, 4) and shape[-2] > 4 * shape[-1]:
        warnings.warn(
            f"`image` of shape {shape} has {shape[-1]} entries on its last axis and no channel_axis: it is read "
            f"as {int(np.prod(shape[:-2]))} slice(s) of {shape[-2]} x {shape[-1]} pixels. If the last axis holds "
            f"RGB(A) or other channels, pass channel_axis=-1 (and channel= for a one-channel model)",
            UserWarning, stacklevel=caller_stacklevel(),
        )


def validate_image(image: Any, channel_axis: int | None, in_channels: int | None, channel: Any = None) -> Layout:
    """The `Layout` of ``image`` (see `as_image`), or a clear error (checked against the model's
    input channels and the channel choice, `channels.check_channel`)."""
    image = as_image(image)
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
    if channel is None and channel_axis is None and in_channels is not None and in_channels != 1:
        hint = "if the last axis holds the channels, pass channel_axis=-1" if shape[-1] == in_channels else (
            "pass channel_axis= to name the channel axis")
        raise ValueError(f"the model expects {in_channels} input channel(s) but `image` (shape {shape}, "
                         f"channel_axis=None) has 1; {hint}")
    choice = check_channel(channel, n_channels, in_channels, channel_axis=channel_axis,
                           where=f"`image` (shape {shape}, channel_axis={channel_axis})")
    _warn_if_rgb(shape, channel_axis)
    hw = (shape[spatial[-2]], shape[spatial[-1]])
    lead = tuple(shape[ax] for ax in spatial[:-2])
    return Layout(shape, channel_axis, spatial, lead, hw, n_channels, choice)


def _minus(block: np.ndarray, ref: int) -> np.ndarray:
    """``block - ref`` for 64-bit integers, exact up to float64 rounding of the difference."""
    hi, lo = (block >> 32).astype(np.float64), (block & 0xFFFFFFFF).astype(np.float64)
    return (hi - float(ref >> 32)) * 2.0**32 + (lo - float(ref & 0xFFFFFFFF))


def to_float(block: np.ndarray, shift: int | None = None) -> np.ndarray:
    """``block`` as float: float32 for float32 and small integers, float64 for float64 and
    32/64-bit integers. ``shift`` (64-bit integers only) is subtracted exactly first, so that
    values such as 2**62 + small contrasts keep their contrast."""
    if shift is not None and block.dtype.kind in "iu" and block.dtype.itemsize == 8:
        return _minus(block, shift)
    return block.astype(np.result_type(block.dtype, np.float32), copy=False)


def exact_shift(sample: np.ndarray, norm: dict | None) -> int | None:
    """The integer subtracted from 64-bit integer slices before normalizing (None: nothing)."""
    if norm is None or norm["mode"] not in SHIFT_INVARIANT or sample.dtype.kind not in "iu" or sample.size == 0:
        return None
    return int(sample.flat[0]) if sample.dtype.itemsize == 8 else None


def fit_stack(image, layout: Layout, norm: dict, *, exact: bool = True) -> tuple[np.ndarray, int | None]:
    """Stack-scope normalization: fit on up to 16 evenly spaced slices (bounded memory).

    Returns the (C, 2) parameters and the exact shift they were fitted with (``exact=False``:
    none, for parameters used as fixed values elsewhere)."""
    leads = list(np.ndindex(*layout.lead_shape))
    pick = [leads[i] for i in np.unique(np.linspace(0, len(leads) - 1, min(16, len(leads))).astype(int))]
    blocks = [np.asarray(image[layout.indexer(tuple(int(i) for i in lead))]) for lead in pick]
    shift = exact_shift(blocks[0], norm) if exact else None
    chw = [layout.model_input(block, shift) for block in blocks]
    return fit_normalization(np.stack(chw, axis=1), norm), shift


def with_z_context(layout: Layout, k: int, z_axis: Any = "auto", time_axes: tuple[int, ...] = ()) -> Layout:
    """``layout`` for a model reading ``k`` neighbouring slices on each side along ``z_axis``
    (an image axis; "auto": the last leading axis that is not one of ``time_axes``, image
    axes too; None: none, each slice is its own neighbour: `zcontext.context_lead`, the
    rule training follows too). ValueError when ``z_axis`` or a time axis is not a leading
    (stack) axis of the image."""
    if not k:
        return layout
    return replace(layout, z_context=k, z_lead=context_lead(layout.shape, layout.channel_axis, z_axis, time_axes))


class ZHalo:
    """A chunk of a stack read with ``lo`` / ``hi`` extra slices before / after it along
    ``axis``: it looks like the chunk itself (``shape``, indexing), and `read_slice` reads a
    z-context model's neighbours from the extra slices (``z_halo``) instead of repeating the
    chunk's end slices, so that chunk by chunk equals the whole stack."""

    def __init__(self, block: Any, axis: int, lo: int, hi: int) -> None:
        self.block, self.axis, self.z_halo = block, int(axis), (int(lo), int(hi))
        shape = list(block.shape)
        shape[self.axis] -= lo + hi
        self.shape, self.dtype, self.ndim = tuple(shape), block.dtype, block.ndim

    def __getitem__(self, index: tuple) -> Any:
        index = list(index)
        index[self.axis] = index[self.axis] + self.z_halo[0]  # the engine indexes leading axes by int
        return self.block[tuple(index)]


class PlaneCache:
    """What a z-context model's last slices read, so that slices read in order read (and
    normalize) each plane of the image once, not 2k + 1 times (a zarr or dask image reads
    from disk): it keeps the ``size`` planes used last (memory: that many slices)."""

    def __init__(self, size: int) -> None:
        self.size, self.planes = int(size), OrderedDict()

    def get(self, key: tuple, make: Callable[[], Any]) -> Any:
        """The value kept for ``key``, else ``make()`` (kept from now on)."""
        value = self.planes.pop(key, None)
        if value is None:
            value = make()
        self.planes[key] = value
        while len(self.planes) > self.size:
            self.planes.popitem(last=False)
        return value


def plane_cache(layout: Layout) -> PlaneCache | None:
    """A `PlaneCache` for a z-context layout reading along Z; None where a slice's input is
    one plane."""
    return PlaneCache(2 * layout.z_context + 1) if layout.z_context and layout.z_lead is not None else None


def _neighbour_leads(image, layout: Layout, lead: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The leads of slice ``lead``'s neighbours z - k .. z + k along Z (`zcontext.neighbours`;
    a `ZHalo` chunk reads its extra slices)."""
    lo, hi = getattr(image, "z_halo", (0, 0))
    return neighbour_leads(lead, layout.lead_shape, layout.z_lead, layout.z_context, lo, hi)


def _raw(image, layout: Layout, lead: tuple[int, ...]) -> np.ndarray:
    return np.asarray(image[layout.indexer(lead)])


def _planes(image, layout: Layout, lead: tuple[int, ...], cache: PlaneCache | None) -> list[np.ndarray]:
    """The raw blocks a slice's input is made of: itself, or with a z-context model the
    slices z - k .. z + k."""
    if not layout.z_context:
        return [_raw(image, layout, lead)]
    if layout.z_lead is None:
        return [_raw(image, layout, lead)] * (2 * layout.z_context + 1)
    cache = PlaneCache(2 * layout.z_context + 1) if cache is None else cache
    return [cache.get(("raw", key), lambda key=key: _raw(image, layout, key))
            for key in _neighbour_leads(image, layout, lead)]


def _non_finite(data: np.ndarray) -> np.ndarray | None:
    """The (H, W) pixels of a (C, H, W) float input that are not finite in some channel."""
    if data.dtype.kind != "f":
        return None
    finite = np.isfinite(data)
    return None if finite.all() else ~finite.all(axis=0)


def _per_plane(image, norm: dict | None, stack_params, cache: PlaneCache | None) -> bool:
    """Whether each neighbour can be normalized once, on its own: a mode fitted channel by
    channel on the data (a fit per plane is then what a fit on the context's channels
    gives; fixed values may be given for the whole context), and no 64-bit integers (they
    keep the slice's exact shift)."""
    dtype = np.dtype(image.dtype)
    return (cache is not None and norm is not None and stack_params is None
            and norm.get("mode") in PER_CHANNEL_FITS
            and not (dtype.kind in "iu" and dtype.itemsize == 8))


def _normalized_plane(image, layout: Layout, lead: tuple[int, ...], norm: dict):
    data = layout.model_input(_raw(image, layout, lead))
    return apply_normalization(data, fit_normalization(data, norm)), _non_finite(data)


def read_slice(image, layout: Layout, lead: tuple[int, ...], norm: dict | None,
               stack_params: tuple[np.ndarray, int | None] | None,
               cache: PlaneCache | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Slice ``lead`` as normalized (C, H, W) float32, and its non-finite pixels (or None);
    ``cache`` (`plane_cache`) keeps the planes a z-context model's neighbours share."""
    if _per_plane(image, norm, stack_params, cache):
        planes = [cache.get(("normalized", key), lambda key=key: _normalized_plane(image, layout, key, norm))
                  for key in _neighbour_leads(image, layout, lead)]
        return stack_context([p[0] for p in planes]), planes[len(planes) // 2][1]  # the centre's bad pixels
    blocks = _planes(image, layout, lead, cache)
    shift = stack_params[1] if stack_params is not None else exact_shift(blocks[0], norm)
    inputs = [layout.model_input(block, shift) for block in blocks]
    data = stack_context(inputs)
    bad = _non_finite(inputs[len(inputs) // 2])  # a neighbour's non-finite pixels become 0, the slice's get no label
    if norm is None:
        params = np.tile([[0.0, 1.0]], (data.shape[0], 1))
    elif stack_params is not None:  # fitted on the image's channels: the same for every neighbour
        params = np.tile(stack_params[0], (2 * layout.z_context + 1, 1))
    else:
        params = fit_normalization(data, norm)
    return apply_normalization(data, params), bad
