"""Peak memory when segmenting zarr stacks larger than the memory budget, out of core.

Writes two uncompressed uint16 zarr stacks (``size_gb`` and ``size_gb / ratio``), segments
each from zarr into a zarr output (the engine reads one slice at a time and writes each
finished slice into ``out=``), every run in a fresh subprocess, and reports the peak RSS
*growth* of that process during the run (peak minus the resident size just before, after
imports, model set-up and a warm-up slice). Out of core, the growth must not depend on the
stack's size; for contrast the smaller stack is also segmented the in-memory way
(``np.asarray(zarr)`` in, a numpy array out), whose growth is the stack plus its labels.

The network is a pointwise stand-in by default (``model="pointwise"``: logits ``(-x, x)``),
because what is measured is the I/O path and the engine's per-slice buffers, and a real
UNet runs at well under 1 MPix/s on a 2-core CPU; ``model="unet"`` uses a small random
UNet (base 4, depth 2) instead, any other string is a checkpoint path or bundled name.

    python benchmarks/bench_out_of_core.py                 # 2 GiB vs 0.5 GiB
    python benchmarks/bench_out_of_core.py --size-gb 0.5   # quicker

`main()` returns the results as a dict (used by benchmarks/run.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MIB = 2**20


# ----------------------------------------------------------------------------- memory
def _status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _rss_mib() -> float:
    value = _status_mib("VmRSS")
    if value is not None:
        return value
    import psutil  # not Linux: the bench extra has it

    return psutil.Process().memory_info().rss / MIB


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mib() -> float:
    value = _status_mib("VmHWM")
    if value is not None:
        return value
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


# ----------------------------------------------------------------------------- data
def make_stack(path: Path, n_slices: int, shape: tuple[int, int], seed: int = 0) -> None:
    """An uncompressed uint16 zarr stack of nuclei-like blobs, written slice by slice."""
    from napari_unet_stack import io
    from napari_unet_stack.synthetic import nuclei_image

    base = nuclei_image((min(shape[0], 1024), min(shape[1], 1024)), seed=seed).image
    reps = (-(-shape[0] // base.shape[0]), -(-shape[1] // base.shape[1]))
    tiled = np.tile(base, reps)[: shape[0], : shape[1]]
    rng = np.random.default_rng(seed)
    with io.create_image(path, (n_slices, *shape), np.uint16, axes="ZYX", compression=None,
                         overwrite=True) as out:
        for z in range(n_slices):
            shifted = np.roll(tiled, (7 * z, 13 * z), axis=(0, 1))
            noise = rng.integers(0, 32, shape, dtype=np.uint16)
            out[z] = shifted + noise


# ----------------------------------------------------------------------------- child
def _model(name: str):
    import torch

    if name == "pointwise":
        class Pointwise(torch.nn.Module):
            def forward(self, x):
                return torch.cat([-x, x], dim=1)

        return Pointwise()
    if name == "unet":
        from napari_unet_stack.models import UNet

        torch.manual_seed(0)
        return UNet(1, 2, base_channels=4, depth=2).eval()
    from napari_unet_stack.checkpoints import load_model

    return load_model(name)


def _child(args: dict) -> dict:
    import warnings

    import torch

    from napari_unet_stack import io, iter_segment, segment

    warnings.filterwarnings("ignore", message="model geometry unknown")
    torch.set_num_threads(args["threads"])
    model = _model(args["model"])
    opts = {"device": args["device"]}
    image = io.read_image(args["input"])
    # warm up: torch's thread pools and allocator, one slice
    segment(np.asarray(image.data[0]), model, **opts)
    if _reset_peak():
        before = _rss_mib()
    else:
        before = _peak_mib()  # only a lifetime peak exists: growth is measured against it
    t0 = time.perf_counter()
    if args["mode"] == "out_of_core":
        with io.create_image(args["output"], image.shape, np.uint8, axes="ZYX", overwrite=True) as out:
            for _ in iter_segment(image.data, model, out=out, **opts):
                pass
    else:
        data = np.asarray(image.data[...])
        labels = segment(data, model, **opts)
        io.write_image(args["output"], labels, axes="ZYX", overwrite=True)
        del data, labels
    seconds = time.perf_counter() - t0
    peak = _peak_mib()
    n_pixels = int(np.prod(image.shape))
    image.close()
    return {"baseline_rss_mib": round(before, 1), "peak_rss_mib": round(peak, 1),
            "growth_mib": round(peak - before, 1), "seconds": round(seconds, 1),
            "mpix_per_s": round(n_pixels / seconds / 1e6, 3)}


def _run_child(args: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(args)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main
def main(size_gb: float = 2.0, ratio: int = 4, slice_shape: tuple[int, int] = (2048, 2048),
         model: str = "pointwise", device: str = "cpu", threads: int = 2, in_memory: bool = True,
         workdir: str | os.PathLike | None = None, verbose: bool = True, quick: bool = False) -> dict:
    """Run the benchmark; return ``{"cases": [...], "summary": {...}}`` (sizes in MiB).

    ``quick``: a smoke run (256 MiB vs 64 MiB of 1024 x 1024 slices, about a minute).
    """
    if quick:
        size_gb, slice_shape = min(size_gb, 0.25), (1024, 1024)
    folder = Path(tempfile.mkdtemp(prefix="nus-bench-", dir=workdir))
    slice_bytes = slice_shape[0] * slice_shape[1] * 2
    sizes = {"large": size_gb, "small": size_gb / ratio}
    cases = []
    try:
        for label, gb in sizes.items():
            n_slices = max(1, round(gb * 2**30 / slice_bytes))
            path = folder / f"{label}.zarr"
            t0 = time.perf_counter()
            make_stack(path, n_slices, slice_shape)
            if verbose:
                print(f"[bench_out_of_core] wrote {path.name}: {n_slices} x {slice_shape[0]} x {slice_shape[1]} "
                      f"uint16 ({n_slices * slice_bytes / MIB:.0f} MiB) in {time.perf_counter() - t0:.0f} s",
                      flush=True)
            modes = ["out_of_core"] + (["in_memory"] if in_memory and label == "small" else [])
            for mode in modes:
                result = _run_child({"input": str(path), "output": str(folder / f"{label}-{mode}-labels.zarr"),
                                     "mode": mode, "model": model, "device": device, "threads": threads})
                result.update(case=label, mode=mode, stack_mib=round(n_slices * slice_bytes / MIB),
                              n_slices=n_slices, slice_shape=list(slice_shape))
                cases.append(result)
                if verbose:
                    print(f"[bench_out_of_core] {label:5s} {mode:11s} stack {result['stack_mib']:6d} MiB: "
                          f"peak RSS growth {result['growth_mib']:7.1f} MiB (baseline {result['baseline_rss_mib']:.0f} "
                          f"MiB), {result['seconds']:.0f} s, {result['mpix_per_s']} MPix/s", flush=True)
            shutil.rmtree(path, ignore_errors=True)
            for out in folder.glob(f"{label}-*-labels.zarr"):
                shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    by = {(c["case"], c["mode"]): c for c in cases}
    large, small = by[("large", "out_of_core")], by[("small", "out_of_core")]
    summary = {
        "stack_ratio": round(large["stack_mib"] / small["stack_mib"], 2),
        "out_of_core_growth_ratio": round(large["growth_mib"] / max(small["growth_mib"], 1.0), 2),
        "large_growth_fraction_of_stack": round(large["growth_mib"] / large["stack_mib"], 3),
    }
    if ("small", "in_memory") in by:
        summary["in_memory_small_growth_mib"] = by[("small", "in_memory")]["growth_mib"]
    if verbose:
        print(f"[bench_out_of_core] summary: {json.dumps(summary)}", flush=True)
    return {"benchmark": "out_of_core", "model": model, "device": device, "cases": cases, "summary": summary}


def _parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-gb", type=float, default=2.0, help="size of the larger stack (GiB of uint16)")
    p.add_argument("--ratio", type=int, default=4, help="the smaller stack is size / ratio")
    p.add_argument("--slice", type=int, nargs=2, default=(2048, 2048), metavar=("H", "W"))
    p.add_argument("--model", default="pointwise", help="pointwise, unet, or a checkpoint / bundled name")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-in-memory", action="store_true", help="skip the in-memory contrast run")
    p.add_argument("--workdir", default=None, help="where the temporary stacks go (default: the temp dir)")
    p.add_argument("--quick", action="store_true", help="smoke run: 256 MiB vs 64 MiB")
    p.add_argument("--json", action="store_true", help="print the result dict as JSON at the end")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    ns = _parse()
    if ns.child:
        print(json.dumps(_child(json.loads(ns.child))))
        sys.exit(0)
    res = main(ns.size_gb, ns.ratio, tuple(ns.slice), ns.model, ns.device, ns.threads,
               not ns.no_in_memory, ns.workdir, quick=ns.quick)
    if ns.json:
        print(json.dumps(res, indent=2))
