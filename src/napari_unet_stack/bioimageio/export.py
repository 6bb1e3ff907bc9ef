"""`export_bioimageio`: a model as a bioimage.io model package (a .zip, format 0.5).

The package holds TorchScript weights (run by every bioimage.io consumer without this
package) and ``pytorch_state_dict`` weights whose architecture is imported from
`napari_unet_stack.models` (for Python consumers that have this package installed), the
model's normalization as preprocessing and its activation as postprocessing, test tensors
computed by our engine, a cover image and a README. ``bioimageio.spec`` validates the
description and writes the zip (the ``[bioimageio]`` extra); the zip is written under a
temporary name and renamed when complete.
"""

from __future__ import annotations

import getpass
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._version import __version__
from ..checkpoints.metadata import plain
from ..checkpoints.own_format import config_of
from ..checkpoints.torchscript import export_torchscript
from ..io.atomic import check_target, write_atomically
from ..zcontext import KEY as Z_CONTEXT
from ..zcontext import z_context_of
from .pictures import cover_image, sample_input
from .rdf import default_cite, model_normalization, model_rdf, size_constraints
from .readme import readme_text

__all__ = ["FILES", "INSTALL_HINT", "check_plain_2d", "export_bioimageio", "import_bioimageio_spec", "package_fields",
           "write_files"]

INSTALL_HINT = 'pip install "napari-unet-stack[bioimageio]"'
FILES = {
    "weights": "weights.pt",
    "torchscript": "weights_torchscript.pt",
    "test_input": "test_input.npy",
    "test_output": "test_output.npy",
    "cover": "cover.png",
    "documentation": "README.md",
    "environment": "environment.yaml",
}


def import_bioimageio_spec():
    """``bioimageio.spec``, or an ImportError saying how to install it."""
    try:
        import bioimageio.spec as spec
    except ImportError as err:
        raise ImportError(f"writing bioimage.io packages needs bioimageio.spec: {INSTALL_HINT}") from err
    return spec


def check_plain_2d(model) -> None:
    """ValueError for a z-context (2.5D) model (``meta["z_context"]`` = k > 0): its input is
    each slice with its k neighbours in Z (`napari_unet_stack.zcontext`), which a bioimage.io
    description of one 2D image in, labels out cannot say: a consumer would feed it a plain
    image of (2k + 1) x C channels."""
    k = z_context_of(model)
    if k:
        raise ValueError(
            f"a z-context (2.5D) model cannot be exported as a bioimage.io model: meta[{Z_CONTEXT!r}] = {k} "
            f"(each slice is read with its {k} neighbouring slice(s) above and below as "
            f"{model.in_channels} input channels), which a plain 2D bioimage.io model cannot describe; "
            f"export a 2D model (z context 0) instead"
        )


def _authors(authors: Any) -> list[dict[str, Any]]:
    if authors is None:
        authors = [getpass.getuser()]
    if isinstance(authors, (str, dict)):
        authors = [authors]
    out = [{"name": a} if isinstance(a, str) else dict(a) for a in authors]
    if not out or not all(isinstance(a.get("name"), str) and a["name"].strip() for a in out):
        raise ValueError(f"`authors` must be names or dicts with a 'name', got {authors!r}")
    return out


def package_fields(model, name, description, authors, cite, license, tags, extra_fields) -> dict[str, Any]:
    architecture = type(model).__name__
    if name is None:
        name = f"napari-unet-stack {architecture} {'-'.join(model.class_names[-1:])}".strip()
    if description is None:
        description = (f"{architecture} segmenting {', '.join(model.class_names)} in 2D planes "
                       f"(napari-unet-stack {__version__}).")
    fields = {
        "name": name,
        "description": description,
        "authors": _authors(authors),
        "cite": list(cite) if cite is not None else default_cite(architecture),
        "license": license,
        "tags": list(tags) if tags is not None else [
            "napari-unet-stack", "unet++" if "Nested" in architecture else "unet",
            "segmentation", "2d", "pytorch", "fluorescence-light-microscopy"],
    }
    fields.update(extra_fields)
    return fields


