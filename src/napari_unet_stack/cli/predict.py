"""``unet-stack predict``: segment image files with a model, one output per input.

Only wiring: reading and writing is `io`'s, the network runs in `inference` (locally, or on
dask.distributed with ``--scheduler``), labels follow `labels.LabelRule` and the outputs are
planned by `outputs.plan_outputs` before any work.
"""

from __future__ import annotations

from ..inference.augment import TTA_CHOICES
from ..postprocess import (
    DEFAULT_LINK_OVERLAP,
    DEFAULT_MARKER_THRESHOLD,
    DEFAULT_MIN_DISTANCE,
    DEFAULT_SMOOTHING,
    DEFAULT_Z_SPLIT,
    METHOD_CHOICES,
)
from .common import (
    DEFAULT_MODEL,
    DEVICE_HELP,
    TileProgress,
    add_image_options,
    add_quiet,
    channel_layout,
    check_model_channels,
    load_cli_model,
    parse_channel,
    stack_axes,
)
from .outputs import plan_outputs

__all__ = ["add_parser", "engine_options", "run"]

THRESHOLD_HELP = (
    "foreground where P(foreground) > T, for every activation: 1 - P(background) for softmax "
    "models, the channel's probability for sigmoid ones (default: the model's own threshold, "
    "chosen with its training, else 0.5: for two-class softmax models the argmax)"
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="segment image stacks (TIFF, OME-TIFF, zarr, OME-Zarr, .npy) with a model",
        description=(
            "Segment images with a bundled model or a checkpoint. With several inputs (or a "
            "folder or glob pattern) OUTPUT is a folder and each input gets <name>_labels<ext>. "
            "Outputs are written under a temporary name and appear only when complete."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, zarr stores, folders of them, or glob patterns ('stacks/*.tif')")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="labels file (.tif, .ome.tif, .zarr, .ome.zarr, .npy: the extension picks the "
                        "format), or a folder for several inputs")
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|PATH",
                   help=f"bundled model name or checkpoint file (default: {DEFAULT_MODEL})")
    add_image_options(p, "each input")
    p.add_argument("--tile-size", default="auto", metavar="PX", help="tile core size, 'auto' or 'none'")
    p.add_argument("--border", metavar="PX",
                   help="mirror padding at the image edge in pixels, or 'reach' (the model's full reach, "
                        "as before 0.x); default: the library's (16, measured: README 'Border')")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--batch-size", default="auto", metavar="N", help="tiles per forward pass, or 'auto'")
    p.add_argument("--tta", default="none", choices=TTA_CHOICES,
                   help="test-time augmentation: probabilities averaged over each tile's mirror images "
                        "('flips', 4 forwards) or also their transposes ('dihedral', 8); fewer wrong splits "
                        "of touching nuclei, 4 or 8 times the time (default none)")
    _add_instance_options(p)
    p.add_argument("--threshold", metavar="T", help=THRESHOLD_HELP)
    p.add_argument("--probabilities", metavar="PATH",
                   help="also write the class probabilities (float32, classes first); a folder for several inputs")
    p.add_argument("--format", choices=("tif", "ome.tif", "zarr", "ome.zarr", "npy"),
                   help="format of outputs named from inputs (default: like the input)")
    p.add_argument("--compression", default="zlib", choices=("zlib", "zstd", "lzw", "none"),
                   help="TIFF compression (default zlib; zstd and lzw need imagecodecs)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (once complete)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on dask.distributed: tcp://HOST:PORT (existing scheduler; workers must see "
                        "the files) or local:N (N local worker processes)")
    p.add_argument("--scheduler-timeout", metavar="SECONDS",
                   help="with --scheduler tcp://...: give up reaching it after SECONDS (default: "
                        "$UNET_STACK_SCHEDULER_TIMEOUT, else 3)")
    p.add_argument("--chunk-slices", default="1", metavar="N", help="with --scheduler: slices per task")
    p.add_argument("--trust", action="store_true",
                   help="allow checkpoints that unpickle arbitrary Python objects (trusted files only)")
    add_quiet(p)
    p.set_defaults(func=run)


def _add_instance_options(p) -> None:
    """--instances and the options of its decoding (`postprocess.InstanceOptions`)."""
    p.add_argument("--instances", nargs="?", const="auto", choices=METHOD_CHOICES,
                   help="instance labels (each object its own id). 'auto' (the default when given alone): "
                        "an instance model (trained with --instances) grows its own markers into its "
                        "foreground ('markers'); any other model's foreground is split by a distance-transform "
                        "watershed ('watershed'); objects are linked across Z by IoU. 'components': connected "
                        "components (3D over Z). T axes of the file are never linked. Put it after the inputs "
                        "or write --instances=NAME")
    p.add_argument("--min-size", default=None, metavar="PX",
                   help="with --instances: drop smaller objects (default: the instance model's, else 0)")
    p.add_argument("--marker-threshold", default=None, metavar="P",
                   help=f"with --instances markers: P(interior) above which a pixel is a marker, in (0, 1) "
                        f"(default: the model's, else {DEFAULT_MARKER_THRESHOLD})")
    p.add_argument("--min-distance", default=str(DEFAULT_MIN_DISTANCE), metavar="PX",
                   help=f"with --instances watershed: markers at least PX apart (default {DEFAULT_MIN_DISTANCE})")
    p.add_argument("--smoothing", default=str(DEFAULT_SMOOTHING), metavar="SIGMA",
                   help=f"with --instances watershed: Gaussian sigma of the distance transform "
                        f"(default {DEFAULT_SMOOTHING})")
    p.add_argument("--link-overlap", default=str(DEFAULT_LINK_OVERLAP), metavar="FRACTION",
                   help=f"with --instances: objects of neighbouring Z slices are one when the smaller "
                        f"lies at least FRACTION inside the other (default {DEFAULT_LINK_OVERLAP})")
    p.add_argument("--z-split", default=str(DEFAULT_Z_SPLIT), metavar="FRACTION",
                   help=f"with --instances: cut a Z-linked object where its cross-section shrinks below FRACTION "
                        f"of its largest ones above and below (nuclei stacked in Z; 0: never; default "
                        f"{DEFAULT_Z_SPLIT})")
    p.add_argument("--per-slice", action="store_true",
                   help="with --instances: objects per slice, not linked across Z")


def engine_options(args) -> dict:
    """The keywords of `segment` / `predict` from the parsed options, checked (an unavailable
    ``--device`` fails here, before any output exists)."""
    from ..validation import parse_int

    tile = parse_int("--tile-size", args.tile_size, 1, ("auto", "none"))
    batch = parse_int("--batch-size", args.batch_size, 1, ("auto",))
    border = {} if args.border is None else {"border": parse_int("--border", args.border, 0, ("reach",))}
    threshold = None  # the model's own
    if args.threshold is not None:
        try:
            threshold = float(args.threshold)
        except ValueError:
            raise ValueError(f"--threshold must be a number in [0, 1], got {args.threshold!r}") from None
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"--threshold must be in [0, 1], got {threshold}")
    args.channel = parse_channel(args.channel)
    if args.scheduler is None:
        from ..devices import resolve_device

        resolve_device(args.device)
    else:
        from ..distributed import connect_timeout, parse_scheduler

        parse_scheduler(args.scheduler)
        args.scheduler_timeout = connect_timeout(args.scheduler_timeout, "--scheduler-timeout")
    return {"tile_size": None if tile == "none" else tile, "batch_size": batch, "device": args.device,
            "threshold": threshold, "tta": args.tta, **border}


