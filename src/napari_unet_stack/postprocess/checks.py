"""The checks of the decoding parameters, shared by `InstanceOptions` (what `segment`, the
CLI and the widget build) and `instance_labels` (callable on its own)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["check_decoding", "check_number"]


def check_number(name: str, value: Any, low: float, high: float, *, open_low: bool, open_high: bool) -> float:
    """``value`` as a float inside the interval, else a ValueError naming ``name``."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    v = float(value) if ok else math.nan
    inside = (v > low if open_low else v >= low) and (v < high if open_high else v <= high)
    if not (ok and inside):
        span = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise ValueError(f"`{name}` must be in {span} (a number), got {value!r}")
    return v


def check_decoding(min_size: Any, min_distance: Any, smoothing: Any, link_overlap: Any, *,
                   model_min_size: bool = False, z_split: Any = 0.0) -> None:
    """``min_size`` an integer >= 0 (with ``model_min_size``, None too: the model's),
    ``min_distance`` an integer >= 1, ``smoothing`` >= 0, ``link_overlap`` in (0, 1],
    ``z_split`` in [0, 1)."""
    if min_size is None and model_min_size:
        pass
    elif isinstance(min_size, (bool, type(None))) or int(min_size) != min_size or min_size < 0:
        either = " (or None: the model's)" if model_min_size else ""
        raise ValueError(f"`min_size` must be an integer >= 0{either}, got {min_size!r}")
    if isinstance(min_distance, bool) or int(min_distance) != min_distance or min_distance < 1:
        raise ValueError(f"`min_distance` must be an integer >= 1, got {min_distance!r}")
    check_number("smoothing", smoothing, 0, math.inf, open_low=False, open_high=True)
    check_number("link_overlap", link_overlap, 0, 1, open_low=True, open_high=False)
    check_number("z_split", z_split, 0, 1, open_low=False, open_high=True)
