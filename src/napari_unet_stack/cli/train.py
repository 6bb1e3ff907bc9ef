"""``unet-stack train``: train (or fine-tune, or resume) a model and save it.

The defaults are the library's (`training.settings.TrainSettings` and `ModelSettings`), the
ones the Train widget shows; architecture names are `models.ARCHITECTURES`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..models import ARCHITECTURES, DOWNSAMPLING, architecture_name
from ..training.settings import DEFAULT_LR, DEFAULT_STEPS, ModelSettings, TrainSettings
from .common import (
    DEVICE_HELP,
    add_image_options,
    add_quiet,
    channel_layout,
    load_cli_model,
    parse_channel,
    stack_axes,
)
from .outputs import InputSet

__all__ = ["add_parser", "run"]


def _architecture(text: str) -> str:
    """``--arch`` value: an `ARCHITECTURES` name, any case (or the old ``unet`` / ``unetpp``)."""
    try:
        return architecture_name(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(ARCHITECTURES)})"
        ) from None


def _z_context(text: str) -> int:
    """``--z-context`` value: an int >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an int >= 0 (neighbouring slices on each side), got {text!r}")
    return value


def _add_network_options(p, net: ModelSettings) -> None:
    """The options of a new network: architecture, width, depth, down-sampling, z context."""
    p.add_argument("--arch", "--architecture", dest="architecture", type=_architecture,
                   default=net.architecture, metavar="{" + ",".join(ARCHITECTURES) + "}",
                   help=f"new network: UNet, or NestedUNet (UNet++ with deep supervision); any case "
                        f"(default {net.architecture})")
    p.add_argument("--base-channels", type=int, default=None, metavar="N",
                   help=f"new network width (default {net.base_channels})")
    p.add_argument("--depth", type=int, default=None, metavar="N", help=f"new network depth (default {net.depth})")
    p.add_argument("--downsampling", choices=DOWNSAMPLING, default=None,
                   help="new UNet: 2x2 max-pooling down, or strided 3x3 convolutions down and 3x3 "
                        f"transposed convolutions up (default {net.downsampling})")
    p.add_argument("--z-context", type=_z_context, default=None, metavar="K",
                   help="2.5D input: each slice is read with its K neighbouring slices above and below "
                        "along Z (the last stack axis that is not T; ends repeated, never across T; "
                        "without such an axis each slice is its own neighbour) as extra input channels, "
                        "(2K + 1) x the image's; predict reads them the same way. Default: --model's "
                        "own, else 0 (2D). A model's own z context cannot change")


def add_parser(sub) -> None:
    net, fit = ModelSettings(), TrainSettings()
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
    _add_network_options(p, net)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--steps", type=int, metavar="N", help=f"optimizer steps (default {DEFAULT_STEPS})")
    group.add_argument("--epochs", type=float, metavar="E", help="passes over the training pixels instead")
    p.add_argument("--patch-size", type=int, default=fit.patch_size, metavar="PX", help=f"default {fit.patch_size}")
    p.add_argument("--batch-size", type=int, default=fit.batch_size, metavar="N", help=f"default {fit.batch_size}")
    p.add_argument("--lr", type=float, default=None,
                   help=f"AdamW learning rate (default {DEFAULT_LR:g}; with --resume, the checkpoint's)")
    p.add_argument("--val-fraction", type=float, default=fit.val_fraction, metavar="F",
                   help=f"share of slices held out for validation (default {fit.val_fraction:g}; 0 disables)")
    p.add_argument("--no-augment", action="store_true", help="random crops only")
    p.add_argument("--sparse", action="store_true", help="0 = unlabelled; painted value v = class v-1")
    p.add_argument("--instances", action="store_true",
                   help="LABELS are instance labels (each object its own id; with --sparse 0 = unlabelled, "
                        "1 = background, ids >= 2 objects): train background / interior / boundary, so that "
                        "predict --instances separates touching objects")
    p.add_argument("--boundary-width", type=int, default=fit.boundary_width, metavar="PX",
                   help=f"with --instances: the boundary band inside each object (default {fit.boundary_width})")
    p.add_argument("--contact-weight", type=float, default=fit.contact_weight, metavar="W",
                   help=f"with --instances: loss weight of the boundary pixels where objects touch "
                        f"(default {fit.contact_weight:g}; 1: none)")
    p.add_argument("--no-tune-decoding", action="store_true",
                   help="with --instances: keep the model's foreground and marker thresholds instead of "
                        "choosing them on the validation slices (dense labels, enough objects)")
    add_image_options(p, "IMAGES")
    p.add_argument("--class-names", metavar="A,B,...", help="one name per output channel")
    p.add_argument("--device", default=fit.device, help=DEVICE_HELP)
    p.add_argument("--seed", type=int, default=fit.seed)
    p.add_argument("--trust", action="store_true", help="allow --model files that need unpickling code")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    add_quiet(p, "--no-progress")
    p.set_defaults(func=run)


