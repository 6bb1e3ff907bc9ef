"""Section (d) of ``run.py``: GPU throughput of ``predict`` end to end against the bare
forward of the same windows (only where ``torch.cuda.is_available()``)."""

from __future__ import annotations

import math

import numpy as np
import torch
from bench_common import compare, interleaved, make_unet, median, mpix, normalized, nuclei

import napari_unet_stack as nus


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
