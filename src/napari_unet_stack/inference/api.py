"""predict / segment: the public door of the engine.

The options are checked here (and by `plan.make_request`), then numpy, memmap and zarr
inputs go to the engine (`engine.iterate`, zarr read slice by slice) and dask inputs to
`dask_tasks.dask_apply` (a lazy result). `iter_predict` / `iter_segment` are generators
that yield `Progress` events and return the result; `predict` / `segment` drain them.
Widgets run the generators in a worker.
"""

from __future__ import annotations

import warnings
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np

from ..labels import smallest_uint
from ..postprocess import (
    DEFAULT_LINK_OVERLAP,
    DEFAULT_MIN_DISTANCE,
    DEFAULT_SMOOTHING,
    DEFAULT_Z_SPLIT,
    InstanceOptions,
)
from .dask_tasks import dask_apply, is_dask
from .engine import iterate
from .events import Progress, drain
from .layout import as_image, spatial_shape
from .plan import DEFAULT_BORDER, make_request
from .sources import ModelSource, cached_model, is_source
from .spec import ModelSpec, model_spec
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
    spec = model if isinstance(model, ModelSpec) else model_spec(model)
    request = make_request(spec, mode, **options)
    return (yield from iterate(image, spec, request, **run))


def iter_predict(image, model, **options) -> Generator[Progress, None, np.ndarray]:
    """Generator form of `predict`: yields `Progress`, returns the probabilities."""
    return _iterate(image, model, "probabilities", _options(options))


def iter_segment(image, model, *, instances: bool | str | InstanceOptions = False, min_size: int | None = None,
                 instance_ndim: int | None = None, time_axis: int | Sequence[int] | None = None,
                 min_distance: int = DEFAULT_MIN_DISTANCE, smoothing: float = DEFAULT_SMOOTHING,
                 link_overlap: float = DEFAULT_LINK_OVERLAP, marker_threshold: float | None = None,
                 z_split: float = DEFAULT_Z_SPLIT, **options) -> Generator[Progress, None, np.ndarray]:
    """Generator form of `segment`: yields `Progress`, returns the labels.

    One more option with ``instances``: ``labels_out``, an integer array of the labels'
    shape that keeps what the ids are decoded from, the engine's labels (an instance
    model's marker maps for 'markers'; `napari_unet_stack.postprocess.labels_rule` gives
    their dtype); the ids still go into ``out`` (or a new array). Decoding it again with
    other options (``InstanceOptions.apply(labels_out, out=...)``) equals a new run with
    them, without the network, while the rule is the same: the same ``threshold`` and
    kind of labels, and for 'markers' the same marker threshold.
    """
    decoding = _decoding(instances, min_size, instance_ndim, time_axis, min_distance, smoothing, link_overlap,
                         marker_threshold, z_split)
    return _segment(image, model, decoding, _options(dict(options, time_axis=_time_axis(decoding, time_axis))))


def _time_axis(decoding: InstanceOptions | None, time_axis: Any) -> Any:
    """The time axes a z-context model must not read across: the keyword's, else those of
    the `InstanceOptions` given as ``instances``."""
    return decoding.time_axis if time_axis is None and decoding is not None else time_axis


def _decoding(instances, min_size, ndim, time_axis, min_distance, smoothing, link_overlap, marker_threshold,
              z_split):
    """The `InstanceOptions` of segment's keywords (None: semantic labels)."""
    if isinstance(instances, InstanceOptions):
        return instances
    return InstanceOptions.from_instances(instances, min_size=min_size, ndim=ndim, time_axis=time_axis,
                                          min_distance=min_distance, smoothing=smoothing, link_overlap=link_overlap,
                                          marker_threshold=marker_threshold, z_split=z_split)


