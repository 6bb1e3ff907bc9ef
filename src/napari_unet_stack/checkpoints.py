"""Saving and loading models: our self-describing format, TorchScript, and foreign checkpoints.

Our format (`save_model`) is one ``torch.save`` dict of plain types, loadable with
``torch.load(weights_only=True)``::

    {"format": "napari-unet-stack", "format_version": 1, "package_version": "0.1.0",
     "config": {"architecture": "UNet", "kwargs": {...}},   # model.config()
     "state_dict": {...}, "meta": {...}, "activation": "softmax" | "sigmoid" | None,
     "training_state": {...}}   # optional: model.training_state, for train(resume=True)

``training_state`` (tensors and plain values: the AdamW state dict, the schedule's step
and total, the sampling RNG state) is written when the model carries one (`train` sets
it) unless ``include_training_state=False``; readers that do not know it ignore it.

`load_model` reads, besides our format:

- TorchScript archives (``torch.jit.save``; `export_torchscript` adds our metadata to them);
- milesial/Pytorch-UNet checkpoints (transposed or bilinear, with or without
  ``mask_values``, with the older biased convolutions);
- 4uiiurz1/pytorch-nested-unet ``model.pth`` (UNet, NestedUNet with or without deep
  supervision), checked against a ``config.yml`` beside it when present;
- WZMIAOMIAO DRIVE UNet checkpoints (``{"model", "optimizer", "lr_scheduler", "epoch", "args"}``);
- state dicts wrapped in a ``model`` / ``state_dict`` / ``model_state_dict`` / ``net`` entry,
  with DataParallel ``module.`` (or ``torch.compile`` ``_orig_mod.``) prefixes;
- with ``trust=True`` only: fully pickled modules.

The architecture and its sizes are read off the weights; the weights load with
``strict=True`` into modules that reproduce the reference code (`models.reference`).

Pickles are opened with ``torch.load(weights_only=True)``, which refuses to build anything
but tensors and plain containers (plus ``argparse.Namespace`` and numpy scalars, which
the references store). A file that needs more is refused with `UnsafeCheckpointError`
before any of its code runs; ``trust=True`` lifts that, for files from a trusted source.
TorchScript archives hold TorchScript code, not Python, and load without ``trust``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import json
import math
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from torch import nn

from ._version import __version__
from .models import ARCHITECTURE_CLASSES, SegmentationNetwork, WrappedNetwork, unwrap_logits
from .models.reference import (
    REFERENCE_ARCHITECTURES,
    MilesialUNet,
    VGGNestedUNet,
    VGGUNet,
    WZMiaomiaoUNet,
)
from .normalization import validate_normalization

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "export_torchscript",
    "list_models",
    "load_model",
    "save_model",
]

FORMAT = "napari-unet-stack"
FORMAT_VERSION = 1
#: name of the JSON entry `export_torchscript` adds to a TorchScript archive
TORCHSCRIPT_META = "napari_unet_stack.json"

SUPPORTED_FORMATS = (
    "napari-unet-stack checkpoints (save_model); "
    "TorchScript archives (torch.jit.save, export_torchscript); "
    "milesial/Pytorch-UNet, 4uiiurz1/pytorch-nested-unet (UNet, NestedUNet) and "
    "WZMIAOMIAO UNet state dicts, plain or under a 'model', 'state_dict', "
    "'model_state_dict' or 'net' entry, with or without DataParallel 'module.' prefixes; "
    "fully pickled torch modules (trust=True only)"
)

_FAMILIES = {
    "milesial": ("milesial/Pytorch-UNet", MilesialUNet),
    "wzmiaomiao": ("WZMIAOMIAO/deep-learning-for-image-processing", WZMiaomiaoUNet),
    "vgg_unet": ("4uiiurz1/pytorch-nested-unet", VGGUNet),
    "vgg_nested": ("4uiiurz1/pytorch-nested-unet", VGGNestedUNet),
}
#: preprocessing of each reference code (DESIGN.md section 5)
_FAMILY_NORMALIZATION = {
    "milesial": {"mode": "scale", "divisor": 255.0, "when_above": 1.0},
    "wzmiaomiao": {
        "mode": "meanstd",
        "mean": [0.709, 0.381, 0.224],
        "std": [0.127, 0.079, 0.043],
        "divisor": 255.0,
    },
    "vgg_unet": {"mode": "scale", "divisor": 255.0},
    "vgg_nested": {"mode": "scale", "divisor": 255.0},
}
_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "net")
_PREFIXES = ("module.", "_orig_mod.")
_OVERRIDES = (
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


class CheckpointError(ValueError):
    """A file that is not a checkpoint ``load_model`` can read, or one that contradicts itself."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that would run arbitrary code to load; refused unless ``trust=True``."""


