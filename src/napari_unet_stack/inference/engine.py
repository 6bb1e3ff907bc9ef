"""The engine loop: every slice of a stack, tile by tile, in batches drawn from several
slices, with progress, cancel and the out-of-memory back-off.

`iterate` validates the image against the model, plans the run (`plan.plan_run`) and
drives the batch loop; a slice's tiles are stitched as they arrive (`stitch`) and the
slice is written to ``out`` as soon as its last tile is in. Memory is bounded by the
input, the output and one batch of tiles, never by per-class float arrays of the stack.

Out of memory: the batch size is halved; at batch size 1 the remaining slices are
re-planned with tiles half as large, until the tiles cannot shrink any further.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import tiling
from ..devices import device_name, empty_cache, precision_name
from .augment import averaged_probabilities
from .events import Progress, check_run_options, stop_if_cancelled
from .forward import Batcher, activate, forward
from .layout import as_image, plane_cache, read_slice, validate_image, with_z_context
from .placement import on_device
from .plan import Request, RunPlan, plan_run
from .spec import ModelSpec
from .stitch import (
    SliceState,
    allocate_output,
    check_out,
    collect,
    finish_slice,
    new_slice,
    output_shape,
    write_tile,
)

log = logging.getLogger("napari_unet_stack")

__all__ = ["iterate"]


class _ShrinkTiles(Exception):
    """Out of memory at batch size 1: the remaining slices are re-planned with smaller tiles."""


@dataclass
class _Run:
    """The mutable state of one run."""

    plan: RunPlan
    image: Any
    out: Any
    progress: Any
    cancel: Any
    total: int
    done: int = 0
    info: dict = field(default_factory=dict)
    largest_batch: int = 0  # the most tiles one forward has taken (``info["batch_size"]``)


def iterate(image, spec: ModelSpec, request: Request, *, progress=None, cancel=None, out=None,
            info: dict | None = None) -> Generator[Progress, None, Any]:
    """Run ``spec``'s model over ``image`` as ``request`` says; yield `Progress`, return ``out``
    (or a new array): labels (..., Y, X) or probabilities (K, ..., Y, X)."""
    t0 = time.perf_counter()
    check_run_options(progress, cancel)
    image = as_image(image)
    layout = validate_image(image, request.channel_axis, spec.image_channels, request.channel)
    layout = with_z_context(layout, spec.z_context, request.z_axis, request.time_axes)
    check_out(out, output_shape(layout, request.mode == "labels", spec.out_channels))  # before the probes run
    plan = plan_run(spec, layout, request, image)
    run = _Run(plan, image, allocate_output(plan, out), progress, cancel,
               total=len(layout.leads) * plan.tiles_per_slice)
    run.info.update(
        device=device_name(plan.device), precision=precision_name(plan.autocast_dtype),
        precision_reason=plan.precision_reason, halo=plan.halo, border=plan.border,
        tile_shape=(plan.axes[0].core, plan.axes[1].core), window_shape=(plan.axes[0].window, plan.axes[1].window),
        n_tiles=run.total, exact=plan.exact, tta=request.tta,
    )  # batch_size: what the forwards took, set as they run
    if request.mode == "labels":
        run.info["threshold"] = request.threshold  # the caller's, or the model's own
    log.info(
        "napari-unet-stack: %d slice(s) on %s in %s (%s), tiles %s + halo %d, border %d, batch %d",
        len(layout.leads), run.info["device"], run.info["precision"], plan.precision_reason, run.info["tile_shape"],
        plan.halo, plan.border, plan.batch_size,
    )
    yield Progress(0, run.total)
    with _eval_mode(spec.module):
        yield from _with_retries(run)
    run.info["seconds"] = time.perf_counter() - t0
    if info is not None:
        info.update(run.info)
    return run.out


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module | None) -> Iterator[None]:
    """The caller's module in eval mode for the run, its training flag restored after."""
    was_training = module.training if module is not None else None
    if module is not None:
        module.eval()
    try:
        yield
    finally:
        if module is not None and was_training:
            module.train()


def _with_retries(run: _Run) -> Generator[Progress, None, None]:
    """The batch loop over every slice, re-planned with smaller tiles after `_ShrinkTiles`."""
    remaining = run.plan.layout.leads
    while remaining:
        finished: set[tuple[int, ...]] = set()
        try:
            for event in _BatchLoop(run, remaining).events():
                finished.update(event.slices)
                yield event
            return
        except _ShrinkTiles:
            smaller = run.plan.shrunk()
            if smaller is None:
                cores = (run.plan.axes[0].core, run.plan.axes[1].core)
                raise MemoryError(
                    f"out of memory on {run.info['device']} even with batch size 1 and "
                    f"{cores} tiles; try device='cpu' or precision='bfloat16'"
                ) from None
            cores = (smaller.axes[0].core, smaller.axes[1].core)
            log.warning("out of memory at batch size 1: shrinking tiles to %s", cores)
            run.plan = smaller
            remaining = [lead for lead in remaining if lead not in finished]
            run.total = run.done + len(remaining) * smaller.tiles_per_slice
            run.info["tile_shape"] = cores
            run.info["n_tiles"] = run.total