def _prepare(image, decoding: InstanceOptions, options: dict[str, Any]):
    """(labels shape, time axes, the array the engine's labels go into, whether it is
    the caller's ``out``), checked; ``options`` get the marker threshold of 'markers'."""
    out = options.pop("out", None)
    channel_axis = options.get("channel_axis")
    shape = spatial_shape(image.shape, channel_axis)
    time_axes = decoding.time_axes(len(image.shape), channel_axis)
    decoding.check(shape, time_axes)
    if decoding.markers:
        options["markers"] = decoding.marker_threshold
    if out is not None:  # checked before the work
        _check_instance_out(out, shape)
        return shape, time_axes, out, True
    return shape, time_axes, np.zeros(shape, np.uint32 if np.prod(shape) < 2**32 else np.uint64), False


def _segment(image, model, decoding: InstanceOptions | None, options: dict[str, Any]
             ) -> Generator[Progress, None, np.ndarray]:
    kept = options.pop("labels_out", None)
    if decoding is None:
        if kept is not None:
            raise ValueError("`labels_out` keeps the labels instances are decoded from: it needs `instances`")
        return (yield from _iterate(image, model, "labels", options))
    image = as_image(image)
    spec = model_spec(model)
    decoding = decoding.resolve(spec)
    shape, time_axes, work, given = _prepare(image, decoding, options)
    if kept is not None:
        _check_instance_out(kept, shape, "labels_out")
    yield from _iterate(image, spec, "labels", dict(options, out=work if kept is None else kept))
    return _finish(decoding, work, time_axes, given, options.get("cancel"), kept)


def _finish(decoding: InstanceOptions, work: Any, time_axes, given: bool, cancel: Any = None,
            kept: Any = None) -> Any:
    """The engine's labels (in ``work``, or in ``kept``, which keeps them) decoded into
    ``work`` as instance ids, slice by slice (``cancel`` checked before each slice, as
    between the engine's batches)."""
    decoding.apply(work if kept is None else kept, time_axes, out=work, cancel=cancel)
    if given:
        return work
    top = int(work.max(initial=0))
    return work.astype(smallest_uint(top), copy=False)


def _check_instance_out(out: Any, shape: tuple[int, ...], name: str = "out") -> None:
    if tuple(out.shape) != shape:
        raise ValueError(f"`{name}` must have shape {shape}, got {tuple(out.shape)}")
    if np.dtype(out.dtype).kind not in "ui":
        raise ValueError(f"`{name}` for instance labels must have an integer dtype, got {out.dtype}")
    check_writable(out)


def _dask_instances(image, model, decoding: InstanceOptions, options: dict[str, Any]) -> Any:
    """A dask image's semantic labels (or marker maps) computed chunk by chunk into ``out``
    (or a new array), then its instances in place: not lazy (Z links run slice after slice)."""
    local = cached_model(ModelSource.of(model)) if is_source(model) else model
    decoding = decoding.resolve(model_spec(local))
    _, time_axes, work, given = _prepare(image, decoding, options)
    dask_apply(image, model, mode="labels", options=dict(options, out=work))
    return _finish(decoding, work, time_axes, given, options.get("cancel"))