def _architectures() -> dict[str, type[SegmentationNetwork]]:
    return {**ARCHITECTURE_CLASSES, **REFERENCE_ARCHITECTURES}


def _fail(path: Path | str, what: str) -> CheckpointError:
    return CheckpointError(
        f"cannot load {str(path)!r}: {what}. Supported formats: {SUPPORTED_FORMATS}"
    )


# -- bundled models --------------------------------------------------------------------------
def _bundled_dir():
    return importlib.resources.files("napari_unet_stack") / "bundled_models"


def list_models() -> list[str]:
    """Names of the models shipped with the package (``bundled_models/*.pt``), sorted.

    Any of them can be passed to `load_model` by name.
    """
    folder = _bundled_dir()
    if not folder.is_dir():
        return []
    return sorted(
        p.name[: -len(".pt")] for p in folder.iterdir() if p.name.endswith(".pt") and p.is_file()
    )


# -- metadata --------------------------------------------------------------------------------
def _plain(value: Any, where: str) -> Any:
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
        return _plain(value.tolist(), where)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"metadata `{where}` has a {type(key).__name__} key {key!r}; keys must be str"
                )
            out[key] = _plain(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(
        f"metadata `{where}` is a {type(value).__name__}; checkpoints store plain Python values only "
        f"(None, bool, int, float, str, lists, dicts with str keys, numpy arrays and scalars)"
    )


def _check_meta(model: SegmentationNetwork, key: str, value: Any) -> Any:
    """Validate one metadata entry for ``model``; returns the canonical plain value."""
    value = _plain(value, key)
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
    elif key == "fast_head":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`fast_head` must be a positive int, got {value!r}")
    elif key == "provenance" and not isinstance(value, dict):
        raise TypeError(f"`provenance` must be a dict, got {type(value).__name__}")
    return value


# -- saving ----------------------------------------------------------------------------------
def _atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place."""
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(
            f"cannot write {str(path)!r}: folder {str(folder)!r} does not exist"
        )
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _config_of(model: Any, action: str) -> dict[str, Any]:
    if not isinstance(model, SegmentationNetwork):
        raise TypeError(
            f"{action} needs a SegmentationNetwork (e.g. UNet, NestedUNet), got {type(model).__name__}"
        )
    try:
        config = model.config()
    except NotImplementedError as err:
        raise TypeError(
            f"{type(model).__name__} cannot be saved in the napari-unet-stack format: its architecture is "
            f"not described by a config(); use export_torchscript(model, path) instead"
        ) from err
    if config.get("architecture") not in _architectures():
        raise TypeError(
            f"{type(model).__name__}.config() names architecture {config.get('architecture')!r}, which "
            f"load_model cannot rebuild (known: {sorted(_architectures())}); use export_torchscript instead"
        )
    return _plain(config, "config")


def _plain_training_state(value: Any, where: str) -> Any:
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
            out[key] = _plain_training_state(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(
            _plain_training_state(item, f"{where}[{i}]") for i, item in enumerate(value)
        )
    raise TypeError(
        f"`{where}` is a {type(value).__name__}; the training state holds tensors, numbers, "
        f"strings and dicts / lists of them only (or save with include_training_state=False)"
    )


def save_model(
    model: SegmentationNetwork,
    path: str | os.PathLike,
    *,
    include_training_state: bool = True,
    **metadata: Any,
) -> Path:
    """Save ``model`` in the napari-unet-stack format; `load_model` restores it exactly.

    Parameters
    ----------
    model : SegmentationNetwork
        Our `UNet` / `NestedUNet`, or an imported reference network (anything whose
        ``config()`` names a known architecture). TorchScript and other wrapped modules
        cannot be rebuilt from a config: save them with `export_torchscript`.
    path : str or Path
        Destination file (``.pt`` by convention). Written atomically: a temporary file in
        the same folder is renamed into place, so an error never leaves a partial file.
    include_training_state : bool
        Store ``model.training_state`` when the model has one (models returned by `train`
        do): the optimizer moments, schedule position and sampling RNG state that
        ``train(..., model=path, resume=True)`` continues from. It roughly triples the
        file; False writes the weights and metadata only (files to share or bundle).
    **metadata
        Merged into ``model.meta`` and stored: ``normalization`` (validated, see
        `napari_unet_stack.normalization`), ``class_names`` (one per output channel),
        ``class_values``, ``provenance`` (dict), ``fast_head``, ``activation``
        (``'softmax'`` or ``'sigmoid'``), or any other JSON-like value. numpy scalars and
        arrays are converted to Python numbers and lists.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    TypeError
        ``model`` has no config, or a metadata value is not plain data (the message names it).
    ValueError
        A metadata value is invalid (e.g. ``class_names`` of the wrong length).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from napari_unet_stack.models import UNet
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "unet.pt"
    >>> save_model(UNet(1, 2, base_channels=4, depth=2), path, class_names=["bg", "cell"]).name
    'unet.pt'
    >>> load_model(path).class_names
    ['bg', 'cell']
    """
    path = Path(path)
    config = _config_of(model, "save_model")
    metadata = dict(metadata)
    activation = metadata.pop("activation", model._activation)
    if activation is not None and activation not in ("softmax", "sigmoid"):
        raise ValueError(f"`activation` must be 'softmax' or 'sigmoid', got {activation!r}")
    updates = {key: _check_meta(model, key, value) for key, value in metadata.items()}
    meta = {key: _plain(value, key) for key, value in {**model.meta, **updates}.items()}
    state = {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}
    checkpoint = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "config": config,
        "state_dict": state,
        "meta": meta,
        "activation": activation,
    }
    training_state = getattr(model, "training_state", None)
    if include_training_state and training_state is not None:
        checkpoint["training_state"] = _plain_training_state(training_state, "training_state")
    _atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))
    model.meta.update(updates)
    if activation is not None:
        model.activation = activation
    return path


def export_torchscript(
    model: SegmentationNetwork,
    path: str | os.PathLike,
    *,
    example_input: torch.Tensor | None = None,
) -> Path:
    """Trace ``model`` to a TorchScript archive that carries our metadata; returns the path.

    The archive runs without this package (``torch.jit.load``); `load_model` reads the
    channels, depth, halo, valid margin, activation and ``meta`` back from its
    ``napari_unet_stack.json`` entry. Tracing records one path through the network: a
    UNet++ exports the head selected now, and inputs should keep H and W multiples of
    ``model.size_multiple`` (``example_input`` defaults to a 1 x C x S x S zero tensor,
    S = ``model.input_size_for(2 * model.size_multiple)``).
    """
    path = Path(path)
    if not isinstance(model, SegmentationNetwork):
        raise TypeError(
            f"export_torchscript needs a SegmentationNetwork, got {type(model).__name__}"
        )
    if example_input is None:
        size = model.input_size_for(2 * model.size_multiple)
        example_input = torch.zeros(1, model.in_channels, size, size)
    try:
        config = model.config()
    except NotImplementedError:
        config = None
    info = {
        "format": FORMAT + "-torchscript",
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "architecture": type(model).__name__,
        "config": _plain(config, "config"),
        "in_channels": model.in_channels,
        "n_classes": model.out_channels,
        "depth": model.depth,
        "halo": model.halo,
        "valid_margin": model.valid_margin,
        "admissible_input": model.input_size_for(1),
        "exact_tiling": bool(model.exact_tiling),
        "activation": model.activation,
        "meta": _plain(model.meta, "meta"),
    }
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _quiet_jit():
            traced = torch.jit.trace(model, example_input.to(device))
    finally:
        model.train(was_training)
    extra = {TORCHSCRIPT_META: json.dumps(info)}

    def write(tmp: str) -> None:
        with _quiet_jit():
            torch.jit.save(traced, tmp, _extra_files=extra)

    _atomic_write(path, write)
    return path


@contextlib.contextmanager
def _quiet_jit():
    """Silence torch.jit's deprecation notices (TorchScript files are still read and written)
    and the tracer's warnings about Python values it records as constants."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit")
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


# -- reading files ---------------------------------------------------------------------------
def _resolve(source: Any) -> Path:
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"`source` must be a file path or a bundled model name, got {type(source).__name__}"
        )
    path = Path(source)
    if path.exists():  # an existing path wins over a bundled model of the same name
        return path
    if isinstance(source, str) and source in list_models():
        return Path(str(_bundled_dir() / f"{source}.pt"))
    bundled = list_models()
    raise FileNotFoundError(
        f"no checkpoint file {str(source)!r}"
        + (f" and no bundled model of that name (bundled: {', '.join(bundled)})" if bundled else "")
    )


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def _numpy_scalar_globals() -> list:
    """What numpy scalars need to unpickle (no code runs: a dtype and the value's bytes)."""
    core = getattr(np, "_core", None) or np.core
    dtypes = [type(np.dtype(t)) for t in "?bBhHiIlLqQefdgFDG"]
    return [core.multiarray.scalar, np.dtype, *dtypes]


