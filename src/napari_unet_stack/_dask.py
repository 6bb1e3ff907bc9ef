"""Lazy dask results: the engine mapped over slice chunks (no napari).

`predict` / `segment` on a dask array return a lazy dask array with one task per chunk of
the leading (Z, T, ...) axes; the channel axis and the two image axes are merged into
whole chunks. With ``out=`` (e.g. a zarr array) the chunks are computed one by one and
written into it instead. How the model reaches the tasks:

- a *source* (checkpoint path, bundled model name, or `ModelSource` for ``trust=True`` and
  overrides): only that small description is in the task graph; each process loads the
  model once and keeps it (`cached_model`, keyed by the source and the file's mtime), so
  dask.distributed workers load it once each, whatever the number of tasks;
- a model *object*: put into the graph once, as one key every task depends on, so
  dask.distributed ships it to each worker once (not pickled into every task). That is
  one pickle of the weights per worker process; pass a source to avoid even that.

Stack-scope normalization is fitted once on the client (the same slices the in-memory
engine uses) and handed to every task as fixed parameters, so the lazy result equals the
in-memory one for slice- and stack-scope normalization alike.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ModelSource", "cached_model", "dask_apply", "load_stats"]


@dataclass(frozen=True)
class ModelSource:
    """A model described by where to load it from (cheap to pickle into task graphs).

    ``source`` is a checkpoint path or a bundled model name, ``trust`` and ``overrides``
    are passed to `napari_unet_stack.checkpoints.load_model`.
    """

    source: str
    trust: bool = False
    overrides: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, model: Any) -> ModelSource:
        if isinstance(model, ModelSource):
            return model
        return cls(os.fspath(model))

    def load(self):
        return cached_model(self)


_MODELS: dict[tuple, Any] = {}
_LOCK = threading.Lock()
_STATS = {"loads": 0}


def is_source(model: Any) -> bool:
    """Whether ``model`` is a description to load (path, name, `ModelSource`), not a model."""
    return isinstance(model, (str, os.PathLike, ModelSource))


def _cache_key(src: ModelSource) -> tuple:
    path = Path(src.source)
    if path.is_file():
        stat = path.stat()
        return (str(path.resolve()), stat.st_mtime_ns, stat.st_size, src.trust, src.overrides)
    return (src.source, None, None, src.trust, src.overrides)


def cached_model(source: Any):
    """The model of ``source``, loaded once per process (reloaded if the file changes)."""
    src = ModelSource.of(source)
    key = _cache_key(src)
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            from .checkpoints import load_model

            model = load_model(src.source, trust=src.trust, **dict(src.overrides))
            for old in [k for k in _MODELS if k[0] == key[0]]:
                del _MODELS[old]
            _MODELS[key] = model
            _STATS["loads"] += 1
        return model


def load_stats() -> dict[str, int]:
    """How many models this process has loaded and holds (for tests and diagnostics)."""
    with _LOCK:
        return {"loads": _STATS["loads"], "cached": len(_MODELS)}


def _resolve(model_ref: Any):
    return cached_model(model_ref) if isinstance(model_ref, ModelSource) else model_ref


def _segment_block(block, model_ref, kwargs):
    from .inference import segment

    return segment(block, _resolve(model_ref), **kwargs)


def _predict_block(block, model_ref, kwargs, has_channels):
    from .inference import predict

    data = block if has_channels else block[0]
    return predict(data, _resolve(model_ref), **kwargs)


def _fixed_normalization(image, layout, spec, normalize) -> Any:
    """Stack-scope normalization fitted here, once, as fixed per-channel parameters."""
    from .inference import _fit_stack
    from .normalization import DEFAULT_NORMALIZATION, validate_normalization

    if normalize == "auto":
        norm = validate_normalization(spec.normalization or DEFAULT_NORMALIZATION)
    elif normalize is None or normalize is False or normalize == "none":
        return normalize
    else:
        norm = validate_normalization(normalize)
    if norm["scope"] != "stack" or not layout.lead_shape:
        return normalize
    params = _fit_stack(image, layout, norm)
    # (x - mean * 1) / (std * 1) is exactly the fitted affine map (x - offset) / scale
    return {"mode": "meanstd", "mean": params[:, 0].tolist(), "std": params[:, 1].tolist(),
            "divisor": 1.0, "scope": "slice"}


def dask_apply(image, model, *, mode: str, options: dict[str, Any]):
    """Map `predict`/`segment` over ``image``'s leading-axis chunks; return a lazy dask array.

    Parameters
    ----------
    image : dask array
        Chunks along the leading axes are kept (one task per chunk); the channel and
        image axes are merged into whole chunks.
    model : model, callable, checkpoint path, bundled name or `ModelSource`
        See the module docstring for how each reaches the workers.
    mode : {'labels', 'probabilities'}
    options : dict
        The keyword arguments of `predict`/`segment`. Without ``out`` the result is lazy
        (``progress`` and ``cancel`` are refused). With ``out`` (numpy, memmap, zarr) the
        chunks are computed one after the other and written into it, ``progress(done,
        total)`` counts chunks, ``cancel`` is checked between chunks, and ``out`` is
        returned: out of core for inputs and outputs larger than memory. ``info`` gets
        ``lazy``, ``n_tasks`` and ``model_transport``.
    """
    import dask
    import dask.array as da

    from .inference import _model_spec, _validate_image
    from .postprocess import label_values, smallest_uint

    out, progress, cancel = options.get("out"), options.get("progress"), options.get("cancel")
    if out is None and (progress is not None or cancel is not None):
        raise ValueError("`progress` and `cancel` need `out=`: a lazy dask result (no `out`) takes neither")
    if is_source(model):
        local = cached_model(model)
        model_ref: Any = ModelSource.of(model)
        transport = "source"
    else:
        local = model
        # one graph key holds the model; every task depends on it
        model_ref = dask.delayed(model, name=f"napari-unet-stack-model-{uuid.uuid4().hex}", traverse=False)
        transport = "object"
    spec = _model_spec(local)
    layout = _validate_image(image, options.get("channel_axis"), spec)
    whole = {ax: -1 for ax in range(image.ndim) if ax not in layout.spatial[:-2]}
    image = image.rechunk(whole)
    kwargs = {k: v for k, v in options.items() if k not in ("out", "progress", "cancel", "info")}
    kwargs["normalize"] = _fixed_normalization(image, layout, spec, kwargs.get("normalize", "auto"))
    channel_axis = layout.channel_axis
    token = uuid.uuid4().hex
    info = options.get("info")

    if mode == "labels":
        n = spec.out_channels or 1
        values = label_values(n, spec.activation or ("softmax" if n > 1 else "sigmoid"), spec.class_values)
        dtype = smallest_uint(int(values.max()))
        drop = [channel_axis] if channel_axis is not None else []
        result = da.map_blocks(
            _segment_block, image, model_ref, kwargs, dtype=dtype, drop_axis=drop,
            meta=np.empty((0,) * (image.ndim - len(drop)), dtype), name=f"segment-{token}",
        )
    else:
        # probabilities: classes first
        n_classes = spec.out_channels
        if n_classes is None:
            raise ValueError("lazy probabilities need a model that reports its output channels")
        if channel_axis is not None:
            arr = da.moveaxis(image, channel_axis, 0)
            kwargs["channel_axis"] = 0
        else:
            arr = image[None]
        chunks = ((n_classes,), *arr.chunks[1:])
        result = da.map_blocks(
            _predict_block, arr, model_ref, kwargs, channel_axis is not None, dtype=np.float32,
            chunks=chunks, meta=np.empty((0,) * arr.ndim, np.float32), name=f"predict-{token}",
        )
    if info is not None:
        info.update(lazy=out is None, n_tasks=int(np.prod(result.numblocks)), model_transport=transport)
    if out is None:
        return result
    if tuple(out.shape) != tuple(result.shape):
        raise ValueError(f"`out` must have shape {tuple(result.shape)}, got {tuple(out.shape)}")
    return _store_chunks(result, out, progress, cancel)


def _store_chunks(lazy, out, progress, cancel):
    """Compute ``lazy`` one chunk at a time into ``out`` (memory: one chunk, whatever the size)."""
    from .inference import InferenceCancelled

    offsets = [np.cumsum((0, *c)) for c in lazy.chunks]
    blocks = lazy.to_delayed()
    total = blocks.size
    for done, index in enumerate(np.ndindex(*blocks.shape), start=1):
        if cancel is not None and cancel.is_set():
            raise InferenceCancelled("inference was cancelled")
        region = tuple(slice(int(o[i]), int(o[i + 1])) for o, i in zip(offsets, index, strict=True))
        out[region] = blocks[index].compute()
        if progress is not None:
            progress(done, total)
    return out