def predict(image, model, *, channel_axis=None, channel=None, tile_size="auto", halo="auto", blend="crop", pad_mode="reflect",
            border=DEFAULT_BORDER, batch_size="auto", device="auto", precision="auto", normalization="auto", tta=False,
            z_axis="auto", progress=None, cancel=None, out=None, info=None, normalize=NOT_GIVEN):
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
    border : int >= 0 or 'reach'
        Pixels of padding at the image edge (default 16, measured: README "Border"), then
        padding on to the model's size grid at the bottom and right. 'reach': the halo
        (the model's full reach; before 0.x the only choice). Tiles near the edge are
        clamped into the padded image, so tiled == whole-slice for any border. Valid
        models pad by their margin whatever the border.
    batch_size : 'auto' or int
        Tiles per forward, taken from several slices. 'auto': as many as the memory budget
        holds, at most 64 on CUDA; on the CPU the most (a power of two up to 8) whose
        activations fit 128 MiB, so small windows batch and large ones go one at a time.
    device : 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'
        'auto': CUDA, then MPS, then CPU. The device used is logged and put in ``info``.
    precision : {'auto', 'float32', 'bfloat16', 'float16'}
        'auto': bf16 (else fp16) autocast on CUDA; on CPUs with native bf16, bf16 when it
        keeps at least 99.9% of the float32 labels of a 128 px probe of the first slice
        and moves its probabilities by at most 0.001 on average (measured once per model
        and weights), else float32; float32 elsewhere.
        ``info["precision_reason"]`` says why.
    normalization : 'auto', dict, str, or None
        'auto': the checkpoint's normalization, else percentiles (1, 99.8) per slice.
        None or 'none': the raw values. Fitted per slice or per stack (never per tile).
        See `napari_unet_stack.normalization.resolve_normalization`.
    tta : bool or {'none', 'flips', 'dihedral'}
        Test-time augmentation: the probabilities averaged over the mirror images of each
        window ('flips': 4 forwards) or also their transposes ('dihedral', True: 8).
        Smoother interiors, fewer wrong splits; 4 or 8 times the work. Tiled still equals
        whole-slice. See `napari_unet_stack.inference.augment`.
    z_axis : 'auto', int or None
        For a z-context (2.5D) model, ``meta["z_context"]`` = k: the axis of ``image`` along
        which each slice's k neighbours on either side are read (`napari_unet_stack.zcontext`).
        'auto': the last leading axis (for `segment`, the last that is not a ``time_axis``).
        None: none; each slice is its own neighbour, as for a 2D image. Other models ignore it.
    progress : callable(done, total), optional
        Called after each batch.
    cancel : object with ``is_set()``, optional
        Checked between batches; when set, `InferenceCancelled` is raised.
    out : array_like, optional
        Where to write the result (numpy, zarr, memmap) instead of a new array; checked
        (shape, dtype, writable) before the inference.
    info : dict, optional
        Filled with what was used: device, precision, precision_reason, tile_shape, halo,
        border, batch_size, n_tiles, exact, tta, seconds, oom_retries. ``batch_size`` is
        the most tiles one forward took: the planned batch, or fewer when there are fewer
        tiles (one 2D image of one tile: 1) or when running out of memory halved it before
        a batch of the planned size ran (``oom_retries`` counts the halvings).
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
                   border=border, batch_size=batch_size, device=device, precision=precision,
                   normalization=_pick_normalization(normalization, normalize, 2), tta=tta, z_axis=z_axis,
                   progress=progress, cancel=cancel, out=out, info=info)
    if is_dask(image):
        return dask_apply(image, model, mode="probabilities", options=options)
    return drain(_iterate(image, model, "probabilities", options))


