"""The README (the rdf's ``documentation``) of an exported bioimage.io package."""

from __future__ import annotations

from typing import Any

from .._version import __version__
from ..labels import model_threshold
from .rdf import INPUT_ID, OUTPUT_ID, model_normalization, size_constraints

__all__ = ["readme_text"]

_NO_PROVENANCE = "No training provenance recorded.\n"


def _normalization_text(model) -> str:
    spec = model_normalization(model) or {"mode": "none"}
    mode = spec.get("mode")
    scope = ("fitted per 2D plane and channel" if spec.get("scope", "slice") == "slice" else
             "fitted on the whole stack in napari-unet-stack, but per 2D plane by bioimage.io consumers")
    if mode == "percentile":
        return (f"percentile scaling, `(x - p{spec['low']:g}) / (p{spec['high']:g} - p{spec['low']:g})`, "
                f"{scope} (`scale_range`)")
    if mode == "zscore":
        return f"zero mean and unit variance, {scope} (`zero_mean_unit_variance`)"
    if mode == "meanstd":
        return "fixed mean and standard deviation per channel (`fixed_zero_mean_unit_variance`)"
    if mode == "scale":
        condition = (f" (napari-unet-stack divides only images whose maximum exceeds {spec['when_above']}; "
                     f"bioimage.io has no such condition: feed images of the range the model was trained on)"
                     if spec.get("when_above") is not None else "")
        return f"division by {spec['divisor']:g} (`scale_linear`){condition}"
    return "none: the raw values, as float32"


def _labels_text(model) -> str:
    """How napari-unet-stack makes labels of the probabilities: at the model's own threshold,
    which only this README tells consumers that are not napari-unet-stack."""
    names = [str(n) for n in model.class_names]
    if model.activation == "softmax":
        fg = f"1 - P(`{names[0]}`)"
    else:
        fg = "the channel's probability" if model.out_channels == 1 else "the largest channel probability"
    own = model.meta.get("threshold") is not None
    why = ("the model's own threshold, chosen with its training (`meta[\"threshold\"]` in the package's "
           "config)" if own else "the model records no threshold of its own")
    return (f"Labels (napari-unet-stack's `segment`): foreground where P(foreground) > {model_threshold(model):g}, "
            f"P(foreground) being {fg}; {why}.")


def readme_text(model, fields: dict[str, Any], files: dict[str, str]) -> str:
    """Markdown describing the model, its input, output, weights and their limits."""
    size, halo, offset = size_constraints(model)
    provenance = model.meta.get("provenance") or {}
    trained = "".join(f"- {key}: {value}\n" for key, value in provenance.items() if isinstance(value, (str, int, float)))
    geometry = (f"Unpadded (valid) convolutions: the output is {-offset} pixels smaller than the input in y and x."
                if offset else
                f"'Same' convolutions: the output has the input's size. The halo, {halo} pixels on each side, is "
                f"the network's reach: the context a tile needs (napari-unet-stack's tiling, tile origins on the "
                f"{size['step']}-pixel grid, reproduces whole-image inference exactly with it).")
    return f"""# {fields['name']}

{fields['description']}

Exported by napari-unet-stack {__version__}: `{model.describe()}`.

## Input

`{INPUT_ID}`: batch x channel ({model.in_channels}) x y x x. y and x must be {size['min']} + n * {size['step']}
pixels. Preprocessing: {_normalization_text(model)}.

## Output

`{OUTPUT_ID}`: batch x channel x y x x, {model.activation} probabilities of the classes
{', '.join(f'`{c}`' for c in model.class_names)} (postprocessing `{model.activation}` applied to the
network's logits). {geometry}

{_labels_text(model)}

## Weights

- `{files['torchscript']}` (torchscript): runs anywhere PyTorch runs, without napari-unet-stack
  (deepImageJ, bioimageio.core, ...).
- `{files['weights']}` (pytorch_state_dict): the architecture is `napari_unet_stack.models.{type(model).__name__}`,
  so consumers need `pip install napari-unet-stack` (see `{files['environment']}`).

napari-unet-stack reads this package back with `load_model("package.zip")` (or the `rdf.yaml`
of the unpacked folder).

## Training

{trained or _NO_PROVENANCE}
# Validation

The test output (`{files['test_output']}`) was computed from the test input (`{files['test_input']}`)
by napari-unet-stack's inference engine on the whole image, and is reproduced by both weight formats
(`bioimageio.core.test_model`). The model was not validated beyond what its provenance says; check its
output on your own data.
"""
