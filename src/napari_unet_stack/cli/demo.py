"""``unet-stack demo`` (what ``make demo`` runs): the default model on the held-out sample
stack, scored against its ground truth, with a labels TIFF and an overlay PNG.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .common import DEFAULT_MODEL, DEVICE_HELP, TileProgress, add_quiet, load_cli_model

__all__ = ["DemoJob", "add_parser", "demo_job", "run", "write_overlay"]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo", help="segment the held-out sample stack, score it and save labels + an overlay",
        description="What `make demo` runs: the default model on the held-out sample stack; prints "
                    "Dice against the ground truth and throughput; writes a labels TIFF and an overlay PNG.",
    )
    p.add_argument("--output-dir", default="demo_output", metavar="DIR", help="default ./demo_output")
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|PATH",
                   help=f"bundled model name or checkpoint (default: {DEFAULT_MODEL})")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_quiet(p)
    p.set_defaults(func=run)


def _demo_model(source: str):
    """(model, note): the requested model; an untrained UNet while the bundled one is missing."""
    from ..checkpoints import list_models

    if source != DEFAULT_MODEL or DEFAULT_MODEL in list_models():
        return load_cli_model(source, False), None
    import torch

    from ..models import UNet

    torch.manual_seed(0)
    note = (f"note: the bundled model {DEFAULT_MODEL!r} is not installed yet; running a freshly built, "
            f"untrained UNet(base_channels=8, depth=3) instead (a real run of the whole pipeline; its "
            f"Dice means nothing)")
    return UNet(1, 2, base_channels=8, depth=3).eval(), note


def _demo_sample():
    """(name, sample with image / labels / instances, note): the held-out sample, or a
    generated stack."""
    try:
        from ..samples import load_sample

        return "nuclei_stack", load_sample("nuclei_stack"), None
    except (ImportError, OSError, ValueError, KeyError):
        from ..synthetic import nuclei_stack

        return "generated_nuclei", nuclei_stack((8, 128, 128), seed=2), (
            "note: the shipped sample stack is not available; using a generated 8 x 128 x 128 stack"
        )


@dataclass
class DemoJob:
    """What the demo computes: the semantic labels, the model's own instances, and times."""

    labels: Any
    instances: Any
    seconds: float  # the network pass and the semantic labels (what the demo's MPix/s covers)
    decode_seconds: float  # the instance decoding from the same probabilities
    info: dict = field(default_factory=dict)


def demo_job(image, model, device="auto", progress=None, **options) -> DemoJob:
    """The demo's one network pass: `predict` once, then the semantic labels by the one rule
    (`LabelRule`: equal, bit for bit, to `segment`) and the model's own instance decoding
    (`decode_probabilities`: equal to ``segment(instances=True)``), both from those
    probabilities -- not two runs of the network. ``options`` go to `predict` (the
    benchmark's baseline: ``precision``, ``border``)."""
    from ..inference import predict
    from ..labels import LabelRule
    from ..postprocess import decode_probabilities

    info: dict = {}
    t0 = time.perf_counter()
    probabilities = predict(image, model, device=device, progress=progress, info=info, **options)
    labels = LabelRule.for_model(model, n_channels=int(probabilities.shape[0])).labels(probabilities)
    t1 = time.perf_counter()
    instances = decode_probabilities(probabilities, model)
    return DemoJob(labels, instances, t1 - t0, time.perf_counter() - t1, info)


def _instance_line(job: DemoJob, truth) -> str:
    """Objects of the model's own decoding (linked over Z) scored against the true ones."""
    from ..training.metrics import match_instances

    match = match_instances(job.instances, truth)
    return (f"instances (the model's decoding, linked over Z, from the same probabilities in "
            f"{job.decode_seconds:.2f} s): {match.n_pred} objects, {match.n_true} true; "
            f"F1 at IoU 0.5: {match.f1:.3f}")


def write_overlay(path, image, labels, truth):
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


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from .. import io
    from ..labels import model_threshold
    from ..training.metrics import foreground_dice

    out_dir = Path(args.output_dir)
    model, model_note = _demo_model(args.model)
    name, sample, sample_note = _demo_sample()
    image, truth = sample.image, sample.labels
    for note in (model_note, sample_note):
        if note:
            print(note)
    print(f"image: {name}, {' x '.join(map(str, image.shape))} {image.dtype}")
    print(f"model: {args.model if model_note is None else 'untrained UNet'}: {model.describe()}")
    bar = TileProgress(name, "tile", args.quiet)
    try:
        job = demo_job(image, model, device=args.device, progress=bar)
    finally:
        bar.close()
    labels = job.labels
    out_dir.mkdir(parents=True, exist_ok=True)
    labels_path = io.write_image(out_dir / f"{name}_labels.tif", labels, axes="ZYX"[-labels.ndim:],
                                 overwrite=True)
    overlay_path = write_overlay(out_dir / f"{name}_overlay.png", image, labels, truth)
    mpix = image.size / 1e6
    print(f"segmented {mpix:.2f} MPix in {job.seconds:.2f} s on {job.info.get('device', args.device)} "
          f"(network and labels): {mpix / job.seconds:.2f} MPix/s")
    own = "the model's own" if model.meta.get("threshold") is not None else "the default"
    print(f"Dice (nuclei vs ground truth): {foreground_dice(labels, truth):.3f} "
          f"(foreground where P(foreground) > {model_threshold(model):g}, {own} threshold)")
    print(_instance_line(job, sample.instances))
    print(f"labels:  {labels_path} ({np.dtype(labels.dtype)})")
    print(f"overlay: {overlay_path} (green: prediction, magenta: ground-truth outlines)")
    return 0
