"""`unet-stack` command line: a thin layer over the public API.

Each subcommand is an ``_add_<name>(subparsers)`` function that registers its parser and
sets ``func``; errors derived from ``UserFacingError`` types print as one line and exit 2
(``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import sys


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="print versions and the devices torch sees")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args) -> int:
    import platform

    import numpy
    import torch

    from . import __version__

    print(f"napari-unet-stack {__version__}")
    print(f"python {platform.python_version()}, numpy {numpy.__version__}, torch {torch.__version__}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            print(f"device cuda:{i}: {torch.cuda.get_device_name(i)}")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        print("device mps: available")
    print(f"device cpu: {torch.get_num_threads()} threads")
    return 0


_SUBCOMMANDS = [_add_info]


# ============================================================================ predict / models / demo
# (input/output in `io`, lazy and distributed runs in `_dask` / `distributed`; only wiring here)

#: the model `predict` and `demo` use when none is named
DEFAULT_MODEL = "nuclei-unet"
#: output extension for derived names, by input format
_DERIVED_EXT = {"tiff": ".tif", "ome-tiff": ".ome.tif", "zarr": ".zarr", "ome-zarr": ".ome.zarr", "npy": ".npy"}


class _TileProgress:
    """The engine's ``progress(done, total)`` callback as a tqdm bar on stderr.

    The bar shows only on a terminal (tqdm's ``disable=None``) and never with ``--quiet``.
    """

    def __init__(self, desc: str, unit: str = "tile", quiet: bool = False) -> None:
        self.desc, self.unit, self.quiet = desc, unit, quiet
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, leave=False,
                            disable=True if self.quiet else None)
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _int_option(flag: str, text, minimum: int | None = None, words: tuple[str, ...] = ()):
    if isinstance(text, str) and text.lower() in words:
        return text.lower()
    try:
        value = int(text)
    except (TypeError, ValueError):
        choices = "".join(f" or '{w}'" for w in words)
        raise ValueError(f"{flag} must be an integer{choices}, got {text!r}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{flag} must be >= {minimum}, got {value}")
    return value


def _engine_options(args) -> dict:
    tile = _int_option("--tile-size", args.tile_size, 1, ("auto", "none"))
    batch = _int_option("--batch-size", args.batch_size, 1, ("auto",))
    try:
        threshold = float(args.threshold)
    except ValueError:
        raise ValueError(f"--threshold must be a number in [0, 1], got {args.threshold!r}") from None
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"--threshold must be in [0, 1], got {threshold}")
    if args.scheduler is None:
        from .devices import resolve_device

        resolve_device(args.device)  # an unavailable device fails here, before any output exists
    return {"tile_size": None if tile == "none" else tile, "batch_size": batch, "device": args.device,
            "threshold": threshold}


def _load_cli_model(source: str, trust: bool):
    from .checkpoints import list_models, load_model

    try:
        return load_model(source, trust=trust)
    except FileNotFoundError:
        bundled = ", ".join(list_models()) or "none installed"
        raise FileNotFoundError(
            f"unknown model {source!r}: not a checkpoint file nor a bundled model "
            f"(bundled: {bundled}; see `unet-stack models`)"
        ) from None


def _add_predict(sub) -> None:
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
    p.add_argument("--channel-axis", default=None, metavar="AXIS",
                   help="axis holding the channels (default: the file's C axis, if it names one)")
    p.add_argument("--tile-size", default="auto", metavar="PX", help="tile core size, 'auto' or 'none'")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--batch-size", default="auto", metavar="N", help="tiles per forward pass, or 'auto'")
    p.add_argument("--instances", action="store_true",
                   help="instance labels (connected components; needs the stack's labels in memory)")
    p.add_argument("--min-size", default="0", metavar="PX", help="with --instances: drop smaller objects")
    p.add_argument("--threshold", default="0.5", help="foreground threshold of sigmoid models")
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
    p.add_argument("--chunk-slices", default="1", metavar="N", help="with --scheduler: slices per task")
    p.add_argument("--trust", action="store_true",
                   help="allow checkpoints that unpickle arbitrary Python objects (trusted files only)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_predict)


def _plan_outputs(inputs, args) -> list:
    """(input, labels path, probabilities path or None) per input, checked before any work."""
    import os
    from pathlib import Path

    from . import io

    def is_folder(text: str) -> bool:
        path = Path(text)
        return text.endswith(("/", os.sep)) or (
            path.is_dir() and not io._is_zarr_dir(path) and io._kind_of(path) is None)

    for flag, text in (("-o/--output", args.output), ("--probabilities", args.probabilities)):
        if text is not None and not text.strip():
            raise ValueError(f"{flag} is empty")  # an unset shell variable: not "here"
    out = Path(args.output)
    to_folder = len(inputs) > 1 or is_folder(args.output)
    probs_to_folder = bool(args.probabilities) and (len(inputs) > 1 or is_folder(args.probabilities))
    for text, folder in ((args.output, to_folder), (args.probabilities, probs_to_folder)):
        if folder and (Path(text).is_file() or io._is_zarr_dir(Path(text))
                       or (io._kind_of(Path(text)) is not None and not Path(text).is_dir())):
            raise ValueError(
                f"{len(inputs)} inputs need {text!r} to be a folder (one output per input)"
            )
    jobs = []
    for src in inputs:
        ext = f".{args.format}" if args.format else _DERIVED_EXT.get(io._kind_of(src) or "zarr", ".zarr")
        stem = io.stem_of(src)
        dst = out / f"{stem}_labels{ext}" if to_folder else out
        probs = None
        if args.probabilities:
            probs = Path(args.probabilities)
            if probs_to_folder:
                probs = probs / f"{stem}_probabilities{ext}"
        for path in (dst, probs):
            if path is not None:
                io.output_format(path)
        jobs.append((src, dst, probs))
    seen: dict[str, str] = {}
    sources = {os.path.abspath(src) for src in inputs}
    for src, *targets in jobs:
        for path in targets:
            if path is None:
                continue
            key = os.path.abspath(path)
            if key in seen:
                raise ValueError(f"{str(src)!r} and {seen[key]!r} would both write {str(path)!r}")
            if key in sources:
                raise ValueError(f"output {str(path)!r} is an input; choose another OUTPUT")
            seen[key] = str(src)
            if os.path.lexists(path) and not args.overwrite:
                raise FileExistsError(f"{str(path)!r} exists; pass --overwrite to replace it")
    for _src, dst, probs in jobs:
        for path, folder in ((dst, to_folder), (probs, probs_to_folder)):
            if path is None:
                continue
            if folder:
                path.parent.mkdir(parents=True, exist_ok=True)
            elif not path.parent.is_dir():
                raise FileNotFoundError(f"output folder {str(path.parent)!r} does not exist")
    return jobs


def _channel_layout(image, option) -> tuple[int | None, str, bool]:
    """(channel axis, axes, whether the file's axes and pixel sizes hold) for an input."""
    from . import io

    ndim = image.ndim
    channel_axis = image.channel_axis
    if option is not None:
        channel_axis = _int_option("--channel-axis", option)
        if not -ndim <= channel_axis < ndim:
            raise ValueError(f"--channel-axis {channel_axis} is out of range for an image of shape {image.shape}")
        channel_axis %= ndim
    axes = image.axes
    if axes is not None and (channel_axis is None or axes[channel_axis] == "C"):
        return channel_axis, axes, True
    return channel_axis, io.default_axes(ndim, channel_axis), False


def _compute(kind: str, data, model, model_ref, out, client, progress, options) -> None:
    """Run the engine ('labels' or 'probabilities') over ``data`` into ``out``.

    Locally the engine writes each finished slice into ``out``; with a dask.distributed
    client, tasks (one per slice chunk) write their chunks into ``out`` (a zarr array).
    """
    if client is None:
        from .inference import iter_predict, iter_segment

        run = iter_segment if kind == "labels" else iter_predict
        for _event in run(data, model, out=out, progress=progress, **options):
            pass
        return
    from .distributed import store
    from .inference import predict, segment

    lazy = (segment if kind == "labels" else predict)(data, model_ref, **options)
    store(lazy, out, client=client, progress=progress)


def _labels_from_probabilities(probs, out, activation: str, threshold: float, values) -> None:
    """Labels slice by slice from stored probabilities (the network ran once)."""
    import numpy as np

    from .postprocess import probabilities_to_classes

    for index in np.ndindex(*out.shape[:-2]):
        p = np.asarray(probs[(slice(None), *index)])
        labels = values[probabilities_to_classes(p, activation, threshold)]
        labels[np.isnan(p).any(axis=0)] = 0
        out[index] = labels.astype(out.dtype, copy=False)


def _predict_one(src, dst, probs_dst, model, model_ref, args, options, client) -> None:
    import zlib

    try:
        _predict_file(src, dst, probs_dst, model, model_ref, args, options, client)
    except zlib.error as err:  # a damaged compressed TIFF page, found when it is read
        raise OSError(f"cannot read {str(src)!r}: damaged compressed data ({err})") from err


def _predict_file(src, dst, probs_dst, model, model_ref, args, options, client) -> None:
    import time

    import numpy as np

    from . import io
    from .postprocess import instance_labels, label_values, smallest_uint

    t0 = time.perf_counter()
    min_size = _int_option("--min-size", args.min_size, 0)
    with io.read_image(src) as image:
        channel_axis, axes, known = _channel_layout(image, args.channel_axis)
        n_channels = 1 if channel_axis is None else image.shape[channel_axis]
        if n_channels != model.in_channels:
            hint = " (name the channel axis with --channel-axis)" if channel_axis is None else ""
            raise ValueError(
                f"{str(src)!r}: the model expects {model.in_channels} channel(s) but the image "
                f"(shape {image.shape}, axes {axes}) has {n_channels}{hint}"
            )
        keep = [i for i in range(image.ndim) if i != channel_axis]
        shape = tuple(image.shape[i] for i in keep)
        label_axes = "".join(axes[i] for i in keep)
        scale = {k: v for k, v in image.scale.items() if known and k in label_axes}
        units = {k: v for k, v in image.units.items() if k in scale}
        meta = {"scale": scale, "units": units, "overwrite": args.overwrite,
                "compression": None if args.compression == "none" else args.compression}
        values = label_values(model.out_channels, model.activation, model.meta.get("class_values"))
        dtype = smallest_uint(int(values.max()))
        options = dict(options, channel_axis=channel_axis)
        prob_options = {k: v for k, v in options.items() if k != "threshold"}
        threshold = options["threshold"]
        data = image.data
        unit = "tile"
        if client is not None:
            data = io.as_dask(image, slices_per_chunk=_int_option("--chunk-slices", args.chunk_slices, 1))
            unit = "chunk"
        bar = _TileProgress(src.name, unit, args.quiet)
        try:
            if probs_dst is not None:
                with io.create_image(probs_dst, (model.out_channels, *shape), np.float32,
                                     axes="C" + label_axes, **meta) as probs:
                    _compute("probabilities", data, model, model_ref, probs, client, bar, prob_options)
                    semantic = np.zeros(shape, dtype) if args.instances else None
                    if semantic is not None:
                        _labels_from_probabilities(probs, semantic, model.activation, threshold, values)
                    else:
                        with io.create_image(dst, shape, dtype, axes=label_axes, **meta) as out:
                            _labels_from_probabilities(probs, out, model.activation, threshold, values)
            elif args.instances:
                semantic = np.zeros(shape, dtype)
                if client is None:
                    _compute("labels", data, model, model_ref, semantic, None, bar, options)
                else:
                    from .inference import segment

                    semantic = client.compute(segment(data, model_ref, **options)).result()
            else:
                with io.create_image(dst, shape, dtype, axes=label_axes, **meta) as out:
                    _compute("labels", data, model, model_ref, out, client, bar, options)
            if args.instances:
                labels = instance_labels(semantic, ndim=min(3, semantic.ndim), min_size=min_size)
                io.write_image(dst, labels, axes=label_axes, **meta)
                dtype = labels.dtype
        finally:
            bar.close()
    seconds = time.perf_counter() - t0
    print(f"{src} -> {dst} ({' x '.join(map(str, shape))} {np.dtype(dtype)}, axes {label_axes}) in {seconds:.1f} s"
          + (f"; probabilities -> {probs_dst}" if probs_dst is not None else ""))


def _cmd_predict(args) -> int:
    import contextlib
    from pathlib import Path

    from . import io
    from ._dask import ModelSource

    options = _engine_options(args)
    min_size = _int_option("--min-size", args.min_size, 0)
    if min_size and not args.instances:
        raise ValueError("--min-size filters instances: add --instances")
    inputs = io.find_images(args.inputs)
    model = _load_cli_model(args.model, args.trust)
    jobs = _plan_outputs(inputs, args)
    source = str(Path(args.model).resolve()) if Path(args.model).is_file() else args.model
    model_ref = ModelSource(source, trust=args.trust)
    if args.scheduler is not None:
        from .distributed import connect

        try:
            scheduler = connect(args.scheduler)
        except ImportError as err:
            raise ValueError(str(err)) from err
    else:
        scheduler = contextlib.nullcontext()
    with scheduler as client:
        for src, dst, probs in jobs:
            _predict_one(src, dst, probs, model, model_ref, args, options, client)
    return 0


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the bundled models")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args) -> int:
    from .checkpoints import list_models, load_model

    names = list_models()
    if not names:
        print("no bundled models are installed; pass a checkpoint file to --model")
        return 0
    width = max(map(len, names))
    for name in names:
        model = load_model(name)
        print(f"{name:<{width}}  {model.describe()}; classes: {', '.join(model.class_names)}")
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo", help="segment the held-out sample stack, score it and save labels + an overlay",
        description="What `make demo` runs: the default model on the held-out sample stack; prints "
                    "Dice against the ground truth and throughput; writes a labels TIFF and an overlay PNG.",
    )
    p.add_argument("--output-dir", default="demo_output", metavar="DIR", help="default ./demo_output")
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|PATH",
                   help=f"bundled model name or checkpoint (default: {DEFAULT_MODEL})")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)


