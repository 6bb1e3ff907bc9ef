"""predict / segment: run a 2D network over stacks of any rank, tile by tile.

The engine iterates every leading axis (Z, T, ...) slice by slice, cuts each slice into
tiles on the model's size grid (see `tiling`), packs tiles from several slices into one
batch, and stitches the tile cores back. With ``blend="crop"`` and the model's halo the
result equals whole-slice inference (see DESIGN.md section 3); memory is bounded by the
input, the output and one batch of tiles, never by per-class float arrays of the stack
(``segment`` turns each tile into labels as soon as it is computed).

`iter_predict` / `iter_segment` are generators that yield `Progress` events and return
the result; `predict` / `segment` drain them. Widgets run the generators in a worker.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import math
import time
import warnings
import weakref
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import tiling
from ._dask import ModelSource
from .devices import (
    device_name,
    empty_cache,
    memory_budget,
    precision_name,
    resolve_device,
    resolve_precision,
)
from .normalization import (
    DEFAULT_NORMALIZATION,
    apply_normalization,
    fit_normalization,
    validate_normalization,
)
from .postprocess import instance_labels, label_values, probabilities_to_classes, smallest_uint

log = logging.getLogger("napari_unet_stack")

__all__ = ["InferenceCancelled", "ModelSource", "Progress", "iter_predict", "iter_segment", "predict", "segment"]


class InferenceCancelled(RuntimeError):
    """Raised when ``cancel.is_set()`` becomes true; nothing is returned, ``out`` is partial."""


@dataclass(frozen=True)
class Progress:
    """One step of a run: ``done`` of ``total`` tiles; ``slices`` lists the leading indices
    (tuples, ``()`` for a 2D image) whose result was completed in this step."""

    done: int
    total: int
    slices: tuple[tuple[int, ...], ...] = ()


# ----------------------------------------------------------------------------- model spec
@dataclass
class _Spec:
    """What the engine reads off a model (ours, imported, or any callable)."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    module: torch.nn.Module | None
    in_channels: int | None
    out_channels: int | None
    multiple: int
    halo: int
    margin: int
    activation: str | None
    normalization: dict | None
    class_values: list[int] | None
    exact: bool
    base_channels: int
    deep: bool
    input_size_for: Callable[[int], int] | None = None
    output_size: Callable[[int], int] | None = None


def _model_spec(model: Any) -> _Spec:
    from .models.base import SegmentationNetwork

    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        from .checkpoints import load_model

        model = load_model(model)
    if isinstance(model, SegmentationNetwork):
        margin = model.valid_margin
        return _Spec(
            fn=model,
            module=model,
            in_channels=model.in_channels,
            out_channels=model.out_channels,
            multiple=model.size_multiple,
            halo=model.halo,
            margin=margin,
            activation=model.activation,
            normalization=model.meta.get("normalization"),
            class_values=model.meta.get("class_values"),
            exact=model.exact_tiling,
            base_channels=int(getattr(model, "base_channels", 64)),
            deep=hasattr(model, "forward_heads"),
            input_size_for=model.input_size_for if margin else None,
            output_size=model.output_size if margin else None,
        )
    if not callable(model):
        raise TypeError(
            f"`model` must be a model from load_model, a UNet/NestedUNet, a checkpoint path or a callable "
            f"mapping N x C x H x W to logits, got {type(model).__name__}"
        )
    # any callable: a classic depth-4 UNet's geometry is assumed
    return _Spec(
        fn=model,
        module=model if isinstance(model, torch.nn.Module) else None,
        in_channels=None,
        out_channels=None,
        multiple=16,
        halo=96,
        margin=0,
        activation=None,
        normalization=None,
        class_values=None,
        exact=False,
        base_channels=64,
        deep=False,
    )


# per (model, device, channels_last): an inference copy of the model on that device (eval,
# BatchNorm folded into the convolution before it), so the caller's model is never moved or
# changed; invalidated when any parameter or buffer is modified in place (training)
_DEVICE_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fold_batchnorm(module: torch.nn.Module) -> None:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d in an nn.Sequential
    into that convolution (one op instead of two; equal up to float rounding)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for child in module.modules():
        if not isinstance(child, torch.nn.Sequential):
            continue
        names = list(child._modules)
        for a, b in itertools.pairwise(names):
            conv, bn = child._modules[a], child._modules[b]
            if (
                type(conv) is torch.nn.Conv2d
                and type(bn) is torch.nn.BatchNorm2d
                and bn.track_running_stats
                and bn.running_mean is not None
                and conv.out_channels == bn.num_features
            ):
                child._modules[a] = fuse_conv_bn_eval(conv, bn)
                child._modules[b] = torch.nn.Identity()