def _compute(kind: str, data, model, model_ref, out, client, progress, options) -> None:
    """Run the engine ('labels' or 'probabilities') over ``data`` into ``out``.

    Locally the engine writes each finished slice into ``out``; with a dask.distributed
    client, tasks (one per slice chunk) write their chunks into ``out`` (a zarr array).
    """
    if client is None:
        from ..inference import iter_predict, iter_segment

        run_engine = iter_segment if kind == "labels" else iter_predict
        for _event in run_engine(data, model, out=out, progress=progress, **options):
            pass
        return
    from ..distributed import store
    from ..inference import predict, segment

    lazy = (segment if kind == "labels" else predict)(data, model_ref, **options)
    store(lazy, out, client=client, progress=progress)


def _labels_from_probabilities(probs, out, rule) -> None:
    """Labels slice by slice from stored probabilities (the network ran once)."""
    import numpy as np

    for index in np.ndindex(*out.shape[:-2]):
        out[index] = rule.labels(np.asarray(probs[(slice(None), *index)]))


def _layout(image, src, model, args) -> dict:
    """Channel axis, labels shape and axes, the Z and time axes the file's axes name
    (`common.stack_axes`: a z-context model reads along Z only, never across T, and T is
    never linked), and the output metadata of one input."""
    channel_axis, axes, known = channel_layout(image, args.channel_axis, args.axes)
    channel = check_model_channels(src, image, channel_axis, axes, model, args.channel)
    keep = [i for i in range(image.ndim) if i != channel_axis]
    label_axes = "".join(axes[i] for i in keep)
    scale = {k: v for k, v in image.scale.items() if known and k in label_axes}
    units = {k: v for k, v in image.units.items() if k in scale}
    meta = {"scale": scale, "units": units, "overwrite": args.overwrite,
            "compression": None if args.compression == "none" else args.compression}
    return {"channel_axis": channel_axis, "channel": channel, "shape": tuple(image.shape[i] for i in keep),
            "axes": label_axes, "meta": meta, **stack_axes(axes, channel_axis)}


