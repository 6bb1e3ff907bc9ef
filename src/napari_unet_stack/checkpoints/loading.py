"""`load_model`: find the file, tell its format, build the model, apply the overrides."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..bioimageio.importing import is_bioimageio, load_bioimageio
from ..models import SegmentationNetwork, WrappedNetwork
from ..models.reference import VGGNestedUNet
from .errors import CheckpointError, cannot_load
from .foreign import family_of, strip_prefixes, unwrap_container
from .metadata import check_meta
from .own_format import FORMAT, load_own
from .registry import resolve_source
from .safety import load_pickle
from .torchscript import is_torchscript, load_torchscript
from .weights import check_tensors
from .wrapped import wrap_module

__all__ = ["OVERRIDES", "apply_overrides", "load_model", "load_object", "set_head"]

#: the keyword arguments `load_model` takes besides ``trust``
OVERRIDES = (
    "head",
    "normalization",
    "class_names",
    "class_values",
    "activation",
    "in_channels",
    "n_classes",
    "depth",
    "halo",
)


def load_model(
    source: str | os.PathLike, *, trust: bool = False, **overrides: Any
) -> SegmentationNetwork:
    """Load a model from a file or a bundled model name, in eval mode, on the CPU.

    ``model(x)`` maps an N x C x H x W float tensor to the raw logits N x K x H x W,
    exactly as the code that produced the checkpoint computes them. The model carries
    what the inference engine needs: ``in_channels``, ``out_channels``, ``depth``,
    ``halo``, ``activation`` and ``meta`` (normalization, class names and values,
    provenance). Our checkpoints saved with a training state also get
    ``model.training_state`` back, for ``train(..., resume=True)``; inference ignores it.

    Parameters
    ----------
    source : str or Path
        A checkpoint file, or a name from `list_models`. Recognized: our format
        (`save_model`), TorchScript archives, milesial/Pytorch-UNet, 4uiiurz1/
        pytorch-nested-unet and WZMIAOMIAO UNet checkpoints (see `napari_unet_stack.checkpoints`).
        Imports get the reference's normalization, activation (softmax for several
        classes, sigmoid for one and for 4uiiurz1), ``class_values`` from milesial's
        ``mask_values``, and ``provenance``.
    trust : bool
        Allow unpickling arbitrary Python objects (fully pickled models). That can run
        any code the file contains: only for files from a trusted source.
    **overrides
        ``head`` (UNet++: ``'last'``, ``'mean'`` or k; ours also ``'accurate'``/``'fast'``),
        ``normalization``, ``class_names``, ``class_values``, ``activation``; for TorchScript
        and pickled modules, whose geometry cannot be read off the weights, also
        ``in_channels``, ``n_classes``, ``depth`` and ``halo``. Without metadata from
        `export_torchscript`, ``in_channels`` is required and ``n_classes`` is found by a
        probe forward on a zero image, for TorchScript only when its forward has no loops
        (traced archives) or with ``trust=True``. For other models these must agree with
        the weights.

    Raises
    ------
    FileNotFoundError
        ``source`` is neither a file nor a bundled model.
    UnsafeCheckpointError
        The file needs arbitrary unpickling, or is TorchScript with load-time code
        (``__setstate__``), and ``trust`` is False (nothing was run).
    CheckpointError
        Anything else that is not a loadable checkpoint: empty, corrupt or truncated
        files, unrelated files or state dicts, weights that contradict each other or
        their config, sizes beyond sane bounds (checked before anything is allocated),
        expanded tensors, NaN or infinite weights, malformed ``meta`` / ``activation``
        entries (an invalid normalization included).
    TypeError
        An unknown override.
    """
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise TypeError(
            f"load_model() got unknown override(s) {', '.join(map(repr, unknown))}; valid: {', '.join(OVERRIDES)}"
        )
    path = resolve_source(source)
    if path.is_dir():
        raise cannot_load(path, "it is a directory, not a file")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise cannot_load(path, f"it cannot be read ({err})") from err
    if size == 0:
        raise cannot_load(path, "the file is empty")
    if is_bioimageio(path):
        model = load_bioimageio(path, overrides, trust)
    elif is_torchscript(path):
        model = load_torchscript(path, overrides, trust)
    else:
        model = load_object(load_pickle(path, trust), path, overrides)
    apply_overrides(model, overrides, path)
    return model.eval()


def load_object(obj: Any, path: Path, overrides: dict) -> SegmentationNetwork:
    """The model in ``obj``, what `load_pickle` read from ``path``: a pickled network or
    module, our format's dict, or a reference code's state dict in its container."""
    if isinstance(obj, SegmentationNetwork):
        check_tensors(obj.state_dict(), path)
        return obj
    if isinstance(obj, nn.Module):
        return wrap_module(obj, path, overrides, None, "pickled module")
    if not isinstance(obj, Mapping):
        raise cannot_load(path, f"it holds a {type(obj).__name__}, not a model or a state dict")
    if obj.get("format") == FORMAT:
        return load_own(obj, path)
    inner = unwrap_container(obj)
    if isinstance(inner, nn.Module):
        return load_object(inner, path, overrides)
    state = strip_prefixes(inner)
    family = family_of(state)
    if family is None:
        keys = [str(k) for k in list(state)[:6]]
        raise cannot_load(
            path,
            f"its entries ({', '.join(keys)}{', ...' if len(state) > 6 else ''}) match no known network",
        )
    return family.load(obj, state, path)


def apply_overrides(model: SegmentationNetwork, overrides: dict, path: Path) -> None:
    """Set ``load_model``'s overrides on ``model``; the geometry ones must agree with the
    weights unless the model is a wrapped (TorchScript or pickled) module."""
    wrapped = isinstance(model, WrappedNetwork)
    if not wrapped:
        checks = {"in_channels": model.in_channels, "n_classes": model.out_channels}
        checks["depth"] = getattr(model, "full_depth", model.depth)
        for key, actual in checks.items():
            if key in overrides and overrides[key] != actual:
                raise CheckpointError(
                    f"`{key}={overrides[key]!r}` contradicts {str(path)!r}, whose weights have {key}={actual}"
                )
        if "halo" in overrides:
            raise TypeError(
                f"`halo` applies only to TorchScript or pickled modules; {type(model).__name__} "
                f"computes its own exact halo ({model.halo})"
            )
    if "head" in overrides:
        set_head(model, overrides["head"])
    if "activation" in overrides:
        model.activation = overrides["activation"]
    for key in ("normalization", "class_names", "class_values"):
        if key in overrides:
            model.meta[key] = check_meta(model, key, overrides[key])


def set_head(model: SegmentationNetwork, head: Any) -> None:
    """Select a UNet++ head, translating between our names and 4uiiurz1's: ``'mean'`` is
    our ``'accurate'``, ``'last'`` our head ``depth`` (and the other way round)."""
    if not hasattr(type(model), "head") or not isinstance(type(model).head, property):
        raise ValueError(f"`head={head!r}`: {type(model).__name__} has a single output head")
    if isinstance(model, VGGNestedUNet) and head == "accurate":
        head = "mean"
    elif not isinstance(model, VGGNestedUNet) and head in ("last", "mean"):
        # our NestedUNet: "accurate" averages the heads; "last" is head `depth`
        deep = getattr(model, "deep_supervision", False)
        head = "accurate" if head == "mean" or not deep else model.full_depth
    model.head = head
