"""Tile geometry, mirror padding and blending windows (numpy only; no torch, no napari).

Geometry of one spatial axis of length ``L`` for a model with grid ``m`` (its size
multiple), and either a halo ``h`` ("same" convolutions) or a valid margin ``v``:

- "same" models: the image is mirror-padded by a *border* ``b`` on each side (by default
  ``b = h``), then further at the end to a multiple of ``m``: the *canvas*. Whole-image
  inference runs the network once on the canvas. Tiles write *cores* that start on the
  canvas' ``m`` grid (the first at or before the image start); a tile's network input is
  ``core + 2 h`` pixels starting ``h`` before its core, clamped into the canvas (flush
  with its edge) near the image border. Every window thus sees the canvas at the phase
  whole-image inference sees it (UNets are translation equivariant only for shifts that
  are multiples of ``m``), and where a window is clamped, its edge is the canvas edge, as
  for the whole canvas: crop stitching reproduces whole-image inference exactly, for any
  border, when the halo covers the model's reach;
- "valid" models (overlap-tile strategy): the network input ``I`` gives an output of
  ``I - 2 v`` pixels that starts at ``origin`` and is the core itself; the canvas is the
  image mirror-padded by ``v`` (the border is the margin by construction).

>>> ax = plan_axis(100, core=32, halo=16, multiple=16)
>>> ax.origins, ax.core, ax.window, ax.pad_before, ax.pad_after
((0, 32, 64, 80), 32, 64, 16, 28)
>>> plan_axis(20, core=64, halo=16, multiple=16).origins  # image smaller than a tile
(0,)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

PAD_MODES = ("reflect", "symmetric", "constant", "edge")
BLEND_MODES = ("crop", "gaussian", "linear")


def round_up(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple


@dataclass(frozen=True)
class AxisPlan:
    """Tiling of one axis; all lengths in pixels.

    ``origins``: core origins (image coordinates; the first may be negative when the
    border is not on the grid); ``core``: pixels each tile writes; ``window``: the network
    input length; ``context``: input pixels before the core (``window`` starts at
    ``origin - context``, clamped into the canvas by `iter_tiles`); ``out_offset``: where
    the core starts in the output of an unclamped window; ``pad_before``/``pad_after``:
    the canvas' mirror padding (``pad_before`` is the border).
    """

    length: int
    origins: tuple[int, ...]
    core: int
    window: int
    context: int
    out_offset: int
    pad_before: int
    pad_after: int


def plan_axis(
    length: int,
    *,
    core: int | None,
    halo: int,
    multiple: int,
    input_size_for: Callable[[int], int] | None = None,
    output_size: Callable[[int], int] | None = None,
    valid_margin: int = 0,
    border: int | None = None,
) -> AxisPlan:
    """Plan the tiles of one axis.

    ``core=None`` plans a single tile over the whole axis. For "same" models ``core`` is
    rounded up to ``multiple`` and shrunk to the (rounded-up) axis length when the image
    is smaller than one tile; ``border`` (default: ``halo``) is the mirror padding before
    and after the image, and the canvas is padded further at the end to a multiple of
    ``multiple``. Windows sit on the canvas' ``multiple`` grid; near the canvas edge they
    are clamped flush with it. For valid models pass ``valid_margin`` and the model's
    ``input_size_for``/``output_size``; ``halo`` and ``border`` are then ignored.
    """
    if length < 1:
        raise ValueError(f"cannot tile an axis of length {length}")
    if valid_margin:
        return _plan_valid_axis(length, core, multiple, input_size_for, output_size, valid_margin)
    b = halo if border is None else int(border)
    canvas = round_up(length + 2 * b, multiple)
    first = b // multiple * multiple  # the first core starts on the canvas grid, at or before the image
    span = b + length - first
    full = round_up(span, multiple)
    write = full if core is None else min(round_up(core, multiple), full)
    window = write + 2 * halo
    if window >= canvas:  # one window holds the whole canvas
        write, window = full, canvas
    last = round_up(max(span - write, 0), multiple)
    starts = list(range(0, last + 1, write)) if last > 0 else [0]
    if starts[-1] != last:
        starts.append(last)
    origins = tuple(first + s - b for s in starts)  # image coordinates (the first may be < 0)
    return AxisPlan(length, origins, write, window, halo, halo, b, canvas - length - b)


def _plan_valid_axis(length, core, multiple, input_size_for, output_size, valid_margin) -> AxisPlan:
    """The overlap-tile plan of a valid-convolution model: windows of ``input_size_for``."""
    assert input_size_for is not None and output_size is not None
    want = max(length if core is None else min(core, length), multiple)
    window = input_size_for(want)
    out = output_size(window)
    step = max(out // multiple * multiple, multiple) if out >= multiple else out
    last = max(round_up(max(length - out, 0), multiple), 0) if step % multiple == 0 else max(length - out, 0)
    origins = list(range(0, last + 1, step)) if last > 0 else [0]
    if origins[-1] != last:
        origins.append(last)
    pad_after = origins[-1] - valid_margin + window - length
    return AxisPlan(length, tuple(origins), out, window, valid_margin, 0, valid_margin, max(pad_after, 0))


@dataclass(frozen=True)
class Tile:
    """One tile: where its input window sits in the canvas, where its core goes in the image."""

    index: tuple[int, int]
    window: tuple[slice, slice]  # into the padded canvas
    target: tuple[slice, slice]  # into the image (core clipped to the image)
    source: tuple[slice, slice]  # into the network output


def iter_tiles(plan_y: AxisPlan, plan_x: AxisPlan) -> Iterator[Tile]:
    """Tiles in raster order; each core clipped to the image, later tiles overwrite overlaps.

    A window starts ``context`` before its core in the canvas, clamped into the canvas
    (flush with its edge): the core then sits further from the window's start."""
    for (iy, oy), (ix, ox) in itertools.product(enumerate(plan_y.origins), enumerate(plan_x.origins)):
        window, target, source = [], [], []
        for plan, o in ((plan_y, oy), (plan_x, ox)):
            nominal = o - plan.context + plan.pad_before
            start = min(max(nominal, 0), plan.pad_before + plan.length + plan.pad_after - plan.window)
            window.append(slice(start, start + plan.window))
            first, stop = max(o, 0), min(o + plan.core, plan.length)
            target.append(slice(first, stop))
            offset = plan.out_offset + (first - o) + (nominal - start)
            source.append(slice(offset, offset + stop - first))
        yield Tile((iy, ix), tuple(window), tuple(target), tuple(source))


