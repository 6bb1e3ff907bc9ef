"""A model's bioimage.io description (``rdf.yaml``, format 0.5) as plain data.

Nothing here imports bioimageio: `model_rdf` builds the dict that `export` hands to
``bioimageio.spec`` for validation and packaging, from the model's own config, geometry,
activation and metadata. The translations between our normalization and bioimage.io's
preprocessing live here too (`preprocessing_of`, `normalization_of`), so that export
and import read one table.
"""

from __future__ import annotations

from typing import Any

from ..normalization import resolve_normalization, validate_normalization

__all__ = [
    "ARCHITECTURE_LIBRARY",
    "CONFIG_KEY",
    "FORMAT_VERSION",
    "INPUT_ID",
    "OUTPUT_ID",
    "UnsupportedPackageError",
    "activation_of",
    "model_normalization",
    "model_rdf",
    "normalization_of",
    "preprocessing_of",
    "size_constraints",
]

#: the bioimage.io model format version the export writes
FORMAT_VERSION = "0.5.4"
#: where ``pytorch_state_dict`` weights find their architecture (``import_from``)
ARCHITECTURE_LIBRARY = "napari_unet_stack.models"
#: the entry of the rdf's ``config`` that holds what only we read back
CONFIG_KEY = "napari_unet_stack"
INPUT_ID = "raw"
OUTPUT_ID = "probabilities"
_SPACE = ("y", "x")
_IGNORED_OPS = ("ensure_dtype",)

#: papers to cite for each architecture (bioimage.io needs at least one entry)
_UNET = {"text": "Ronneberger, Fischer and Brox (2015), U-Net: Convolutional Networks for "
         "Biomedical Image Segmentation, MICCAI", "doi": "10.1007/978-3-319-24574-4_28"}
_UNETPP = {"text": "Zhou, Siddiquee, Tajbakhsh and Liang (2018), UNet++: A Nested U-Net "
           "Architecture for Medical Image Segmentation, DLMIA", "doi": "10.1007/978-3-030-00889-5_1"}


class UnsupportedPackageError(ValueError):
    """A bioimage.io package (or a model to export) with a feature we cannot translate."""


def default_cite(architecture: str) -> list[dict[str, str]]:
    return [_UNETPP, _UNET] if "Nested" in architecture else [_UNET]


# -- normalization <-> preprocessing -----------------------------------------------------
def model_normalization(model: Any) -> dict[str, Any] | None:
    """The normalization our engine applies for ``model`` (``normalization="auto"``): its
    own, else the default percentiles."""
    return resolve_normalization("auto", model.normalization)


def preprocessing_of(normalization: dict | None, in_channels: int) -> list[dict[str, Any]]:
    """bioimage.io preprocessing equal to our ``normalization`` (fitted per 2D image and
    channel), after an ``ensure_dtype`` to float32; `UnsupportedPackageError` where
    bioimage.io has no equivalent."""
    steps: list[dict[str, Any]] = [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}]
    spec = validate_normalization(normalization)
    mode, axes = spec["mode"], list(_SPACE)
    if mode == "percentile":
        if not (spec["low"] < 100 and spec["high"] > 1):
            raise UnsupportedPackageError(
                f"percentiles ({spec['low']}, {spec['high']}) have no bioimage.io scale_range "
                f"equivalent (it needs low < 100 and high > 1)"
            )
        kwargs = {"axes": axes, "min_percentile": float(spec["low"]), "max_percentile": float(spec["high"])}
        steps.append({"id": "scale_range", "kwargs": kwargs})
    elif mode == "zscore":
        steps.append({"id": "zero_mean_unit_variance", "kwargs": {"axes": axes}})
    elif mode == "meanstd":
        divisor = float(spec["divisor"])
        mean = [float(m) * divisor for m in _per_channel(spec["mean"], in_channels)]
        std = [float(s) * divisor for s in _per_channel(spec["std"], in_channels)]
        kwargs = {"mean": mean, "std": std, "axis": "channel"} if in_channels > 1 else {"mean": mean[0], "std": std[0]}
        steps.append({"id": "fixed_zero_mean_unit_variance", "kwargs": kwargs})
    elif mode == "scale":  # a `when_above` condition has no equivalent: documented in the README
        steps.append({"id": "scale_linear", "kwargs": {"gain": 1.0 / float(spec["divisor"]), "offset": 0.0}})
    return steps


