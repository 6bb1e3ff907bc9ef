"""Train the bundled models on the shipped sample data (seeded, CPU-sized).

    python scripts/train_default_models.py [--only nuclei-unet] [--out DIR] [--steps N]

- ``nuclei-unet``: UNet, base 8 channels, depth 4, 2-class softmax (background, nucleus).
- ``nuclei-unetpp``: UNet++ (NestedUNet), base 8, depth 4, deep supervision, 2-class
  softmax. Its ``meta["fast_head"]`` is chosen again after training with
  `select_fast_head` on an extra generated stack (seed 3: neither training nor held-out
  data) with a stricter tolerance of 0.01, because the two validation slices of the
  training stack are too few to tell a 0.02 gap reliably.

Both train with `napari_unet_stack.train` on ``load_sample("nuclei_train")`` (16 slices,
two held out for validation) and are scored on the held-out ``nuclei_stack`` (another
seed) with `segment`: foreground Dice over the whole stack. The scores, the training
time and the UNet's forward throughput on a 1024 x 1024 image are printed and stored in
``meta["provenance"]["held_out"]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from napari_unet_stack.checkpoints import load_model, save_model
from napari_unet_stack.inference import segment
from napari_unet_stack.models import NestedUNet, UNet
from napari_unet_stack.samples import load_sample
from napari_unet_stack.synthetic import nuclei_stack
from napari_unet_stack.training import foreground_dice, select_fast_head, train

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "napari_unet_stack" / "bundled_models"
CLASS_NAMES = ["background", "nucleus"]

MODELS = {
    "nuclei-unet": {
        "build": lambda: UNet(1, 2, base_channels=8, depth=4),
        "steps": 400,
    },
    "nuclei-unetpp": {
        "build": lambda: NestedUNet(1, 2, base_channels=8, depth=4, deep_supervision=True),
        "steps": 300,
    },
}
SETTINGS = {"batch_size": 8, "patch_size": 128, "lr": 3e-3, "val_fraction": 0.125, "seed": 0}
#: the extra stack the UNet++ fast head is chosen on, and the margin used there
HEAD_SELECTION = {"shape": (16, 256, 256), "seed": 3, "tolerance": 0.01}


def throughput(model: torch.nn.Module, size: int = 1024, repeats: int = 3) -> float:
    """Forward throughput in megapixels per second (best of ``repeats``) on the CPU."""
    x = torch.randn(1, model.in_channels, size, size)
    model.eval()
    with torch.inference_mode():
        model(x)
        best = min(_timed(model, x) for _ in range(repeats))
    return size * size / 1e6 / best


def _timed(model, x) -> float:
    t = time.perf_counter()
    model(x)
    return time.perf_counter() - t


def held_out_dice(model, heads=(None,)) -> dict[str, float]:
    sample = load_sample("nuclei_stack")
    scores = {}
    for head in heads:
        if head is not None:
            model.head = head
        labels = segment(sample.image, model, device="cpu")
        scores[str(head or "default")] = foreground_dice(labels, sample.labels)
    if heads != (None,):
        model.head = "accurate"
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(MODELS), action="append")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--steps", type=int, help="override the number of steps (quick trials)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    sample = load_sample("nuclei_train")
    report = {}
    for name in args.only or MODELS:
        spec = MODELS[name]
        torch.manual_seed(SETTINGS["seed"])
        model = spec["build"]()
        steps = args.steps or spec["steps"]
        t0 = time.perf_counter()

        def progress(step, total, info, name=name):
            if "val_dice" in info:
                print(
                    f"{name} step {step}/{total}: loss {info['loss']:.4f}, val Dice {info['val_dice']:.4f} "
                    f"({info['seconds']:.0f} s)",
                    flush=True,
                )

        model, history = train(
            sample.image,
            sample.labels,
            model,
            steps=steps,
            device="cpu",
            class_names=CLASS_NAMES,
            progress=progress,
            **SETTINGS,
        )
        seconds = time.perf_counter() - t0
        report[name] = finalize(name, model, history["val_dice"], seconds, args.out)
    return 0


def finalize(name, model, val_dice, seconds, out) -> dict:
    """Fast head (UNet++), held-out scores, throughput; save; return the report entry."""
    provenance = dict(model.meta["provenance"])
    if isinstance(model, NestedUNet):
        extra = nuclei_stack(HEAD_SELECTION["shape"], seed=HEAD_SELECTION["seed"])
        head, head_scores = select_fast_head(
            model, extra.image, extra.labels, tolerance=HEAD_SELECTION["tolerance"], device="cpu"
        )
        provenance["fast_head_selection"] = {
            "data": f"synthetic.nuclei_stack({HEAD_SELECTION['shape']}, seed={HEAD_SELECTION['seed']})",
            "tolerance": HEAD_SELECTION["tolerance"],
            "dice": {k: round(v, 4) for k, v in head_scores.items()},
            "fast_head": head,
        }
        scores = held_out_dice(model, heads=("accurate", "fast", *range(1, model.full_depth + 1)))
    else:
        scores = held_out_dice(model)
    mpix = throughput(model)
    entry = {
        "steps": provenance["steps"],
        "train_seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "held_out_dice": {k: round(v, 4) for k, v in scores.items()},
        "val_dice": round(float(np.nanmax(val_dice)), 4),
        "fast_head": model.meta.get("fast_head"),
        "forward_mpix_per_s_1024": round(mpix, 3),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    provenance["held_out"] = {"sample": "nuclei_stack", "foreground_dice": entry["held_out_dice"]}
    # weights and metadata only: the optimizer state would triple the shipped files
    path = save_model(
        model, Path(out) / f"{name}.pt", include_training_state=False, provenance=provenance
    )
    load_model(path)  # round trip check
    entry["file_mb"] = round(path.stat().st_size / 2**20, 2)
    print(json.dumps({name: entry}, indent=2), flush=True)
    return entry


if __name__ == "__main__":
    raise SystemExit(main())
