"""Metadata as plain data: what our checkpoints may store, checked entry by entry."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np
import torch

from ..labels import check_activation, check_threshold
from ..models import SegmentationNetwork
from ..models.base import META_KEYS
from ..normalization import validate_normalization
from ..postprocess.options import check_instance_info
from ..zcontext import check_z_context
from .errors import CheckpointError

__all__ = ["check_loaded_meta", "check_meta", "json_like", "plain", "plain_training_state"]


def plain(value: Any, where: str) -> Any:
    """``value`` as plain Python (numpy and tensors converted), or TypeError naming ``where``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.generic, np.ndarray, torch.Tensor)):
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
        elif value.dtype.kind not in "biufcUS":
            raise TypeError(
                f"metadata `{where}` is a numpy {value.dtype} value; only numbers and strings"
            )
        return plain(value.tolist(), where)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"metadata `{where}` has a {type(key).__name__} key {key!r}; keys must be str"
                )
            out[key] = plain(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(
        f"metadata `{where}` is a {type(value).__name__}; checkpoints store plain Python values only "
        f"(None, bool, int, float, str, lists, dicts with str keys, numpy arrays and scalars)"
    )


def json_like(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``mapping`` that are plain data (for provenance); the others are dropped."""
    out = {}
    for key, value in mapping.items():
        try:
            out[str(key)] = plain(value, str(key))
        except TypeError:
            continue
    return out


def _check_class_values(value: Any, k: int) -> None:
    ok = isinstance(value, list) and all(
        isinstance(v, int) or (isinstance(v, list) and all(isinstance(c, int) for c in v))
        for v in value
    )
    if not ok or any(isinstance(v, bool) for v in value):
        raise TypeError(
            f"`class_values` must be a list of ints (or of lists of ints), got {value!r}"
        )
    allowed = (k, 2) if k == 1 else (k,)
    if len(value) not in allowed:
        raise ValueError(
            f"`class_values` must have {' or '.join(map(str, allowed))} entries for {k} output channel(s), "
            f"got {len(value)}: {value!r}"
        )


def check_meta(model: SegmentationNetwork, key: str, value: Any) -> Any:
    """Validate one metadata entry for ``model``; returns the canonical plain value.

    ``normalization`` is validated (and completed) by `validate_normalization`;
    ``class_names`` needs one str per output channel, ``class_values`` one int (or list
    of ints) per channel (or 2 for a one-channel model), ``fast_head`` a positive int,
    ``threshold`` a number in [0, 1], ``z_context`` an int >= 0 that splits the input
    channels into 2k + 1 blocks and ``provenance`` a dict. Other keys only need to be plain data.
    """
    value = plain(value, key)
    k = model.out_channels
    if key == "normalization":
        return validate_normalization(value)
    if key == "class_names":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TypeError(f"`class_names` must be a list of str, got {value!r}")
        if len(value) != k:
            raise ValueError(
                f"`class_names` must have one name per output channel ({k}), got {len(value)}: {value!r}"
            )
    elif key == "class_values":
        _check_class_values(value, k)
    elif key == "fast_head":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`fast_head` must be a positive int, got {value!r}")
    elif key == "instances":
        check_instance_info(value, k)
    elif key == "threshold":
        check_threshold(value)  # a bool is refused there too
        value = float(value)
    elif key == "z_context":
        value = check_z_context(value, model.in_channels)
    elif key == "provenance" and not isinstance(value, dict):
        raise TypeError(f"`provenance` must be a dict, got {type(value).__name__}")
    return value


def check_loaded_meta(
    model: SegmentationNetwork, meta: Any, activation: Any, path: PurePath
) -> dict[str, Any]:
    """The metadata a file (``path``) stores for ``model``, checked as `check_meta` checks
    what `save_model` stores (its `META_KEYS` entries), with its ``activation``; a
    `CheckpointError` naming the file and the entry otherwise. Returns ``meta`` as a dict,
    its values unchanged."""
    if meta is None:
        meta = {}
    if not isinstance(meta, Mapping):
        raise CheckpointError(
            f"{str(path)!r}: its 'meta' entry is a {type(meta).__name__}, not a dict of metadata"
        )
    if activation is not None:
        try:
            check_activation(activation)
        except ValueError as err:
            raise CheckpointError(
                f"{str(path)!r}: its 'activation' entry is invalid: {err}"
            ) from err
    for key in META_KEYS:
        if key in meta:
            try:
                check_meta(model, key, meta[key])
            except (TypeError, ValueError) as err:
                raise CheckpointError(
                    f"{str(path)!r}: its metadata entry {key!r} is invalid: {err}"
                ) from err
    return dict(meta)


def plain_training_state(value: Any, where: str) -> Any:
    """``model.training_state`` copied to the CPU; TypeError for anything but tensors,
    numbers, strings, None and dicts / lists / tuples of them (``weights_only`` loads it)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TypeError(f"`{where}` has a {type(key).__name__} key {key!r}")
            out[key] = plain_training_state(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(
            plain_training_state(item, f"{where}[{i}]") for i, item in enumerate(value)
        )
    raise TypeError(
        f"`{where}` is a {type(value).__name__}; the training state holds tensors, numbers, "
        f"strings and dicts / lists of them only (or save with include_training_state=False)"
    )