def _per_channel(value: Any, n: int) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return values * n if len(values) == 1 else values


def _reduced_axes(kwargs: dict, op: str, in_channels: int) -> None:
    """`UnsupportedPackageError` unless ``kwargs['axes']`` reduces over the spatial axes and,
    with several channels, keeps channels apart (our normalizations are per channel)."""
    axes = kwargs.get("axes")
    if axes is None:
        if in_channels > 1:
            raise UnsupportedPackageError(f"preprocessing {op!r} over all axes jointly (channels mixed)")
        return
    axes = {str(a) for a in axes}
    if not set(_SPACE) <= axes:
        raise UnsupportedPackageError(f"preprocessing {op!r} over axes {sorted(axes)} (not all of y, x)")
    if "channel" in axes and in_channels > 1:
        raise UnsupportedPackageError(f"preprocessing {op!r} over the channels jointly")


def _normalization_step(op: str, kwargs: dict, in_channels: int) -> dict[str, Any]:
    if op == "scale_range":
        _reduced_axes(kwargs, op, in_channels)
        if kwargs.get("reference_tensor") not in (None, INPUT_ID):
            raise UnsupportedPackageError("scale_range with a reference_tensor")
        return {"mode": "percentile", "low": float(kwargs.get("min_percentile", 0.0)),
                "high": float(kwargs.get("max_percentile", 100.0))}
    if op == "zero_mean_unit_variance":
        _reduced_axes(kwargs, op, in_channels)
        return {"mode": "zscore"}
    if op in ("fixed_zero_mean_unit_variance", "scale_linear"):
        if op == "scale_linear":
            gain = _per_channel(kwargs.get("gain", 1.0), in_channels)
            offset = _per_channel(kwargs.get("offset", 0.0), in_channels)
            if any(float(g) <= 0 for g in gain):
                raise UnsupportedPackageError("scale_linear with a gain <= 0")
            mean = [-float(o) / float(g) for o, g in zip(offset, gain, strict=False)]
            std = [1.0 / float(g) for g in gain]
        else:
            mean = [float(m) for m in _per_channel(kwargs.get("mean", 0.0), in_channels)]
            std = [float(s) for s in _per_channel(kwargs.get("std", 1.0), in_channels)]
        return {"mode": "meanstd", "mean": mean, "std": std, "divisor": 1.0}
    raise UnsupportedPackageError(f"preprocessing {op!r}")


def normalization_of(steps: Any, in_channels: int) -> dict[str, Any]:
    """Our normalization for a bioimage.io ``preprocessing`` list (``ensure_dtype`` steps
    ignored, at most one normalizing step); `UnsupportedPackageError` naming what has no
    equivalent."""
    found = None
    for step in steps or []:
        op = step.get("id") if isinstance(step, dict) else None
        if op in _IGNORED_OPS:
            continue
        kwargs = step.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise UnsupportedPackageError(f"preprocessing {op!r} with kwargs {kwargs!r}")
        spec = _normalization_step(str(op), kwargs, in_channels)
        if found is not None:
            raise UnsupportedPackageError(f"more than one normalizing preprocessing step (… then {op!r})")
        found = spec
    try:
        return validate_normalization(found or {"mode": "none"})
    except (TypeError, ValueError) as err:
        raise UnsupportedPackageError(f"its preprocessing ({err})") from err