_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")
_UNSAFE_HINTS = ("Can only create new object", "Can only build", "reduce for unrecognized function")
_UNPICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    RuntimeError,
    KeyError,
    IndexError,
    ValueError,
    TypeError,
    AssertionError,
    OverflowError,
    MemoryError,
    zipfile.BadZipFile,
)


def _offending_global(message: str) -> str | None:
    match = _GLOBAL_RE.search(message)
    if match:
        return match.group(1)
    for hint in _UNSAFE_HINTS:
        if hint in message:
            return message.splitlines()[-1].strip() if "\n" in message else message.strip()
    return None


def _torch_load(path: Path, trust: bool) -> Any:
    try:
        with torch.serialization.safe_globals([argparse.Namespace, *_numpy_scalar_globals()]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        offending = _offending_global(str(err))
        if offending is None:
            raise _fail(path, f"not a readable checkpoint ({_first_line(err)})") from err
        if not trust:
            raise UnsafeCheckpointError(
                f"refusing to load {str(path)!r}: unpickling it would call or build `{offending}`, which "
                f"can run arbitrary code. Nothing from the file was executed. Pass trust=True to "
                f"load_model only if you trust the file and where it came from."
            ) from err
    except _UNPICKLE_ERRORS as err:
        raise _fail(path, f"not a readable checkpoint ({_first_line(err)})") from err
    except OSError as err:  # torch's zip reader reports some truncations as EINVAL
        if isinstance(err, (PermissionError, FileNotFoundError)):
            raise
        raise _fail(path, f"not a readable checkpoint ({_first_line(err)})") from err
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (AttributeError, ImportError) as err:
        raise _fail(
            path,
            f"it pickles a class that cannot be imported here ({_first_line(err)}); import or define "
            f"that class before loading, or save its state_dict instead",
        ) from err
    except _UNPICKLE_ERRORS as err:
        raise _fail(path, f"not a readable checkpoint ({_first_line(err)})") from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    # torch's weights_only messages put the actual cause after "WeightsUnpickler error:"
    _, marker, cause = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (cause if marker else text).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0][:200] if lines else 'no details'}"


