"""Planning a run: the validated options (`Request`), then the tile plan, device, batch
size and label rule (`RunPlan`), built once per run (and again, smaller, after an
out-of-memory error at batch size 1)."""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import tiling
from ..channels import check_channel
from ..devices import channels_last_for, memory_budget, resolve_device
from ..labels import DEFAULT_THRESHOLD, LabelRule, model_threshold
from ..normalization import resolve_normalization
from ..validation import check_int
from ..zcontext import check_time_axis, check_z_axis
from .augment import check_tta
from .forward import probe_classes
from .layout import Layout, caller_stacklevel, fit_stack
from .precision import choose_precision
from .spec import ModelSpec

log = logging.getLogger("napari_unet_stack")

__all__ = ["DEFAULT_BORDER", "MODES", "Request", "RunPlan", "check_border", "make_request", "plan_run"]

MODES = ("labels", "probabilities")

#: The default mirror padding at the image edge, in pixels (``border="reach"``: the halo).
#: Measured on held-out data (README, "Border"): Dice in the border band and overall
#: did not improve with wider padding, and each pixel of it costs work.
DEFAULT_BORDER = 16


@dataclass(frozen=True)
class Request:
    """The options of one run, checked, with the normalization resolved (a dict or None).

    Small and picklable: the dask tasks receive it as it is.
    """

    mode: str  # "labels" | "probabilities"
    channel_axis: int | None = None
    channel: int | str | None = None  # checked against the image by `layout.validate_image`
    tile_size: Any = "auto"
    halo: Any = "auto"
    blend: str = "crop"
    pad_mode: str = "reflect"
    border: Any = DEFAULT_BORDER  # int >= 0 or "reach"
    batch_size: Any = "auto"
    device: Any = "auto"
    precision: Any = "auto"
    normalization: dict | None = None
    threshold: float = DEFAULT_THRESHOLD  # resolved: the caller's, else the model's own
    markers: float | None = None  # labels mode: an instance model's marker maps at this threshold
    tta: str = "none"  # test-time augmentation (`augment.TTA_CHOICES`)
    z_axis: Any = "auto"  # a z-context model's Z axis (`layout.with_z_context`)
    time_axes: tuple[int, ...] = ()  # image axes that are time: never a z-context model's Z axis

    def replace(self, **changes) -> Request:
        return dataclasses.replace(self, **changes)


