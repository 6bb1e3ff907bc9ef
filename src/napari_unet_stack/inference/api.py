"""predict / segment: the public door of the engine.

The options are checked here (and by `plan.make_request`), then numpy, memmap and zarr
inputs go to the engine (`engine.iterate`, zarr read slice by slice) and dask inputs to
`dask_tasks.dask_apply` (a lazy result). `iter_predict` / `iter_segment` are generators
that yield `Progress` events and return the result; `predict` / `segment` drain them.
Widgets run the generators in a worker.
"""

from __future__ import annotations

import warnings
from collections.abc import Generator
from typing import Any

import numpy as np

from ..postprocess import instance_labels
from .dask_tasks import dask_apply, is_dask
from .engine import iterate
from .events import Progress, drain
from .layout import as_image, spatial_shape
from .plan import make_request
from .spec import model_spec
from .stitch import check_writable

__all__ = ["NOT_GIVEN", "iter_predict", "iter_segment", "predict", "segment"]

_RUN_OPTIONS = ("progress", "cancel", "out", "info")


class _NotGiven:
    def __repr__(self) -> str:
        return "<not given>"


#: The default of deprecated keywords: tells "not passed" from any value (None included).
NOT_GIVEN: Any = _NotGiven()


def _pick_normalization(normalization: Any, normalize: Any, stacklevel: int) -> Any:
    """``normalization``, or the deprecated ``normalize`` when only that was passed."""
    if normalize is NOT_GIVEN:
        return normalization
    if not (isinstance(normalization, str) and normalization == "auto"):
        raise TypeError("pass `normalization=` only (`normalize=` is its deprecated alias), not both")
    warnings.warn("`normalize=` is deprecated and will be removed in the next release: use `normalization=`",
                  DeprecationWarning, stacklevel=stacklevel + 1)
    return normalize


def _options(options: dict[str, Any]) -> dict[str, Any]:
    options = dict(options)
    normalization = options.pop("normalization", "auto")
    options["normalization"] = _pick_normalization(normalization, options.pop("normalize", NOT_GIVEN), 3)
    return options


def _iterate(image, model, mode: str, options: dict[str, Any]) -> Generator[Progress, None, Any]:
    run = {k: options.pop(k, None) for k in _RUN_OPTIONS}
    spec = model_spec(model)
    request = make_request(spec, mode, **options)
    return (yield from iterate(image, spec, request, **run))


def iter_predict(image, model, **options) -> Generator[Progress, None, np.ndarray]:
    """Generator form of `predict`: yields `Progress`, returns the probabilities."""
    return _iterate(image, model, "probabilities", _options(options))


def iter_segment(image, model, *, instances: bool = False, min_size: int = 0, instance_ndim: int | None = None,
                 **options) -> Generator[Progress, None, np.ndarray]:
    """Generator form of `segment`: yields `Progress`, returns the labels."""
    return _segment(image, model, instances, min_size, instance_ndim, _options(options))


def _segment(image, model, instances: bool, min_size: int, instance_ndim: int | None,
             options: dict[str, Any]) -> Generator[Progress, None, np.ndarray]:
    out = options.pop("out", None) if instances else None
    image = as_image(image)
    if out is not None:  # checked before the work: instance ids are only known at the end
        _check_instance_out(out, spatial_shape(image.shape, options.get("channel_axis")))
    semantic = yield from _iterate(image, model, "labels", options)
    if not instances:
        return semantic
    labels = _instances(semantic, instance_ndim, min_size)
    if out is None:
        return labels
    if np.dtype(out.dtype).kind not in "ui" or np.iinfo(out.dtype).max < labels.max(initial=0):
        raise ValueError(f"`out` (dtype {out.dtype}) cannot hold {int(labels.max())} instance labels")
    out[...] = labels
    return out


def _check_instance_out(out: Any, shape: tuple[int, ...]) -> None:
    if tuple(out.shape) != shape:
        raise ValueError(f"`out` must have shape {shape}, got {tuple(out.shape)}")
    if np.dtype(out.dtype).kind not in "ui":
        raise ValueError(f"`out` for instance labels must have an integer dtype, got {out.dtype}")
    check_writable(out)


def _instances(semantic: np.ndarray, instance_ndim: int | None, min_size: int) -> np.ndarray:
    ndim = min(3, semantic.ndim) if instance_ndim is None else int(instance_ndim)
    if not 2 <= ndim <= semantic.ndim:
        raise ValueError(f"`instance_ndim` must be between 2 and {semantic.ndim}, got {instance_ndim}")
    if min_size < 0:
        raise ValueError(f"`min_size` must be >= 0, got {min_size}")
    return instance_labels(semantic, ndim=ndim, min_size=min_size)