def _on_device(module: torch.nn.Module, device: torch.device, channels_last: bool) -> torch.nn.Module:
    params = list(module.parameters()) + list(module.buffers())
    scripted = isinstance(module, torch.jit.ScriptModule)
    if scripted and all(p.device == device for p in params) and not channels_last:
        return module
    # settings that change forward without touching weights (the UNet++ head) are part of the key
    version = (tuple(p._version for p in params), getattr(module, "head", None), getattr(module, "active_head", None))
    cache = _DEVICE_COPIES.setdefault(module, {})
    key = (str(device), channels_last)
    hit = cache.get(key)
    if hit is not None and hit[0] == version and len(hit[2]) == len(params) and all(
        a is b for a, b in zip(hit[2], params, strict=True)
    ):
        return hit[1]
    cache.pop(key, None)
    with torch.no_grad():
        # the engine's copy leaves out the training state (optimizer moments) trainers keep
        state = getattr(module, "training_state", None)
        memo = {} if state is None else {id(state): None}
        moved = copy.deepcopy(module, memo).eval()
        if not scripted:
            _fold_batchnorm(moved)
        moved = moved.to(device)
        if channels_last:
            moved = moved.to(memory_format=torch.channels_last)
    for p in moved.parameters():
        p.requires_grad_(False)
    cache[key] = (version, moved, params)
    return moved


# ----------------------------------------------------------------------------- input
@dataclass
class _Layout:
    shape: tuple[int, ...]
    channel_axis: int | None
    spatial: tuple[int, ...]  # image axes that are not the channel axis, in order
    lead_shape: tuple[int, ...]
    hw: tuple[int, int]
    n_channels: int

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


def _validate_image(image: Any, channel_axis: int | None, spec: _Spec) -> _Layout:
    if isinstance(image, (list, tuple)):
        image = np.asarray(image)
    if not hasattr(image, "shape") or not hasattr(image, "dtype") or not hasattr(image, "__getitem__"):
        raise TypeError(f"`image` must be an array (numpy, dask, zarr, memmap), got {type(image).__name__}")
    dtype = np.dtype(image.dtype)
    if dtype.kind not in "uifb":
        raise TypeError(f"`image` must have a real integer or float dtype, got {dtype}")
    shape = tuple(int(s) for s in image.shape)
    ndim = len(shape)
    if channel_axis is not None:
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
            raise TypeError(f"`channel_axis` must be an int or None, got {channel_axis!r}")
        if not -ndim <= channel_axis < ndim:
            raise ValueError(f"`channel_axis={channel_axis}` is out of range for an image of shape {shape}")
        channel_axis = int(channel_axis) % ndim
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
    if spec.in_channels is not None and n_channels != spec.in_channels:
        hint = ""
        if channel_axis is None and shape[-1] == spec.in_channels:
            hint = "; if the last axis holds the channels, pass channel_axis=-1"
        elif channel_axis is None:
            hint = "; pass channel_axis= to name the channel axis"
        raise ValueError(
            f"the model expects {spec.in_channels} input channel(s) but `image` (shape {shape}, "
            f"channel_axis={channel_axis}) has {n_channels}{hint}"
        )
    hw = (shape[spatial[-2]], shape[spatial[-1]])
    lead = tuple(shape[ax] for ax in spatial[:-2])
    return _Layout(shape, channel_axis, spatial, lead, hw, n_channels)


def _to_float(block: np.ndarray) -> np.ndarray:
    return block.astype(np.float32, copy=False) if block.dtype != np.float64 else block


# ----------------------------------------------------------------------------- planning
def _activation_bytes_per_pixel(spec: _Spec, dtype_bytes: int) -> float:
    """A conservative estimate of live activation memory per input pixel in inference."""
    factor = 14 + (2 * 6 if spec.deep else 0)
    return factor * spec.base_channels * dtype_bytes