def _write(data, dst, probs_dst, model, model_ref, args, options, client, bar, layout):
    """Compute and write one input's outputs; the labels' dtype."""
    from .. import io
    from ..labels import LabelRule

    if args.decoding is not None:
        return _write_instances(data, dst, probs_dst, model, model_ref, args.decoding, options, client, bar, layout)
    shape, axes, meta = layout["shape"], layout["axes"], layout["meta"]
    rule = LabelRule.for_model(model, options["threshold"])
    if probs_dst is not None:
        prob_options = {k: v for k, v in options.items() if k != "threshold"}
        with io.create_image(probs_dst, (model.out_channels, *shape), "float32", axes="C" + axes,
                             **meta) as probs:
            _compute("probabilities", data, model, model_ref, probs, client, bar, prob_options)
            with io.create_image(dst, shape, rule.dtype, axes=axes, labels=True, **meta) as out:
                _labels_from_probabilities(probs, out, rule)
    else:
        with io.create_image(dst, shape, rule.dtype, axes=axes, labels=True, **meta) as out:
            _compute("labels", data, model, model_ref, out, client, bar, options)
    return rule.dtype


def _write_instances(data, dst, probs_dst, model, model_ref, decoding, options, client, bar, layout):
    """Instance labels with bounded memory; their dtype.

    The semantic labels (an instance model's marker maps) go slice by slice into an
    on-disk scratch array beside ``dst`` (`io.scratch_array`), become instance ids there
    in place (`InstanceOptions.apply`: a slice and its neighbour held), and ``dst`` is
    written from it slice by slice in the smallest dtype holding the ids (known only
    then). However large the stack, a few slices are in memory; ``dst`` appears only when
    complete, and the scratch array is removed however the run ends (Ctrl-C included).
    """
    import numpy as np

    from .. import io
    from ..labels import smallest_uint
    from ..postprocess import labels_rule

    shape, axes, meta = layout["shape"], layout["axes"], layout["meta"]
    rule = labels_rule(model, decoding, options["threshold"])
    if decoding.markers:
        options = dict(options, markers=decoding.marker_threshold)
    leads = list(np.ndindex(*shape[:-2]))
    with io.scratch_array(dst, shape, np.uint32 if np.prod(shape) < 2**32 else np.uint64) as work:
        if probs_dst is not None:
            prob_options = {k: v for k, v in options.items() if k != "threshold"}
            with io.create_image(probs_dst, (model.out_channels, *shape), "float32", axes="C" + axes,
                                 **meta) as probs:
                _compute("probabilities", data, model, model_ref, probs, client, bar, prob_options)
                _labels_from_probabilities(probs, work, rule)
        elif client is None:
            _compute("labels", data, model, model_ref, work, None, bar, options)
        else:
            from ..distributed import store
            from ..inference.dask_tasks import dask_apply

            store(dask_apply(data, model_ref, mode="labels", options=options), work, client=client, progress=bar)
        decoding.apply(work, layout["time_axes"], out=work)  # a file's T axes: never linked
        dtype = smallest_uint(max((int(np.max(work[lead], initial=0)) for lead in leads), default=0))
        with io.create_image(dst, shape, dtype, axes=axes, labels=True, **meta) as out:
            for lead in leads:
                out[lead] = np.asarray(work[lead]).astype(dtype, copy=False)
    return dtype


_FLAGS = {"`smoothing`": "--smoothing", "`link_overlap`": "--link-overlap", "`marker_threshold`": "--marker-threshold",
          "`min_size`": "--min-size", "`min_distance`": "--min-distance", "`z_split`": "--z-split"}


