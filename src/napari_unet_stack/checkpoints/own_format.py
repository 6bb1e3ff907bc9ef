"""Our self-describing format: `save_model`, and reading it back (`load_own`).

One ``torch.save`` dict of plain types, loadable with ``torch.load(weights_only=True)``::

    {"format": "napari-unet-stack", "format_version": 1, "package_version": "0.1.0",
     "config": {"architecture": "UNet", "kwargs": {...}},   # model.config()
     "state_dict": {...}, "meta": {...}, "activation": "softmax" | "sigmoid" | None,
     "training_state": {...}}   # optional: model.training_state, for train(resume=True)

``training_state`` (tensors and plain values: the AdamW state dict, the schedule's step
and total, the sampling RNG state) is written when the model carries one (`train` sets
it) unless ``include_training_state=False``; readers that do not know it ignore it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from ..io.atomic import write_atomically
from ..labels import check_activation
from ..models import ARCHITECTURE_CLASSES, REFERENCE_ARCHITECTURES, SegmentationNetwork
from ..models.base import META_KEYS
from .errors import CheckpointError, cannot_load
from .metadata import check_loaded_meta, check_meta, plain, plain_training_state
from .weights import build_checked, expanded, non_finite

__all__ = ["FORMAT", "FORMAT_VERSION", "architectures", "config_of", "load_own", "save_model"]

FORMAT = "napari-unet-stack"
FORMAT_VERSION = 1


def architectures() -> dict[str, type[SegmentationNetwork]]:
    """The classes our format rebuilds, by the architecture name their ``config()`` reports."""
    return {**ARCHITECTURE_CLASSES, **REFERENCE_ARCHITECTURES}


def config_of(model: Any, action: str) -> dict[str, Any]:
    """``model.config()`` as plain data; TypeError (naming ``action``) if our format cannot
    rebuild the model from it."""
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
    if config.get("architecture") not in architectures():
        raise TypeError(
            f"{type(model).__name__}.config() names architecture {config.get('architecture')!r}, which "
            f"load_model cannot rebuild (known: {sorted(architectures())}); use export_torchscript instead"
        )
    return plain(config, "config")


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
        A metadata value is invalid (e.g. ``class_names`` of the wrong length), or the
        weights hold NaN or infinity (`load_model` refuses such files; nothing is written).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from napari_unet_stack.checkpoints import load_model
    >>> from napari_unet_stack.models import UNet
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "unet.pt"
    >>> save_model(UNet(1, 2, base_channels=4, depth=2), path, class_names=["bg", "cell"]).name
    'unet.pt'
    >>> load_model(path).class_names
    ['bg', 'cell']
    """
    path = Path(path)
    config = config_of(model, "save_model")
    metadata = dict(metadata)
    activation = metadata.pop("activation", model.explicit_activation)
    if activation is not None:
        check_activation(activation)
    updates = {key: check_meta(model, key, value) for key, value in metadata.items()}
    # the entries already in model.meta are checked too: load_model would refuse a bad one
    meta = {key: check_meta(model, key, value) if key in META_KEYS and key not in updates else plain(value, key)
            for key, value in {**model.meta, **updates}.items()}
    state = {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}
    bad = non_finite(state)
    if bad:  # load_model refuses such files: write none
        raise ValueError(
            f"save_model: not saving {str(path)!r}, the model has non-finite weights: "
            f"{'; '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}"
        )
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
        checkpoint["training_state"] = plain_training_state(training_state, "training_state")
    write_atomically(path, lambda tmp: torch.save(checkpoint, tmp))
    model.meta.update(updates)
    if activation is not None:
        model.activation = activation
    return path


def _build(checkpoint: Mapping[str, Any], path: Path) -> SegmentationNetwork:
    """The network the checkpoint's config describes, with its weights loaded."""
    version = checkpoint.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has napari-unet-stack format version {version!r} (written by package "
            f"version {checkpoint.get('package_version')!r}); this version {__version__} reads up to "
            f"{FORMAT_VERSION}: upgrade napari-unet-stack"
        )
    config = checkpoint.get("config")
    if not isinstance(config, Mapping) or not isinstance(config.get("kwargs"), Mapping):
        raise cannot_load(path, "its 'config' entry is missing or malformed")
    name = config.get("architecture")
    known = architectures()
    if name not in known:
        raise CheckpointError(
            f"{str(path)!r} needs architecture {name!r}, which this version does not know ({sorted(known)})"
        )
    state = checkpoint.get("state_dict")
    if not isinstance(state, Mapping):
        raise cannot_load(path, "its 'state_dict' entry is missing")
    try:
        return build_checked(known[name], config["kwargs"], state, path, name)
    except CheckpointError:
        raise
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"{str(path)!r}: cannot build {name} from its config {dict(config['kwargs'])}: {err}"
        ) from err


def load_own(checkpoint: Mapping[str, Any], path: Path) -> SegmentationNetwork:
    """The model a `save_model` dict (read from ``path``) describes, with its metadata,
    activation and training state.

    A newer format version, an unknown architecture or weights that do not fit are a
    `CheckpointError`; a malformed training state is ignored with a warning.
    """
    model = _build(checkpoint, path)
    model.meta = check_loaded_meta(
        model, checkpoint.get("meta"), checkpoint.get("activation"), path
    )
    if checkpoint.get("activation") is not None:
        model.activation = checkpoint["activation"]
    training_state = checkpoint.get("training_state")
    problem = None
    if isinstance(training_state, Mapping):  # for train(resume=True); inference ignores it
        problem = expanded(training_state, "training_state")
        if problem is None:
            model.training_state = dict(training_state)
    elif training_state is not None:
        problem = f"a {type(training_state).__name__}"
    if problem is not None:
        # stacklevel 4: load_own, load_object, load_model, then load_model's caller
        warnings.warn(
            f"ignoring the malformed training state of {str(path)!r} ({problem}); the model "
            f"loads, but cannot resume training",
            stacklevel=4,
        )
    return model
