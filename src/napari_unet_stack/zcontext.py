"""Z context: 2D models that also see the neighbouring slices of a stack (2.5D input).

A model whose ``meta["z_context"]`` is k > 0 takes each slice together with the k slices
before and after it along the stack's Z axis, as (2k + 1) x C input channels for images of
C channels, neighbour-major: the C channels of slice z - k, then those of z - k + 1, ...,
up to z + k (the slice itself is the middle block). Past either end of the Z axis the
nearest slice is repeated. A slice with no Z axis (a 2D image, or a stack whose leading
axes are all time) is its own neighbour on both sides. Each neighbour is normalized on its
own, as a channel of its own (per-slice normalization), or with the stack's parameters.

This module holds the rule; the engine (`inference.layout.read_slice`) and training
(`training.data`) both build their inputs with it.

>>> neighbours(0, 5, 1), neighbours(4, 5, 2), neighbours(0, 1, 1)
([0, 0, 1], [2, 3, 4, 4, 4], [0, 0, 0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["KEY", "check_z_context", "image_channels", "neighbours", "per_slice", "stack_context", "z_context_of",
           "z_lead"]

KEY = "z_context"


def check_z_context(value: Any, in_channels: int | None = None) -> int:
    """``value`` as the number of neighbours on each side (an int >= 0); with the network's
    ``in_channels``, also that they split into 2k + 1 equal blocks."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"`z_context` must be an int >= 0 (neighbouring slices on each side), got {value!r}")
    k = int(value)
    if in_channels is not None and int(in_channels) % (2 * k + 1):
        raise ValueError(f"`z_context={k}` needs input channels in {2 * k + 1} equal blocks (one per slice), "
                         f"but the network takes {in_channels}")
    return k


def z_context_of(model: Any) -> int:
    """The model's ``meta["z_context"]`` (0: a plain 2D model, or not one of ours)."""
    meta = getattr(model, "meta", None)
    return int(meta.get(KEY, 0) or 0) if isinstance(meta, dict) else 0


def image_channels(model: Any) -> int | None:
    """The channels of the *image* a model reads: its input channels over 2k + 1 (None: unknown)."""
    n = getattr(model, "in_channels", None)
    return None if n is None else int(n) // (2 * z_context_of(model) + 1)


def per_slice(model: Any) -> str:
    """The words every channel error puts after a z-context model's channel count, saying that
    it counts the channels of one slice ("" for a 2D model).

    >>> class Net: meta = {"z_context": 1}
    >>> per_slice(Net()), per_slice(None)
    (' per slice (z context 1: 3 slices in)', '')
    """
    k = z_context_of(model)
    return f" per slice (z context {k}: {2 * k + 1} slices in)" if k else ""


def neighbours(z: int, n: int, k: int, lo: int = 0, hi: int = 0) -> list[int]:
    """The Z indices slice ``z`` of ``n`` reads, z - k .. z + k, each clamped to the slices
    there are: ``-lo .. n - 1 + hi`` (``lo`` / ``hi``: slices readable before the first and
    after the last, e.g. a chunk's halo)."""
    return [min(max(z + d, -lo), n - 1 + hi) for d in range(-k, k + 1)]


def stack_context(planes: Sequence[np.ndarray]) -> np.ndarray:
    """(C, H, W) planes of slices z - k .. z + k -> one ((2k + 1) C, H, W) input."""
    return np.concatenate(list(planes), axis=0)


def z_lead(n_lead: int, time_leads: Sequence[int] = ()) -> int | None:
    """The Z axis among ``n_lead`` leading (stack) axes: the last one that is not a time
    axis (None: there is none). The axis a z-context model reads along and the one
    instance decoding links objects across.

    >>> z_lead(2), z_lead(2, (1,)), z_lead(1, (0,))
    (1, 0, None)
    """
    spatial = [a for a in range(n_lead) if a not in set(time_leads)]
    return spatial[-1] if spatial else None
