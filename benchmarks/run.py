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
import contextlib
import datetime as _dt
import gc
import importlib.util
import inspect
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

import napari_unet_stack as nus
from napari_unet_stack import tiling

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_user  # noqa: E402 - this folder's sibling module

MIB = 2**20

# targets (see the brief in RESULTS.md)
TARGET_OVERHEAD = 1.10
TARGET_EXACT = 1e-4
# "at least as fast": ratios within this of 1 are a tie at this machine's resolution
TIE = 0.02


def speed_verdict(ratio: float) -> str:
    if ratio <= 1.0:
        return "yes"
    return f"tie (within {TIE:.0%})" if ratio <= 1.0 + TIE else "NO"


# ----------------------------------------------------------------------------- helpers
def he_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights whose activations keep their scale (He normal, fan-in)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.ConvTranspose2d):
                # stride == kernel: each output pixel sees in_channels inputs
                fan_in = m.weight.shape[0] * max(
                    1, (m.kernel_size[0] // m.stride[0]) * (m.kernel_size[1] // m.stride[1])
                )
            elif isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
            else:
                continue
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model.eval()


def make_unet(base: int, depth: int, seed: int = 0) -> nus.UNet:
    return he_init(nus.UNet(1, 2, base_channels=base, depth=depth), seed)


def nuclei(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    from napari_unet_stack.synthetic import nuclei_stack

    return nuclei_stack(shape, seed=seed).image


def normalized(stack: np.ndarray) -> np.ndarray:
    """Per-slice percentile normalization, as the engine's default does, to float32."""
    from napari_unet_stack.normalization import DEFAULT_NORMALIZATION, normalize

    return np.stack([normalize(s[None].astype(np.float32), DEFAULT_NORMALIZATION)[0] for s in stack])


def median(values) -> float:
    return float(statistics.median(values))


class ForwardTimer:
    """Seconds spent inside ``module.forward`` (top-level calls), via hooks.

    Give it the model and `engine_network(model)`: the engine runs its own inference copy
    (BatchNorm folded into the convolutions), which the model's hooks do not see."""

    def __init__(self, *modules: nn.Module):
        self.seconds = 0.0
        self._t0 = 0.0
        self._handles = []
        for module in dict.fromkeys(modules):
            self._handles += [
                module.register_forward_pre_hook(self._pre),
                module.register_forward_hook(self._post),
            ]

    def _pre(self, _module, _inputs):
        self._t0 = time.perf_counter()

    def _post(self, _module, _inputs, _output):
        self.seconds += time.perf_counter() - self._t0

    def remove(self):
        for h in self._handles:
            h.remove()


def engine_network(model: nn.Module, device: str = "cpu") -> nn.Module:
    """The module `predict` calls for ``model`` on ``device`` (cached after a first run)."""
    from napari_unet_stack.devices import channels_last_for
    from napari_unet_stack.inference.placement import on_device

    dev = torch.device(device)
    return on_device(model, dev, channels_last_for(dev))


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, keep_first: bool = True,
                timer: ForwardTimer | None = None):
    """Run each callable ``repeats`` times, alternating the order every repeat.

    Returns ``(times, first_outputs)``: ``times[name]`` is a list of wall seconds,
    ``times[name + " cpu"]`` of process CPU seconds and, with ``timer``,
    ``times[name + " fwd"]`` of seconds spent inside the model's forward.
    """
    names = list(fns)
    times: dict[str, list[float]] = {}
    first: dict[str, object] = {}
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            gc.collect()
            if timer is not None:
                timer.seconds = 0.0
            c0 = time.process_time()
            t0 = time.perf_counter()
            out = fns[name]()
            times.setdefault(name, []).append(time.perf_counter() - t0)
            times.setdefault(name + " cpu", []).append(time.process_time() - c0)
            if timer is not None:
                times.setdefault(name + " fwd", []).append(timer.seconds)
            if keep_first and name not in first:
                first[name] = out
            del out
        print(
            f"    repeat {r + 1}/{repeats}: "
            + ", ".join(
                f"{n} {times[n][-1]:.2f}s"
                + (f" (forward {times[n + ' fwd'][-1]:.2f}s)" if timer is not None else "")
                for n in names
            ),
            flush=True,
        )
    return times, first


def outside_forward(times: dict, name: str) -> list[float]:
    """Per-repeat wall time / time inside the model's forward, for ``name``."""
    return [t / f for t, f in zip(times[name], times[name + " fwd"], strict=True)]


def paired_ratio(num: list[float], den: list[float]) -> tuple[float, float, float]:
    """Median, min and max of the per-repeat ratios num/den."""
    ratios = [a / b for a, b in zip(num, den, strict=True)]
    return median(ratios), min(ratios), max(ratios)


def compare(times: dict, a: str, b: str) -> dict:
    """Ratios of ``a`` to ``b``: wall, process CPU and, when forward times were recorded,
    the wall ratio with the network factored out.

    ``net``: per repeat, (wall_a / forward_a) / (wall_b / forward_b). Both sides run the
    same forwards (same windows, same batches), so their forward times differ only by
    the machine's load; dividing each side by its own forward time cancels most of it.
    """
    out = {"wall": paired_ratio(times[a], times[b]), "cpu": paired_ratio(times[a + " cpu"], times[b + " cpu"])}
    if a + " fwd" in times and b + " fwd" in times:
        out["net"] = paired_ratio(outside_forward(times, a), outside_forward(times, b))
        out["outside"] = (
            median([t - f for t, f in zip(times[a], times[a + " fwd"], strict=True)]),
            median([t - f for t, f in zip(times[b], times[b + " fwd"], strict=True)]),
        )
    return out


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        fields: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())  # the first processor's
        cpu = fields.get("model name", cpu)
        if fields.get("cpu family") and fields.get("model"):
            cpu += f" (family {fields['cpu family']}, model {fields['model']})"
    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
    except ImportError:  # pragma: no cover
        mem = "?"
    try:
        import monai

        monai_version = monai.__version__
    except ImportError:
        monai_version = "not installed"
    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": f"{os.cpu_count()} logical, torch threads {torch.get_num_threads()}",
        "memory": mem,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "monai": monai_version,
        "napari_unet_stack": nus.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    with contextlib.suppress(OSError):
        info["load average at start"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return info


def auto_batch(model: nn.Module, window_px: int) -> int:
    """What ``batch_size="auto"`` picks on this CPU for float32 windows of ``window_px`` pixels."""
    from napari_unet_stack.devices import memory_budget
    from napari_unet_stack.inference.plan import activation_bytes_per_pixel, resolve_batch
    from napari_unet_stack.inference.spec import model_spec

    cpu = torch.device("cpu")
    bpp = activation_bytes_per_pixel(model_spec(model), 4)
    return resolve_batch("auto", cpu, memory_budget(cpu), window_px, bpp)


def mpix(n_pixels: float, seconds: float) -> float:
    return n_pixels / seconds / 1e6


# ----------------------------------------------------------------------------- (a) overhead
def section_overhead(cfg) -> dict:
    z, size, base, depth, batch = cfg.a_shape[0], cfg.a_shape[1], cfg.a_base, 4, 4
    print(f"(a) engine overhead: {z} x {size} x {size}, UNet base {base} depth {depth}", flush=True)
    model = make_unet(base, depth)
    halo = model.halo
    raw = nuclei((z, size, size), seed=1)
    x = normalized(raw)
    # the engine's canvas for tile_size=None: mirror padding by the halo (+ rounding to the
    # size grid, none here since size is a multiple of 16)
    plan = tiling.plan_axis(size, core=None, halo=halo, multiple=model.size_multiple)
    pads = ((0, 0), (plan.pad_before, plan.pad_after), (plan.pad_before, plan.pad_after))
    canvas = torch.from_numpy(np.pad(x, pads, mode="reflect")[:, None].copy())

    def bare():
        outs = []
        with torch.inference_mode():
            for i in range(0, z, batch):
                outs.append(torch.softmax(model(canvas[i : i + batch]), dim=1))
        return outs

    def engine():
        return nus.predict(x, model, tile_size=None, normalization=None, batch_size=batch, device="cpu", border="reach")

    def engine_norm():
        return nus.predict(raw, model, tile_size=None, batch_size=batch, device="cpu", border="reach")

    def engine_labels():
        return nus.segment(x, model, tile_size=None, normalization=None, batch_size=batch, device="cpu", border="reach")

    # warm-up (oneDNN primitives for this shape)
    nus.predict(x[:1], model, tile_size=None, normalization=None, batch_size=batch, device="cpu", border="reach")
    with torch.inference_mode():
        model(canvas[:1])
    timer = ForwardTimer(model, engine_network(model))
    names = {"bare forward": bare, "predict": engine, "predict+norm": engine_norm, "segment": engine_labels}
    times, first = interleaved(names, cfg.repeats, timer=timer)
    timer.remove()
    # exactness: the engine's whole-slice output vs the bare forward's, cropped
    bare_probs = torch.cat(first["bare forward"]).numpy()
    sl = slice(plan.out_offset, plan.out_offset + size)
    err = float(np.abs(np.moveaxis(first["predict"], 0, 1) - bare_probs[:, :, sl, sl]).max())
    err_norm = float(np.abs(np.moveaxis(first["predict+norm"], 0, 1) - bare_probs[:, :, sl, sl]).max())
    cmp = compare(times, "predict", "bare forward")
    cmp_norm = compare(times, "predict+norm", "bare forward")
    cmp_labels = compare(times, "segment", "bare forward")
    labels_ok = bool(np.array_equal(first["segment"], first["predict"].argmax(axis=0)))
    pixels = z * size * size
    return {
        "shape": (z, size, size),
        "model": f"UNet(base {base}, depth {depth}), halo {halo}",
        "window": plan.window,
        "batch": batch,
        "auto_batch": auto_batch(model, plan.window**2),
        "names": list(names),
        "times": {k: median(v) for k, v in times.items()},
        "all_times": times,
        "mpix": {k: mpix(pixels, median(times[k])) for k in names},
        "cmp": cmp,
        "cmp_norm": cmp_norm,
        "cmp_labels": cmp_labels,
        "labels_equal_argmax": labels_ok,
        "max_abs_diff": err,
        "max_abs_diff_norm": err_norm,
        "met": cmp["net"][0] <= TARGET_OVERHEAD,
    }


# ----------------------------------------------------------------------------- (b) MONAI
def monai_overlap(window: int, core: int) -> float:
    """An overlap fraction for which MONAI's scan interval int(window * (1 - o)) == core."""
    o = (window - core) / window
    for _ in range(8):
        if int(window * (1 - o)) == core:
            return o
        o -= 1e-9  # float rounding put the interval one pixel short
    raise RuntimeError(f"no MONAI overlap gives a {core}-px step in a {window}-px window")


def section_monai(cfg) -> dict:
    from monai.inferers import sliding_window_inference

    z, size, core, base, depth, batch = (
        cfg.b_shape[0], cfg.b_shape[1], cfg.b_core, cfg.b_base, 4, 4,
    )
    print(f"(b) tiling vs MONAI: {z} x {size} x {size}, core {core}, UNet base {base}", flush=True)
    model = make_unet(base, depth, seed=2)
    halo = model.halo
    window = core + 2 * halo
    overlap = monai_overlap(window, core)
    x = normalized(nuclei((z, size, size), seed=3))
    assert size % model.size_multiple == 0, "MONAI windows stay on the size grid only then"

    def ours(info=None):
        return nus.predict(x, model, tile_size=core, normalization=None, batch_size=batch, device="cpu", border="reach",
                           info=info)

    def predictor(t):
        return torch.softmax(model(t), dim=1)

    def monai():
        # the same mirror padding by the halo as ours, so both see the same window pixels;
        # MONAI's own padding is constant and only applies when the image is < roi
        canvas = np.pad(x, ((0, 0), (halo, halo), (halo, halo)), mode="reflect")
        with torch.inference_mode():
            out = sliding_window_inference(
                torch.from_numpy(canvas[:, None]), (window, window), batch, predictor,
                overlap=overlap, mode="constant",
            )
        return out[:, :, halo : halo + size, halo : halo + size].numpy()

    info: dict = {}
    # warm-up both on one window (oneDNN primitives for the window shape)
    small = x[:1, :core, :core]
    nus.predict(small, model, tile_size=core, normalization=None, batch_size=batch, device="cpu", border="reach")
    with torch.inference_mode():
        predictor(torch.zeros(1, 1, window, window))
    t0 = time.perf_counter()
    reference = nus.predict(x, model, tile_size=None, normalization=None, batch_size=batch, device="cpu", border="reach")
    t_whole = time.perf_counter() - t0
    n_monai = count_monai_windows(size + 2 * halo, window, core) * z
    timer = ForwardTimer(model, engine_network(model))
    times, first = interleaved({"ours": lambda: ours(info), "MONAI": monai}, cfg.repeats, timer=timer)
    timer.remove()
    err_ours = float(np.abs(first["ours"] - reference).max())
    diff_monai = np.abs(np.moveaxis(first["MONAI"], 1, 0) - reference)
    err_monai = float(diff_monai.max())
    frac_monai = float((diff_monai > TARGET_EXACT).mean())
    cmp = compare(times, "ours", "MONAI")
    pixels = z * size * size
    met_speed = speed_verdict(cmp["net"][0])
    return {
        "shape": (z, size, size),
        "model": f"UNet(base {base}, depth {depth}), halo {halo}",
        "core": core,
        "window": window,
        "overlap_px": window - core,
        "overlap": overlap,
        "batch": batch,
        "tiles_ours": info.get("n_tiles"),
        "tiles_monai": n_monai,
        "t_whole": t_whole,
        "times": {k: median(v) for k, v in times.items()},
        "all_times": times,
        "mpix": {k: mpix(pixels, median(times[k])) for k in ("ours", "MONAI")},
        "cmp": cmp,
        "err_ours": err_ours,
        "err_monai": err_monai,
        "frac_monai": frac_monai,
        "met_speed": met_speed,
        "met_exact": err_ours <= TARGET_EXACT,
    }


def count_monai_windows(length: int, window: int, step: int) -> int:
    n = 1
    while (n - 1) * step + window < length:
        n += 1
    return n * n


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
    # the input: a few synthetic slices repeated (shifted) into a preallocated stack, so
    # no float temporaries of the whole stack ever exist
    seed_slices = nuclei((4, size, size), seed=5)
    stack = np.empty((n, size, size), dtype=np.uint16)
    for i in range(n):
        stack[i] = np.roll(seed_slices[i % 4], 37 * i, axis=1)
    del seed_slices
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
    if kernel_peak:
        top = max(sampled, _kernel_peak())
        how = "VmHWM after clear_refs"
    else:
        # ru_maxrss is the lifetime peak: it speaks for segment only if segment raised it
        maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        top = max(sampled, maxrss_after if maxrss_after > maxrss_before else 0)
        how = "sampled every 5 ms (+ ru_maxrss)"
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
                [sys.executable, str(Path(__file__).resolve()), "--rss-child", json.dumps(args)],
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


# ----------------------------------------------------------------------------- (d) GPU
def _gpu_case(name: str, model, stack: np.ndarray, precision: str, repeats: int, device) -> dict:
    """End-to-end predict (host numpy in and out) vs the bare forward of the same windows."""
    from napari_unet_stack.devices import channels_last_for
    from napari_unet_stack.inference.placement import on_device

    info: dict = {}
    nus.predict(stack[:2], model, device=device, precision=precision, normalization=None)  # warm-up
    nus.predict(stack, model, device=device, precision=precision, normalization=None, info=info)
    wy, wx = info["window_shape"]
    batch = info["batch_size"]
    n_batches = math.ceil(info["n_tiles"] / batch)
    channels_last = channels_last_for(device)
    net = on_device(model, device, channels_last)
    x = torch.randn(batch, stack.shape[1] if stack.ndim == 4 else 1, wy, wx, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(precision)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def bare():
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            for _ in range(n_batches):
                torch.softmax(net(x).float(), dim=1)
        sync()

    def engine():
        out = nus.predict(stack, model, device=device, precision=precision, normalization=None)
        sync()
        return out

    bare()
    times, _ = interleaved({"bare forward": bare, "predict": engine}, repeats, keep_first=False)
    pixels = int(np.prod(stack.shape[-3:])) if stack.ndim >= 3 else int(np.prod(stack.shape))
    cmp = compare(times, "predict", "bare forward")
    return {
        "name": name,
        "shape": tuple(stack.shape),
        "precision": precision,
        "tile_shape": info["tile_shape"],
        "window_shape": info["window_shape"],
        "batch": batch,
        "n_tiles": info["n_tiles"],
        "exact": info.get("exact"),
        "mpix": {k: mpix(pixels, median(times[k])) for k in ("predict", "bare forward")},
        "times": {k: median(v) for k, v in times.items()},
        "cmp": cmp,
    }


def section_gpu(cfg, device: torch.device | None = None) -> dict:
    if device is None:
        if not torch.cuda.is_available():
            return {"skipped": "no CUDA device (torch.cuda.is_available() is False): section skipped"}
        device = torch.device("cuda")
    z, size = cfg.d_shape
    print(f"(d) GPU: {z} x {size} x {size} on {device}", flush=True)
    stack = normalized(nuclei((z, size, size), seed=6))
    cases = [_gpu_case("UNet(base 64, depth 4)", make_unet(64, 4, seed=7), stack, "bfloat16",
                       cfg.repeats, device)]
    note = None
    try:
        from napari_unet_stack.checkpoints import list_models, load_model

        names = list_models()
    except Exception as err:  # noqa: BLE001 - the checkpoints module may not exist yet
        names, note = [], f"load_model unavailable ({type(err).__name__}: {err})"
    if "nuclei-unet" in names:
        model = load_model("nuclei-unet")
        raw = nuclei((z, size, size), seed=6)
        cases.append(_gpu_case("nuclei-unet (bundled), auto precision", model, normalized(raw), "auto",
                               cfg.repeats, device))
    elif note is None:
        note = f"bundled model 'nuclei-unet' not available yet (bundled: {names or 'none'})"
    return {"cases": cases, "note": note, "device": str(device)}


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


# ----------------------------------------------------------------------------- report
def fmt_ratio(r, lo, hi) -> str:
    return f"{r:.3f}x ({lo:.3f}-{hi:.3f})"


def summary_rows(res: dict) -> list[tuple[str, str, str, str]]:
    """(what, measured, target, met) rows for the table of ratios."""
    rows = []
    a = res.get("a")
    if a:
        rows.append(("(a) whole-slice predict / bare forward, wall (normalization excluded)",
                     fmt_ratio(*a["cmp"]["wall"]), f"<= {TARGET_OVERHEAD:.2f}x",
                     "yes" if a["cmp"]["wall"][0] <= TARGET_OVERHEAD else "NO"))
        rows.append(("(a) same, network time factored out",
                     fmt_ratio(*a["cmp"]["net"]), f"<= {TARGET_OVERHEAD:.2f}x",
                     "yes" if a["cmp"]["net"][0] <= TARGET_OVERHEAD else "NO"))
        rows.append(("(a) same, engine incl. per-slice percentile normalization",
                     fmt_ratio(*a["cmp_norm"]["net"]), "(information)", "-"))
        rows.append(("(a) whole-slice segment (labels) / bare forward, network factored out",
                     fmt_ratio(*a["cmp_labels"]["net"]), f"<= {TARGET_OVERHEAD:.2f}x",
                     "yes" if a["cmp_labels"]["net"][0] <= TARGET_OVERHEAD else "NO"))
    b = res.get("b")
    if b:
        rows.append(("(b) exact tiled predict / MONAI sliding_window_inference, wall",
                     fmt_ratio(*b["cmp"]["wall"]), "<= 1.00x", speed_verdict(b["cmp"]["wall"][0])))
        rows.append(("(b) same, network time factored out",
                     fmt_ratio(*b["cmp"]["net"]), "<= 1.00x", speed_verdict(b["cmp"]["net"][0])))
        rows.append(("(b) max abs error vs whole slice: ours | MONAI",
                     f"{b['err_ours']:.2e} | {b['err_monai']:.2e}", f"ours <= {TARGET_EXACT:.0e}",
                     "yes" if b["met_exact"] else "NO"))
    c = res.get("c")
    if c:
        r0, r1 = c["rows"][0], c["rows"][-1]
        rows.append((f"(c) segment memory beyond input+output: {r0['n']} | {r1['n']} slices",
                     f"{r0['extra'] / MIB:.0f} | {r1['extra'] / MIB:.0f} MiB",
                     f"growth <= {c['allowed'] / MIB:.0f} MiB", "yes" if c["met"] else "NO"))
    d = res.get("d")
    if d and "cases" in d:
        for case in d["cases"]:
            rows.append((f"(d) {case['name']} {case['precision']}: predict / bare forward",
                         fmt_ratio(*case["cmp"]["wall"]), "(information)", "-"))
    rows += bench_user.summary_rows(res, fmt_ratio)
    return rows


def print_table(rows) -> None:
    widths = [max(len(r[i]) for r in [*rows, ("what", "measured", "target", "met")]) for i in range(4)]
    header = ("what", "measured", "target", "met")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


def markdown(res: dict, cfg, mach: dict, wall: float) -> str:
    out = ["# Benchmarks", ""]
    out.append(f"Generated by `make bench` (`python benchmarks/run.py{' --quick' if cfg.quick else ''}`) "
               f"on {mach['date']}, {wall / 60:.1f} min in all. Each comparison runs both sides in one "
               f"process, interleaved (A B, B A, ...), {cfg.repeats} repeats; figures are medians, "
               "ratios are medians of the per-repeat ratios (min-max in brackets). The CPU is shared "
               "with other jobs, so single timings are noisy; the paired ratios are the figures to read.")
    out += ["", "## Machine", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in mach.items()]
    out += ["", "## Summary", "", "| what | measured | target | met |", "|---|---|---|---|"]
    out += [f"| {' | '.join(r)} |" for r in summary_rows(res)]

    a = res.get("a")
    if a:
        z, h, w = a["shape"]
        out += ["", "## (a) Engine overhead, whole slice", "",
                (f"{a['model']}, random He-initialized weights; synthetic nuclei stack {z} x {h} x {w} "
                f"(uint16). Both sides compute the same {a['window']} x {a['window']} windows (the slice "
                f"mirror-padded by the halo), batch {a['batch']} on both sides (fixed: `batch_size='auto'` "
                f"would pick {a.get('auto_batch', '?')} of these windows on the CPU)."), "",
                ("- **bare forward**: `torch.inference_mode()`, `torch.softmax(model(x), 1)` on the "
                "already padded float32 tensor, batch by batch; output left as tensors."),
                ("- **predict**: `predict(x, model, tile_size=None, normalization=None, batch_size=4)` on the "
                "already normalized float32 stack: normalization cost *excluded* (the engine still "
                "checks finiteness, copies, pads, stacks and stitches into a numpy array)."),
                ("- **predict+norm**: `predict(raw_uint16, model, tile_size=None, batch_size=4)`: the "
                "engine's default per-slice percentile normalization *included* (the bare side is "
                "unchanged, so this row shows the whole cost of normalizing)."),
                ("- **segment**: `segment(x, model, tile_size=None, normalization=None, batch_size=4)`: "
                 "the labels path (probabilities -> class per pixel inside the engine), against the "
                 "same bare forward (model + softmax, no argmax)."), "",
                ("Forward time: seconds inside the network's forward, timed with forward hooks on "
                 "both sides: the bare side calls the model, the engine its inference copy of it "
                 "(BatchNorm folded into the convolutions, so its forward is a little cheaper: the "
                 "wall ratio includes that gain). *Network factored out* = median over repeats of "
                 "(wall / forward time of predict) / (wall / forward time of the bare side): it "
                 "measures what the engine adds around the network, and on a shared CPU, where the "
                 "load changes the forward time of a run by tens of percent, it cancels that."), "",
                "| | median wall s | median CPU s | median forward s | outside forward s | MPix/s (image) |",
                "|---|---|---|---|---|---|"]
        for k in a["names"]:
            outside = a["times"][k] - a["times"][k + " fwd"]
            out.append(f"| {k} | {a['times'][k]:.2f} | {a['times'][k + ' cpu']:.2f} | "
                       f"{a['times'][k + ' fwd']:.2f} | {outside:.2f} | {a['mpix'][k]:.3f} |")
        c1, c2, c3 = a["cmp"], a["cmp_norm"], a["cmp_labels"]
        out += ["", "| predict / bare forward | wall | CPU time | network factored out |", "|---|---|---|---|",
                (f"| normalization excluded | {fmt_ratio(*c1['wall'])} | {fmt_ratio(*c1['cpu'])} | "
                f"**{fmt_ratio(*c1['net'])}** |"),
                (f"| normalization included | {fmt_ratio(*c2['wall'])} | {fmt_ratio(*c2['cpu'])} | "
                f"{fmt_ratio(*c2['net'])} |"),
                (f"| segment (labels), normalization excluded | {fmt_ratio(*c3['wall'])} | "
                 f"{fmt_ratio(*c3['cpu'])} | {fmt_ratio(*c3['net'])} |"),
                "", (f"Target <= {TARGET_OVERHEAD:.2f}x: {'met' if a['met'] else 'NOT met'}. Time outside the "
                     f"network per slice (median): predict {c1['outside'][0] / a['shape'][0]:.3f} s, "
                     f"bare forward {c1['outside'][1] / a['shape'][0]:.3f} s (its softmax), predict with "
                     f"normalization {c2['outside'][0] / a['shape'][0]:.3f} s, segment "
                     f"{c3['outside'][0] / a['shape'][0]:.3f} s. segment == argmax(predict): "
                     f"{a['labels_equal_argmax']}. Max abs difference of the "
                     f"probabilities, predict vs bare forward: {a['max_abs_diff']:.1e} (with "
                     f"normalization: {a['max_abs_diff_norm']:.1e}).")]
    b = res.get("b")
    if b:
        z, h, w = b["shape"]
        out += ["", "## (b) Exact tiling vs MONAI sliding_window_inference", "",
                (f"{b['model']}, random He-initialized weights; normalized synthetic nuclei stack "
                f"{z} x {h} x {w}. Ours: `predict(tile_size={b['core']})` (halo 'auto' = {(b['window'] - b['core']) // 2} "
                f"px, crop stitching); MONAI {mach['monai']}: `sliding_window_inference(roi_size="
                f"({b['window']}, {b['window']}), overlap={b['overlap']:.6f}, mode='constant')`, i.e. "
                f"the same {b['window']}-px network input and the same {b['overlap_px']}-px overlap "
                f"(scan step {b['core']} px); both batch {b['batch']} windows per forward, across slices."),
                "",
                ("Fairness: MONAI pads (with a constant) only when the image is smaller than the roi, "
                "so it gets the stack already mirror-padded by the halo (the padding is timed on its "
                "side) and its output is cropped back; the whole-slice reference pads the same way. "
                "The image side is a multiple of 16 so that every MONAI window starts on the "
                "network's 16-px grid (including its last window, which MONAI shifts back to the "
                "border just as ours does), and both compute exactly the same windows: "
                f"{b['tiles_ours']} (ours) and {b['tiles_monai']} (MONAI). MONAI then averages the "
                "overlaps, where ours keeps each window's core only."), "",
                ("| | median wall s | median CPU s | median forward s | outside forward s | "
                 "MPix/s (image) | max abs error vs whole slice |"), "|---|---|---|---|---|---|---|"]
        for k, label in (("ours", "ours (exact tiling)"), ("MONAI", "MONAI")):
            err = (f"{b['err_ours']:.1e}" if k == "ours" else
                   f"{b['err_monai']:.1e} ({100 * b['frac_monai']:.1f}% of values off by > {TARGET_EXACT:.0e})")
            out.append(f"| {label} | {b['times'][k]:.2f} | {b['times'][k + ' cpu']:.2f} | "
                       f"{b['times'][k + ' fwd']:.2f} | {b['times'][k] - b['times'][k + ' fwd']:.2f} | "
                       f"{b['mpix'][k]:.3f} | {err} |")
        cb = b["cmp"]
        out += ["", (f"ours / MONAI: wall {fmt_ratio(*cb['wall'])}, CPU time {fmt_ratio(*cb['cpu'])}, "
                     f"network factored out **{fmt_ratio(*cb['net'])}** (as in (a)); time outside the "
                     f"network (median): ours {cb['outside'][0]:.2f} s, MONAI {cb['outside'][1]:.2f} s. "
                     f"Whole-slice inference (the reference, one run): {b['t_whole']:.2f} s. "
                     f"Targets: at least as fast (network factored out: {b['met_speed']}), exact "
                     f"<= {TARGET_EXACT:.0e} ({'met' if b['met_exact'] else 'NOT met'}).")]
    c = res.get("c")
    if c:
        out += ["", "## (c) Peak RSS of segment", "",
                (f"{c['model']}, random He-initialized weights, `segment(stack, model, device='cpu')` with "
                "every option at its default (tile_size/batch_size 'auto'), one fresh subprocess per "
                "stack. The input is allocated and filled before the call. Peak: the kernel's VmHWM, "
                "reset to the current RSS just before the call (`/proc/self/clear_refs`), with RSS "
                "sampled every 5 ms as a cross-check (where /proc is missing: the samples and "
                "`ru_maxrss`); here: " + ", ".join(sorted({r['how'] for r in c['rows']})) + ". "
                "*extra* = peak - RSS before the call - output bytes: the engine's working memory, "
                "which must not grow with the number of slices. Each stack runs in "
                f"{len(c['rows'][0]['extra_runs'])} fresh subprocesses; the table keeps the lowest "
                "peak (allocator noise of a few tens of MiB only ever adds) and lists all.")]
        if c["rows"][0]["size"] < 2048:
            last = c["rows"][-1]
            estimate = last["seconds"] / (last["n"] * last["size"] ** 2) * 64 * 2048**2
            out += ["", (f"Slices are {last['size']} x {last['size']} rather than 2048 x 2048: at the "
                    f"throughput measured here the 64-slice 2048-px stack would take about "
                    f"{estimate / 60:.0f} min even with this small model on this CPU "
                    "(`--rss-size 2048` runs it).")]
        out += ["", ("| slices | input MiB | output MiB | RSS before MiB | peak MiB | extra MiB | tiles "
                "| window | batch | s |"), "|---|---|---|---|---|---|---|---|---|---|"]
        for r in c["rows"]:
            out.append(f"| {r['n']} x {r['size']}^2 | {r['input'] / MIB:.0f} | {r['output'] / MIB:.0f} "
                       f"({r['output_dtype']}) | {r['rss0'] / MIB:.0f} | {r['peak'] / MIB:.0f} | "
                       f"{r['extra'] / MIB:.0f} ({', '.join(f'{e / MIB:.0f}' for e in r['extra_runs'])}) | {r['n_tiles']} | {r['window_shape']} | "
                       f"{r['batch_size']} | {r['seconds']:.1f} |")
        out += ["", (f"Growth of *extra* from {c['rows'][0]['n']} to {c['rows'][-1]['n']} slices: "
                f"**{c['growth'] / MIB:+.0f} MiB** (allowed {c['allowed'] / MIB:.0f} MiB: "
                f"{'met' if c['met'] else 'NOT met'}).")]
    d = res.get("d")
    out += ["", "## (d) GPU", ""]
    if not d or "skipped" in d:
        out.append((d or {}).get("skipped", "not run") + ". On a CUDA machine this section times "
                   "`predict` end to end (host numpy in, host numpy out, exact tiling, "
                   "tile_size/batch_size 'auto') of a base-64 UNet in bfloat16 against the bare "
                   "forward (autocast bf16, channels_last, inputs already on the device) of the same "
                   "number of windows at the same batch size, and the bundled `nuclei-unet` model "
                   "when `load_model` has it.")
    else:
        out += [(f"Device: {d['device']}. MPix/s counted in image pixels for both sides (the bare "
                "forward runs the engine's number of windows at its batch size, inputs already on "
                "the device)."), "",
                ("| model | precision | stack | tile / window | batch | tiles | predict MPix/s | bare MPix/s "
                "| ratio |"), "|---|---|---|---|---|---|---|---|---|"]
        for case in d["cases"]:
            out.append(f"| {case['name']} | {case['precision']} | {case['shape']} | {case['tile_shape']} / "
                       f"{case['window_shape']} | {case['batch']} | {case['n_tiles']} | "
                       f"{case['mpix']['predict']:.2f} | {case['mpix']['bare forward']:.2f} | "
                       f"{fmt_ratio(*case['cmp']['wall'])} |")
        if d.get("note"):
            out += ["", d["note"] + "."]
    out += bench_user.markdown(res, fmt_ratio)
    e = res.get("e")
    out += ["", "## (e) Out of core (benchmarks/bench_out_of_core.py)", ""]
    if not e or "skipped" in e:
        out.append((e or {}).get("skipped", "not run") + ".")
    else:
        if e.get("error"):
            out.append(f"main() failed: `{e['error']}`.")
        result = e.get("result")
        if isinstance(result, dict) and isinstance(result.get("cases"), list) and result["cases"]:
            cases = [c for c in result["cases"] if isinstance(c, dict)]
            keys = list(dict.fromkeys(k for c in cases for k in c))
            out += [f"main() returned ({', '.join(f'{k}: {v}' for k, v in result.items() if k != 'cases')}):",
                    "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            out += ["| " + " | ".join(str(c.get(k, "")) for k in keys) + " |" for c in cases]
        elif result is not None:
            out += ["main() returned:", "", "```", _plain_text(result), "```"]
        if e.get("stdout"):
            out += ["", "Its output:", "", "```", e["stdout"].rstrip()[-6000:], "```"]
    return "\n".join(out) + "\n"


def _plain_text(value) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, indent=2, default=str)
    except (TypeError, ValueError):
        return repr(value)


# ----------------------------------------------------------------------------- main
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
        cfg.results = str(HERE / "RESULTS.md")
    return cfg


def main(argv=None) -> int:
    cfg = parse(argv)
    if cfg.rss_child:
        print(json.dumps(rss_child(json.loads(cfg.rss_child))))
        return 0
    sections = {s.strip() for s in cfg.sections.split(",") if s.strip()}
    mach = machine()
    print("machine: " + "; ".join(f"{k} {v}" for k, v in mach.items()), flush=True)
    t0 = time.perf_counter()
    res: dict = {}
    runners = {"a": section_overhead, "b": section_monai, "c": section_rss, "d": section_gpu,
               "e": section_out_of_core,
               "f": lambda c: bench_user.section_user(c, this),
               "g": lambda c: bench_user.section_training(c, this),
               "h": lambda c: bench_user.section_heads(c, this)}
    this = sys.modules[__name__]
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
