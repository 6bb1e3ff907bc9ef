"""Intensity normalization shared by inference and training.

Every mode reduces to a per-channel affine map ``y = (x - offset) / scale`` whose
parameters are *fitted* once on a region (a slice, or the whole stack) and then
*applied* to every tile of it, so tiles never see different intensities than the
whole image would (per-tile normalization would break exact tiling).

A normalization is a small dict, stored in checkpoints (``model.meta["normalization"]``):

``{"mode": "percentile", "low": 1.0, "high": 99.8}``
    ``offset`` = the ``low`` percentile, ``scale`` = high - low percentile, per channel
    (our models' default, as in CSBDeep).
``{"mode": "scale", "divisor": 255.0, "when_above": 1.0}``
    divide by ``divisor`` (only if the data's maximum exceeds ``when_above``, when given:
    the milesial reference's rule).
``{"mode": "meanstd", "mean": [...], "std": [...], "divisor": 255.0}``
    ``(x / divisor - mean) / std`` per channel (torchvision style, WZMIAOMIAO).
``{"mode": "zscore"}``
    the data's own mean and standard deviation per channel.
``{"mode": "none"}``
    the raw values, as float32.

``"scope"`` (``"slice"`` or ``"stack"``, default ``"slice"``) says where the engine fits it.

Non-finite pixels (NaN, +-inf) are ignored when fitting and replaced by ``offset``
(0 after normalization) when applying; the engine reports them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_NORMALIZATION: dict[str, Any] = {"mode": "percentile", "low": 1.0, "high": 99.8, "scope": "slice"}
_MODES = ("percentile", "scale", "meanstd", "zscore", "none")
#: the modes `fit_normalization` fits on the data, each channel on its own (the others are
#: fixed values): fitting them on stacked planes equals fitting each plane alone
PER_CHANNEL_FITS = ("percentile", "scale", "zscore")
_EPS = 1e-6


def validate_normalization(spec: Any) -> dict[str, Any]:
    """Return a canonical copy of ``spec`` or raise a ValueError naming the problem."""
    if spec is None:
        return {"mode": "none", "scope": "slice"}
    if isinstance(spec, str):
        spec = {"mode": spec}
    if not isinstance(spec, dict):
        raise TypeError(f"`normalization` must be a dict or a mode name, got {type(spec).__name__}")
    out = dict(spec)
    mode = out.get("mode")
    if mode not in _MODES:
        raise ValueError(f"normalization mode must be one of {_MODES}, got {mode!r}")
    out.setdefault("scope", "slice")
    if out["scope"] not in ("slice", "stack"):
        raise ValueError(f"normalization scope must be 'slice' or 'stack', got {out['scope']!r}")
    if mode == "percentile":
        low, high = float(out.setdefault("low", 1.0)), float(out.setdefault("high", 99.8))
        if not 0 <= low < high <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got ({low}, {high})")
    elif mode == "scale":
        if float(out.setdefault("divisor", 255.0)) <= 0:
            raise ValueError(f"normalization divisor must be > 0, got {out['divisor']}")
    elif mode == "meanstd":
        if "mean" not in out or "std" not in out:
            raise ValueError("normalization mode 'meanstd' needs 'mean' and 'std' lists")
        if np.any(np.asarray(out["std"], float) <= 0):
            raise ValueError(f"normalization std must be > 0, got {out['std']}")
        out.setdefault("divisor", 1.0)
    return out


def resolve_normalization(option: Any, model_normalization: dict | None = None) -> dict[str, Any] | None:
    """The normalization a run uses: None (raw values) or a canonical dict.

    ``option`` ``"auto"``: the model's own (``model.meta["normalization"]``), else
    `DEFAULT_NORMALIZATION`; None, False or ``"none"``: none; anything else: itself, checked
    by `validate_normalization`.

    >>> resolve_normalization("auto", {"mode": "scale", "divisor": 255.0})["mode"]
    'scale'
    >>> resolve_normalization(None) is None
    True
    """
    if isinstance(option, str) and option == "auto":
        return validate_normalization(model_normalization or DEFAULT_NORMALIZATION)
    if option is None or option is False or (isinstance(option, str) and option == "none"):
        return None
    return validate_normalization(option)


def _finite_values(channel: np.ndarray) -> np.ndarray:
    flat = np.asarray(channel).ravel()
    if flat.dtype.kind == "f":
        flat = flat[np.isfinite(flat)]
    return flat


def _scale(spread: float) -> float:
    """A fitted spread as a divisor: itself however small (data of range 1e-7 is data), and
    `_EPS` only for constant data."""
    return spread if spread > 0 and np.isfinite(spread) else _EPS


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation in float64, scaled first so that values near float64's
    limits do not overflow when squared."""
    values = values.astype(np.float64, copy=False)
    top = float(np.abs(values).max())
    unit = top if top > 1e150 or 0 < top < 1e-150 else 1.0
    scaled = values / unit
    return float(scaled.mean()) * unit, _scale(float(scaled.std()) * unit)


def fit_normalization(data: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Fit ``spec`` on ``data`` of shape ``(C, ...)``; return ``(C, 2)`` float64 ``[offset, scale]``."""
    spec = validate_normalization(spec)
    n_channels = data.shape[0]
    params = np.zeros((n_channels, 2), dtype=np.float64)
    params[:, 1] = 1.0
    mode = spec["mode"]
    if mode == "none":
        return params
    if mode == "meanstd":
        mean = np.broadcast_to(np.asarray(spec["mean"], float), (n_channels,))
        std = np.broadcast_to(np.asarray(spec["std"], float), (n_channels,))
        params[:, 0] = mean * spec["divisor"]
        params[:, 1] = std * spec["divisor"]
        return params
    for c in range(n_channels):
        values = _finite_values(data[c])
        if values.size == 0:
            continue  # all non-finite: leave identity; every pixel becomes 0
        if mode == "percentile":
            lo, hi = np.percentile(values, [spec["low"], spec["high"]])
            params[c] = lo, _scale(float(hi) - float(lo))
        elif mode == "zscore":
            params[c] = _mean_std(values)
        elif mode == "scale":
            above = spec.get("when_above")
            if above is None or float(values.max()) > float(above):
                params[c, 1] = float(spec["divisor"])
    return params


def apply_normalization(data: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Apply fitted ``params`` (``(C, 2)``) to ``data`` of shape ``(C, ...)``; float32 out.

    Computed in float64 for float64 and 32/64-bit integer data (values beyond float32's
    range, or 2**62 + a small contrast, keep their meaning), else in float32."""
    data = np.asarray(data)
    work = np.result_type(data.dtype, np.float32)
    out = data.astype(work, copy=True)
    shape = (-1,) + (1,) * (out.ndim - 1)
    offset = params[:, 0].astype(work).reshape(shape)
    scale = params[:, 1].astype(work).reshape(shape)
    bad = ~np.isfinite(out)
    if bad.any():
        out[bad] = np.broadcast_to(offset, out.shape)[bad]
    out -= offset
    out /= scale
    if work == np.float32:
        return out
    with np.errstate(over="ignore"):  # beyond float32 after normalizing: +-inf, as the network would see it
        return out.astype(np.float32)


def normalize(data: np.ndarray, spec: dict[str, Any] | None = None) -> np.ndarray:
    """Fit and apply in one go (``data`` is ``(C, ...)``)."""
    spec = validate_normalization(DEFAULT_NORMALIZATION if spec is None else spec)
    return apply_normalization(data, fit_normalization(data, spec))
