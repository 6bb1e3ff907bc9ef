"""Train the bundled instance models on the project's own varied synthetic data (seeded, CPU-sized).

    python scripts/train_default_models.py [--only nuclei-unet] [--out DIR] [--steps N]
                                           [--until HH:MM] [--init {bundled,scratch,PATH}]
                                           [--lr LR] [--seed S] [--base N] [--rescore]

- ``nuclei-unet``: UNet, base 8 channels, depth 4, 3-class softmax (background, interior,
  boundary) trained with ``train(..., instances=True)``; ``segment(..., instances=True)``
  splits touching nuclei with a watershed seeded by the interiors.
- ``nuclei-unetpp``: UNet++ (NestedUNet), base 8, depth 4, deep supervision, the same
  targets. Its ``meta["fast_head"]`` is chosen again after training (`_select_head`:
  ``select_fast_head(..., score="f1")``): the smallest head whose Z-linked instance F1 on
  an extra varied stack (seed 3: neither training nor held-out data) is within 0.01 of the
  accurate mode's.
- ``nuclei-unet-z``: the UNet of ``nuclei-unet`` with 2.5D input (``z_context=3``: each
  slice with the three above and below, 7 channels), for stacks; trained on the stacks
  only (``"data": "stacks"``), warm from its bundled file, else from ``nuclei-unet``
  (`warm_start`: a first convolution of more slices gets the old weights on its middle
  ones, so it starts as the model it came from).

Training data (`training_data`): ``TRAIN_SET["n"]`` 2D images of
`synthetic.varied_set` (each its own scene: sizes, density, clumps, touching pairs,
shapes, interiors, focus, illumination, noise, bit depth), the slices of the
``TRAIN_STACKS`` ZYX stacks of `synthetic.varied_nuclei` (one scene each, seeds used
nowhere else, 8/12/16-bit: the z-blur and the small dim sections near the nuclei's poles
that a 2D image lacks) and the slices of ``load_sample("nuclei_train")``. Nothing else:
no third-party images.

Held-out scores (`held_out_scores`, scripts/default_model_scores.py), all on data from other seeds: the shipped
``nuclei_stack`` (3D: objects linked across Z, and slice by slice in 2D) and
``HELD_OUT_SET`` (2D varied images): foreground Dice, instance precision / recall / F1
at IoU 0.5, mean average precision over IoU 0.5:0.95 and panoptic quality. With
``--init bundled`` (the default) a model starts from the weights of the bundled file it
replaces (or of its ``warm_from`` model when there is none yet; all but a layer whose
shape changed), which is recorded in
``meta["provenance"]["init"]``; ``--init scratch`` starts from a seeded initialization,
``--init PATH`` from that checkpoint's weights (an earlier run's ``--out``). ``--base N``
builds the model with N base channels instead; a narrower UNet checkpoint then starts it
widened (`widen.widen_unet`: at its own width, z context widened first, then the width), so
the wider model starts predicting exactly what the checkpoint does instead of from scratch.
Scores, training time and forward throughput on a 1024 x 1024 image are printed and
stored in ``meta["provenance"]["held_out"]``.

A run is one cosine cycle of the model's ``steps`` (``--steps``); with ``--until HH:MM``
(UTC) it runs further cycles, each warm from the last one's result (a restart of the
schedule: whenever the time is up, the model is a finished cycle) while one more is
expected to end before then. ``meta["provenance"]["cycles"]`` lists them (steps, seed of
the patch sampling and validation split, seconds, best validation Dice: later cycles
validate on slices that earlier ones may have trained on, so the choices that matter are
made on the selection stacks: seed 3 for the fast head, seeds 3-5 for the foreground and
marker thresholds, `default_model_choices`). ``--rescore`` trains nothing: it makes the
decoding choices again and re-scores the shipped weights (e.g. after a change of the
decoding).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from default_model_choices import tune_decoding  # scripts/, beside this file
from default_model_scores import HELD_OUT_SET, held_out_scores
from widen import widen_unet

from napari_unet_stack.checkpoints import load_model, save_model
from napari_unet_stack.inference import predict
from napari_unet_stack.inference.precision import weights_digest
from napari_unet_stack.labels import LabelRule
from napari_unet_stack.models import NestedUNet, UNet
from napari_unet_stack.samples import load_sample
from napari_unet_stack.synthetic import varied_nuclei, varied_set
from napari_unet_stack.training import (
    select_fast_head,
    train,
)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "napari_unet_stack" / "bundled_models"

MODELS = {
    "nuclei-unet": {
        "build": lambda base=8: UNet(1, 3, base_channels=base, depth=4),
        "steps": 1000,
        "settings": {},
    },
    "nuclei-unetpp": {
        "build": lambda base=8: NestedUNet(1, 3, base_channels=base, depth=4, deep_supervision=True),
        "steps": 400,
        "settings": {},
    },
    # 2.5D: each slice with the three above and below (z_context=3), trained on the stacks
    # only (a fine-tune that also had the 2D images, each its own neighbours, did not gain:
    # README, 2026-12-02). Without a bundled file it starts from nuclei-unet, its first
    # convolution on the middle slice; the shipped one went 2D -> z context 1 (4 cycles)
    # -> z context 2 (2 cycles) -> z context 3 (2 cycles, each warm from the file before:
    # README, 2026-12-04)
    "nuclei-unet-z": {
        "build": lambda base=8: UNet(7, 3, base_channels=base, depth=4),
        "steps": 4500,
        "settings": {"z_context": 3},
        "data": "stacks",
        "warm_from": "nuclei-unet",
    },
}
SETTINGS = {
    "batch_size": 8, "patch_size": 128, "lr": 3e-3, "val_fraction": 0.05, "seed": 0,
    "instances": True,
}  # fmt: skip
#: the generated 2D training images (plus the slices of the nuclei_train sample)
TRAIN_SET = {"n": 384, "shape": (256, 256), "seed": 100}
#: the generated ZYX training stacks (their slices), one `varied_nuclei` seed each; samples.py
#: uses seeds 1 (nuclei_train) and 2 (nuclei_stack), the head selection 3
TRAIN_STACKS = {"shape": (16, 256, 256), "seeds": tuple(range(31, 55))}
#: the extra stack the UNet++ fast head is chosen on, and the margin used there
HEAD_SELECTION = {"shape": (16, 256, 256), "seed": 3, "tolerance": 0.01}
#: how provenance names that stack
SELECTION_DATA = (f"synthetic.varied_nuclei({HEAD_SELECTION['shape']}, seed={HEAD_SELECTION['seed']}, "
                  "bit_depths=16)")


def training_data(data: str = "all") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(images, instance labels): the varied 2D set (not for ``data="stacks"``), the varied
    stacks, then nuclei_train."""
    made = varied_set(TRAIN_SET["n"], TRAIN_SET["shape"], seed=TRAIN_SET["seed"]) if data == "all" else []
    made += [varied_nuclei(TRAIN_STACKS["shape"], seed=s) for s in TRAIN_STACKS["seeds"]]
    sample = load_sample("nuclei_train")
    images = [m.image for m in made] + [sample.image]
    instances = [m.instances for m in made] + [sample.instances]
    return images, instances