def _resolve_halo(halo: Any, spec: _Spec, blend: str) -> int:
    if spec.margin:
        return 0
    if halo == "auto" or halo is None:
        if not spec.exact and spec.module is not None and not hasattr(spec.module, "size_multiple"):
            warnings.warn("model geometry unknown: using a depth-4 UNet halo of 96 px", stacklevel=4)
        return spec.halo
    if isinstance(halo, bool) or not isinstance(halo, (int, np.integer)) or halo < 0:
        raise ValueError(f"`halo` must be 'auto' or a non-negative int, got {halo!r}")
    rounded = tiling.round_up(int(halo), spec.multiple)
    if blend == "crop" and rounded < spec.halo:
        log.info("halo %d px is below the model's reach (%d px): tiled output is not exact", rounded, spec.halo)
    return rounded


def _resolve_tile(tile_size: Any, spec: _Spec, halo: int, hw: tuple[int, int], budget: int, bpp: float,
                  device: torch.device) -> tuple[int | None, int | None]:
    if tile_size is None:
        return None, None
    if tile_size == "auto":
        # the largest core whose window fits the budget at batch size 1, capped for responsiveness
        cap = 2048 if device.type == "cuda" else 1024
        side = int(math.sqrt(budget / bpp)) - 2 * halo - 2 * spec.margin
        core = max(spec.multiple, min(cap, side) // spec.multiple * spec.multiple)
        return (min(core, tiling.round_up(hw[0], spec.multiple)), min(core, tiling.round_up(hw[1], spec.multiple)))
    sizes = (tile_size, tile_size) if np.isscalar(tile_size) else tuple(tile_size)
    if len(sizes) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
        raise ValueError(f"`tile_size` must be 'auto', None, a positive int or a (Y, X) pair, got {tile_size!r}")
    return tuple(int(s) for s in sizes)  # type: ignore[return-value]


def _plan(spec: _Spec, hw: tuple[int, int], cores: tuple[int | None, int | None], halo: int):
    return tuple(
        tiling.plan_axis(
            n, core=c, halo=halo, multiple=spec.multiple, input_size_for=spec.input_size_for,
            output_size=spec.output_size, valid_margin=spec.margin,
        )
        for n, c in zip(hw, cores, strict=True)
    )


# ----------------------------------------------------------------------------- host batches
class _Batcher:
    """Packs tiles into a (B, C, h, w) tensor; on CUDA into two reusable pinned host buffers
    (double buffering), copied with non_blocking=True while the previous batch computes."""

    def __init__(self, device: torch.device, shape: tuple[int, int, int], batch_size: int):
        self.device = device
        self.pinned = device.type == "cuda"
        self.buffers: list[torch.Tensor] = []
        self.events: list[Any] = []
        if self.pinned:
            for _ in range(2):
                self.buffers.append(torch.empty((batch_size, *shape), dtype=torch.float32, pin_memory=True))
                self.events.append(None)
        self.turn = 0

    def to_device(self, tiles: Sequence[np.ndarray]) -> torch.Tensor:
        if not self.pinned:
            return torch.from_numpy(np.stack(tiles))
        b = self.turn
        self.turn ^= 1
        if self.events[b] is not None:
            self.events[b].synchronize()  # the copy that last read this buffer is done
        buf = self.buffers[b][: len(tiles)]
        host = buf.numpy()
        for i, t in enumerate(tiles):
            host[i] = t
        x = buf.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self.events[b] = event
        return x


# ----------------------------------------------------------------------------- engine
@dataclass
class _SliceState:
    canvas: np.ndarray
    bad: np.ndarray | None
    pending: int
    result: np.ndarray  # labels (H, W) or probabilities (K, H, W)
    weights: np.ndarray | None = None


@dataclass
class _Run:
    layout: _Layout
    spec: _Spec
    mode: str  # "labels" | "probabilities"
    norm: dict | None
    stack_params: np.ndarray | None
    pad_mode: str
    blend: str
    threshold: float
    values: np.ndarray | None
    out: Any
    image: Any
    n_classes: int | None = None
    info: dict = field(default_factory=dict)


class _ShrinkTiles(Exception):
    """Out of memory at batch size 1: the remaining slices are re-planned with smaller tiles."""


def _read_slice(run: _Run, lead: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    block = np.asarray(run.image[run.layout.indexer(lead)])
    chw = run.layout.to_chw(block)
    data = _to_float(chw)
    bad = None
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            bad = ~finite.all(axis=0)
    if run.norm is None:
        params = np.tile([[0.0, 1.0]], (data.shape[0], 1))
    elif run.stack_params is not None:
        params = run.stack_params
    else:
        params = fit_normalization(data, run.norm)
    return apply_normalization(data, params), bad


def _forward(spec: _Spec, fn, x: torch.Tensor, device: torch.device, autocast_dtype, channels_last: bool):
    """Float32 logits of one batch and the activation that turns them into probabilities."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ctx = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    with ctx:
        logits = fn(x)
    if not isinstance(logits, torch.Tensor):
        from .models.base import unwrap_logits

        logits = unwrap_logits(logits)
    logits = logits.float()
    if logits.ndim != 4 or logits.shape[0] != x.shape[0]:
        raise ValueError(f"the model returned logits of shape {tuple(logits.shape)} for input {tuple(x.shape)}")
    activation = spec.activation or ("softmax" if logits.shape[1] > 1 else "sigmoid")
    return logits, activation


def _activate(logits: torch.Tensor, activation: str) -> torch.Tensor:
    return torch.softmax(logits, dim=1) if activation == "softmax" else torch.sigmoid(logits)


def _classes(probs: torch.Tensor, activation: str, threshold: float) -> torch.Tensor:
    """Class indices (B, H, W) from probabilities (B, K, H, W), on the device, in the
    smallest integer type; the same rule as `postprocess.probabilities_to_classes`."""
    k = probs.shape[1]
    small = torch.uint8 if k < 255 else torch.int32
    if activation == "softmax":
        if k == 2:  # argmax of two, ties to class 0 like argmax, without a reduction
            return (probs[:, 1] > probs[:, 0]).to(small)
        return probs.argmax(dim=1).to(small)
    if k == 1:
        return (probs[:, 0] > threshold).to(small)
    best_p, best = probs.max(dim=1)
    return torch.where(best_p > threshold, best + 1, 0).to(small)


def _engine(
    run: _Run,
    leads: list[tuple[int, ...]],
    plans,
    batch_size: int,
    device: torch.device,
    autocast_dtype,
    channels_last: bool,
    progress,
    cancel,
    done_before: int,
    total: int,
) -> Generator[Progress, None, int]:
    """Run all tiles of ``leads``; yields progress; returns tiles done. Raises _ShrinkTiles."""
    spec = run.spec
    fn = spec.fn
    if spec.module is not None:
        fn = _on_device(spec.module, device, channels_last)
    plan_y, plan_x = plans
    tiles = list(tiling.iter_tiles(plan_y, plan_x))
    window_shape = (run.layout.n_channels, plan_y.window, plan_x.window)
    batcher = _Batcher(device, window_shape, batch_size)
    blend_w = None if run.blend == "crop" else tiling.blend_window((plan_y.window, plan_x.window), run.blend)
    states: dict[tuple[int, ...], _SliceState] = {}
    hw = run.layout.hw
    done = done_before

    def work_items():
        for lead in leads:
            for tile in tiles:
                yield lead, tile

    def prepare(items):
        arrays = []
        for lead, tile in items:
            state = states.get(lead)
            if state is None:
                data, bad = _read_slice(run, lead)
                canvas = tiling.pad_canvas(data, plan_y, plan_x, run.pad_mode)
                k = run.n_classes or 1
                if run.mode == "labels" and run.blend == "crop":
                    result = np.zeros(hw, dtype=np.uint8 if (run.n_classes or 1) < 255 else np.int32)
                else:
                    result = np.zeros((k, *hw), dtype=np.float32)
                weights = None if run.blend == "crop" else np.zeros(hw, dtype=np.float32)
                state = states[lead] = _SliceState(canvas, bad, len(tiles), result, weights)
            arrays.append(state.canvas[(slice(None), *tile.window)])
        return batcher.to_device(arrays)

    items = list(work_items())
    pool = ThreadPoolExecutor(1) if device.type == "cuda" else None
    try:
        start = 0
        pending_x = None
        while start < len(items):
            if cancel is not None and cancel.is_set():
                raise InferenceCancelled("inference was cancelled")
            batch = items[start : start + batch_size]
            x = pending_x.result() if pending_x is not None else prepare(batch)
            pending_x = None
            try:
                # inference mode per batch, never across a yield: it is thread-local, and a
                # caller may resume or close this generator from another thread
                with torch.inference_mode():
                    if x.device != device:
                        x = x.to(device, non_blocking=True)
                    logits, activation = _forward(spec, fn, x, device, autocast_dtype, channels_last)
                    # prepare the next batch on the host while the device computes this one
                    nxt = items[start + batch_size : start + 2 * batch_size]
                    if pool is not None and nxt:
                        pending_x = pool.submit(prepare, nxt)
                    if run.n_classes is None:
                        run.n_classes = logits.shape[1]
                        for state in states.values():
                            if state.result.ndim == 3 and state.result.shape[0] != run.n_classes:
                                state.result = np.zeros((run.n_classes, *hw), dtype=np.float32)
                    outputs = _collect(run, _activate(logits, activation), activation, batch, blend_w)
                    del logits
            except torch.OutOfMemoryError:
                if pending_x is not None:
                    pending_x.result()
                    pending_x = None
                del x
                empty_cache(device)
                run.info["oom_retries"] = run.info.get("oom_retries", 0) + 1
                if batch_size > 1:
                    batch_size = max(1, batch_size // 2)
                    log.warning("out of memory: retrying with batch size %d", batch_size)
                    batcher = _Batcher(device, window_shape, batch_size)
                    continue
                raise _ShrinkTiles() from None
            finished = []
            for (lead, tile), out_tile in zip(batch, outputs, strict=True):
                state = states[lead]
                _write_tile(run, state, tile, out_tile, blend_w)
                state.pending -= 1
                if state.pending == 0:
                    _finish_slice(run, lead, state)
                    del states[lead]
                    finished.append(lead)
            start += len(batch)
            done += len(batch)
            run.info["batch_size"] = batch_size
            if progress is not None:
                progress(done, total)
            yield Progress(done, total, tuple(finished))
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return done


def _collect(run: _Run, probs: torch.Tensor, activation: str, batch, blend_w) -> list[np.ndarray]:
    """Device -> host for one batch: label cores (crop + labels), else probability tiles.

    Labels are computed on the device and cross as one small integer array per batch."""
    if run.mode == "labels" and run.blend == "crop":
        classes = _classes(probs, activation, run.threshold).cpu().numpy()
        return [classes[(i, *tile.source)] for i, (_lead, tile) in enumerate(batch)]
    if run.blend == "crop":
        return [probs[(i, slice(None), *tile.source)].cpu().numpy() for i, (_l, tile) in enumerate(batch)]
    return list(probs.cpu().numpy())


def _write_tile(run: _Run, state: _SliceState, tile: tiling.Tile, out_tile: np.ndarray, blend_w) -> None:
    if run.blend == "crop":
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


def _finish_slice(run: _Run, lead: tuple[int, ...], state: _SliceState) -> None:
    result = state.result
    if state.weights is not None:
        result = result / state.weights
    if run.mode == "labels":
        classes = result if result.ndim == 2 else probabilities_to_classes(result, run.spec.activation or (
            "softmax" if result.shape[0] > 1 else "sigmoid"), run.threshold)
        labels = run.values[classes] if run.values is not None else classes
        if state.bad is not None:
            labels = np.where(state.bad, 0, labels)
        run.out[lead] = labels
    else:
        if state.bad is not None:
            result = np.where(state.bad, np.nan, result)
        run.out[(slice(None), *lead)] = result


# ----------------------------------------------------------------------------- public API
def _iter(
    image,
    model,
    *,
    mode: str,
    channel_axis=None,
    tile_size="auto",
    halo="auto",
    blend="crop",
    pad_mode="reflect",
    batch_size="auto",
    device="auto",
    precision="auto",
    normalize="auto",
    threshold: float = 0.5,
    progress=None,
    cancel=None,
    out=None,
    info: dict | None = None,
) -> Generator[Progress, None, np.ndarray]:
    t0 = time.perf_counter()
    spec = _model_spec(model)
    layout = _validate_image(image, channel_axis, spec)
    if blend not in tiling.BLEND_MODES:
        raise ValueError(f"`blend` must be one of {tiling.BLEND_MODES}, got {blend!r}")
    if pad_mode not in tiling.PAD_MODES:
        raise ValueError(f"`pad_mode` must be one of {tiling.PAD_MODES}, got {pad_mode!r}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"`threshold` must be in [0, 1], got {threshold}")
    if spec.margin and blend != "crop":
        raise ValueError("valid-convolution models tile exactly with the overlap-tile strategy: use blend='crop'")
    dev = resolve_device(device)
    autocast_dtype = resolve_precision(precision, dev)
    channels_last = dev.type == "cuda"

    # normalization: the checkpoint's wins over our default; an explicit argument wins over both
    if normalize == "auto":
        norm = validate_normalization(spec.normalization or DEFAULT_NORMALIZATION)
    elif normalize is None or normalize is False or normalize == "none":
        norm = None
    else:
        norm = validate_normalization(normalize)
    stack_params = None
    if norm is not None and norm["scope"] == "stack" and layout.lead_shape:
        stack_params = _fit_stack(image, layout, norm)

    # geometry, batch and memory
    halo_px = _resolve_halo(halo, spec, blend)
    dtype_bytes = 2 if autocast_dtype is not None else 4
    bpp = _activation_bytes_per_pixel(spec, dtype_bytes)
    budget = memory_budget(dev)
    cores = _resolve_tile(tile_size, spec, halo_px, layout.hw, budget, bpp, dev)
    plans = _plan(spec, layout.hw, cores, halo_px)
    window_px = plans[0].window * plans[1].window
    if batch_size == "auto":
        cap = 64 if dev.type == "cuda" else 4
        batch = int(max(1, min(cap, budget // max(window_px * bpp, 1))))
    elif isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool) and batch_size >= 1:
        batch = int(batch_size)
    else:
        raise ValueError(f"`batch_size` must be 'auto' or a positive int, got {batch_size!r}")

    n_classes = spec.out_channels
    values = None
    if mode == "labels":
        if n_classes is None:  # a plain callable: one small forward tells the class count
            n_classes = _probe_classes(spec, layout, dev)
        act = spec.activation or ("softmax" if n_classes > 1 else "sigmoid")
        values = label_values(n_classes, act, spec.class_values)
        out_dtype = smallest_uint(int(values.max()))
        out_shape = tuple(layout.shape[ax] for ax in layout.spatial)
    else:
        out_dtype = np.dtype(np.float32)
        if n_classes is None:
            n_classes = _probe_classes(spec, layout, dev)
        out_shape = (n_classes, *(layout.shape[ax] for ax in layout.spatial))
    if out is None:
        out_arr = np.zeros(out_shape, dtype=out_dtype)
    else:
        if tuple(out.shape) != out_shape:
            raise ValueError(f"`out` must have shape {out_shape}, got {tuple(out.shape)}")
        if mode == "labels" and not np.can_cast(out_dtype, np.dtype(out.dtype), casting="safe"):
            raise ValueError(f"`out` must have an integer dtype that holds {out_dtype} labels, got {out.dtype}")
        if mode == "probabilities" and np.dtype(out.dtype).kind != "f":
            raise ValueError(f"`out` for probabilities must have a float dtype, got {out.dtype}")
        out_arr = out
    lead_out = out_arr
    run = _Run(layout, spec, mode, norm, stack_params, pad_mode, blend, float(threshold), values, lead_out, image,
               n_classes=n_classes)

    leads = [tuple(int(i) for i in idx) for idx in np.ndindex(*layout.lead_shape)]
    total = len(leads) * len(plans[0].origins) * len(plans[1].origins)
    run.info.update(
        device=device_name(dev), precision=precision_name(autocast_dtype), halo=halo_px,
        tile_shape=(plans[0].core, plans[1].core), window_shape=(plans[0].window, plans[1].window),
        batch_size=batch, n_tiles=total, exact=spec.exact and blend == "crop" and (spec.margin > 0 or halo_px >= spec.halo),
    )
    log.info(
        "napari-unet-stack: %d slice(s) on %s in %s, tiles %s + halo %d, batch %d",
        len(leads), run.info["device"], run.info["precision"], run.info["tile_shape"], halo_px, batch,
    )
    yield Progress(0, total)

    was_training = spec.module.training if spec.module is not None else None
    if spec.module is not None:
        spec.module.eval()
    done = 0
    remaining = leads
    try:
        while remaining:
            finished: set[tuple[int, ...]] = set()
            try:
                gen = _engine(run, remaining, plans, batch, dev, autocast_dtype, channels_last, progress,
                              cancel, done, total)
                while True:
                    try:
                        event = next(gen)
                    except StopIteration as stop:
                        done = stop.value
                        break
                    finished.update(event.slices)
                    done = event.done
                    yield event
                remaining = []
            except _ShrinkTiles:
                cores = tuple(max(spec.multiple, (p.core // 2) // spec.multiple * spec.multiple) for p in plans)
                if cores == (plans[0].core, plans[1].core):
                    raise MemoryError(
                        f"out of memory on {run.info['device']} even with batch size 1 and "
                        f"{cores} tiles; try device='cpu' or precision='bfloat16'"
                    ) from None
                log.warning("out of memory at batch size 1: shrinking tiles to %s", cores)
                plans = _plan(spec, layout.hw, cores, halo_px)
                remaining = [lead for lead in remaining if lead not in finished]
                per_slice = len(plans[0].origins) * len(plans[1].origins)
                total = done + len(remaining) * per_slice
                run.info["tile_shape"] = cores
                run.info["n_tiles"] = total
                batch = 1
    finally:
        if spec.module is not None and was_training:
            spec.module.train()

    run.info["seconds"] = time.perf_counter() - t0
    if info is not None:
        info.update(run.info)
    return out_arr


def _probe_classes(spec: _Spec, layout: _Layout, dev: torch.device) -> int:
    x = torch.zeros((1, layout.n_channels, spec.multiple * 2, spec.multiple * 2), device=dev)
    module = _on_device(spec.module, dev, False) if spec.module is not None else spec.fn
    with torch.inference_mode():
        return int(_forward(spec, module, x, dev, None, False)[0].shape[1])


def _fit_stack(image, layout: _Layout, norm: dict) -> np.ndarray:
    """Stack-scope normalization: fit on up to 16 evenly spaced slices (bounded memory)."""
    leads = list(np.ndindex(*layout.lead_shape))
    pick = [leads[i] for i in np.unique(np.linspace(0, len(leads) - 1, min(16, len(leads))).astype(int))]
    chw = [layout.to_chw(np.asarray(image[layout.indexer(tuple(int(i) for i in lead))])) for lead in pick]
    return fit_normalization(_to_float(np.stack(chw, axis=1)), norm)


def _is_dask(image) -> bool:
    return type(image).__module__.startswith("dask") and hasattr(image, "map_blocks")


def iter_predict(image, model, **options) -> Generator[Progress, None, np.ndarray]:
    """Generator form of `predict`: yields `Progress`, returns the probabilities."""
    return _iter(image, model, mode="probabilities", **options)


def iter_segment(image, model, *, instances: bool = False, min_size: int = 0, instance_ndim: int | None = None,
                 **options) -> Generator[Progress, None, np.ndarray]:
    """Generator form of `segment`: yields `Progress`, returns the labels."""
    if instances and options.get("out") is not None:
        out = options.pop("out")
        semantic = yield from _iter(image, model, mode="labels", **options)
        labels = _instances(semantic, instance_ndim, min_size)
        if np.dtype(out.dtype).kind not in "ui" or np.iinfo(out.dtype).max < labels.max(initial=0):
            raise ValueError(f"`out` (dtype {out.dtype}) cannot hold {int(labels.max())} instance labels")
        out[...] = labels
        return out
    semantic = yield from _iter(image, model, mode="labels", **options)
    if instances:
        return _instances(semantic, instance_ndim, min_size)
    return semantic


def _instances(semantic: np.ndarray, instance_ndim: int | None, min_size: int) -> np.ndarray:
    ndim = min(3, semantic.ndim) if instance_ndim is None else int(instance_ndim)
    if not 2 <= ndim <= semantic.ndim:
        raise ValueError(f"`instance_ndim` must be between 2 and {semantic.ndim}, got {instance_ndim}")
    if min_size < 0:
        raise ValueError(f"`min_size` must be >= 0, got {min_size}")
    return instance_labels(semantic, ndim=ndim, min_size=min_size)


def _drain(gen: Generator[Progress, None, np.ndarray]) -> np.ndarray:
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def predict(image, model, *, channel_axis=None, tile_size="auto", halo="auto", blend="crop", pad_mode="reflect",
            batch_size="auto", device="auto", precision="auto", normalize="auto", progress=None, cancel=None,
            out=None, info=None):
    """Class probabilities of a 2D model over an image or a stack of any rank.

    Parameters
    ----------
    image : (..., Y, X[, C]) array_like
        numpy array, memmap, zarr array (read slice by slice) or dask array (lazy result).
        Any real integer or float dtype. Every leading axis is iterated slice by slice.
    model : SegmentationNetwork, checkpoint path, bundled model name, or callable
        A callable must map an N x C x H x W float tensor to logits N x K x H x W.
    channel_axis : int or None
        Axis holding channels (RGB, multichannel); checked against the model's input channels.
    tile_size : 'auto', int, (int, int) or None
        The core each tile writes. The network sees core + 2 x halo, on the model's size grid.
        'auto': the largest tile fitting the device's memory budget (at most 1024 px on CPU,
        2048 on CUDA). None: each slice in one piece (after the same padding).
    halo : 'auto' or int
        Context around each core; 'auto' is the model's exact reach (tiled == untiled).
    blend : {'crop', 'gaussian', 'linear'}
        'crop' stitches cores (exact). The others weight overlapping outputs (for a halo
        smaller than the reach).
    pad_mode : {'reflect', 'symmetric', 'constant', 'edge'}
        How the image border is extended (NumPy semantics: pads larger than the image work).
    batch_size : 'auto' or int
        Tiles per forward, taken from several slices; 'auto' from the memory budget.
    device : 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'
        'auto': CUDA, then MPS, then CPU. The device used is logged and put in ``info``.
    precision : {'auto', 'float32', 'bfloat16', 'float16'}
        'auto': bf16 (else fp16) autocast on CUDA, float32 elsewhere.
    normalize : 'auto', dict, or None
        'auto': the checkpoint's normalization, else percentiles (1, 99.8) per slice.
        Fitted per slice or per stack (never per tile). See `napari_unet_stack.normalization`.
    progress : callable(done, total), optional
        Called after each batch.
    cancel : object with ``is_set()``, optional
        Checked between batches; when set, `InferenceCancelled` is raised.
    out : array_like, optional
        Where to write the result (numpy, zarr, memmap) instead of a new array.
    info : dict, optional
        Filled with what was used: device, precision, tile_shape, halo, batch_size, n_tiles,
        exact, seconds, oom_retries.

    Returns
    -------
    probabilities : (K, ..., Y, X) float32 ndarray
        Softmax or sigmoid probabilities, classes first. Pixels whose input is NaN or
        infinite (in any channel) are NaN.
    """
    options = dict(channel_axis=channel_axis, tile_size=tile_size, halo=halo, blend=blend, pad_mode=pad_mode,
                   batch_size=batch_size, device=device, precision=precision, normalize=normalize,
                   progress=progress, cancel=cancel, out=out, info=info)
    if _is_dask(image):
        from ._dask import dask_apply

        return dask_apply(image, model, mode="probabilities", options=options)
    return _drain(iter_predict(image, model, **options))


def segment(image, model, *, threshold=0.5, instances=False, min_size=0, instance_ndim=None, channel_axis=None,
            tile_size="auto", halo="auto", blend="crop", pad_mode="reflect", batch_size="auto", device="auto",
            precision="auto", normalize="auto", progress=None, cancel=None, out=None, info=None):
    """Labels of a 2D model over an image or a stack of any rank.

    Same options as `predict`, plus:

    threshold : float
        For sigmoid models: foreground where p > threshold.
    instances : bool
        Connected components of each class as instance labels (ids unique in the result).
    min_size : int
        With ``instances``, components smaller than this many pixels are removed.
    instance_ndim : int, optional
        Connectivity over the last 2 or 3 spatial axes (default: 3 for stacks, so a nucleus
        spanning several Z slices is one instance; leading axes such as T are separate).

    Returns
    -------
    labels : (..., Y, X) ndarray
        The image's spatial shape, in the smallest unsigned dtype holding the labels
        (class index, or the checkpoint's class values). Pixels whose input is NaN or
        infinite are 0 (background). Per-class probabilities are never held for the
        whole stack: each tile becomes labels as soon as it is computed.
    """
    options = dict(channel_axis=channel_axis, tile_size=tile_size, halo=halo, blend=blend, pad_mode=pad_mode,
                   batch_size=batch_size, device=device, precision=precision, normalize=normalize,
                   threshold=threshold, progress=progress, cancel=cancel, out=out, info=info)
    if _is_dask(image):
        if instances:
            raise ValueError(
                "instances=True needs the whole result: compute the lazy labels first "
                "(labels.compute()) and call napari_unet_stack.postprocess.instance_labels"
            )
        from ._dask import dask_apply

        return dask_apply(image, model, mode="labels", options=options)
    return _drain(iter_segment(image, model, instances=instances, min_size=min_size,
                               instance_ndim=instance_ndim, **options))

