"""``precision="auto"`` for inference: bfloat16 on CPUs with native bfloat16 where it keeps
the labels, float32 elsewhere (no napari).

Whether bfloat16 keeps a model's labels is measured, per model and cheaply: the busiest
`PROBE` x `PROBE` block of the run's first slice (the largest intensity spread) runs in
float32 and in bfloat16, and bfloat16 is used when at least `AGREEMENT` of the probe's
labels agree and its probabilities move by at most `PROB_CHANGE` on average (the largest
class change per pixel): trained models have saturated outputs (bundled models: 0.00024-
0.00040), barely trained or random ones do not (0.0015-0.0027, some of them keeping
99.95% of their labels). A probe whose float32 labels are (almost) one class says nothing about the
boundaries, where bfloat16 flips labels: the run is then float32 and the next run probes
again. The probe uses the model's default label rule (its own threshold), so `predict` and
`segment` at any threshold decide alike. A measured decision is kept per model object
(and device and weights version): training in place or a new UNet++ head probes again. CUDA keeps its rule
(`devices.resolve_precision`: bfloat16, else float16); training's precision is not
touched.

A model may also carry the check measured on held-out data when it was made
(``meta["provenance"]["bf16_check"]``: ``agreement``, ``prob_change``, ``data`` and the
``weights`` digest of the network it was measured on, see `weights_digest`;
``scripts/train_default_models.py`` records it for the bundled models over their whole
held-out stack). While the weights still have that digest, the recorded figures decide
under the same two bounds instead of the 128 px probe; weights changed in any way
(fine-tuning) no longer match, and the probe decides again.
"""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import tiling
from ..devices import channels_last_for, cpu_native_bf16, resolve_precision
from .forward import activate, forward
from .layout import Layout, read_slice
from .placement import on_device, weights_version
from .spec import ModelSpec

__all__ = ["AGREEMENT", "PROBE", "PROB_CHANGE", "PrecisionChoice", "choose_precision", "recorded_check",
           "weights_digest"]

#: The side of the probe block, in pixels (1/16 of a 512 x 512 slice).
PROBE = 128
#: The least fraction of the probe's float32 labels bfloat16 must keep (issue 13: 99.9%).
AGREEMENT = 0.999
#: The largest mean change of the probabilities bfloat16 may make (see the module text).
PROB_CHANGE = 1e-3
#: A probe whose labels are all but this fraction one class is inconclusive.
MINORITY = 0.01

_DECISIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class PrecisionChoice:
    """The autocast dtype of a run (None: float32) and why, for the run's ``info``."""

    dtype: torch.dtype | None
    reason: str


def choose_precision(spec: ModelSpec, layout: Layout, request: Any, image: Any, stack_params, device: torch.device,
                     n_classes: int) -> PrecisionChoice:
    """The precision of a run: as requested, else the ``"auto"`` rule of this module."""
    if request.precision not in (None, "auto"):
        return PrecisionChoice(resolve_precision(request.precision, device), "requested")
    if device.type != "cpu":
        dtype = resolve_precision("auto", device)
        return PrecisionChoice(dtype, "auto: float32 on this device" if dtype is None else f"auto: {device.type}")
    if not cpu_native_bf16():
        return PrecisionChoice(None, "auto: this CPU has no native bfloat16")
    key: tuple = (str(device),)
    cache = None
    if spec.module is not None:
        cache = _DECISIONS.setdefault(spec.module, {})
        key += (weights_version(spec.module),)
        if key in cache:
            return cache[key]
    recorded = recorded_check(spec.module)
    if recorded is not None:
        agreement, change, where = recorded
        figures = f"kept {agreement:.3%} of the float32 labels of {where}, probabilities moved {change:.5f}"
    else:
        probe = probe_agreement(spec, layout, request, image, stack_params, device, n_classes)
        if probe is None:
            return PrecisionChoice(None, "auto: float32 (the bfloat16 probe was inconclusive: one class only)")
        agreement, change = probe
        figures = f"kept {agreement:.3%} of the float32 labels of a {PROBE} px probe, probabilities moved {change:.5f}"
    if agreement >= AGREEMENT and change <= PROB_CHANGE:
        choice = PrecisionChoice(torch.bfloat16, f"auto: bfloat16 {figures}")
    else:
        choice = PrecisionChoice(None, f"auto: float32 (bfloat16 {figures}; needs >= {AGREEMENT:.1%} and "
                                       f"<= {PROB_CHANGE})")
    if cache is not None:
        cache[key] = choice
    return choice


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a network's parameters and buffers (names, dtypes, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def recorded_check(module: Any) -> tuple[float, float, str] | None:
    """The bf16 check a model carries for its current weights: (agreement, change, where)."""
    meta = getattr(module, "meta", None)
    check = (meta or {}).get("provenance", {}).get("bf16_check") if isinstance(meta, dict) else None
    if not isinstance(check, dict) or module is None:
        return None
    try:
        agreement, change = float(check["agreement"]), float(check["prob_change"])
        weights, where = str(check["weights"]), str(check.get("data", "held-out data"))
    except (KeyError, TypeError, ValueError):
        return None
    if weights != weights_digest(module):
        return None
    return agreement, change, where


def busiest_block(data: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` block of a (C, H, W) slice whose values spread most (the whole
    slice where it is smaller)."""
    h, w = data.shape[-2:]
    if h <= size and w <= size:
        return data
    sy, sx = min(size, h), min(size, w)
    gray = data.mean(axis=0)
    best, where = -1.0, (0, 0)
    for y in range(0, h - sy + 1, sy):
        for x in range(0, w - sx + 1, sx):
            spread = float(gray[y : y + sy, x : x + sx].std())
            if spread > best:
                best, where = spread, (y, x)
    y, x = where
    return data[:, y : y + sy, x : x + sx]


def probe_agreement(spec: ModelSpec, layout: Layout, request: Any, image: Any, stack_params, device: torch.device,
                    n_classes: int) -> tuple[float, float] | None:
    """The fraction of the probe's float32 labels bfloat16 keeps and the mean of the largest
    change of a class probability per pixel (None: inconclusive)."""
    data, _bad = read_slice(image, layout, layout.leads[0], request.normalization, stack_params)
    block = np.nan_to_num(busiest_block(data, PROBE), nan=0.0, posinf=0.0, neginf=0.0)
    h, w = block.shape[-2:]
    axes = [tiling.plan_axis(n, core=None, halo=0, border=0, multiple=spec.multiple,
                             input_size_for=spec.input_size_for, output_size=spec.output_size,
                             valid_margin=spec.margin) for n in (h, w)]
    x = torch.from_numpy(np.ascontiguousarray(tiling.pad_canvas(block, *axes, "reflect"))[None]).to(device)
    last = channels_last_for(device)
    fn = on_device(spec.module, device, last) if spec.module is not None else spec.fn
    rule = spec.label_rule(n_classes)  # the model's own threshold: predict and segment decide alike
    labels, probs = [], []
    with torch.inference_mode():
        for dtype in (None, torch.bfloat16):
            logits, activation = forward(spec, fn, x, device, dtype, last)
            p = activate(logits, activation)[:1, :, :h, :w]
            labels.append(rule.classes_torch(p)[0].cpu().numpy())
            probs.append(p[0])
        change = float((probs[0] - probs[1]).abs().amax(dim=0).mean())
    counts = np.bincount(labels[0].ravel().astype(np.int64))
    if counts.max() > (1 - MINORITY) * labels[0].size:
        return None
    return float(np.mean(labels[0] == labels[1])), change