def activation_of(steps: Any) -> str | None:
    """``"softmax"`` / ``"sigmoid"`` for a ``postprocessing`` list ending in that function
    (None without one); `UnsupportedPackageError` for any other step."""
    found = None
    for step in steps or []:
        op = step.get("id") if isinstance(step, dict) else None
        if op in _IGNORED_OPS:
            continue
        if op == "sigmoid" and found is None:
            found = "sigmoid"
        elif op == "softmax" and found is None:
            axis = (step.get("kwargs") or {}).get("axis", "channel")
            if axis != "channel":
                raise UnsupportedPackageError(f"postprocessing softmax along axis {axis!r} (not 'channel')")
            found = "softmax"
        else:
            raise UnsupportedPackageError(f"postprocessing {op!r}")
    return found


# -- geometry ---------------------------------------------------------------------------
def size_constraints(model: Any) -> tuple[dict[str, int], int, int]:
    """(input ``{min, step}``, output halo, output offset) for each space axis.

    "Same" networks: sizes on the ``size_multiple`` grid, at least one grid block of
    output beside a halo of the model's exact reach on each side (tiles cropped by the halo
    reproduce whole-image inference). Valid networks: their smallest admissible input, the
    output ``2 * valid_margin`` smaller (offset), no halo.
    """
    step = int(model.size_multiple)
    if model.valid_margin:
        return {"min": int(model.input_size_for(1)), "step": step}, 0, -2 * int(model.valid_margin)
    halo = int(model.halo)
    return {"min": int(model.input_size_for(2 * halo + step)), "step": step}, halo, 0


def _space_axes(size: Any, halo: int = 0) -> list[dict[str, Any]]:
    axes = []
    for axis in _SPACE:
        entry = {"type": "space", "id": axis, "size": dict(size) if isinstance(size, dict) else size}
        if isinstance(entry["size"], dict) and "tensor_id" in entry["size"]:
            entry["size"]["axis_id"] = axis
        if halo:
            entry["halo"] = halo
        axes.append(entry)
    return axes


def model_rdf(model: Any, files: dict[str, str], fields: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The ``rdf.yaml`` content for ``model``.

    ``files`` names the package's files (``weights``, ``torchscript``, ``test_input``,
    ``test_output``, ``cover``, ``documentation``, ``environment``); ``fields`` are the
    rdf's descriptive fields (name, description, authors, cite, license, tags, ...);
    ``extra`` goes into ``config[CONFIG_KEY]`` (what our importer reads back).
    """
    config = model.config()
    size, halo, offset = size_constraints(model)
    in_names = [f"channel{c}" for c in range(model.in_channels)]
    postprocessing = [{"id": "softmax", "kwargs": {"axis": "channel"}}] if model.activation == "softmax" \
        else [{"id": "sigmoid"}]
    torch_version = extra["pytorch_version"]
    return {
        "format_version": FORMAT_VERSION,
        "type": "model",
        **fields,
        "documentation": files["documentation"],
        "covers": [files["cover"]],
        "inputs": [{
            "id": INPUT_ID,
            "description": "image, one 2D plane (any real dtype; converted to float32)",
            "axes": [{"type": "batch"}, {"type": "channel", "channel_names": in_names}, *_space_axes(size)],
            "test_tensor": {"source": files["test_input"]},
            "data": {"type": "float32"},
            "preprocessing": preprocessing_of(model_normalization(model), model.in_channels),
        }],
        "outputs": [{
            "id": OUTPUT_ID,
            "description": f"{model.activation} class probabilities",
            "axes": [{"type": "batch"},
                     {"type": "channel", "channel_names": [str(n) for n in model.class_names]},
                     *_space_axes({"tensor_id": INPUT_ID, "offset": offset}, halo)],
            "test_tensor": {"source": files["test_output"]},
            "data": {"type": "float32"},
            "postprocessing": postprocessing,
        }],
        "weights": {
            "pytorch_state_dict": {
                "source": files["weights"],
                "architecture": {"callable": config["architecture"], "import_from": ARCHITECTURE_LIBRARY,
                                 "kwargs": config["kwargs"]},
                "pytorch_version": torch_version,
                "dependencies": {"source": files["environment"]},
            },
            "torchscript": {"source": files["torchscript"], "pytorch_version": torch_version,
                            "parent": "pytorch_state_dict"},
        },
        "config": {CONFIG_KEY: extra},
    }
