"""Stitching: the output array, per-slice canvases, tile results written back, and a
finished slice turned into labels or probabilities in ``out``.

With ``blend="crop"`` each tile writes its core (labels are decided on the device and
cross as small integers); with a blend the whole network outputs are weighted and
summed, and a slice becomes labels once all of its tiles are in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import tiling
from .plan import RunPlan

__all__ = ["SliceState", "allocate_output", "check_out", "check_writable", "collect", "finish_slice", "new_slice", "output_shape",
           "write_tile"]


@dataclass
class SliceState:
    """One slice in flight: its padded canvas, non-finite mask, tiles still to come, result."""

    canvas: np.ndarray
    bad: np.ndarray | None
    pending: int
    result: np.ndarray  # label classes (H, W) or probabilities (K, H, W)
    weights: np.ndarray | None = None


def check_writable(out: Any) -> None:
    """A ValueError when ``out`` (numpy, memmap, zarr) cannot be written."""
    flags = getattr(out, "flags", None)
    read_only = flags is not None and not getattr(flags, "writeable", True)
    read_only = read_only or getattr(out, "read_only", False) is True
    store = getattr(out, "store", None)
    read_only = read_only or getattr(store, "read_only", False) is True
    if read_only:
        raise ValueError(f"`out` is read-only ({type(out).__name__}): pass a writable array")


def output_shape(layout: Any, labels: bool, n_classes: int | None) -> tuple[int, ...] | None:
    """The result's shape: labels (..., Y, X), probabilities (K, ..., Y, X); None while K is unknown."""
    image_shape = tuple(layout.shape[ax] for ax in layout.spatial)
    if labels:
        return image_shape
    return None if n_classes is None else (int(n_classes), *image_shape)


def check_out(out: Any, shape: tuple[int, ...] | None) -> None:
    """``out`` writable and of ``shape`` (None: not known yet); run before any work too."""
    if out is None:
        return
    if shape is not None and tuple(out.shape) != shape:
        raise ValueError(f"`out` must have shape {shape}, got {tuple(out.shape)}")
    check_writable(out)


def allocate_output(plan: RunPlan, out: Any = None) -> Any:
    """``out`` checked against the result's shape and dtype, or a new zeroed array."""
    out_shape = output_shape(plan.layout, plan.rule is not None, plan.n_classes)
    out_dtype = plan.rule.dtype if plan.rule is not None else np.dtype(np.float32)
    if out is None:
        return np.zeros(out_shape, dtype=out_dtype)
    check_out(out, out_shape)
    if plan.rule is not None and not np.can_cast(out_dtype, np.dtype(out.dtype), casting="safe"):
        raise ValueError(f"`out` must have an integer dtype that holds {out_dtype} labels, got {out.dtype}")
    if plan.rule is None and np.dtype(out.dtype).kind != "f":
        raise ValueError(f"`out` for probabilities must have a float dtype, got {out.dtype}")
    return out


def new_slice(plan: RunPlan, data: np.ndarray, bad: np.ndarray | None) -> SliceState:
    """The state of a slice whose normalized (C, H, W) data was just read."""
    canvas = tiling.pad_canvas(data, *plan.axes, plan.request.pad_mode)
    hw = plan.layout.hw
    crop = plan.request.blend == "crop"
    if plan.rule is not None and crop:
        result = np.zeros(hw, dtype=np.uint8 if len(plan.rule.values) <= 255 else np.int32)
    else:
        result = np.zeros((plan.n_classes, *hw), dtype=np.float32)
    weights = None if crop else np.zeros(hw, dtype=np.float32)
    return SliceState(canvas, bad, plan.tiles_per_slice, result, weights)


def collect(plan: RunPlan, probs: torch.Tensor, batch) -> list[np.ndarray]:
    """Device -> host for one batch: label cores (crop + labels), else probability tiles.

    Labels are computed on the device and cross as one small integer array per batch."""
    if plan.request.blend != "crop":
        return list(probs.cpu().numpy())
    if plan.rule is not None:
        classes = plan.rule.classes_torch(probs, for_labels=True).cpu().numpy()
        return [classes[(i, *tile.source)] for i, (_lead, tile) in enumerate(batch)]
    return [probs[(i, slice(None), *tile.source)].cpu().numpy() for i, (_l, tile) in enumerate(batch)]


def write_tile(plan: RunPlan, state: SliceState, tile: tiling.Tile, out_tile: np.ndarray, blend_w) -> None:
    """Put one tile's output into its slice: its core, or its weighted whole window."""
    if plan.request.blend == "crop":
        state.result[(Ellipsis, *tile.target)] = out_tile
        return
    # blended: the whole network output, minus what falls outside the image
    ys, xs = tile.target
    # the window starts at origin - context in image coordinates (context == out_offset)
    oy = ys.start - tile.source[0].start
    ox = xs.start - tile.source[1].start
    h, w = out_tile.shape[-2:]
    H, W = state.result.shape[-2:]
    iy0, ix0 = max(oy, 0), max(ox, 0)
    iy1, ix1 = min(oy + h, H), min(ox + w, W)
    src = (slice(iy0 - oy, iy1 - oy), slice(ix0 - ox, ix1 - ox))
    dst = (slice(iy0, iy1), slice(ix0, ix1))
    weight = blend_w[src]
    state.result[(slice(None), *dst)] += out_tile[(slice(None), *src)] * weight
    state.weights[dst] += weight


def finish_slice(plan: RunPlan, out: Any, lead: tuple[int, ...], state: SliceState) -> None:
    """Write a completed slice into ``out``: labels (non-finite input -> 0) or
    probabilities (non-finite input -> NaN)."""
    result = state.result
    if state.weights is not None:
        result = result / state.weights
    if plan.rule is not None:
        classes = result if result.ndim == 2 else plan.rule.classes(result)
        labels = plan.rule.map_values(classes)
        if state.bad is not None:
            labels = np.where(state.bad, 0, labels)
        out[lead] = labels
    else:
        if state.bad is not None:
            result = np.where(state.bad, np.nan, result)
        out[(slice(None), *lead)] = result