def segment(image, model, *, threshold=None, instances=False, min_size=None, instance_ndim=None, time_axis=None,
            min_distance=DEFAULT_MIN_DISTANCE, smoothing=DEFAULT_SMOOTHING, link_overlap=DEFAULT_LINK_OVERLAP,
            marker_threshold=None, z_split=DEFAULT_Z_SPLIT, channel_axis=None,
            channel=None, tile_size="auto", halo="auto", blend="crop", pad_mode="reflect", border=DEFAULT_BORDER,
            batch_size="auto", device="auto",
            precision="auto", normalization="auto", tta=False, z_axis="auto", progress=None, cancel=None, out=None,
            info=None, normalize=NOT_GIVEN):
    """Labels of a 2D model over an image or a stack of any rank.

    Same options as `predict`, plus:

    threshold : float or None
        Foreground where P(foreground) > threshold, for every activation. None (default):
        the model's own threshold (``meta["threshold"]``, chosen with its training; the
        bundled models record theirs), else 0.5; ``info["threshold"]`` says which (dask
        input too). P(foreground) is 1 - P(background) for softmax models, the channel's
        probability for a one-channel sigmoid model, the largest channel probability for a
        multilabel sigmoid model; a foreground pixel gets the most probable foreground
        class. For a two-class softmax model at 0.5 this is the argmax. See `napari_unet_stack.labels`.
    instances : bool, {'auto', 'markers', 'watershed', 'components'} or InstanceOptions
        Instance labels (each object its own id, unique over the result) instead of classes.
        True ('auto'): an instance model (trained with ``instances=True``) is decoded from
        its own markers ('markers': P(interior) > ``marker_threshold`` inside the
        foreground, grown into the foreground by a seeded watershed); any other model by
        'watershed': each slice's foreground (per class) split by a watershed of its
        distance transform, seeded by the transform's maxima. Across Z, objects of
        neighbouring slices are one when the smaller lies at least ``link_overlap``
        inside the other. 'components':
        connected components (3D 6-connected over Z, as before 0.x). An `InstanceOptions`
        carries every decoding option (the keywords below are then ignored). See
        `napari_unet_stack.postprocess.InstanceOptions`. An instance model without
        ``instances`` gives its foreground (1).
    min_size : int or None
        With ``instances``, objects (all their slices together) with fewer pixels become 0.
        None: the instance model's suggestion (``meta["instances"]["min_size"]``), else 0.
    marker_threshold : float or None
        'markers': P(interior) above which a foreground pixel is a marker, in (0, 1).
        None: the model's ``meta["instances"]["marker_threshold"]`` (else 0.5).
    instance_ndim : {None, 2, 3}
        2: objects per slice. 3 (default when there is a Z axis): linked across the Z axis,
        the last leading axis that is not a time axis; other leading axes are independent.
    time_axis : int or sequence of int, optional
        Axes of ``image`` (numbered like ``channel_axis``) that are time: each time point's
        objects are labelled on their own, never linked, and a z-context model never reads
        neighbours across them. A (T, Y, X) image without it is taken as (Z, Y, X). The CLI
        sets it from the file's axes.
    min_distance : int
        Watershed markers: maxima of the distance transform at least this many pixels apart.
    smoothing : float
        Gaussian sigma of the distance transform before its maxima are taken (0: none).
    link_overlap : float
        Z links ('markers', 'watershed'), in (0, 1]: objects of neighbouring slices are
        one when the smaller lies at least this fraction inside the other, one to one; a
        leftover (a split-off piece, a second cap) lying this much inside one joins it.
    z_split : float
        Z links, in [0, 1): a linked object is cut where its cross-section shrinks below
        this fraction of its largest ones above and below (two nuclei stacked in Z, each
        part at least 2 slices; default 0.7, measured: `napari_unet_stack.postprocess.zsplit`);
        0: never.

    With ``instances`` the semantic labels are written into ``out`` (or an array of the
    result's shape) slice by slice, then replaced by instance ids slice by slice: besides
    the output only a slice and its neighbour are held, so ``out`` can be a zarr array.
    A dask image is then computed chunk by chunk (the result is not lazy: Z links run in
    order), into ``out`` when given. ``cancel`` is checked between batches and then before
    each slice the decoding reads (`InferenceCancelled` either way).

    Returns
    -------
    labels : (..., Y, X) ndarray
        The image's spatial shape, in the smallest unsigned dtype holding the labels
        (class index, or the checkpoint's class values). Pixels whose input is NaN or
        infinite are 0 (background). Per-class probabilities are never held for the
        whole stack: each tile becomes labels as soon as it is computed. Equal, bit for
        bit, to ``LabelRule.for_model(model, threshold).labels(predict(...))`` (same default).
    """
    options = dict(channel_axis=channel_axis, channel=channel, tile_size=tile_size, halo=halo, blend=blend, pad_mode=pad_mode,
                   border=border, batch_size=batch_size, device=device, precision=precision,
                   normalization=_pick_normalization(normalization, normalize, 2), tta=tta, z_axis=z_axis,
                   threshold=threshold, progress=progress, cancel=cancel, out=out, info=info)
    decoding = _decoding(instances, min_size, instance_ndim, time_axis, min_distance, smoothing, link_overlap,
                         marker_threshold, z_split)
    options["time_axis"] = _time_axis(decoding, time_axis)
    if is_dask(image):
        if decoding is not None:
            return _dask_instances(image, model, decoding, options)
        return dask_apply(image, model, mode="labels", options=options)
    return drain(_segment(image, model, decoding, options))
