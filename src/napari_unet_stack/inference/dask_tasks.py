"""Lazy dask results: the engine mapped over slice chunks (no napari).

`predict` / `segment` on a dask array return a lazy dask array with one task per chunk of
the leading (Z, T, ...) axes; the channel axis and the two image axes are merged into
whole chunks. With ``out=`` (e.g. a zarr array) the chunks are computed one by one and
written into it instead. How the model reaches the tasks:

- a *source* (checkpoint path, bundled model name, or `ModelSource` for ``trust=True`` and
  overrides): only that small description is in the task graph; each process loads the
  model once and keeps it (`cached_model`), so dask.distributed workers load it once
  each, whatever the number of tasks;
- a model *object*: put into the graph once, as one key every task depends on, so
  dask.distributed ships it to each worker once (not pickled into every task). That is
  one pickle of the weights per worker process; pass a source to avoid even that.

The options are checked and the normalization and ``precision="auto"`` resolved once,
here on the client; every task gets the same `Request` and runs the engine on its chunk. Stack-scope normalization
is fitted here too (on the slices the in-memory engine uses) and handed to the tasks as
fixed parameters, so the lazy result equals the in-memory one for slice- and stack-scope
normalization alike.

A z-context model (`napari_unet_stack.zcontext`) reads each slice's neighbours in Z: the
chunks are read with that many slices of overlap along the Z axis (`dask.array.overlap`,
nothing added past the ends), each task wraps its chunk in a `layout.ZHalo` and computes
only the chunk's own slices, so the lazy result equals the in-memory one whatever the
chunks (a chunk shallower than the context is merged with its neighbour first).
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from ..devices import precision_name, resolve_device
from .engine import iterate
from .events import check_run_options, drain, stop_if_cancelled
from .forward import probe_classes
from .layout import Layout, ZHalo, fit_stack, validate_image, with_z_context
from .plan import Request, make_request
from .precision import choose_precision
from .sources import ModelSource, cached_model, is_source
from .spec import model_spec
from .stitch import check_writable

__all__ = ["dask_apply", "fixed_normalization", "is_dask", "store_chunks"]


def is_dask(image) -> bool:
    """Whether ``image`` is a dask array."""
    return type(image).__module__.startswith("dask") and hasattr(image, "map_blocks")


def _resolve(model_ref: Any):
    return cached_model(model_ref) if isinstance(model_ref, ModelSource) else model_ref


def _halo(block, z: tuple[int, int] | None, block_info):
    """A chunk read with ``z = (axis, k)`` overlap as the `ZHalo` of its own slices."""
    if z is None or block_info is None:
        return block
    axis, k = z
    where, count = block_info[0]["chunk-location"][axis], block_info[0]["num-chunks"][axis]
    return ZHalo(block, axis, k if where > 0 else 0, k if where < count - 1 else 0)


def _segment_block(block, model_ref, request: Request, z=None, block_info=None):
    """The task of one chunk: its labels."""
    model = _resolve(model_ref)
    return drain(iterate(_halo(block, z, block_info), model_spec(model), request))


def _predict_block(block, model_ref, request: Request, has_channels: bool, z=None, block_info=None):
    """The task of one chunk (classes/channels first): its probabilities."""
    data = _halo(block, z, block_info)
    if not has_channels:
        data = data[0] if z is None else ZHalo(data.block[0], z[0] - 1, *data.z_halo)
    model = _resolve(model_ref)
    return drain(iterate(data, model_spec(model), request))


def _overlapped(arr, axis: int | None, k: int):
    """(``arr`` rechunked so that every chunk along ``axis`` holds at least ``k`` slices,
    the same read with ``k`` slices of overlap, what the tasks need to know: (axis, k));
    ``arr`` as it is when there is no Z overlap to add."""
    if axis is None or not k or len(arr.chunks[axis]) == 1:
        return arr, arr, None
    import dask.array as da
    from dask.array.overlap import ensure_minimum_chunksize

    if min(arr.chunks[axis]) < k:
        arr = arr.rechunk({axis: ensure_minimum_chunksize(k, arr.chunks[axis])})
    if len(arr.chunks[axis]) == 1:
        return arr, arr, None
    return arr, da.overlap.overlap(arr, depth={axis: k}, boundary="none"), (axis, k)


def fixed_normalization(image, layout: Layout, norm: dict | None) -> dict | None:
    """``norm``, with stack scope fitted here, once, as fixed per-channel parameters."""
    if norm is None or norm["scope"] != "stack" or not layout.lead_shape:
        return norm
    params, _ = fit_stack(image, layout, norm, exact=False)  # the tasks apply them as they are
    params = np.tile(params, (2 * layout.z_context + 1, 1))  # every neighbour of a z-context model alike
    # (x - mean * 1) / (std * 1) is exactly the fitted affine map (x - offset) / scale
    return {"mode": "meanstd", "mean": params[:, 0].tolist(), "std": params[:, 1].tolist(),
            "divisor": 1.0, "scope": "slice"}


def _model_reference(model: Any) -> tuple[Any, Any, str]:
    """(the model here, what the tasks get, 'source' or 'object')."""
    if is_source(model):
        return cached_model(model), ModelSource.of(model), "source"
    import dask

    # one graph key holds the model; every task depends on it
    ref = dask.delayed(model, name=f"napari-unet-stack-model-{uuid.uuid4().hex}", traverse=False)
    return model, ref, "object"


def dask_apply(image, model, *, mode: str, options: dict[str, Any]):
    """Map the engine over ``image``'s leading-axis chunks; return a lazy dask array.

    Parameters
    ----------
    image : dask array
        Chunks along the leading axes are kept (one task per chunk); the channel and
        image axes are merged into whole chunks.
    model : model, callable, checkpoint path, bundled name or `ModelSource`
        See the module docstring for how each reaches the workers.
    mode : {'labels', 'probabilities'}
    options : dict
        The keyword arguments of `predict`/`segment` (``normalization=``). Without ``out``
        the result is lazy (``progress`` and ``cancel`` are refused). With ``out`` (numpy,
        memmap, zarr) the chunks are computed one after the other and written into it,
        ``progress(done, total)`` counts chunks, ``cancel`` is checked between chunks, and
        ``out`` is returned: out of core for inputs and outputs larger than memory.
        ``info`` gets ``lazy``, ``n_tasks`` and ``model_transport`` (and, for labels, the
        ``threshold`` they are made at).
    """
    options = dict(options)
    out, progress, cancel, info = (options.pop(k, None) for k in ("out", "progress", "cancel", "info"))
    check_run_options(progress, cancel)
    if out is None and (progress is not None or cancel is not None):
        raise ValueError("`progress` and `cancel` need `out=`: a lazy dask result (no `out`) takes neither")
    local, model_ref, transport = _model_reference(model)
    spec = model_spec(local)
    request = make_request(spec, mode, **options)
    layout = validate_image(image, request.channel_axis, spec.image_channels, request.channel)
    layout = with_z_context(layout, spec.z_context, request.z_axis, request.time_axes)
    image = image.rechunk({ax: -1 for ax in range(image.ndim) if ax not in layout.spatial[:-2]})
    z_axis = None if layout.z_lead is None else layout.spatial[layout.z_lead]
    request = request.replace(normalization=fixed_normalization(image, layout, request.normalization),
                              channel=layout.channel, z_axis=z_axis, time_axes=())
    request, reason = _fixed_precision(spec, layout, request, image)
    if mode == "labels":
        result = _lazy_labels(image, layout, model_ref, request, spec.label_rule(spec.out_channels or 1).dtype)
    else:
        if spec.out_channels is None:
            raise ValueError("lazy probabilities need a model that reports its output channels")
        result = _lazy_probabilities(image, layout, model_ref, request, spec.out_channels)
    if info is not None:
        info.update(lazy=out is None, n_tasks=int(np.prod(result.numblocks)), model_transport=transport,
                    precision=request.precision, precision_reason=reason)
        if mode == "labels":
            info["threshold"] = request.threshold  # the caller's, or the model's own (as the engine says)
    if out is None:
        return result
    if tuple(out.shape) != tuple(result.shape):
        raise ValueError(f"`out` must have shape {tuple(result.shape)}, got {tuple(out.shape)}")
    check_writable(out)
    return store_chunks(result, out, progress, cancel)


def _fixed_precision(spec, layout: Layout, request: Request, image) -> tuple[Request, str]:
    """``precision="auto"`` decided here, once, on the first slice (`precision.choose_precision`),
    so every task runs in the same precision."""
    if request.precision not in (None, "auto"):
        return request, "requested"
    device = resolve_device(request.device)
    n_classes = spec.out_channels or probe_classes(spec, layout.n_inputs, device)
    choice = choose_precision(spec, layout, request, image, None, device, n_classes)
    return request.replace(precision=precision_name(choice.dtype)), choice.reason


def _lazy_labels(image, layout: Layout, model_ref, request: Request, dtype: np.dtype):
    import dask.array as da

    drop = [layout.channel_axis] if layout.channel_axis is not None else []
    image, read, z = _overlapped(image, request.z_axis, layout.z_context)
    chunks = tuple(c for ax, c in enumerate(image.chunks) if ax not in drop)
    return da.map_blocks(
        _segment_block, read, model_ref, request, z, dtype=dtype, drop_axis=drop, chunks=chunks,
        meta=np.empty((0,) * (image.ndim - len(drop)), dtype), name=f"segment-{uuid.uuid4().hex}",
    )


def _lazy_probabilities(image, layout: Layout, model_ref, request: Request, n_classes: int):
    """Probabilities, classes first: the channel axis (if any) moves to the front first."""
    import dask.array as da

    z_axis = None
    if layout.channel_axis is not None:
        arr = da.moveaxis(image, layout.channel_axis, 0)
        if request.z_axis is not None:  # where the Z axis went
            z_axis = request.z_axis + (request.z_axis < layout.channel_axis)
        request = request.replace(channel_axis=0, z_axis=z_axis)
    else:
        arr = image[None]
        z_axis = None if request.z_axis is None else request.z_axis + 1
    arr, read, z = _overlapped(arr, z_axis, layout.z_context)
    chunks = ((n_classes,), *arr.chunks[1:])
    return da.map_blocks(
        _predict_block, read, model_ref, request, layout.channel_axis is not None, z, dtype=np.float32,
        chunks=chunks, meta=np.empty((0,) * arr.ndim, np.float32), name=f"predict-{uuid.uuid4().hex}",
    )


def store_chunks(lazy, out, progress=None, cancel=None):
    """Compute ``lazy`` one chunk at a time into ``out`` (memory: one chunk, whatever the size)."""
    offsets = [np.cumsum((0, *c)) for c in lazy.chunks]
    blocks = lazy.to_delayed()
    total = blocks.size
    for done, index in enumerate(np.ndindex(*blocks.shape), start=1):
        stop_if_cancelled(cancel)
        region = tuple(slice(int(o[i]), int(o[i + 1])) for o, i in zip(offsets, index, strict=True))
        out[region] = blocks[index].compute()
        if progress is not None:
            progress(done, total)
    return out