def make_request(spec: ModelSpec, mode: str, *, channel_axis=None, channel=None, tile_size="auto", halo="auto", blend="crop",
                 pad_mode="reflect", batch_size="auto", device="auto", precision="auto", normalization="auto",
                 threshold=None, markers=None, border=DEFAULT_BORDER, tta=False, z_axis="auto",
                 time_axis=None) -> Request:
    """Check the options that do not depend on the image; resolve the normalization
    (an explicit option wins over the checkpoint's, which wins over the default) and the
    threshold (None: the model's own, `napari_unet_stack.labels.model_threshold`)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if blend not in tiling.BLEND_MODES:
        raise ValueError(f"`blend` must be one of {tiling.BLEND_MODES}, got {blend!r}")
    if pad_mode not in tiling.PAD_MODES:
        raise ValueError(f"`pad_mode` must be one of {tiling.PAD_MODES}, got {pad_mode!r}")
    threshold = model_threshold(spec, threshold)
    border = check_border(border)
    tta = check_tta(tta)
    channel = check_channel(channel, None, spec.image_channels, channel_axis=channel_axis)
    z_axis = check_z_axis(z_axis)
    times = check_time_axis(time_axis)
    if spec.margin and blend != "crop":
        raise ValueError("valid-convolution models tile exactly with the overlap-tile strategy: use blend='crop'")
    return Request(mode, channel_axis, channel, tile_size, halo, blend, pad_mode, border, batch_size, device,
                   precision, resolve_normalization(normalization, spec.normalization), float(threshold),
                   None if markers is None else float(markers), tta, z_axis, times)


def check_border(border: Any) -> int | str:
    """``border`` checked: ``"reach"`` or an int >= 0 (pixels of mirror padding at the image edge)."""
    if isinstance(border, str) and border == "reach":
        return border
    try:
        return check_int("border", border, 0)
    except TypeError:
        raise TypeError(f"`border` must be 'reach' or an int >= 0, got {type(border).__name__} ({border!r})") from None


def resolve_border(border: int | str, spec: ModelSpec, halo: int) -> int:
    """The border in pixels: the halo for ``"reach"``; the margin for valid models (their
    context is mirror padding by construction; the option does not apply)."""
    if spec.margin:
        return spec.margin
    return halo if border == "reach" else int(border)


def resolve_halo(halo: Any, spec: ModelSpec, blend: str, hw: tuple[int, int]) -> int:
    """The halo in pixels: 0 for valid models, the model's reach for 'auto'.

    A larger halo is bounded by what it can change: the model's reach for models whose
    reach is exact (the result is then the same), else the image's larger side (a window
    then holds the whole slice and its mirror image on each side)."""
    if spec.margin:
        return 0
    if halo == "auto" or halo is None:
        if not spec.exact and spec.module is not None and not hasattr(spec.module, "size_multiple"):
            warnings.warn("model geometry unknown: using a depth-4 UNet halo of 96 px",
                          stacklevel=caller_stacklevel())
        return spec.halo
    if isinstance(halo, bool) or not isinstance(halo, (int, np.integer)) or halo < 0:
        raise ValueError(f"`halo` must be 'auto' or a non-negative int, got {halo!r}")
    rounded = tiling.round_up(int(halo), spec.multiple)
    bound = spec.halo if spec.exact else tiling.round_up(max(hw), spec.multiple)
    if rounded > bound:
        log.info("halo %d px is more than this model and image can use: using %d px", halo, bound)
        return bound
    if blend == "crop" and rounded < spec.halo:
        log.info("halo %d px is below the model's reach (%d px): tiled output is not exact", rounded, spec.halo)
    return rounded


def activation_bytes_per_pixel(spec: ModelSpec, dtype_bytes: int) -> float:
    """A conservative estimate of live activation memory per input pixel in inference."""
    factor = 14 + (2 * 6 if spec.deep else 0)
    return factor * spec.base_channels * dtype_bytes


def resolve_tile(tile_size: Any, spec: ModelSpec, halo: int, hw: tuple[int, int], budget: int, bpp: float,
                 device: torch.device) -> tuple[int | None, int | None]:
    """The (Y, X) core size: from the memory budget for 'auto', (None, None) for whole slices."""
    if tile_size is None:
        return None, None
    if tile_size == "auto":
        # the largest core whose window fits the budget at batch size 1, capped for responsiveness
        cap = 2048 if device.type == "cuda" else 1024
        side = int(math.sqrt(budget / bpp)) - 2 * halo - 2 * spec.margin
        # a core at least as large as the halo keeps the work within 9x the image's
        core = max(spec.multiple, tiling.round_up(halo, spec.multiple), min(cap, side) // spec.multiple * spec.multiple)
        return (min(core, tiling.round_up(hw[0], spec.multiple)), min(core, tiling.round_up(hw[1], spec.multiple)))
    sizes = (tile_size, tile_size) if np.isscalar(tile_size) else tuple(tile_size)
    if len(sizes) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
        raise ValueError(f"`tile_size` must be 'auto', None, a positive int or a (Y, X) pair, got {tile_size!r}")
    return tuple(int(s) for s in sizes)  # type: ignore[return-value]


def plan_axes(spec: ModelSpec, hw: tuple[int, int], cores: tuple[int | None, int | None], halo: int,
              border: int | None = None):
    """The (Y, X) `tiling.AxisPlan` pair."""
    return tuple(
        tiling.plan_axis(
            n, core=c, halo=halo, multiple=spec.multiple, input_size_for=spec.input_size_for,
            output_size=spec.output_size, valid_margin=spec.margin, border=border,
        )
        for n, c in zip(hw, cores, strict=True)
    )


#: The largest ``batch_size="auto"`` per device type but the CPU (4 on devices not listed).
BATCH_CAPS = {"cuda": 64}

#: ``batch_size="auto"`` on the CPU: the most windows, a power of two up to `CPU_MAX_BATCH`,
#: whose activations (window px x `activation_bytes_per_pixel`, the estimate the memory budget
#: uses) fit this many bytes together. From ``benchmarks/cpu_batch_rule.md`` (2-core AVX-512
#: EPYC, float32, the engine's time per pixel over batch 1's, run B / run A): small windows gain
#: (nuclei-unet 128 x 128, 7 MB a window: batch 8 0.54x / 0.42x; 192 x 192, 17 MB: batch 8
#: 0.76x / 0.68x; the demo's 288 x 288, 37 MB: batch 2 0.90x / 0.75x; base-16 UNet 192 x 192,
#: 33 MB: batch 4 0.84x / 0.79x); batches of a few hundred MB lose (base 16 544 x 544, 265 MB:
#: batch 2 1.24x / 1.40x, the case the old one-window cap was chosen on; UNet++ 544 x 544:
#: 1.12x / 1.08x; nuclei-unet 704 x 704: batch 4 1.51x / 1.66x). Between them (288-416 px
#: windows of the wider networks, 70-160 MB each) batch 2 measured 0.91-0.98x in run B and
#: 0.94-1.19x in run A: the rule keeps one window there.
CPU_BATCH_BYTES = 128 * 2**20
CPU_MAX_BATCH = 8  # the largest batch measured


def cpu_batch(window_px: int, bpp: float) -> int:
    """``batch_size="auto"``'s rule on the CPU, before the memory budget: the largest power of
    two up to `CPU_MAX_BATCH` whose windows' activations fit `CPU_BATCH_BYTES` (at least 1).

    >>> cpu_batch(288 * 288, 448.0), cpu_batch(544 * 544, 896.0), cpu_batch(128 * 128, 448.0)
    (2, 1, 8)
    """
    fit = int(CPU_BATCH_BYTES // max(window_px * bpp, 1))
    return 1 << (min(max(fit, 1), CPU_MAX_BATCH).bit_length() - 1)


def resolve_batch(batch_size: Any, device: torch.device, budget: int, window_px: int, bpp: float) -> int:
    """The batch size: for ``"auto"`` the most windows the budget holds, capped per device
    (`cpu_batch` on the CPU, `BATCH_CAPS` elsewhere, 4 on devices not listed there)."""
    if batch_size == "auto":
        cap = cpu_batch(window_px, bpp) if device.type == "cpu" else BATCH_CAPS.get(device.type, 4)
        return int(max(1, min(cap, budget // max(window_px * bpp, 1))))
    if isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool) and batch_size >= 1:
        return int(batch_size)
    raise ValueError(f"`batch_size` must be 'auto' or a positive int, got {batch_size!r}")


@dataclass
class RunPlan:
    """Everything a run needs that does not change while it runs (but for `shrunk`)."""

    spec: ModelSpec
    layout: Layout
    request: Request
    device: torch.device
    autocast_dtype: torch.dtype | None
    precision_reason: str
    stack_params: tuple[np.ndarray, int | None] | None  # `layout.fit_stack`'s parameters and shift
    halo: int
    border: int
    axes: tuple[tiling.AxisPlan, tiling.AxisPlan]
    batch_size: int
    n_classes: int
    rule: LabelRule | None  # labels mode only

    @property
    def channels_last(self) -> bool:
        return channels_last_for(self.device)

    @property
    def tiles_per_slice(self) -> int:
        return len(self.axes[0].origins) * len(self.axes[1].origins)

    @property
    def exact(self) -> bool:
        spec = self.spec
        return spec.exact and self.request.blend == "crop" and (spec.margin > 0 or self.halo >= spec.halo)

    def shrunk(self) -> RunPlan | None:
        """The plan with tiles half as large and batch size 1; None when they cannot shrink."""
        m = self.spec.multiple
        cores = tuple(max(m, (p.core // 2) // m * m) for p in self.axes)
        if cores == (self.axes[0].core, self.axes[1].core):
            return None
        axes = plan_axes(self.spec, self.layout.hw, cores, self.halo, self.border)
        return dataclasses.replace(self, axes=axes, batch_size=1)


def plan_run(spec: ModelSpec, layout: Layout, request: Request, image) -> RunPlan:
    """Device, precision, stack normalization, halo, tiles, batch size and classes of a run."""
    dev = resolve_device(request.device)
    norm = request.normalization
    stack_params = None
    if norm is not None and norm["scope"] == "stack" and layout.lead_shape:
        stack_params = fit_stack(image, layout, norm)
    n_classes = spec.out_channels
    if n_classes is None:  # a plain callable: one small forward tells the class count
        n_classes = probe_classes(spec, layout.n_inputs, dev)
    precision = choose_precision(spec, layout, request, image, stack_params, dev, n_classes)
    autocast_dtype = precision.dtype
    halo = resolve_halo(request.halo, spec, request.blend, layout.hw)
    border = resolve_border(request.border, spec, halo)
    bpp = activation_bytes_per_pixel(spec, 2 if autocast_dtype is not None else 4)
    budget = memory_budget(dev)
    cores = resolve_tile(request.tile_size, spec, halo, layout.hw, budget, bpp, dev)
    axes = plan_axes(spec, layout.hw, cores, halo, border)
    batch = resolve_batch(request.batch_size, dev, budget, axes[0].window * axes[1].window, bpp)
    rule = spec.label_rule(n_classes, request.threshold, request.markers) if request.mode == "labels" else None
    return RunPlan(spec, layout, request, dev, autocast_dtype, precision.reason, stack_params, halo, border, axes, batch,
                   n_classes, rule)