def warm_start(model: torch.nn.Module, path: Path) -> dict | None:
    """Copy every tensor of ``path``'s model whose name and shape match; None without a file.
    A first convolution that takes more slices' channels (a z-context model from a 2D one, or
    from one of a smaller z context) gets the old weights on its middle slices' channels and
    zeros on the others: it starts as the old model."""
    if not path.is_file():
        return None
    old = load_model(path).state_dict()
    own = model.state_dict()
    same = {k: v for k, v in old.items() if k in own and own[k].shape == v.shape}
    for key, value in old.items():
        mine = own.get(key)
        extra = mine.shape[1] - value.shape[1] if mine is not None and mine.ndim == value.ndim == 4 else 0
        if extra > 0 and extra % 2 == 0 and \
                (mine.shape[0], *mine.shape[2:]) == (value.shape[0], *value.shape[2:]):
            widened = torch.zeros(mine.shape)
            widened[:, extra // 2:extra // 2 + value.shape[1]] = value
            same[key] = widened
    model.load_state_dict(same, strict=False)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return {"from": path.name, "sha256_16": digest, "tensors": f"{len(same)} of {len(own)}"}


def init_path(name: str, init: str = "bundled") -> Path | None:
    """The checkpoint ``--init`` starts ``name`` from: None for scratch; its bundled file,
    else its ``warm_from`` model's; or the path given."""
    if init == "scratch":
        return None
    if init != "bundled":
        return Path(init)
    own = OUT / f"{name}.pt"
    return own if own.is_file() else OUT / f"{MODELS[name].get('warm_from', name)}.pt"


def initial_model(name: str, init: str = "bundled", base: int | None = None):
    """(model, init record): the spec's model (``base`` channels when given) with its z
    context, warm from `init_path` (`warm_start`). A UNet checkpoint narrower than ``base``
    warm-starts a model of its own width, which `widen_unet` widens: it predicts what the
    checkpoint did (its z context widened as `warm_start` does)."""
    spec, path = MODELS[name], init_path(name, init)
    torch.manual_seed(SETTINGS["seed"])
    old = load_model(path) if base and path is not None and path.is_file() else None
    width = getattr(old, "base_channels", base) if old is not None else base
    if width != base and not (isinstance(old, UNet) and width < base):
        raise ValueError(f"--base {base}: {path} holds a {type(old).__name__} of base {width}; "
                         f"only a narrower UNet can be widened")
    model = spec["build"](width) if width else spec["build"]()
    if spec["settings"].get("z_context"):
        model.meta["z_context"] = spec["settings"]["z_context"]
    record = warm_start(model, path) if path is not None else None
    if width != base:
        model = widen_unet(model, base, seed=SETTINGS["seed"])
        record = {**record, "widened": {"base_channels": [width, base], "seed": SETTINGS["seed"]}}
    return model, record


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(MODELS), action="append")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--steps", type=int, help="steps of one cycle (default: the model's)")
    parser.add_argument("--lr", type=float, help=f"peak learning rate of a cycle (default {SETTINGS['lr']:g})")
    parser.add_argument("--seed", type=int, default=SETTINGS["seed"],
                        help="seed of the first cycle's sampling and split (later cycles count up from it)")
    parser.add_argument("--until", type=_utc_time, metavar="HH:MM",
                        help="UTC: repeat cycles (each warm from the last) while one more fits")
    parser.add_argument("--init", default="bundled",
                        help="bundled (default), scratch, or a checkpoint to go on from (e.g. an earlier --out)")
    parser.add_argument("--base", type=int, help="base channels (default: the model's; a narrower "
                        "UNet checkpoint is widened to it, predicting as it did)")
    parser.add_argument("--rescore", action="store_true",
                        help="no training: choose the decoding and score the shipped weights again")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.rescore:
        return rescore(args.only or MODELS, args.out)
    data = {}
    for name in args.only or MODELS:
        spec = MODELS[name]
        kind = spec.get("data", "all")
        if kind not in data:
            data[kind] = training_data(kind)
        images, instances = data[kind]
        model, init = initial_model(name, args.init, args.base)
        t0 = time.perf_counter()
        model, cycles, val_dice = train_cycles(name, model, images, instances, args)
        seconds = time.perf_counter() - t0
        finalize(name, model, val_dice, seconds, args.out, init, cycles, kind)
    return 0


def _utc_time(text: str) -> float:
    """``HH:MM`` (UTC, today) as a POSIX time."""
    hours, minutes = (int(v) for v in text.split(":"))
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.replace(hour=hours, minute=minutes, second=0, microsecond=0).timestamp()


def _progress(name: str, cycle: int, t0: float):
    """A progress callback printing every 100th step and every validation."""

    def progress(step, total, info):
        if "val_dice" in info or step % 100 == 0:
            val = f", val Dice {info['val_dice']:.4f}" if "val_dice" in info else ""
            print(f"{name} cycle {cycle} step {step}/{total}: loss {info.get('loss', 0):.4f}{val} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

    return progress


def train_cycles(name, model, images, instances, args):
    """One cosine cycle of ``steps``, or (``--until``) cycles while the next one fits before
    the deadline, each starting from the last one's result (warm restarts: whenever the time
    runs out, the model is a finished, annealed cycle)."""
    spec = MODELS[name]
    steps = args.steps or spec["steps"]
    cycles, val_dice = [], []
    while True:
        t0 = time.perf_counter()

        settings = {**SETTINGS, **spec["settings"], "seed": args.seed + len(cycles)}
        if args.lr is not None:
            settings["lr"] = args.lr
        model, history = train(
            images, instances, model, steps=steps, val_every=max(1, steps // 4), device="cpu",
            progress=_progress(name, len(cycles), t0), **settings,
        )  # fmt: skip
        took = time.perf_counter() - t0
        val_dice += list(history["val_dice"])
        cycles.append({"steps": steps, "seed": settings["seed"], "lr": settings["lr"], "seconds": round(took, 1),
                       "val_dice": round(float(np.nanmax(history["val_dice"])), 4)})
        print(f"{name} cycle {len(cycles) - 1} done: {json.dumps(cycles[-1])}", flush=True)
        if args.until is None or time.time() + 1.1 * took > args.until:
            return model, cycles, val_dice


@functools.cache
def selection_stack():
    """The extra stack (neither training nor held-out data) that picks the UNet++ fast head
    and the marker threshold, generated once per run."""
    return varied_nuclei(HEAD_SELECTION["shape"], seed=HEAD_SELECTION["seed"], bit_depths=16)


def _select_head(model, provenance: dict) -> None:
    """The UNet++ fast head (`select_fast_head` with ``score="f1"``): the smallest head whose
    Z-linked instance F1 at IoU 0.5 on the selection stack (its own decoding, at the chosen
    marker threshold) is within the tolerance of the accurate mode's. (Until 2026-12-02
    `select_fast_head` scored class Dice, which for a 3-class instance model against 0/1
    labels means little: about 0.2 for every head.)"""
    extra = selection_stack()
    fast, f1 = select_fast_head(model, extra.image, extra.instances, tolerance=HEAD_SELECTION["tolerance"],
                                score="f1", device="cpu")
    provenance["fast_head_selection"] = {
        "data": SELECTION_DATA, "tolerance": HEAD_SELECTION["tolerance"], "criterion": "Z-linked F1@0.5",
        "f1": {k: round(v, 4) for k, v in f1.items()}, "fast_head": fast,
    }


def _bf16_check(model, provenance: dict) -> None:
    """bfloat16 against float32 over the whole held-out stack (issue 13's criterion), with the
    digest of the weights it holds for: `precision="auto"` reads it (inference/precision.py).
    The agreement is that of the classes the model's label rule gives (at its own threshold,
    chosen before this), as the probe compares them; until 2026-12-02 it was the argmax's."""
    stack = load_sample("nuclei_stack").image
    full = predict(stack, model, device="cpu", precision="float32")
    half = predict(stack, model, device="cpu", precision="bfloat16")
    rule = LabelRule.for_model(model, n_channels=full.shape[0])
    provenance["bf16_check"] = {
        "agreement": round(float(np.mean(rule.classes(full) == rule.classes(half))), 6),
        "prob_change": round(float(np.abs(full - half).max(axis=0).mean()), 6),
        "data": "the held-out nuclei_stack (16 x 256 x 256)",
        "weights": weights_digest(model),
    }


def evaluate_and_save(name, model, provenance: dict, out) -> dict:
    """Decoding thresholds, bf16 check, held-out scores; save (weights and metadata)."""
    tune_decoding(model, provenance)  # the foreground, then the marker threshold
    if isinstance(model, NestedUNet):
        _select_head(model, provenance)  # at the chosen marker threshold
    _bf16_check(model, provenance)
    heads = ("accurate", "fast") if isinstance(model, NestedUNet) else (None,)
    scores = held_out_scores(model, heads=heads)
    provenance["held_out"] = {
        "stack": "nuclei_stack",
        "set": {**HELD_OUT_SET, "shape": list(HELD_OUT_SET["shape"])},
        "scores": scores,
        "foreground_dice": {k: v["nuclei_stack"]["3d"]["dice"] for k, v in scores.items()},
    }
    # weights and metadata only: the optimizer state would triple the shipped files
    path = save_model(
        model, Path(out) / f"{name}.pt", include_training_state=False, provenance=provenance
    )
    load_model(path)  # round trip check
    return {"held_out": scores, "file_mb": round(path.stat().st_size / 2**20, 2)}


def finalize(name, model, val_dice, seconds, out, init, cycles=None, data="all") -> dict:
    """Decoding, fast head (UNet++), held-out scores, throughput; save; the report entry."""
    provenance = dict(model.meta["provenance"])
    provenance["init"] = init or "scratch"
    cycles = cycles or [{"steps": provenance["steps"], "seconds": round(seconds, 1)}]
    provenance["cycles"] = cycles
    provenance["steps_all_cycles"] = sum(c["steps"] for c in cycles)
    provenance["training_data"] = {
        "varied_set": {**TRAIN_SET, "shape": list(TRAIN_SET["shape"])} if data == "all" else None,
        "varied_stacks": {"shape": list(TRAIN_STACKS["shape"]), "seeds": list(TRAIN_STACKS["seeds"]),
                          "bit_depths": [8, 12, 16]},
        "sample": "nuclei_train",
    }
    entry = {
        "steps": provenance["steps_all_cycles"],
        "cycles": len(cycles),
        "train_seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "val_dice": round(float(np.nanmax(val_dice)), 4),
        "fast_head": model.meta.get("fast_head"),
        "forward_mpix_per_s_1024": round(throughput(model), 3),
        "parameters": sum(p.numel() for p in model.parameters()),
        **evaluate_and_save(name, model, provenance, out),
    }
    entry["fast_head"] = model.meta.get("fast_head")  # chosen by evaluate_and_save
    print(json.dumps({name: entry}, indent=2), flush=True)
    return entry


def rescore(names, out) -> int:
    """``--rescore``: the shipped weights as they are; decoding choices, bf16 check and scores again."""
    for name in names:
        model = load_model(OUT / f"{name}.pt")
        entry = evaluate_and_save(name, model, dict(model.meta["provenance"]), out)
        print(json.dumps({name: entry}, indent=2), flush=True)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