def _one_channel(data, channel_axis, choice, path):
    """``data`` reduced to the ``--channel`` choice (`channels.pick_channels`), no channel axis."""
    import numpy as np

    from ..channels import check_channel, pick_channels

    n = 1 if channel_axis is None else data.shape[channel_axis]
    choice = check_channel(choice, n, None, channel_axis=channel_axis, where=repr(str(path)))
    return pick_channels(np.moveaxis(data, channel_axis, 0), choice)[0]


def _read_pairs(args):
    """(images, labels, channel_axis, image paths, the Z axis of each image) read into
    memory, paired by sorted order; with ``--channel`` the images hold that one channel
    (channel_axis None). Each image's Z axis is the one a z-context model reads its
    neighbours along, found as predict finds it (`common.stack_axes`: the Z letter's;
    None without one, each slice its own neighbour), so files of different axis orders
    train together."""
    import numpy as np

    from .. import io

    channel = parse_channel(args.channel)
    image_paths, label_paths = io.find_images(args.images), io.find_images(args.labels)
    if len(image_paths) != len(label_paths):
        raise ValueError(
            f"IMAGES ({len(image_paths)} files) and LABELS ({len(label_paths)} files) must pair up one to one"
        )
    if args.output in InputSet([*image_paths, *label_paths]):
        raise ValueError(f"output {args.output!r} is an input; choose another -o/--output")
    images, labels, axes, z_axes = [], [], set(), []
    for ipath, lpath in zip(image_paths, label_paths, strict=True):
        with io.read_image(ipath, axes=args.axes) as img:
            channel_axis, letters, _ok = channel_layout(img, args.channel_axis, args.axes)
            data = np.asarray(img.data)
        if channel is not None:
            data = _one_channel(data, channel_axis, channel, ipath)
            letters, channel_axis = "".join(a for i, a in enumerate(letters) if i != channel_axis), None
        z_axes.append(stack_axes(letters, channel_axis)["z_axis"])
        images.append(data)
        with io.read_image(lpath) as lab:
            labels.append(np.asarray(lab.data))
        axes.add(channel_axis)
    if len(axes) > 1:
        raise ValueError(f"IMAGES disagree on the channel axis ({sorted(map(str, axes))}); pass --channel-axis")
    return images, labels, axes.pop(), image_paths, z_axes


def _z_checked(model, z_context):
    """``model`` (from --model), after checking that ``--z-context`` is its own."""
    from ..zcontext import z_context_of

    own = z_context_of(model)
    if z_context is not None and z_context != own:
        raise ValueError(f"--z-context {z_context} but --model reads {own} neighbouring slice(s) on each side "
                         f"(its meta['z_context']): a model's z context cannot change; leave --model out to "
                         f"train a new one")
    return model


def _start_model(args, images, labels, channel_axis):
    """The checkpoint named by ``--model``, else a new network for the data (seeded)."""
    import torch

    from ..training import classes_for, default_model
    from ..zcontext import KEY as Z_CONTEXT

    if args.model is not None:
        if args.base_channels is not None or args.depth is not None or args.downsampling is not None:
            raise ValueError(
                "--base-channels / --depth / --downsampling build a new network; they do not apply with --model"
            )
        return _z_checked(load_cli_model(args.model, args.trust), args.z_context)
    # the training rule: binary 0/v masks, bounded; an instance model has 3 classes
    n_classes = 3 if args.instances else classes_for(labels, sparse=args.sparse)
    z = args.z_context or 0  # a z-context model takes the channels of 2z + 1 slices
    in_channels = (1 if channel_axis is None else images[0].shape[channel_axis]) * (2 * z + 1)
    given = (("base_channels", args.base_channels), ("depth", args.depth), ("downsampling", args.downsampling))
    kwargs = {k: v for k, v in given if v is not None}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = default_model(in_channels, n_classes, architecture=args.architecture, **kwargs)
    if z:
        model.meta[Z_CONTEXT] = z
    return model


