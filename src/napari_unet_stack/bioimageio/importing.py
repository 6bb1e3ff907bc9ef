"""Reading bioimage.io model packages (format 0.5) into our networks, for `load_model`.

Weights: ``pytorch_state_dict`` whose architecture we know (``import_from:
napari_unet_stack.models``, or weights that match an imported family, whatever the
architecture file says: it is never run), else ``torchscript``. The input's
preprocessing becomes our normalization, the output's sigmoid / softmax postprocessing
the activation, its channel names the class names. Anything else (other weight formats,
3D or time axes, several inputs, preprocessing without an equivalent) is a
`CheckpointError` naming it. Needs pyyaml only, not bioimageio.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..checkpoints.errors import CheckpointError, cannot_load
from ..checkpoints.foreign import family_of, strip_prefixes, unwrap_container
from ..checkpoints.metadata import check_loaded_meta, check_meta
from ..checkpoints.own_format import architectures
from ..checkpoints.safety import load_pickle
from ..checkpoints.torchscript import load_torchscript
from ..checkpoints.weights import build_checked
from ..models import SegmentationNetwork
from .package import Package, is_bioimageio
from .rdf import (
    ARCHITECTURE_LIBRARY,
    CONFIG_KEY,
    UnsupportedPackageError,
    activation_of,
    normalization_of,
)

__all__ = ["is_bioimageio", "load_bioimageio"]

_READ_WEIGHTS = ("pytorch_state_dict", "torchscript")


def _unsupported(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"cannot load the bioimage.io package {str(path)!r}: {what} is not supported")


def _tensor(path: Path, rdf: Mapping, key: str) -> dict[str, Any]:
    tensors = rdf.get(key)
    if not isinstance(tensors, list) or not tensors or not isinstance(tensors[0], dict):
        raise cannot_load(path, f"its description has no {key}")
    if len(tensors) > 1:
        raise _unsupported(path, f"a model with {len(tensors)} {key}")
    return tensors[0]


def _axes(path: Path, tensor: Mapping, key: str) -> tuple[int, list[dict]]:
    """(channels, the two space axes) of a tensor laid out batch, channel, y, x."""
    axes = tensor.get("axes")
    if not isinstance(axes, list) or not all(isinstance(a, dict) for a in axes):
        raise cannot_load(path, f"its {key} tensor has no axes list (format 0.4 packages are not read)")
    kinds = [a.get("type") for a in axes]
    if kinds != ["batch", "channel", "space", "space"]:
        names = ", ".join(str(a.get("id", a.get("type"))) for a in axes)
        raise _unsupported(path, f"{key} axes ({names}); napari-unet-stack reads batch, channel, y, x")
    names = axes[1].get("channel_names")
    channels = len(names) if isinstance(names, list) else axes[1].get("size")
    if not isinstance(channels, int) or channels < 1:
        raise cannot_load(path, f"its {key} channel axis has no size")
    return channels, axes[2:]


def _geometry(path: Path, rdf: Mapping) -> dict[str, Any]:
    """in_channels, n_classes, depth and halo the description gives."""
    source, target = _tensor(path, rdf, "inputs"), _tensor(path, rdf, "outputs")
    in_channels, space = _axes(path, source, "inputs")
    n_classes, out_space = _axes(path, target, "outputs")
    steps = set()
    for axis in space:
        size = axis.get("size")
        if not isinstance(size, dict) or not isinstance(size.get("step"), int):
            raise _unsupported(path, f"a fixed or unparameterized input size ({size!r})")
        steps.add(size["step"])
    step = max(steps)
    if step < 1 or step & (step - 1) or steps != {step}:
        raise _unsupported(path, f"input size steps {sorted(steps)} (powers of 2, equal in y and x)")
    offsets = {int(a["size"].get("offset", 0) or 0) if isinstance(a.get("size"), dict) else None for a in out_space}
    if len(offsets) != 1 or None in offsets:
        raise _unsupported(path, "output sizes that are not the input's (plus one offset, equal in y and x)")
    halo = max(int(a.get("halo", 0) or 0) for a in out_space)
    return {"in_channels": in_channels, "n_classes": n_classes, "depth": max(int(math.log2(step)), 1),
            "halo": halo, "offset": offsets.pop(), "input": source, "output": target}


def _known_architecture(entry: Mapping) -> type[SegmentationNetwork] | None:
    architecture = entry.get("architecture")
    if not isinstance(architecture, Mapping):
        return None
    library = str(architecture.get("import_from") or "")
    if library == ARCHITECTURE_LIBRARY or library.startswith("napari_unet_stack."):
        return architectures().get(str(architecture.get("callable")))
    return None


def _from_state_dict(package: Package, entry: Mapping, folder: Path, trust: bool) -> SegmentationNetwork | None:
    """The network of ``pytorch_state_dict`` weights, or None when the architecture is unknown."""
    weights = package.extract(entry, folder)
    state = load_pickle(weights, trust)
    if not isinstance(state, Mapping):
        raise cannot_load(package.path, f"its pytorch_state_dict holds a {type(state).__name__}, not a state dict")
    cls = _known_architecture(entry)
    if cls is not None:
        kwargs = entry["architecture"].get("kwargs") or {}
        if not isinstance(kwargs, Mapping):
            raise cannot_load(package.path, "its architecture kwargs are not a mapping")
        what = f"{cls.__name__}({dict(kwargs)})"
        try:
            return build_checked(cls, dict(kwargs), state, package.path, what)
        except (TypeError, ValueError) as err:
            if isinstance(err, CheckpointError):
                raise
            raise CheckpointError(f"{str(package.path)!r}: cannot build {what}: {err}") from err
    inner = strip_prefixes(unwrap_container(state))
    family = family_of(inner)
    return None if family is None else family.load(state, inner, package.path)


def _pick_weights(package: Package, folder: Path, overrides: dict, trust: bool):
    """(model, weight format used)."""
    weights = package.rdf.get("weights")
    if not isinstance(weights, Mapping) or not weights:
        raise cannot_load(package.path, "its description lists no weights")
    present = [k for k in _READ_WEIGHTS if isinstance(weights.get(k), Mapping)]
    if not present:
        raise _unsupported(package.path, f"weights in {', '.join(map(str, weights))} only "
                                         f"(napari-unet-stack reads {' and '.join(_READ_WEIGHTS)})")
    if "pytorch_state_dict" in present:
        model = _from_state_dict(package, weights["pytorch_state_dict"], folder, trust)
        if model is not None:
            return model, "pytorch_state_dict"
        if "torchscript" not in present:
            arch = weights["pytorch_state_dict"].get("architecture") or {}
            where = arch.get("import_from") or arch.get("source") if isinstance(arch, Mapping) else None
            name = arch.get("callable") if isinstance(arch, Mapping) else None
            raise _unsupported(package.path, f"pytorch_state_dict weights of the architecture {name!r} "
                                             f"(from {where!r}), which napari-unet-stack does not know, "
                                             f"without torchscript weights")
    archive = package.extract(weights["torchscript"], folder)
    return load_torchscript(archive, overrides, trust), "torchscript"


def _ours(package: Package) -> dict[str, Any] | None:
    config = package.rdf.get("config")
    extra = config.get(CONFIG_KEY) if isinstance(config, Mapping) else None
    return dict(extra) if isinstance(extra, Mapping) else None


def _describe(model: SegmentationNetwork, package: Package, geometry: dict, overrides: dict) -> None:
    """Set the normalization, activation, class names and provenance the package gives."""
    path, rdf, ours = package.path, package.rdf, _ours(package)
    try:
        normalization = normalization_of(geometry["input"].get("preprocessing"), model.in_channels)
        activation = activation_of(geometry["output"].get("postprocessing"))
    except UnsupportedPackageError as err:
        raise _unsupported(path, str(err)) from err
    if ours is not None:  # our export: its meta back (the normalization's scope included)
        model.meta = check_loaded_meta(model, ours.get("meta"), ours.get("activation"), path)
        own = model.meta.get("normalization")
        same = isinstance(own, Mapping) and {**own, "scope": "slice"} == normalization
        model.meta["normalization"] = dict(own) if same else normalization
    else:
        model.meta = {"normalization": normalization, "provenance": {
            "imported_from": "bioimage.io", "source": str(path), "name": rdf.get("name"), "id": rdf.get("id")}}
        names = geometry["output"]["axes"][1].get("channel_names")
        if isinstance(names, list) and len(names) == model.out_channels:
            model.meta["class_names"] = check_meta(model, "class_names", [str(n) for n in names])
    if activation is None and "activation" not in overrides:
        raise _unsupported(path, "an output without a sigmoid or softmax postprocessing (whether the network "
                                 "returns logits is unknown); pass activation='sigmoid' or 'softmax' to read "
                                 "its output as logits")
    if activation is not None:
        model.activation = activation


def load_bioimageio(path: Path, overrides: dict, trust: bool = False) -> SegmentationNetwork:
    """The model of the bioimage.io package at ``path`` (a zip, or an ``rdf.yaml`` in its folder)."""
    with Package(path) as package, tempfile.TemporaryDirectory(prefix="bioimageio-import-") as tmp:
        rdf = package.rdf
        if rdf.get("type") != "model":
            raise _unsupported(path, f"a bioimage.io resource of type {rdf.get('type')!r} (not a model)")
        version = str(rdf.get("format_version", ""))
        if not version.startswith("0.5"):
            raise _unsupported(path, f"format_version {version!r} (napari-unet-stack reads 0.5; "
                                     f"bioimageio.spec's update_format converts older descriptions)")
        geometry = _geometry(path, rdf)
        ts_overrides = {} if _ours(package) is not None else {
            k: geometry[k] for k in ("in_channels", "n_classes", "depth", "halo") if geometry[k]}
        model, used = _pick_weights(package, Path(tmp), {**ts_overrides, **overrides}, trust)
        if geometry["offset"] != -2 * model.valid_margin:
            raise _unsupported(path, f"an output {-geometry['offset']} pixels smaller than its input with "
                                     f"{used} weights (valid convolutions are read from napari-unet-stack exports only)")
        for key, actual in (("in_channels", model.in_channels), ("n_classes", model.out_channels)):
            if geometry[key] != actual:
                raise cannot_load(path, f"its description says {key}={geometry[key]}, its weights {actual}")
        _describe(model, package, geometry, overrides)
    return model
