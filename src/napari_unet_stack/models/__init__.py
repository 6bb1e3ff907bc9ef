"""Plain torch networks (no napari): our UNet and UNet++, and the base class the engine reads.

`ARCHITECTURES` names the networks `train` builds, the one table the API, the CLI and the
Train widget offer; `architecture_class` turns any accepted spelling into the class.
"""

from .base import SegmentationNetwork, WrappedNetwork, unwrap_logits
from .nested_unet import NestedUNet
from .reference import (
    REFERENCE_ARCHITECTURES,
    MilesialUNet,
    StridedTutorialUNet,
    VGGNestedUNet,
    VGGUNet,
    WZMiaomiaoUNet,
)
from .unet import DOWNSAMPLING, UNet, check_downsampling

#: The architectures `train` builds (``default_model(architecture=...)``), by their names.
ARCHITECTURES = ("UNet", "NestedUNet")
#: Name -> class for `ARCHITECTURES` (what checkpoints of our own format name).
ARCHITECTURE_CLASSES: dict[str, type[SegmentationNetwork]] = {"UNet": UNet, "NestedUNet": NestedUNet}
#: Other accepted spellings (lower case) -> name: the CLI's ``unet`` / ``unetpp``, ``UNet++``.
ARCHITECTURE_ALIASES = {
    "unet": "UNet",
    "nestedunet": "NestedUNet",
    "unetpp": "NestedUNet",
    "unet++": "NestedUNet",
}


def architecture_name(name: str) -> str:
    """The `ARCHITECTURES` name for ``name`` (any case, or an alias such as ``"unetpp"``)."""
    if isinstance(name, str):
        found = ARCHITECTURE_ALIASES.get(name.strip().lower())
        if found is not None:
            return found
    aliases = sorted(set(ARCHITECTURE_ALIASES) - {a.lower() for a in ARCHITECTURES})
    raise ValueError(
        f"`architecture` must be one of {list(ARCHITECTURES)} (any case; also {aliases}), got {name!r}"
    )


def architecture_class(name: str) -> type[SegmentationNetwork]:
    """The network class for an architecture name: ``"UNet"`` or ``"NestedUNet"``, any case,
    or ``"unetpp"`` / ``"unet++"`` for UNet++. Anything else is a ValueError naming the choices.
    """
    return ARCHITECTURE_CLASSES[architecture_name(name)]


__all__ = [
    "ARCHITECTURES",
    "ARCHITECTURE_ALIASES",
    "ARCHITECTURE_CLASSES",
    "DOWNSAMPLING",
    "REFERENCE_ARCHITECTURES",
    "MilesialUNet",
    "NestedUNet",
    "SegmentationNetwork",
    "StridedTutorialUNet",
    "UNet",
    "VGGNestedUNet",
    "VGGUNet",
    "WZMiaomiaoUNet",
    "WrappedNetwork",
    "architecture_class",
    "architecture_name",
    "check_downsampling",
    "unwrap_logits",
]
