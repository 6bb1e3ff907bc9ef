"""One batch through the network: host -> device packing, the forward pass, the activation."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..models.base import unwrap_logits
from .events import NonFiniteOutputError
from .placement import on_device
from .spec import ModelSpec

__all__ = ["Batcher", "activate", "check_logits", "forward", "probe_classes"]


class Batcher:
    """Packs tiles into a (B, C, h, w) tensor; on CUDA into two reusable pinned host buffers
    (double buffering), copied with non_blocking=True while the previous batch computes."""

    def __init__(self, device: torch.device, shape: tuple[int, int, int], batch_size: int):
        self.device = device
        self.pinned = device.type == "cuda"
        self.buffers: list[torch.Tensor] = []
        self.events: list[Any] = []
        if self.pinned:
            for _ in range(2):
                self.buffers.append(torch.empty((batch_size, *shape), dtype=torch.float32, pin_memory=True))
                self.events.append(None)
        self.turn = 0

    def to_device(self, tiles: Sequence[np.ndarray]) -> torch.Tensor:
        if not self.pinned:
            return torch.from_numpy(np.stack(tiles))
        b = self.turn
        self.turn ^= 1
        if self.events[b] is not None:
            self.events[b].synchronize()  # the copy that last read this buffer is done
        buf = self.buffers[b][: len(tiles)]
        host = buf.numpy()
        for i, t in enumerate(tiles):
            host[i] = t
        x = buf.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self.events[b] = event
        return x


def forward(spec: ModelSpec, fn, x: torch.Tensor, device: torch.device, autocast_dtype,
            channels_last: bool) -> tuple[torch.Tensor, str]:
    """Float32 logits of one batch and the activation that turns them into probabilities."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ctx = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    with ctx:
        logits = fn(x)
    if not isinstance(logits, torch.Tensor):
        logits = unwrap_logits(logits)
    logits = logits.float()
    check_logits(spec, logits, x, autocast_dtype)
    return logits, spec.activation_for(logits.shape[1])


def check_logits(spec: ModelSpec, logits: torch.Tensor, x: torch.Tensor, autocast_dtype=None) -> None:
    """Logits of the right shape (N x K x the output size of the input) and finite, or a
    clear error naming the model: a wrong size would be stitched shifted, non-finite logits
    would make NaN probabilities and all-background labels."""
    if logits.ndim != 4 or logits.shape[0] != x.shape[0]:
        raise ValueError(f"the model returned logits of shape {tuple(logits.shape)} for input {tuple(x.shape)}")
    want = tuple(spec.window_output(int(n)) for n in x.shape[-2:])
    if tuple(logits.shape[-2:]) != want:
        raise ValueError(
            f"the model returned logits of {logits.shape[-2]} x {logits.shape[-1]} pixels for an input of "
            f"{x.shape[-2]} x {x.shape[-1]}: it must return N x K x H x W logits of the input's size "
            f"(expected {want[0]} x {want[1]}; shape {tuple(logits.shape)} for input {tuple(x.shape)})"
        )
    # a finite sum means every value is finite (NaN and inf propagate): one reduction
    # instead of a mask; only a sum that overflowed or met a NaN needs the full check
    if not bool(torch.isfinite(logits.sum())) and not bool(torch.isfinite(logits).all()):
        bad = int((~torch.isfinite(logits)).sum())
        hint = (" or float16 overflowed: try precision='float32'" if autocast_dtype == torch.float16 else "")
        raise NonFiniteOutputError(
            f"model {spec.name} returned non-finite logits (NaN or inf) in {bad} of {logits.numel()} values: "
            f"its weights may be NaN or infinite (check the checkpoint or training){hint}"
        )


def activate(logits: torch.Tensor, activation: str) -> torch.Tensor:
    return torch.softmax(logits, dim=1) if activation == "softmax" else torch.sigmoid(logits)


def probe_classes(spec: ModelSpec, n_channels: int, dev: torch.device) -> int:
    """The output channel count of a model that does not report it (one small forward)."""
    x = torch.zeros((1, n_channels, spec.multiple * 2, spec.multiple * 2), device=dev)
    module = on_device(spec.module, dev, False) if spec.module is not None else spec.fn
    with torch.inference_mode():
        return int(forward(spec, module, x, dev, None, False)[0].shape[1])