def _test_tensors(model, test_input: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(1, C, Y, X) float32 input of an admissible size and our engine's probabilities
    for it, (1, K, Y', X'): whole-image, no halo padding, as a bioimage.io consumer runs it."""
    from ..inference import predict

    size, _, _ = size_constraints(model)
    image = sample_input(model.in_channels, size["min"], size["step"]) if test_input is None \
        else np.asarray(test_input)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or image.shape[0] != model.in_channels:
        raise ValueError(f"`test_input` must be (Y, X) or (C, Y, X) with C = {model.in_channels}, "
                         f"got shape {image.shape}")
    for length in image.shape[1:]:
        if length < size["min"] or (length - size["min"]) % size["step"]:
            raise ValueError(f"`test_input` sides must be {size['min']} + n * {size['step']} pixels, "
                             f"got shape {image.shape}")
    image = image.astype(np.float32)
    if model.valid_margin:  # the engine pads valid networks to the input's size: run its steps bare
        probs = _bare_forward(model, image)
    else:
        probs = predict(image, model, channel_axis=0, tile_size=None, halo=0, device="cpu", precision="float32",
                        normalization=model_normalization(model))
    return image[None], np.ascontiguousarray(probs[None], dtype=np.float32)


def _bare_forward(model, image: np.ndarray) -> np.ndarray:
    """The engine's normalization and activation around one forward of the whole image."""
    from ..inference.forward import activate
    from ..normalization import normalize

    spec = model_normalization(model)
    x = torch.from_numpy(normalize(image, spec) if spec is not None else image)[None]
    with torch.no_grad():
        return activate(model(x), model.activation)[0].numpy()


def _environment() -> str:
    return ("name: napari-unet-stack\nchannels:\n  - conda-forge\ndependencies:\n  - python>=3.10\n"
            f"  - pip\n  - pip:\n      - napari-unet-stack=={__version__}\n")


def write_files(model, folder: Path, fields: dict[str, Any], test_input=None) -> dict[str, Any]:
    """Write the package's files into ``folder``; returns its description (the rdf dict,
    not yet validated): the part of `export_bioimageio` that needs no bioimageio."""
    check_plain_2d(model)
    x, y = _test_tensors(model, test_input)
    np.save(folder / FILES["test_input"], x)
    np.save(folder / FILES["test_output"], y)
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    torch.save(state, folder / FILES["weights"])
    export_torchscript(model, folder / FILES["torchscript"], example_input=torch.from_numpy(x))
    cover_image(x[0], y[0], model, folder / FILES["cover"])
    (folder / FILES["documentation"]).write_text(readme_text(model, fields, FILES), encoding="utf-8")
    (folder / FILES["environment"]).write_text(_environment(), encoding="utf-8")
    extra = {
        "package_version": __version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "config": config_of(model, "export_bioimageio"),
        "activation": model.activation,
        "halo": int(model.halo),
        "meta": plain(model.meta, "meta"),
    }
    return model_rdf(model, FILES, fields, extra)


def _validated(spec, rdf: dict[str, Any], folder: Path):
    """The ``ModelDescr`` for ``rdf`` (files in ``folder``), or a ValueError with
    bioimageio.spec's reasons."""
    context = spec.ValidationContext(root=folder, perform_io_checks=True)
    with context:
        descr = spec.build_description(rdf)
    if type(descr).__name__ == "InvalidDescr":
        raise ValueError(f"bioimageio.spec rejects the description it was given:\n{descr.validation_summary}")
    return descr


def export_bioimageio(
    model,
    path: str | os.PathLike,
    *,
    name: str | None = None,
    description: str | None = None,
    authors: Any = None,
    cite: list[dict[str, str]] | None = None,
    license: str = "CC-BY-4.0",
    tags: list[str] | None = None,
    test_input: np.ndarray | None = None,
    overwrite: bool = False,
    **extra_fields: Any,
) -> Path:
    """Write ``model`` as a bioimage.io model package (a zip, format 0.5); returns the path.

    Parameters
    ----------
    model : SegmentationNetwork
        Any model our format saves (``model.config()`` names a known architecture): our
        `UNet` / `NestedUNet` or an imported reference network.
    path : str or Path
        The package to write (``.zip``), atomically: never a partial file.
    name, description : str, optional
        Default: the architecture and the class names.
    authors : str, dict or list of them, optional
        Names or ``{"name", "affiliation", "orcid", ...}`` dicts; default the login name.
    cite : list of ``{"text", "doi" | "url"}``, optional
        Default: the U-Net (and UNet++) papers.
    license : str
        An SPDX identifier (default ``"CC-BY-4.0"``).
    tags : list of str, optional
    test_input : (Y, X) or (C, Y, X) array, optional
        The test image (default: a crop of the shipped nuclei sample); its sides must be
        admissible (``min + n * step`` of the input axes).
    overwrite : bool
        Replace an existing ``path``.
    **extra_fields
        More rdf fields (``git_repo``, ``maintainers``, ``training_data``, ...), passed on.

    Raises
    ------
    ImportError
        bioimageio.spec is missing (install the ``[bioimageio]`` extra).
    TypeError
        ``model`` cannot be rebuilt from a config (a TorchScript or pickled module).
    ValueError
        Its normalization has no bioimage.io equivalent, it is a z-context model (2.5D,
        `check_plain_2d`), or bioimageio.spec rejects the description (its reasons).
    """
    path = Path(path)
    check_plain_2d(model)  # before anything is written
    config_of(model, "export_bioimageio")
    spec = import_bioimageio_spec()
    check_target(path, overwrite)
    fields = package_fields(model, name, description, authors, cite, license, tags, extra_fields)
    was_training = model.training
    model.eval()
    try:
        with tempfile.TemporaryDirectory(prefix="bioimageio-export-") as tmp:
            folder = Path(tmp) / "package"
            folder.mkdir()
            rdf = write_files(model, folder, fields, test_input)
            descr = _validated(spec, rdf, folder)
            packed = spec.save_bioimageio_package(descr, output_path=Path(tmp) / "package.zip")
            write_atomically(path, lambda target: shutil.copyfile(packed, target))
    finally:
        model.train(was_training)
    return path