def _instance_numbers(args) -> None:
    """The decoding options, checked (before any work): ``args.decoding`` (an
    `InstanceOptions`, or None without --instances)."""
    from ..postprocess import InstanceOptions
    from ..validation import parse_int

    if args.min_size is not None:
        args.min_size = parse_int("--min-size", args.min_size, 0)
    args.min_distance = parse_int("--min-distance", args.min_distance, 1)
    for name in ("smoothing", "link_overlap", "marker_threshold", "z_split"):
        flag = "--" + name.replace("_", "-")
        if getattr(args, name) is None:
            continue
        try:
            setattr(args, name, float(getattr(args, name)))
        except ValueError:
            raise ValueError(f"{flag} must be a number, got {getattr(args, name)!r}") from None
    args.decoding = None
    if args.instances is None:
        given = [f for f, v, d in (("--min-size", args.min_size, None), ("--per-slice", args.per_slice, False),
                                   ("--min-distance", args.min_distance, DEFAULT_MIN_DISTANCE),
                                   ("--smoothing", args.smoothing, DEFAULT_SMOOTHING),
                                   ("--marker-threshold", args.marker_threshold, None),
                                   ("--link-overlap", args.link_overlap, DEFAULT_LINK_OVERLAP),
                                   ("--z-split", args.z_split, DEFAULT_Z_SPLIT)) if v != d]
        if given:
            what = "filters instances" if given[0] == "--min-size" else "is an instance option"
            raise ValueError(f"{given[0]} {what}: add --instances")
        return
    try:
        args.decoding = InstanceOptions(args.instances, min_size=args.min_size, min_distance=args.min_distance,
                                        smoothing=args.smoothing, marker_threshold=args.marker_threshold,
                                        link_overlap=args.link_overlap, z_split=args.z_split,
                                        ndim=2 if args.per_slice else None)
    except ValueError as err:
        message = str(err)
        for name, flag in _FLAGS.items():
            message = message.replace(name, flag)
        raise ValueError(message) from None


def _predict_file(src, dst, probs_dst, model, model_ref, args, options, client) -> None:
    import time
    import zlib

    import numpy as np

    from .. import io
    from ..validation import parse_int

    t0 = time.perf_counter()
    try:
        with io.read_image(src, axes=args.axes) as image:
            layout = _layout(image, src, model, args)
            options = dict(options, channel_axis=layout["channel_axis"], channel=layout["channel"],
                           z_axis=layout["z_axis"])
            data, unit = image.data, "tile"
            if client is not None:
                slices = parse_int("--chunk-slices", args.chunk_slices, 1)
                data, unit = io.as_dask(image, slices_per_chunk=slices), "chunk"
            bar = TileProgress(src.name, unit, args.quiet)
            try:
                dtype = _write(data, dst, probs_dst, model, model_ref, args, options, client, bar, layout)
            finally:
                bar.close()
    except zlib.error as err:  # a damaged compressed TIFF page, found when it is read
        raise OSError(f"cannot read {str(src)!r}: damaged compressed data ({err})") from err
    seconds = time.perf_counter() - t0
    print(f"{src} -> {dst} ({' x '.join(map(str, layout['shape']))} {np.dtype(dtype)}, axes {layout['axes']}) "
          f"in {seconds:.1f} s" + (f"; probabilities -> {probs_dst}" if probs_dst is not None else ""))


def run(args) -> int:
    import contextlib
    from pathlib import Path

    from .. import io
    from ..inference import ModelSource

    options = engine_options(args)
    _instance_numbers(args)
    inputs = io.find_images(args.inputs)
    model = load_cli_model(args.model, args.trust)
    if args.decoding is not None:
        args.decoding = args.decoding.resolve(model)  # 'auto': the model's own decoding
    jobs = plan_outputs(inputs, args)
    source = str(Path(args.model).resolve()) if Path(args.model).is_file() else args.model
    model_ref = ModelSource(source, trust=args.trust)
    if args.scheduler is not None:
        from ..distributed import connect

        try:
            scheduler = connect(args.scheduler, timeout=args.scheduler_timeout)
        except ImportError as err:
            raise ValueError(str(err)) from err
    else:
        scheduler = contextlib.nullcontext()
    with scheduler as client:
        for src, dst, probs in jobs:
            _predict_file(src, dst, probs, model, model_ref, args, options, client)
    return 0
