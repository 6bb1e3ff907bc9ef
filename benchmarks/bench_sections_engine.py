"""Sections (a) and (b) of ``run.py``: the engine's overhead over the bare forward of a
whole slice, and exact tiling against MONAI's ``sliding_window_inference``."""

from __future__ import annotations

import time

import numpy as np
import torch
from bench_common import (
    TARGET_EXACT,
    TARGET_OVERHEAD,
    ForwardTimer,
    auto_batch,
    compare,
    engine_network,
    interleaved,
    make_unet,
    median,
    mpix,
    normalized,
    nuclei,
    speed_verdict,
)

import napari_unet_stack as nus
from napari_unet_stack import tiling


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
    scores = overhead_scores(times, first, plan, (z, size, size), names)
    return {
        "shape": (z, size, size),
        "model": f"UNet(base {base}, depth {depth}), halo {halo}",
        "window": plan.window,
        "batch": batch,
        "auto_batch": auto_batch(model, plan.window**2),
        "names": list(names),
        **scores,
    }


def overhead_scores(times: dict, first: dict, plan, shape: tuple[int, int, int], names) -> dict:
    """(a)'s figures from the interleaved runs: median times, throughput, the ratios to the
    bare forward, and the engine's outputs checked against the bare forward's."""
    z, size, _ = shape
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
        **monai_scores(times, first, reference, z * size * size),
    }


def monai_scores(times: dict, first: dict, reference: np.ndarray, pixels: int) -> dict:
    """(b)'s figures from the interleaved runs: median times, throughput, the ratios of ours
    to MONAI, and both outputs' errors against the whole-slice reference."""
    err_ours = float(np.abs(first["ours"] - reference).max())
    diff_monai = np.abs(np.moveaxis(first["MONAI"], 1, 0) - reference)
    err_monai = float(diff_monai.max())
    frac_monai = float((diff_monai > TARGET_EXACT).mean())
    cmp = compare(times, "ours", "MONAI")
    met_speed = speed_verdict(cmp["net"][0])
    return {
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