def predict(image, model, *, channel_axis=None, channel=None, tile_size="auto", halo="auto", blend="crop", pad_mode="reflect",
            batch_size="auto", device="auto", precision="auto", normalization="auto", progress=None, cancel=None,
            out=None, info=None, normalize=NOT_GIVEN):
    """Class probabilities of a 2D model over an image or a stack of any rank.

    Parameters
    ----------
    image : (..., Y, X[, C]) array_like
        numpy array, memmap, zarr array (read slice by slice) or dask array (lazy result);
        a torch tensor (moved to numpy) or a nested list of numbers. Any real integer or
        float dtype (64-bit integers and float64 are normalized without losing their
        range). Every leading axis is iterated slice by slice.
    model : SegmentationNetwork, checkpoint path, bundled model name, or callable
        A callable must map an N x C x H x W float tensor to logits N x K x H x W. For a
        dask image also a `ModelSource` (e.g. for ``trust=True``).
    channel_axis : int or None
        Axis holding channels (RGB, multichannel); checked against the model's input channels.
        An (..., Y, X, 3 or 4) array without it warns: its slices would be X x 3 pixels.
    channel : None, int or 'mean'
        For a model with one input channel and a multichannel image: the channel index along
        ``channel_axis`` (negative from the end), or ``'mean'`` of all channels. None: every
        channel (the counts must match). See `napari_unet_stack.channels`.
    tile_size : 'auto', int, (int, int) or None
        The core each tile writes. The network sees core + 2 x halo, on the model's size grid.
        'auto': the largest tile fitting the device's memory budget (at most 1024 px on CPU,
        2048 on CUDA). None: each slice in one piece (after the same padding).
    halo : 'auto' or int
        Context around each core; 'auto' is the model's exact reach (tiled == untiled). A
        larger halo is bounded by the reach (exact models: same result), else by the image.
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
    normalization : 'auto', dict, str, or None
        'auto': the checkpoint's normalization, else percentiles (1, 99.8) per slice.
        None or 'none': the raw values. Fitted per slice or per stack (never per tile).
        See `napari_unet_stack.normalization.resolve_normalization`.
    progress : callable(done, total), optional
        Called after each batch.
    cancel : object with ``is_set()``, optional
        Checked between batches; when set, `InferenceCancelled` is raised.
    out : array_like, optional
        Where to write the result (numpy, zarr, memmap) instead of a new array; checked
        (shape, dtype, writable) before the inference.
    info : dict, optional
        Filled with what was used: device, precision, tile_shape, halo, batch_size, n_tiles,
        exact, seconds, oom_retries.
    normalize : deprecated
        The old name of ``normalization`` (a DeprecationWarning; passing both is a TypeError).

    Returns
    -------
    probabilities : (K, ..., Y, X) float32 ndarray
        Softmax or sigmoid probabilities, classes first. Pixels whose input is NaN or
        infinite (in any channel the model sees) are NaN.

    Raises
    ------
    TypeError, ValueError
        A bad option or image, naming it (before any work).
    NonFiniteOutputError
        (a ValueError and a FloatingPointError) The model returned NaN or infinite logits
        (NaN weights, or a float16 overflow): the run stops at the first such batch, naming
        the model, instead of returning all-background labels.
    """
    options = dict(channel_axis=channel_axis, channel=channel, tile_size=tile_size, halo=halo, blend=blend, pad_mode=pad_mode,
                   batch_size=batch_size, device=device, precision=precision,
                   normalization=_pick_normalization(normalization, normalize, 2),
                   progress=progress, cancel=cancel, out=out, info=info)
    if is_dask(image):
        return dask_apply(image, model, mode="probabilities", options=options)
    return drain(_iterate(image, model, "probabilities", options))


def segment(image, model, *, threshold=0.5, instances=False, min_size=0, instance_ndim=None, channel_axis=None,
            channel=None, tile_size="auto", halo="auto", blend="crop", pad_mode="reflect", batch_size="auto", device="auto",
            precision="auto", normalization="auto", progress=None, cancel=None, out=None, info=None,
            normalize=NOT_GIVEN):
    """Labels of a 2D model over an image or a stack of any rank.

    Same options as `predict`, plus:

    threshold : float
        Foreground where P(foreground) > threshold, for every activation: P(foreground) is
        1 - P(background) for softmax models, the channel's probability for a one-channel
        sigmoid model, the largest channel probability for a multilabel sigmoid model; a
        foreground pixel gets the most probable foreground class. For a two-class softmax
        model at 0.5 this is the argmax. See `napari_unet_stack.labels`.
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
        whole stack: each tile becomes labels as soon as it is computed. Equal, bit for
        bit, to ``LabelRule.for_model(model, threshold).labels(predict(...))``.
    """
    options = dict(channel_axis=channel_axis, channel=channel, tile_size=tile_size, halo=halo, blend=blend, pad_mode=pad_mode,
                   batch_size=batch_size, device=device, precision=precision,
                   normalization=_pick_normalization(normalization, normalize, 2),
                   threshold=threshold, progress=progress, cancel=cancel, out=out, info=info)
    if is_dask(image):
        if instances:
            raise ValueError(
                "instances=True needs the whole result: compute the lazy labels first "
                "(labels.compute()) and call napari_unet_stack.postprocess.instance_labels"
            )
        return dask_apply(image, model, mode="labels", options=options)
    return drain(_segment(image, model, instances, min_size, instance_ndim, options))