def pad_canvas(image: np.ndarray, plan_y: AxisPlan, plan_x: AxisPlan, mode: str = "reflect") -> np.ndarray:
    """Mirror-pad the last two axes of ``image`` (``(C, H, W)``) into the tiling canvas.

    Uses NumPy's padding, so pads larger than the image work (repeated reflection).
    """
    if mode not in PAD_MODES:
        raise ValueError(f"`pad_mode` must be one of {PAD_MODES}, got {mode!r}")
    pads = [(0, 0)] * (image.ndim - 2) + [
        (plan_y.pad_before, plan_y.pad_after),
        (plan_x.pad_before, plan_x.pad_after),
    ]
    if mode == "reflect" and min(image.shape[-2:]) == 1:
        mode = "symmetric"  # reflect of a single pixel is undefined; symmetric repeats it
    return np.pad(image, pads, mode=mode)


def blend_window(shape: tuple[int, int], mode: str, *, sigma_scale: float = 0.125) -> np.ndarray:
    """Weights for blending overlapping tile outputs (float32, max 1, never 0).

    ``"gaussian"``: a Gaussian centred on the tile, sigma = ``sigma_scale`` x size;
    ``"linear"``: a pyramid ramp falling to the border. Weights are floored at 1e-3.
    """
    axes = []
    for n in shape:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2
        if mode == "gaussian":
            w = np.exp(-0.5 * (x / max(sigma_scale * n, 1e-6)) ** 2)
        elif mode == "linear":
            w = 1 - np.abs(x) / (n / 2 + 0.5)
        else:
            raise ValueError(f"`blend` must be one of {BLEND_MODES}, got {mode!r}")
        axes.append(w / w.max())
    window = np.outer(axes[0], axes[1])
    return np.maximum(window, 1e-3).astype(np.float32)
