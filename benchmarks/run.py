"""Benchmarks of the inference engine, measured side by side in one run (``make bench``).

Every comparison runs the compared things in the same process, interleaved (A B, B A, ...),
repeated, and reports medians of the times and the median of the per-repeat ratios, so
that the load of a shared machine hits both sides alike. Sections:

(a) engine overhead: whole-slice ``predict(tile_size=None)`` vs the bare forward
    (``torch.inference_mode``, ``model(x)`` on the already mirror-padded slices, softmax);
    ``border="reach"``, so both see the same canvas.
(b) exact tiling vs MONAI ``sliding_window_inference`` with the same windows (``border="reach"``:
    MONAI is given the slices mirror-padded by the halo).
(c) peak RSS of ``segment`` over a 16- and a 64-slice uint16 stack (one subprocess each).
(d) GPU throughput (only where ``torch.cuda.is_available()``).
(e) ``benchmarks/bench_out_of_core.py``'s ``main()``, when that file exists.
(f), (g), (h) what a user pays (``benchmarks/bench_user.py``): the engine against the bare
    forward on the unpadded slices, the demo job against a float32 NCHW baseline, a
    `train` step against a bare PyTorch loop, a UNet++'s fast head against its accurate mode.

Usage::

    python benchmarks/run.py            # full run, writes benchmarks/RESULTS.md
    python benchmarks/run.py --quick    # smoke run (small sizes), prints only
    python benchmarks/run.py --sections a,b --repeats 5

Models have random weights, He-initialized so activations keep their scale through the
network (PyTorch's default init shrinks the logits towards 0, which would hide tiling
errors: every probability would be ~1/K).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # this folder's sibling modules
import bench_common
import bench_user
from bench_report import markdown, print_table, summary_rows
from bench_sections_engine import section_monai, section_overhead
from bench_sections_gpu import section_gpu
from bench_sections_memory import rss_child, section_out_of_core, section_rss


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, 2 repeats; prints, writes nothing "
                   "unless --results is given")
    p.add_argument("--sections", default="a,b,c,d,e,f,g,h", help="comma-separated subset of a-h")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 5, quick 2)")
    p.add_argument("--results", default=None, help="markdown file to write (default benchmarks/RESULTS.md)")
    p.add_argument("--rss-size", type=int, default=None, help="slice side for (c) (default 2048, as the issue asks; quick 512)")
    p.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    cfg = p.parse_args(argv)
    q = cfg.quick
    cfg.repeats = cfg.repeats or (2 if q else 5)
    cfg.a_shape, cfg.a_base = ((2, 256), 8) if q else ((8, 512), 16)
    cfg.b_shape, cfg.b_core, cfg.b_base = ((1, 256), 128, 8) if q else ((2, 640), 256, 16)
    cfg.rss_size = cfg.rss_size or (512 if q else 2048)
    cfg.rss_slices = (8, 32) if q else (16, 64)
    cfg.rss_runs = 3 if q else 2
    cfg.d_shape = (4, 1024) if q else (16, 2048)
    cfg.f_shape, cfg.f_base, cfg.f_demo_slices = ((2, 256), 8, 2) if q else ((4, 512), 16, None)
    cfg.f_train_steps = 5 if q else 60
    cfg.f_old_repeats = 3 if q else 7  # (f) the demo against the commit issue 13 was filed
    cfg.g_steps, cfg.g_batch, cfg.g_patch = (4, 2, 32) if q else (12, 8, 128)
    cfg.h_shape = (1, 256) if q else (4, 512)
    if cfg.results is None and not q:
        cfg.results = str(bench_common.HERE / "RESULTS.md")
    return cfg


def main(argv=None) -> int:
    cfg = parse(argv)
    if cfg.rss_child:
        print(json.dumps(rss_child(json.loads(cfg.rss_child))))
        return 0
    sections = {s.strip() for s in cfg.sections.split(",") if s.strip()}
    mach = bench_common.machine()
    print("machine: " + "; ".join(f"{k} {v}" for k, v in mach.items()), flush=True)
    t0 = time.perf_counter()
    res: dict = {}
    runners = {"a": section_overhead, "b": section_monai, "c": section_rss, "d": section_gpu,
               "e": section_out_of_core,
               "f": lambda c: bench_user.section_user(c, bench_common),
               "g": lambda c: bench_user.section_training(c, bench_common),
               "h": lambda c: bench_user.section_heads(c, bench_common)}
    for key, fn in runners.items():
        if key in sections:
            res[key] = fn(cfg)
            if "skipped" in res[key]:
                print(f"({key}) skipped: {res[key]['skipped']}", flush=True)
    wall = time.perf_counter() - t0
    print()
    print_table(summary_rows(res))
    if cfg.results:
        Path(cfg.results).write_text(markdown(res, cfg, mach, wall))
        print(f"\nwrote {cfg.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
