"""Provenance: the ``meta["provenance"]`` record `train` writes on its result.

Plain JSON values only (non-finite metrics become None), so it survives `save_model`.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import Any

from .._version import __version__
from .data import PreparedData, Slice

__all__ = ["RunRecord", "finite_or_none", "plain_metrics", "provenance", "trainer_id"]


def trainer_id() -> str:
    """Who trained: this package and its version."""
    return f"napari-unet-stack {__version__}"


def finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def plain_metrics(metrics: dict | None) -> dict | None:
    """Validation metrics with NaN / inf as None (nested per-class dicts too)."""
    if metrics is None:
        return None
    out = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out[key] = {k: finite_or_none(v) for k, v in value.items()}
        elif isinstance(value, str):
            out[key] = value
        else:
            out[key] = finite_or_none(value)
    return out


@dataclass(frozen=True)
class RunRecord:
    """What one call of `train` did, as provenance needs it."""

    settings: Any  # the TrainSettings
    lr: float
    device: str
    precision: str
    label_shape: tuple[int, int]
    data: PreparedData
    train_slices: list[Slice]
    val_slices: list[Slice]
    start: int  # the step resumed from (0 for a fresh run)
    resumed: bool
    previous: dict  # the model's provenance before this call


def provenance(
    record: RunRecord,
    *,
    done: int,
    best_step: int | None,
    best_metrics: dict | None,
    head_scores: dict | None,
    seconds: float,
    decoding: dict | None = None,
) -> dict[str, Any]:
    """The provenance after ``done`` steps of this call; the model's earlier record nests
    under ``"previous"`` (one level) and ``total_steps`` adds up over runs.
    """
    s = record.settings
    prev = {k: v for k, v in record.previous.items() if k != "previous"}
    out = {
        "trainer": trainer_id(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "steps": int(done),
        "total_steps": int(prev.get("total_steps", 0)) + int(done),
        "best_step": int(best_step) if best_step is not None else record.start + int(done),
        "seed": int(s.seed),
        "batch_size": int(s.batch_size),
        "patch_size": [int(v) for v in record.label_shape],
        "lr": float(record.lr),
        "augment": s.augment.enabled,
        "sparse": bool(s.sparse),
        "device": record.device,
        "precision": record.precision,
        "seconds": round(seconds, 1),
        "data": {
            "shapes": [list(shape) for shape in record.data.shapes],
            "dtypes": list(record.data.dtypes),
            "train_slices": len(record.train_slices),
            "val_slices": len(record.val_slices),
            "labelled_pixels": int(sum(sl.n_labelled for sl in record.data.slices)),
        },
        "val": plain_metrics(best_metrics),
        "head_dice": {k: finite_or_none(v) for k, v in head_scores.items()}
        if head_scores
        else None,
        "previous": prev or None,
    }
    if decoding is not None:
        out["decoding"] = decoding
    if record.resumed:
        out["resumed_from_step"] = record.start
    return out