class _Feeder:
    """Reads slices as their first tile is needed and packs tiles into device batches;
    on CUDA the next batch is prepared in a thread while the device computes."""

    def __init__(self, run: _Run, batch_size: int):
        self.run = run
        self.states: dict[tuple[int, ...], SliceState] = {}
        plan = run.plan
        self.planes = plane_cache(plan.layout)  # a z-context model's neighbours: each plane read once
        self.window_shape = (plan.layout.n_inputs, plan.axes[0].window, plan.axes[1].window)
        self.batcher = Batcher(plan.device, self.window_shape, batch_size)
        self.pool = ThreadPoolExecutor(1) if plan.device.type == "cuda" else None
        self.future: Future | None = None

    def resize(self, batch_size: int) -> None:
        self.batcher = Batcher(self.run.plan.device, self.window_shape, batch_size)

    def prepare(self, items) -> torch.Tensor:
        plan = self.run.plan
        arrays = []
        for lead, tile in items:
            state = self.states.get(lead)
            if state is None:
                data, bad = read_slice(self.run.image, plan.layout, lead, plan.request.normalization,
                                       plan.stack_params, self.planes)
                state = self.states[lead] = new_slice(plan, data, bad)
            arrays.append(state.canvas[(slice(None), *tile.window)])
        return self.batcher.to_device(arrays)

    def take(self, items) -> torch.Tensor:
        """The batch of ``items``: the prefetched one, else prepared now."""
        if self.future is None:
            return self.prepare(items)
        x, self.future = self.future.result(), None
        return x

    def prefetch(self, items) -> None:
        if self.pool is not None and items:
            self.future = self.pool.submit(self.prepare, items)

    def drop(self) -> None:
        if self.future is not None:
            self.future.result()
            self.future = None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


class _BatchLoop:
    """All tiles of ``leads`` in batches; raises `_ShrinkTiles` when out of memory at batch 1."""

    def __init__(self, run: _Run, leads: list[tuple[int, ...]]):
        self.run = run
        plan = run.plan
        spec = plan.spec
        self.fn = on_device(spec.module, plan.device, plan.channels_last) if spec.module is not None else spec.fn
        tiles = list(tiling.iter_tiles(*plan.axes))
        self.items = [(lead, tile) for lead in leads for tile in tiles]
        windows = (plan.axes[0].window, plan.axes[1].window)
        self.blend_w = None if plan.request.blend == "crop" else tiling.blend_window(windows, plan.request.blend)
        self.batch_size = plan.batch_size

    def events(self) -> Generator[Progress, None, None]:
        run = self.run
        feeder = _Feeder(run, self.batch_size)
        try:
            start = 0
            while start < len(self.items):
                stop_if_cancelled(run.cancel)
                batch = self.items[start : start + self.batch_size]
                nxt = self.items[start + self.batch_size : start + 2 * self.batch_size]
                x = feeder.take(batch)
                try:
                    outputs = self._compute(x, feeder, nxt, batch)
                except torch.OutOfMemoryError:
                    outputs = None
                del x
                if outputs is None:  # out of the except block: the failed batch is freed
                    self._back_off(feeder)
                    continue
                finished = self._store(feeder, batch, outputs)
                start += len(batch)
                run.done += len(batch)
                # the tiles that went through one forward (the plan's batch may be more than
                # there are tiles), not the plan's figure; the largest when they differed
                run.largest_batch = max(run.largest_batch, len(batch))
                run.info["batch_size"] = run.largest_batch
                if run.progress is not None:
                    run.progress(run.done, run.total)
                yield Progress(run.done, run.total, tuple(finished))
        finally:
            feeder.close()

    def _compute(self, x: torch.Tensor, feeder: _Feeder, nxt, batch) -> list[np.ndarray]:
        plan = self.run.plan
        # inference mode per batch, never across a yield: it is thread-local, and a
        # caller may resume or close this generator from another thread
        with torch.inference_mode():
            if x.device != plan.device:
                x = x.to(plan.device, non_blocking=True)
            probs = averaged_probabilities(plan.request.tta, self._probabilities, x)
            # prepare the next batch on the host while the device computes this one
            feeder.prefetch(nxt)
            return collect(plan, probs, batch)

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        plan = self.run.plan
        logits, activation = forward(plan.spec, self.fn, x, plan.device, plan.autocast_dtype, plan.channels_last)
        return activate(logits, activation)

    def _back_off(self, feeder: _Feeder) -> None:
        """After an out-of-memory error: halve the batch, or ask for smaller tiles."""
        feeder.drop()
        empty_cache(self.run.plan.device)
        self.run.info["oom_retries"] = self.run.info.get("oom_retries", 0) + 1
        if self.batch_size == 1:
            raise _ShrinkTiles()
        self.batch_size = max(1, self.batch_size // 2)
        log.warning("out of memory: retrying with batch size %d", self.batch_size)
        feeder.resize(self.batch_size)

    def _store(self, feeder: _Feeder, batch, outputs) -> list[tuple[int, ...]]:
        """Write a batch's tiles; finish (and forget) the slices now complete."""
        finished = []
        for (lead, tile), out_tile in zip(batch, outputs, strict=True):
            state = feeder.states[lead]
            write_tile(self.run.plan, state, tile, out_tile, self.blend_w)
            state.pending -= 1
            if state.pending == 0:
                finish_slice(self.run.plan, self.run.out, lead, state)
                del feeder.states[lead]
                finished.append(lead)
        return finished
