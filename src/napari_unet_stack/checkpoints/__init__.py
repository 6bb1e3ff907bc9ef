"""Saving and loading models: our self-describing format, TorchScript, and foreign checkpoints.

One module per concern:

- `own_format`: `save_model` and its reader, one ``torch.save`` dict of plain data
  (config, weights, metadata, activation, optionally the training state) that
  ``torch.load(weights_only=True)`` reads;
- `torchscript`: `export_torchscript` and reading TorchScript archives (``torch.jit.save``)
  with the metadata it adds; `wrapped` holds the network they (and fully pickled modules)
  are wrapped in;
- `foreign`: one module per public code whose checkpoints `load_model` imports:
  milesial/Pytorch-UNet (transposed or bilinear, with or without ``mask_values``, with the
  older biased convolutions); 4uiiurz1/pytorch-nested-unet ``model.pth`` (UNet,
  NestedUNet with or without deep supervision), checked against a ``config.yml`` beside
  it when present; WZMIAOMIAO DRIVE UNet checkpoints (``{"model", "optimizer",
  "lr_scheduler", "epoch", "args"}``); the strided-convolution tutorial UNet (stages
  recognised by their sub-keys, whatever their names); state dicts wrapped in a ``model`` /
  ``state_dict`` / ``model_state_dict`` / ``net`` entry, with DataParallel ``module.``
  (or ``torch.compile`` ``_orig_mod.``) prefixes;
- `safety`: pickle safety; `weights`: building and loading, checked first; `registry`: the bundled models (`list_models`); `metadata`:
  what metadata may hold; `errors`: `CheckpointError` and `UnsafeCheckpointError`;
  `loading`: `load_model`, which dispatches to the others.

For foreign checkpoints the architecture and its sizes are read off the weights; the
weights load with ``strict=True`` into modules that reproduce the reference code
(`napari_unet_stack.models.reference`).

Pickles are opened with ``torch.load(weights_only=True)``, which refuses to build anything
but tensors and plain containers (plus ``argparse.Namespace`` and numpy scalars, which
the references store). A file that needs more (a fully pickled module) is refused with
`UnsafeCheckpointError` before any of its code runs; ``trust=True`` lifts that, for files
from a trusted source. TorchScript archives hold TorchScript code, not Python, and load
without ``trust`` as long as loading runs none of it: archives whose code has a
``__setstate__`` (run by ``torch.jit.load``) need ``trust=True``, and a probe forward
for the output channels is run only on loop-free code (traced archives) or with ``trust``.

Nothing a file claims is built before it is checked (`weights`): sizes against sane
bounds, the network's parameter count on the memory-free ``meta`` device, the weights'
shapes against the config, each tensor against the values the file stores, and the
weights for NaN and infinity (refused: such a model silently segments nothing).
"""

from .errors import SUPPORTED_FORMATS, CheckpointError, UnsafeCheckpointError
from .loading import load_model
from .own_format import FORMAT, FORMAT_VERSION, save_model
from .registry import list_models
from .torchscript import TORCHSCRIPT_META, export_torchscript

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SUPPORTED_FORMATS",
    "TORCHSCRIPT_META",
    "CheckpointError",
    "UnsafeCheckpointError",
    "export_torchscript",
    "list_models",
    "load_model",
    "save_model",
]
