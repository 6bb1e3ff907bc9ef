"""CPU batch size by window size and network width (issue 13, item 1): the engine's time per
pixel at batch 1, 2, 4, 8 for windows of ~128 to 704 px, for the bundled models and the
benchmark's base-16 UNet, measured in one process, interleaved.

Each measurement is ``predict(x, model, tile_size=None, normalization=None, batch_size=B,
device='cpu', precision='float32')`` on a float32 stack of slices ``window - 2 * 16`` px wide
(the default 16-px border makes the window), with a slice count that every batch size
divides. Every repeat runs every configuration once, the models and windows in a shuffled
order and the batch sizes of one window next to each other (the order reversed every other
repeat), so the load of a shared machine hits the compared batch sizes alike. The table
gives batch 1's window MPix/s (its best repeat) and, for each larger batch, its best time
over batch 1's best (bold: on a shared machine load only ever adds time, so the best repeat
is the one least disturbed), then the median and range of the per-repeat ratios;
*fastest* is the batch with the best time per pixel, *auto* what ``batch_size="auto"``
picks there.

Usage::

    python benchmarks/bench_batch.py                    # prints the table
    python benchmarks/bench_batch.py --write benchmarks/cpu_batch_rule.md
    python benchmarks/bench_batch.py --quick            # a smoke run
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import napari_unet_stack as nus
from napari_unet_stack.devices import memory_budget
from napari_unet_stack.inference.plan import activation_bytes_per_pixel, resolve_batch
from napari_unet_stack.inference.spec import model_spec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine, make_unet  # this folder's sibling module

BORDER = 16
CPU = torch.device("cpu")
MODELS = {
    "nuclei-unet": lambda: nus.load_model("nuclei-unet"),
    "nuclei-unetpp": lambda: nus.load_model("nuclei-unetpp"),
    "UNet base 16": lambda: make_unet(16, 4),
}


def stack_for(window: int, batches: list[int], mpix: float) -> np.ndarray:
    """Slices that make ``window`` px windows, as many as ~``mpix`` window MPix, a multiple
    of every batch size."""
    step = math.lcm(*batches)
    z = max(step, math.ceil(mpix * 1e6 / window**2 / step) * step)
    rng = np.random.default_rng(window)
    return rng.standard_normal((z, window - 2 * BORDER, window - 2 * BORDER), dtype=np.float32)


def run_once(model, x: np.ndarray, batch: int) -> float:
    info: dict = {}
    t0 = time.perf_counter()
    nus.predict(x, model, tile_size=None, normalization=None, batch_size=batch, device="cpu",
                precision="float32", info=info)
    seconds = time.perf_counter() - t0
    assert info["batch_size"] == batch and info["n_tiles"] == len(x), info
    return seconds


def measure(args) -> dict:
    models = {name: MODELS[name]() for name in args.models}
    configs = {(m, w): [b for b in args.batches if b == 1 or b * w * w * bpp(models[m]) <= args.max_bytes]
               for m in models for w in args.windows}
    stacks = {key: stack_for(key[1], bs, args.mpix) for key, bs in configs.items()}
    for (m, w), bs in configs.items():  # warm-up: oneDNN primitives for each shape
        for b in bs:
            run_once(models[m], stacks[m, w][:b], b)
    times = {(m, w, b): [] for (m, w), bs in configs.items() for b in bs}
    order = list(configs)
    random.Random(0).shuffle(order)
    log: list[str] = []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        for m, w in order if r % 2 == 0 else order[::-1]:
            for b in configs[m, w] if r % 2 == 0 else configs[m, w][::-1]:
                times[m, w, b].append(run_once(models[m], stacks[m, w], b))
        log.append(f"{time.perf_counter() - t0:.0f} s, load {os.getloadavg()[0]:.2f}")
        print(f"repeat {r + 1}/{args.repeats}: {log[-1]}", flush=True)
    return {"models": models, "stacks": stacks, "configs": configs, "times": times, "log": log}


def bpp(model) -> float:
    return activation_bytes_per_pixel(model_spec(model), 4)


def table(res: dict) -> list[str]:
    batches = sorted({b for bs in res["configs"].values() for b in bs})
    out = ["| model | bpp | window | MB per window | " + " | ".join(f"batch {b}" for b in batches)
           + " | fastest | auto |", "|---" * (len(batches) + 6) + "|"]
    budget = memory_budget(CPU)
    for (m, w), bs in res["configs"].items():
        model, x = res["models"][m], res["stacks"][m, w]
        t = {b: res["times"][m, w, b] for b in bs}
        cells, best = [], {b: min(t[b]) / min(t[1]) for b in bs}
        for b in batches:
            if b not in t:
                cells.append("-")
                continue
            ratios = [a / c for a, c in zip(t[b], t[1], strict=True)]
            mpix = x.shape[0] * w * w / 1e6 / min(t[b])
            cells.append(f"{mpix:.2f}" if b == 1 else
                         f"**{best[b]:.2f}x** ({statistics.median(ratios):.2f}x, {min(ratios):.2f}-{max(ratios):.2f})")
        auto = resolve_batch("auto", CPU, budget, w * w, bpp(model))
        out.append(f"| {m} | {bpp(model):.0f} | {w} | {w * w * bpp(model) / 1e6:.0f} | " + " | ".join(cells)
                   + f" | {min(best, key=best.get)} | {auto} |")
    return out


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated, of: " + ", ".join(MODELS))
    p.add_argument("--windows", default="128,192,288,416,544,704")
    p.add_argument("--batches", default="1,2,4,8")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--mpix", type=float, default=1.0, help="window MPix per measurement, at least (default 1)")
    p.add_argument("--max-bytes", type=float, default=1.2e9,
                   help="skip batches whose activations (batch x window px x bpp) exceed this (default 1.2e9)")
    p.add_argument("--write", metavar="PATH", help="also write the table (with the machine) as markdown")
    p.add_argument("--quick", action="store_true", help="smoke run: small windows, one repeat")
    args = p.parse_args(argv)
    if args.quick:
        args.windows, args.batches, args.repeats, args.mpix = "128,192", "1,2", 1, 0.1
    args.models = args.models.split(",")
    args.windows = [int(w) for w in args.windows.split(",")]
    args.batches = sorted(int(b) for b in args.batches.split(","))
    if args.batches[0] != 1:
        p.error("--batches must include 1 (the ratios are to batch 1)")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    mach = machine()
    t0 = time.perf_counter()
    res = measure(args)
    lines = table(res)
    print("\n".join(lines))
    if args.write:
        head = [f"- {k}: {v}" for k, v in mach.items()]
        head += [f"- load average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}",
                 (f"- {args.repeats} repeats, >= {args.mpix} window MPix per measurement, "
                  f"{time.perf_counter() - t0:.0f} s in all; per repeat: " + "; ".join(res["log"]))]
        Path(args.write).write_text("\n".join(["# CPU batch size by window (bench_batch.py)", "", *head, "",
                                               *lines, ""]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
