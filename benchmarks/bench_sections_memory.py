"""Sections (c) and (e) of ``run.py``: the peak RSS of ``segment`` over a short and a long
stack (each in a fresh subprocess: ``run.py --rss-child``), and
``benchmarks/bench_out_of_core.py``'s ``main()``."""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import inspect
import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from bench_common import HERE, MIB, make_unet, nuclei

import napari_unet_stack as nus

#: the script whose ``--rss-child`` runs `rss_child` in a fresh process
RUN_SCRIPT = HERE / "run.py"


# ----------------------------------------------------------------------------- (c) RSS
def _reset_kernel_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS; False if impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _kernel_peak() > 0
    except OSError:
        return False


def _kernel_peak() -> int:
    """VmHWM of this process in bytes (0 where /proc is missing)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def rss_child(args: dict) -> dict:
    """Runs in a subprocess: segment a (n, size, size) uint16 stack, report memory."""
    import resource

    import psutil

    torch.set_num_threads(args["threads"])
    n, size = args["n"], args["size"]
    model = make_unet(args["base"], args["depth"], seed=4)
    proc = psutil.Process()
    stack = rss_input(n, size)
    # warm-up on one slice (imports, oneDNN primitives, thread pools)
    nus.segment(stack[:1], model, device="cpu")
    gc.collect()
    rss0 = proc.memory_info().rss
    kernel_peak = _reset_kernel_peak()  # VmHWM := current RSS (Linux), else sample only
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak = [rss0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    info: dict = {}
    t0 = time.perf_counter()
    labels = nus.segment(stack, model, device="cpu", info=info)
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    sampled = peak[0]
    top, how = _measured_peak(sampled, kernel_peak, maxrss_before)
    return {
        "n": n,
        "size": size,
        "input": stack.nbytes,
        "output": labels.nbytes,
        "output_dtype": str(labels.dtype),
        "rss0": rss0,
        "peak": top,
        "extra": top - rss0 - labels.nbytes,
        "sampled_extra": sampled - rss0 - labels.nbytes,
        "how": how,
        "seconds": seconds,
        "tile_shape": info.get("tile_shape"),
        "window_shape": info.get("window_shape"),
        "batch_size": info.get("batch_size"),
        "n_tiles": info.get("n_tiles"),
    }


def rss_input(n: int, size: int) -> np.ndarray:
    """The input: a few synthetic slices repeated (shifted) into a preallocated stack, so
    no float temporaries of the whole stack ever exist."""
    seed_slices = nuclei((4, size, size), seed=5)
    stack = np.empty((n, size, size), dtype=np.uint16)
    for i in range(n):
        stack[i] = np.roll(seed_slices[i % 4], 37 * i, axis=1)
    del seed_slices
    return stack


def _measured_peak(sampled: int, kernel_peak: bool, maxrss_before: int) -> tuple[int, str]:
    """The peak RSS of the measured call and how it was measured."""
    import resource

    if kernel_peak:
        return max(sampled, _kernel_peak()), "VmHWM after clear_refs"
    # ru_maxrss is the lifetime peak: it speaks for segment only if segment raised it
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return max(sampled, maxrss_after if maxrss_after > maxrss_before else 0), "sampled every 5 ms (+ ru_maxrss)"


def section_rss(cfg) -> dict:
    size, base, depth = cfg.rss_size, 4, 3
    print(f"(c) peak RSS of segment: {cfg.rss_slices} x {size} x {size} uint16, UNet base {base} "
          f"depth {depth}", flush=True)
    rows = []
    for n in cfg.rss_slices:
        args = {"n": n, "size": size, "base": base, "depth": depth, "threads": torch.get_num_threads()}
        runs = []
        # allocator noise (glibc arenas, thread-local caches) only adds: keep the lowest peak
        for _ in range(cfg.rss_runs):
            proc = subprocess.run(
                [sys.executable, str(RUN_SCRIPT), "--rss-child", json.dumps(args)],
                capture_output=True, text=True, check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"RSS child ({n} slices) failed:\n{proc.stderr[-3000:]}")
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        row = min(runs, key=lambda r: r["extra"])
        row["extra_runs"] = [r["extra"] for r in runs]
        print(f"    {n} slices: extra {', '.join(f'{e / MIB:.0f}' for e in row['extra_runs'])} MiB over "
              f"input+output, {row['seconds']:.1f}s", flush=True)
        rows.append(row)
    growth = rows[-1]["extra"] - rows[0]["extra"]
    allowed = max(64 * MIB, 0.10 * rows[0]["extra"])
    return {"rows": rows, "growth": growth, "allowed": allowed, "met": growth <= allowed,
            "model": f"UNet(base {base}, depth {depth})"}

# ----------------------------------------------------------------------------- (e) out of core
def section_out_of_core(cfg) -> dict:
    path = HERE / "bench_out_of_core.py"
    if not path.exists():
        return {"skipped": "benchmarks/bench_out_of_core.py does not exist yet"}
    spec = importlib.util.spec_from_file_location("bench_out_of_core", path)
    module = importlib.util.module_from_spec(spec)
    buffer = io.StringIO()
    result = None
    error = None
    argv = sys.argv
    try:
        spec.loader.exec_module(module)
        main = getattr(module, "main", None)
        if main is None:
            return {"skipped": "benchmarks/bench_out_of_core.py has no main()"}
        params = inspect.signature(main).parameters
        kwargs = {}
        if "quick" in params:
            kwargs["quick"] = cfg.quick
        elif cfg.quick and "size_gb" in params:
            kwargs["size_gb"] = 0.25
        sys.argv = [str(path)] + (["--quick"] if cfg.quick and "argv" in params else [])
        if "argv" in params:
            kwargs["argv"] = sys.argv[1:]
        print("(e) out of core: benchmarks/bench_out_of_core.py main()", flush=True)
        with contextlib.redirect_stdout(_Tee(buffer, sys.stdout)):
            result = main(**kwargs)
    except SystemExit as err:
        if err.code not in (None, 0):
            error = f"SystemExit({err.code})"
    except Exception as err:  # noqa: BLE001 - another engineer's script: report, don't crash
        error = f"{type(err).__name__}: {err}"
    finally:
        sys.argv = argv
    return {"result": result, "stdout": buffer.getvalue(), "error": error}


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for stream in self.streams:
            stream.write(s)
        return len(s)

    def flush(self):
        for stream in self.streams:
            stream.flush()