class _TrainProgress:
    """``train``'s ``progress(step, total, info)`` as a tqdm bar with the loss and last val Dice."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.bar, self.last_val = quiet, None, {}

    def __call__(self, step, total, info) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="training", unit="step", disable=True if self.quiet else None)
        if "val_dice" in info:
            self.last_val.update(info)
        postfix = {"loss": f"{info['loss']:.4f}"} if "loss" in info else {}
        if self.last_val:
            painted = self.last_val.get("val_scope") == "painted pixels"
            postfix["painted-pixel val Dice" if painted else "val Dice"] = f"{self.last_val['val_dice']:.3f}"
            if "val_instance_f1" in self.last_val:
                postfix["val F1"] = f"{self.last_val['val_instance_f1']:.3f}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _summary(model, history, seconds: float) -> str:
    from ..training.decoding_choice import describe_choice

    decoding = describe_choice(model)
    return _val_summary(model, history, seconds) + (f"\n{decoding}" if decoding else "")


def _val_summary(model, history, seconds: float) -> str:
    prov = model.meta.get("provenance", {})
    val = prov.get("val") or {}
    summary = f"trained {len(history['step'])} steps in {seconds:.1f} s"
    if val.get("dice") is None:
        return summary + "; no validation set (val Dice not measured)"
    per_class = ", ".join(f"{k} {v:.3f}" for k, v in (val.get("dice_per_class") or {}).items() if v is not None)
    objects = f", instance F1 {val['instance_f1']:.3f}" if val.get("instance_f1") is not None else ""
    if val.get("scope") == "painted pixels":
        return summary + (f"; best painted-pixel val Dice {val['dice']:.3f} at step {prov.get('best_step')} "
                          f"({per_class}{objects}): held-out painted pixels only, not a full-image score")
    return summary + f"; best val Dice {val['dice']:.3f} at step {prov.get('best_step')} ({per_class}{objects})"


def _check_output(out, overwrite: bool) -> None:
    """Before any training: ``out`` names a file in an existing, writable folder, and is
    new unless ``overwrite``."""
    from ..io import atomic

    if out.is_dir():
        raise IsADirectoryError(f"-o/--output {str(out)!r} is a folder; name the checkpoint file, "
                                f"e.g. {str(out / 'model.pt')!r}")
    if os.path.lexists(out) and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    atomic.check_target(out, overwrite)
    atomic.check_writable(out)


def _fallback_names(out):
    """Where a model whose save failed is kept instead: the temporary folder, then here."""
    import tempfile
    import time

    name = f"unet-stack-{out.stem}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}{out.suffix or '.pt'}"
    return [Path(tempfile.gettempdir()) / name, Path.cwd() / name]


def _save(model, out) -> None:
    """`save_model` to ``out``; if that fails (a full disk, a folder gone), the model is
    saved to a fallback file and the OSError raised names it."""
    from ..checkpoints import save_model
    from ..validation import first_line

    try:
        save_model(model, out)
        return
    except (OSError, RuntimeError) as err:  # torch reports a failed write as RuntimeError
        reason = first_line(err)
    tried = []
    for fallback in _fallback_names(out):
        tried.append(str(fallback))
        try:
            save_model(model, fallback)
        except (OSError, RuntimeError):
            continue
        raise OSError(f"cannot save {str(out)!r}: writing failed ({reason}; is the disk full?); the trained "
                      f"model is kept in {str(fallback)!r}")
    raise OSError(f"cannot save {str(out)!r}: writing failed ({reason}; is the disk full?); could not keep "
                  f"the trained model either (tried {', '.join(tried)})")


def run(args) -> int:
    import time

    from ..training import train

    out = Path(args.output)
    _check_output(out, args.overwrite)
    if args.resume and args.model is None:
        raise ValueError("--resume needs --model: the checkpoint whose training to continue")
    class_names = None if args.class_names is None else [c.strip() for c in args.class_names.split(",")]
    images, labels, channel_axis, paths, z_axes = _read_pairs(args)
    model = _start_model(args, images, labels, channel_axis)
    print(f"training {model.describe()} on {len(images)} image(s): "
          + ", ".join(f"{p.name} {' x '.join(map(str, a.shape))}" for p, a in zip(paths, images, strict=True)))
    progress = _TrainProgress(args.quiet)
    t0 = time.perf_counter()
    try:
        model, history = train(
            images, labels, model, resume=args.resume, steps=args.steps, epochs=args.epochs,
            patch_size=args.patch_size, batch_size=args.batch_size, lr=args.lr,
            val_fraction=args.val_fraction, augment=not args.no_augment, sparse=args.sparse,
            channel_axis=channel_axis, class_names=class_names, device=args.device, seed=args.seed,
            instances=args.instances, boundary_width=args.boundary_width,
            contact_weight=args.contact_weight, tune_decoding=not args.no_tune_decoding, z_context=args.z_context,
            z_axis=z_axes, progress=progress,
        )
    finally:
        progress.close()
    seconds = time.perf_counter() - t0
    _save(model, out)
    print(_summary(model, history, seconds))
    print(f"saved {out}")
    return 0
