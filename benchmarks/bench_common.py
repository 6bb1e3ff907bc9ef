"""Shared pieces of the benchmarks (``run.py`` and its sections, ``bench_user.py``,
``bench_batch.py``): the targets, random He-initialized models, synthetic inputs, the
interleaved timing of compared callables and their paired ratios, and the machine's
description.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

import napari_unet_stack as nus

HERE = Path(__file__).resolve().parent

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