# -- building models -------------------------------------------------------------------------
def _describe(value: Any) -> str:
    return (
        str(tuple(value.shape)) if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"
    )


def _load_weights(model: nn.Module, state: Mapping[str, Any], path: Path, what: str) -> None:
    """``load_state_dict(strict=True)`` with a message that lists what does not fit."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {_describe(state[k])} (expected {tuple(expected[k].shape)})"
        for k in expected
        if k in state
        and (not isinstance(state[k], torch.Tensor) or state[k].shape != expected[k].shape)
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if keys:
            more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
            problems.append(f"{label}: {', '.join(keys[:5])}{more}")
    if problems:
        raise CheckpointError(f"{str(path)!r} does not fit a {what}: {'; '.join(problems)}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{str(path)!r} does not fit a {what}: {err}") from err


def _load_own(checkpoint: Mapping[str, Any], path: Path) -> SegmentationNetwork:
    version = checkpoint.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has napari-unet-stack format version {version!r} (written by package "
            f"version {checkpoint.get('package_version')!r}); this version {__version__} reads up to "
            f"{FORMAT_VERSION}: upgrade napari-unet-stack"
        )
    config = checkpoint.get("config")
    if not isinstance(config, Mapping) or not isinstance(config.get("kwargs"), Mapping):
        raise _fail(path, "its 'config' entry is missing or malformed")
    name = config.get("architecture")
    architectures = _architectures()
    if name not in architectures:
        raise CheckpointError(
            f"{str(path)!r} needs architecture {name!r}, which this version does not know ({sorted(architectures)})"
        )
    try:
        model = architectures[name](**config["kwargs"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"{str(path)!r}: cannot build {name} from its config {dict(config['kwargs'])}: {err}"
        ) from err
    state = checkpoint.get("state_dict")
    if not isinstance(state, Mapping):
        raise _fail(path, "its 'state_dict' entry is missing")
    _load_weights(model, state, path, name)
    model.meta = dict(checkpoint.get("meta") or {})
    if checkpoint.get("activation") is not None:
        model.activation = checkpoint["activation"]
    training_state = checkpoint.get("training_state")
    if isinstance(training_state, Mapping):  # for train(resume=True); inference ignores it
        model.training_state = dict(training_state)
    elif training_state is not None:
        warnings.warn(
            f"ignoring the malformed training state of {str(path)!r} (a "
            f"{type(training_state).__name__}); the model loads, but cannot resume training",
            stacklevel=4,
        )
    return model


def _strip_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    state = dict(state)
    for prefix in _PREFIXES:
        keys = [k for k in state if isinstance(state[k], torch.Tensor)]
        if keys and all(k.startswith(prefix) for k in keys):
            state = {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}
    return state


def _unwrap(obj: Mapping[str, Any]) -> Any:
    """Descend through ``model`` / ``state_dict`` / ... entries to the weights (or a module)."""
    for _ in range(4):
        if not isinstance(obj, Mapping) or any(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), (Mapping, nn.Module)):
                obj = obj[key]
                break
        else:
            return obj
    return obj


def _family(state: Mapping[str, Any]) -> str | None:
    if "inc.double_conv.0.weight" in state:
        return "milesial"
    if "in_conv.0.weight" in state:
        return "wzmiaomiao"
    if "conv0_0.conv1.weight" in state:
        return "vgg_nested" if "conv0_1.conv1.weight" in state else "vgg_unet"
    return None


def _read_yaml_config(path: Path) -> dict | None:
    config_path = path.parent / "config.yml"
    if not config_path.is_file():
        return None
    import yaml

    try:
        config = yaml.safe_load(config_path.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as err:
        warnings.warn(f"ignoring {str(config_path)!r}: not readable YAML ({err})", stacklevel=4)
        return None
    return config if isinstance(config, dict) else None


def _check_yaml_config(config: dict, family: str, kwargs: dict, path: Path) -> None:
    """4uiiurz1's config.yml must agree with the weights (which decide)."""
    arch = "NestedUNet" if family == "vgg_nested" else "UNet"
    found = {
        "arch": arch,
        "input_channels": kwargs["in_channels"],
        "num_classes": kwargs["n_classes"],
        "deep_supervision": bool(kwargs.get("deep_supervision", False)),
    }
    for key, value in found.items():
        if key in config and config[key] != value:
            raise CheckpointError(
                f"{str(path.parent / 'config.yml')!r} says {key}={config[key]!r} but the weights in "
                f"{str(path)!r} are a {arch} with {key}={value!r}; the weights decide, so fix or remove config.yml"
            )


