"""TorchScript: `export_torchscript`, and reading archives back with the metadata it adds.

An exported archive runs without this package (``torch.jit.load``); its
``napari_unet_stack.json`` entry carries the channels, depth, halo, valid margin,
activation and ``meta``. TorchScript archives hold TorchScript code, not Python, and load
without ``trust`` when loading runs none of it (see `load_torchscript`).
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
import zipfile
from pathlib import Path

import torch

from .._version import __version__
from ..io.atomic import write_atomically
from ..models import SegmentationNetwork
from .errors import UnsafeCheckpointError, cannot_load, error_summary
from .metadata import plain
from .own_format import FORMAT, FORMAT_VERSION
from .wrapped import wrap_module

__all__ = [
    "TORCHSCRIPT_META",
    "export_torchscript",
    "is_torchscript",
    "load_time_code",
    "load_torchscript",
    "quiet_jit",
]

#: name of the JSON entry `export_torchscript` adds to a TorchScript archive
TORCHSCRIPT_META = "napari_unet_stack.json"


def _archive_info(model: SegmentationNetwork) -> dict:
    """What `load_torchscript` needs to rebuild ``model``'s geometry and metadata."""
    try:
        config = model.config()
    except NotImplementedError:
        config = None
    return {
        "format": FORMAT + "-torchscript",
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "architecture": type(model).__name__,
        "config": plain(config, "config"),
        "in_channels": model.in_channels,
        "n_classes": model.out_channels,
        "depth": model.depth,
        "halo": model.halo,
        "valid_margin": model.valid_margin,
        "admissible_input": model.input_size_for(1),
        "exact_tiling": bool(model.exact_tiling),
        "activation": model.activation,
        "meta": plain(model.meta, "meta"),
    }


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
    info = _archive_info(model)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), quiet_jit():
            traced = torch.jit.trace(model, example_input.to(device))
    finally:
        model.train(was_training)
    extra = {TORCHSCRIPT_META: json.dumps(info)}

    def write(tmp: str) -> None:
        with quiet_jit():
            torch.jit.save(traced, tmp, _extra_files=extra)

    write_atomically(path, write)
    return path


@contextlib.contextmanager
def quiet_jit():
    """Silence torch.jit's deprecation notices (TorchScript files are still read and written)
    and the tracer's warnings about Python values it records as constants."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit")
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with TorchScript code or constants)."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def load_time_code(path: Path) -> str | None:
    """The archive member whose TorchScript code mentions ``__setstate__`` (which
    ``torch.jit.load`` runs while loading), or None; the text is only read."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            code = "/code/" in name and name.endswith(".py")
            if code and b"__setstate__" in archive.read(name):
                return name
    return None


def load_torchscript(path: Path, overrides: dict, trust: bool = False) -> SegmentationNetwork:
    """The archive at ``path``, wrapped with its metadata entry and ``overrides`` (`wrap_module`).

    Without ``trust`` none of its code runs: an archive with load-time code
    (`load_time_code`) is refused with `UnsafeCheckpointError`, and the output channels
    are probed only when the forward has no loops.
    """
    member = None if trust else load_time_code(path)
    if member is not None:
        raise UnsafeCheckpointError(
            f"refusing to load {str(path)!r}: its TorchScript code ({member}) defines __setstate__, "
            f"which torch.jit.load runs while loading and which could do anything, or never end. "
            f"Nothing from the file was executed. Pass trust=True to load_model only if you "
            f"trust the file and where it came from."
        )
    extra = {TORCHSCRIPT_META: ""}
    try:
        with quiet_jit():
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except (RuntimeError, ValueError) as err:
        raise cannot_load(
            path, f"a TorchScript archive that torch.jit.load cannot read ({error_summary(err)})"
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
    return wrap_module(module, path, overrides, info, "TorchScript", trust)
