"""What `load_model` raises, and the wording its messages share."""

from __future__ import annotations

from pathlib import Path

from ..validation import first_line

__all__ = [
    "SUPPORTED_FORMATS",
    "CheckpointError",
    "UnsafeCheckpointError",
    "cannot_load",
    "error_summary",
]

SUPPORTED_FORMATS = (
    "napari-unet-stack checkpoints (save_model); "
    "TorchScript archives (torch.jit.save, export_torchscript); "
    "bioimage.io model packages (.zip or rdf.yaml, format 0.5, torchscript or pytorch_state_dict "
    "weights of a known architecture); "
    "milesial/Pytorch-UNet, 4uiiurz1/pytorch-nested-unet (UNet, NestedUNet), "
    "WZMIAOMIAO UNet and strided-convolution tutorial UNet state dicts, plain or under a 'model', 'state_dict', "
    "'model_state_dict' or 'net' entry, with or without DataParallel 'module.' prefixes; "
    "fully pickled torch modules (trust=True only)"
)


class CheckpointError(ValueError):
    """A file that is not a checkpoint ``load_model`` can read, or one that contradicts itself."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that would run arbitrary code to load; refused unless ``trust=True``."""


def cannot_load(path: Path | str, what: str) -> CheckpointError:
    """The error for a file that is no checkpoint we read: names it, says why, lists the formats."""
    return CheckpointError(
        f"cannot load {str(path)!r}: {what}. Supported formats: {SUPPORTED_FORMATS}"
    )


def error_summary(err: BaseException) -> str:
    """``"TypeName: first line of the message"`` (at most 200 characters of it).

    Unlike `napari_unet_stack.validation.first_line`, it keeps the exception's type (torch
    raises RuntimeError, EOFError, ... for the same damaged file) and skips the advice that
    torch's ``weights_only`` refusals put before their actual cause.
    """
    return first_line(err, after="WeightsUnpickler error:", with_type=True, limit=200)
