"""Lazy dask results: the engine mapped over slice chunks (no napari)."""

from __future__ import annotations

from typing import Any

import numpy as np


def dask_apply(image, model, *, mode: str, options: dict[str, Any]):
    """Map `predict`/`segment` over ``image``'s leading-axis chunks; return a lazy dask array.

    The channel axis and the two image axes are merged into single chunks; each task runs
    the in-memory engine on one chunk of slices. Stack-scope normalization is not
    available lazily: each chunk is normalized on its own slices.
    """
    import dask.array as da

    from .inference import _model_spec, _validate_image, predict, segment
    from .postprocess import label_values, smallest_uint

    spec = _model_spec(model)
    layout = _validate_image(image, options.get("channel_axis"), spec)
    if options.get("out") is not None or options.get("progress") is not None or options.get("cancel") is not None:
        raise ValueError("`out`, `progress` and `cancel` apply to in-memory runs; a lazy dask result takes none")
    whole = {ax: -1 for ax in range(image.ndim) if ax not in layout.spatial[:-2]}
    image = image.rechunk(whole)
    kwargs = {k: v for k, v in options.items() if k not in ("out", "progress", "cancel", "info")}
    channel_axis = layout.channel_axis
    if mode == "labels":
        n = spec.out_channels or 1
        values = label_values(n, spec.activation or ("softmax" if n > 1 else "sigmoid"), spec.class_values)
        dtype = smallest_uint(int(values.max()))
        drop = [channel_axis] if channel_axis is not None else []

        def block_fn(block):
            return segment(block, spec_model, **kwargs)

        spec_model = model
        return da.map_blocks(block_fn, image, dtype=dtype, drop_axis=drop, meta=np.empty((0,) * (image.ndim - len(drop)), dtype))
    # probabilities: classes first
    n_classes = spec.out_channels
    if n_classes is None:
        raise ValueError("lazy probabilities need a model that reports its output channels")
    arr = image if channel_axis is None else da.moveaxis(image, channel_axis, 0)
    if channel_axis is not None:
        kwargs["channel_axis"] = 0
    else:
        arr = arr[None]
    chunks = ((n_classes,), *arr.chunks[1:])

    def prob_fn(block):
        data = block if channel_axis is not None else block[0]
        return predict(data, model, **kwargs)

    return da.map_blocks(prob_fn, arr, dtype=np.float32, chunks=chunks, meta=np.empty((0,) * arr.ndim, np.float32))