def _demo_model(source: str):
    """(model, note): the requested model; an untrained UNet while the bundled one is missing."""
    from .checkpoints import list_models

    if source != DEFAULT_MODEL or DEFAULT_MODEL in list_models():
        return _load_cli_model(source, False), None
    import torch

    from .models import UNet

    torch.manual_seed(0)
    note = (f"note: the bundled model {DEFAULT_MODEL!r} is not installed yet; running a freshly built, "
            f"untrained UNet(base_channels=8, depth=3) instead (a real run of the whole pipeline; its "
            f"Dice means nothing)")
    return UNet(1, 2, base_channels=8, depth=3).eval(), note


def _demo_sample():
    """(name, image, semantic ground truth, note): the held-out sample, or a generated stack."""
    try:
        from .samples import load_sample

        sample = load_sample("nuclei_stack")
        return "nuclei_stack", sample.image, sample.labels, None
    except (ImportError, OSError, ValueError, KeyError):
        from .synthetic import nuclei_stack

        made = nuclei_stack((8, 128, 128), seed=2)
        return "generated_nuclei", made.image, made.labels, (
            "note: the shipped sample stack is not available; using a generated 8 x 128 x 128 stack"
        )


def _foreground_dice(pred, truth) -> float:
    import numpy as np

    p, t = np.asarray(pred) > 0, np.asarray(truth) > 0
    try:
        from .training.metrics import dice
    except ImportError:
        total = int(p.sum()) + int(t.sum())
        return 2.0 * int((p & t).sum()) / total if total else float("nan")
    return dice(p.astype(np.uint8), t.astype(np.uint8), classes=[1])[1]