def _json_like(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``mapping`` that are plain data (for provenance)."""
    out = {}
    for key, value in mapping.items():
        try:
            out[str(key)] = _plain(value, str(key))
        except TypeError:
            continue
    return out


def _load_reference(
    outer: Any, state: dict[str, Any], family: str, path: Path
) -> SegmentationNetwork:
    source, cls = _FAMILIES[family]
    mask_values = state.pop("mask_values", None)
    try:
        kwargs = cls.kwargs_from_state_dict(state)
        model = cls(**kwargs)
    except (ValueError, TypeError, IndexError) as err:
        raise CheckpointError(
            f"{str(path)!r} looks like a {source} checkpoint but its weights are inconsistent: {err}"
        ) from err
    _load_weights(model, state, path, f"{source} {cls.__name__}({kwargs})")
    provenance: dict[str, Any] = {"imported_from": source, "source": str(path)}
    if family in ("vgg_unet", "vgg_nested"):
        config = _read_yaml_config(path)
        if config is not None:
            _check_yaml_config(config, family, kwargs, path)
            provenance["config"] = _json_like(config)
    if isinstance(outer, Mapping):
        if isinstance(outer.get("args"), argparse.Namespace):
            provenance["args"] = _json_like(vars(outer["args"]))
        if isinstance(outer.get("epoch"), int):
            provenance["epoch"] = outer["epoch"]
    model.meta["normalization"] = validate_normalization(_FAMILY_NORMALIZATION[family])
    model.meta["provenance"] = provenance
    if mask_values is not None:
        model.meta["class_values"] = _check_meta(model, "class_values", mask_values)
    model.activation = (
        "sigmoid" if family.startswith("vgg") or model.out_channels == 1 else "softmax"
    )
    return model


def _probe_channels(module: nn.Module, in_channels: int, depth: int, path: Path) -> int:
    size = 2**depth * 4
    try:
        with torch.no_grad():
            out = unwrap_logits(module(torch.zeros(1, in_channels, size, size)))
    except (RuntimeError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"{str(path)!r}: a probe forward with in_channels={in_channels} on a {size} x {size} "
            f"image failed ({_first_line(err)}); check in_channels"
        ) from err
    return int(out.shape[1])


class _ExportedNetwork(WrappedNetwork):
    """A TorchScript module with the geometry `export_torchscript` recorded (valid convolutions too)."""

    def __init__(
        self,
        module: nn.Module,
        *,
        valid_margin: int = 0,
        admissible_input: int | None = None,
        **kwargs,
    ):
        super().__init__(module, **kwargs)
        self._valid_margin = int(valid_margin)
        self._admissible = admissible_input

    @property
    def valid_margin(self) -> int:
        return self._valid_margin

    def input_size_for(self, output_size: int) -> int:
        if not self._valid_margin or self._admissible is None:
            return super().input_size_for(output_size)
        # admissible inputs of a valid UNet: s = admissible_input + n * size_multiple
        need = max(output_size, 1) + 2 * self._valid_margin
        steps = max(0, math.ceil((need - self._admissible) / self.size_multiple))
        return self._admissible + steps * self.size_multiple


def _wrap(
    module: nn.Module, path: Path, overrides: dict, info: Mapping | None, imported_from: str
) -> SegmentationNetwork:
    info = dict(info or {})
    depth = int(overrides.get("depth", info.get("depth", 4)))
    in_channels = overrides.get("in_channels", info.get("in_channels"))
    if in_channels is None:
        raise CheckpointError(
            f"{str(path)!r} is a {imported_from} without napari-unet-stack metadata: pass in_channels=... "
            f"(and optionally n_classes=..., depth=..., halo=...) to load_model"
        )
    n_classes = overrides.get("n_classes", info.get("n_classes"))
    if n_classes is None:
        n_classes = _probe_channels(module, int(in_channels), depth, path)
    halo = overrides.get("halo", info.get("halo"))
    net = _ExportedNetwork(
        module,
        in_channels=in_channels,
        out_channels=n_classes,
        depth=depth,
        halo=halo,
        valid_margin=info.get("valid_margin", 0),
        admissible_input=info.get("admissible_input"),
    )
    if info.get("exact_tiling") and not {"depth", "halo"} & set(overrides):
        net.exact_tiling = True
    if info.get("activation") in ("softmax", "sigmoid"):
        net.activation = info["activation"]
    meta = info.get("meta")
    if isinstance(meta, Mapping):  # written by export_torchscript: restore it unchanged
        net.meta = dict(meta)
    else:
        net.meta = {"provenance": {"imported_from": imported_from, "source": str(path)}}
    return net


def _load_torchscript(path: Path, overrides: dict) -> SegmentationNetwork:
    extra = {TORCHSCRIPT_META: ""}
    try:
        with _quiet_jit():
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except (RuntimeError, ValueError) as err:
        raise _fail(
            path, f"a TorchScript archive that torch.jit.load cannot read ({_first_line(err)})"
        ) from err
    info = None
    if extra[TORCHSCRIPT_META]:
        try:
            info = json.loads(extra[TORCHSCRIPT_META])
        except (ValueError, TypeError) as err:
            warnings.warn(
                f"ignoring the unreadable {TORCHSCRIPT_META} entry of {str(path)!r}: {err}",
                stacklevel=3,
            )
    return _wrap(module, path, overrides, info, "TorchScript")


def _from_object(obj: Any, path: Path, overrides: dict) -> SegmentationNetwork:
    if isinstance(obj, SegmentationNetwork):
        return obj
    if isinstance(obj, nn.Module):
        return _wrap(obj, path, overrides, None, "pickled module")
    if not isinstance(obj, Mapping):
        raise _fail(path, f"it holds a {type(obj).__name__}, not a model or a state dict")
    if obj.get("format") == FORMAT:
        return _load_own(obj, path)
    inner = _unwrap(obj)
    if isinstance(inner, nn.Module):
        return _from_object(inner, path, overrides)
    state = _strip_prefixes(inner)
    family = _family(state)
    if family is None:
        keys = [str(k) for k in list(state)[:6]]
        raise _fail(
            path,
            f"its entries ({', '.join(keys)}{', ...' if len(state) > 6 else ''}) match no known network",
        )
    return _load_reference(obj, state, family, path)


# -- overrides -------------------------------------------------------------------------------
def _apply_overrides(model: SegmentationNetwork, overrides: dict, path: Path) -> None:
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
        _set_head(model, overrides["head"])
    if "activation" in overrides:
        model.activation = overrides["activation"]
    for key in ("normalization", "class_names", "class_values"):
        if key in overrides:
            model.meta[key] = _check_meta(model, key, overrides[key])


def _set_head(model: SegmentationNetwork, head: Any) -> None:
    if not hasattr(type(model), "head") or not isinstance(type(model).head, property):
        raise ValueError(f"`head={head!r}`: {type(model).__name__} has a single output head")
    if isinstance(model, VGGNestedUNet) and head == "accurate":
        head = "mean"
    elif not isinstance(model, VGGNestedUNet) and head in ("last", "mean"):
        # our NestedUNet: "accurate" averages the heads; "last" is head `depth`
        deep = getattr(model, "deep_supervision", False)
        head = "accurate" if head == "mean" or not deep else model.full_depth
    model.head = head


# -- loading ---------------------------------------------------------------------------------
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
        pytorch-nested-unet and WZMIAOMIAO UNet checkpoints (see the module docstring).
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
        probe forward on a zero image. For other models these must agree with the weights.

    Raises
    ------
    FileNotFoundError
        ``source`` is neither a file nor a bundled model.
    UnsafeCheckpointError
        The file needs arbitrary unpickling and ``trust`` is False (nothing was run).
    CheckpointError
        Anything else that is not a loadable checkpoint: empty, corrupt or truncated
        files, unrelated files or state dicts, weights that contradict each other.
    TypeError
        An unknown override.
    """
    unknown = sorted(set(overrides) - set(_OVERRIDES))
    if unknown:
        raise TypeError(
            f"load_model() got unknown override(s) {', '.join(map(repr, unknown))}; valid: {', '.join(_OVERRIDES)}"
        )
    path = _resolve(source)
    if path.is_dir():
        raise _fail(path, "it is a directory, not a file")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise _fail(path, f"it cannot be read ({err})") from err
    if size == 0:
        raise _fail(path, "the file is empty")
    if _is_torchscript(path):
        model = _load_torchscript(path, overrides)
    else:
        model = _from_object(_torch_load(path, trust), path, overrides)
    _apply_overrides(model, overrides, path)
    return model.eval()