def _write_overlay(path, image, labels, truth):
    """PNG of a few slices: prediction filled green, ground-truth outlines magenta (atomic)."""
    import os
    import uuid

    import numpy as np
    from skimage import io as skio
    from skimage.segmentation import find_boundaries

    stack = image if image.ndim == 3 else image[None]
    pred = labels if labels.ndim == 3 else labels[None]
    true = truth if truth.ndim == 3 else truth[None]
    n = stack.shape[0]
    panels = []
    for z in sorted({n // 4, n // 2, (3 * n) // 4}):
        lo, hi = np.percentile(stack[z], (1.0, 99.8))
        grey = np.clip((stack[z].astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1)
        rgb = np.repeat(grey[..., None], 3, axis=-1)
        fill = pred[z] > 0
        rgb[fill] = 0.6 * rgb[fill] + 0.4 * np.array([0.1, 1.0, 0.2])
        rgb[find_boundaries(true[z] > 0, mode="inner")] = (1.0, 0.15, 0.85)
        panels += [rgb, np.ones((rgb.shape[0], 4, 3))]
    montage = (np.concatenate(panels[:-1], axis=1) * 255).round().astype(np.uint8)
    tmp = path.parent / f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}.png"
    try:
        skio.imsave(tmp, montage, check_contrast=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _cmd_demo(args) -> int:
    import time
    from pathlib import Path

    import numpy as np

    from . import io
    from .inference import segment

    out_dir = Path(args.output_dir)
    model, model_note = _demo_model(args.model)
    name, image, truth, sample_note = _demo_sample()
    for note in (model_note, sample_note):
        if note:
            print(note)
    print(f"image: {name}, {' x '.join(map(str, image.shape))} {image.dtype}")
    print(f"model: {args.model if model_note is None else 'untrained UNet'}: {model.describe()}")
    info: dict = {}
    bar = _TileProgress(name, "tile", args.quiet)
    t0 = time.perf_counter()
    try:
        labels = segment(image, model, device=args.device, progress=bar, info=info)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    labels_path = io.write_image(out_dir / f"{name}_labels.tif", labels, axes="ZYX"[-labels.ndim:],
                                 overwrite=True)
    overlay_path = _write_overlay(out_dir / f"{name}_overlay.png", image, labels, truth)
    mpix = image.size / 1e6
    print(f"segmented {mpix:.2f} MPix in {seconds:.2f} s on {info.get('device', args.device)}: "
          f"{mpix / seconds:.2f} MPix/s")
    print(f"Dice (nuclei vs ground truth): {_foreground_dice(labels, truth):.3f}")
    print(f"labels:  {labels_path} ({np.dtype(labels.dtype)})")
    print(f"overlay: {overlay_path} (green: prediction, magenta: ground-truth outlines)")
    return 0


_SUBCOMMANDS.extend([_add_predict, _add_models, _add_demo])


# ============================================================================ train
def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train (or fine-tune) a model on images and label masks",
        description=(
            "Train a UNet / UNet++ on IMAGES and LABELS (files, folders or quoted glob patterns "
            "of TIFF, OME-TIFF, zarr or .npy; paired in sorted order) and save it with save_model. "
            "Dense labels: 0 = background, 1..K-1 = classes. --sparse: 0 = unlabelled, painted "
            "value v = class v-1."
        ),
    )
    p.add_argument("images", metavar="IMAGES", help="image file, folder or glob pattern")
    p.add_argument("labels", metavar="LABELS", help="label file, folder or glob pattern (same count)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.pt", help="checkpoint to write")
    p.add_argument("--model", metavar="NAME|PATH",
                   help="checkpoint or bundled model to fine-tune / resume (default: a new network)")
    p.add_argument("--resume", action="store_true",
                   help="continue the training that saved --model (optimizer, LR schedule, step count): "
                        "to its planned total, or --steps N more steps")
    p.add_argument("--architecture", choices=["unet", "unetpp"], default="unet",
                   help="new network: UNet, or UNet++ with deep supervision (default unet)")
    p.add_argument("--base-channels", type=int, default=None, metavar="N", help="new network width (default 16)")
    p.add_argument("--depth", type=int, default=None, metavar="N", help="new network depth (default 4)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--steps", type=int, metavar="N", help="optimizer steps (default 1000)")
    group.add_argument("--epochs", type=float, metavar="E", help="passes over the training pixels instead")
    p.add_argument("--patch-size", type=int, default=128, metavar="PX", help="default 128")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="default 8")
    p.add_argument("--lr", type=float, default=None,
                   help="AdamW learning rate (default 2e-3; with --resume, the checkpoint's)")
    p.add_argument("--val-fraction", type=float, default=0.15, metavar="F",
                   help="share of slices held out for validation (default 0.15; 0 disables)")
    p.add_argument("--no-augment", action="store_true", help="random crops only")
    p.add_argument("--sparse", action="store_true", help="0 = unlabelled; painted value v = class v-1")
    p.add_argument("--channel-axis", default=None, metavar="AXIS",
                   help="axis of IMAGES holding channels (default: the file's C axis, else none)")
    p.add_argument("--class-names", metavar="A,B,...", help="one name per output channel")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trust", action="store_true", help="allow --model files that need unpickling code")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _read_pairs(images_arg: str, labels_arg: str, channel_option):
    """(images, labels, channel_axis) read into memory, paired by sorted order."""
    import numpy as np

    from . import io

    image_paths, label_paths = io.find_images(images_arg), io.find_images(labels_arg)
    if len(image_paths) != len(label_paths):
        raise ValueError(
            f"IMAGES ({len(image_paths)} files) and LABELS ({len(label_paths)} files) must pair up one to one"
        )
    images, labels, axes = [], [], set()
    for ipath, lpath in zip(image_paths, label_paths, strict=True):
        with io.read_image(ipath) as img:
            channel_axis, _axes, _ok = _channel_layout(img, channel_option)
            images.append(np.asarray(img.data))
        with io.read_image(lpath) as lab:
            labels.append(np.asarray(lab.data))
        axes.add(channel_axis)
    if len(axes) > 1:
        raise ValueError(f"IMAGES disagree on the channel axis ({sorted(map(str, axes))}); pass --channel-axis")
    return images, labels, axes.pop(), image_paths


def _cmd_train(args) -> int:
    import time
    from pathlib import Path

    import numpy as np

    from .checkpoints import save_model
    from .training import default_model, train

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if args.resume and args.model is None:
        raise ValueError("--resume needs --model: the checkpoint whose training to continue")
    if args.class_names is not None:
        class_names = [c.strip() for c in args.class_names.split(",")]
    else:
        class_names = None
    images, labels, channel_axis, paths = _read_pairs(args.images, args.labels, args.channel_axis)
    if args.model is not None:
        if args.base_channels is not None or args.depth is not None:
            raise ValueError("--base-channels / --depth build a new network; they do not apply with --model")
        model = _load_cli_model(args.model, args.trust)
    else:
        top = max(int(np.max(lab)) if lab.size else 0 for lab in labels)
        n_classes = max(2, top if args.sparse else top + 1)
        in_channels = 1 if channel_axis is None else images[0].shape[channel_axis]
        kwargs = {k: v for k, v in (("base_channels", args.base_channels), ("depth", args.depth)) if v is not None}
        arch = "NestedUNet" if args.architecture == "unetpp" else "UNet"
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            model = default_model(in_channels, n_classes, architecture=arch, **kwargs)
    print(f"training {model.describe()} on {len(images)} image(s): "
          + ", ".join(f"{p.name} {' x '.join(map(str, a.shape))}" for p, a in zip(paths, images, strict=True)))

    bar = None
    last_val: dict = {}

    def progress(step, total, info):
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, desc="training", unit="step", disable=True if args.no_progress else None)
        if "val_dice" in info:
            last_val.update(info)
        postfix = {"loss": f"{info['loss']:.4f}"} if "loss" in info else {}
        if last_val:
            postfix["val Dice"] = f"{last_val['val_dice']:.3f}"
        bar.set_postfix(postfix, refresh=False)
        bar.update(step - bar.n)

    t0 = time.perf_counter()
    try:
        model, history = train(
            images, labels, model, resume=args.resume, steps=args.steps, epochs=args.epochs, patch_size=args.patch_size,
            batch_size=args.batch_size, lr=args.lr, val_fraction=args.val_fraction,
            augment=not args.no_augment, sparse=args.sparse, channel_axis=channel_axis,
            class_names=class_names, device=args.device, seed=args.seed, progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    save_model(model, out)
    prov = model.meta.get("provenance", {})
    val = prov.get("val") or {}
    summary = f"trained {len(history['step'])} steps in {seconds:.1f} s"
    if val.get("dice") is not None:
        per_class = ", ".join(f"{k} {v:.3f}" for k, v in (val.get("dice_per_class") or {}).items() if v is not None)
        summary += f"; best val Dice {val['dice']:.3f} at step {prov.get('best_step')} ({per_class})"
    else:
        summary += "; no validation set (val Dice not measured)"
    print(summary)
    print(f"saved {out}")
    return 0


_SUBCOMMANDS.append(_add_train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unet-stack", description="UNet / UNet++ segmentation of image stacks"
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


# exceptions that are the user's to fix: one line on stderr, exit code 2
_USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, FileNotFoundError, OSError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("unet-stack: interrupted", file=sys.stderr)
        return 130
    except _USER_ERRORS as err:
        if args.debug:
            raise
        print(f"unet-stack {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
