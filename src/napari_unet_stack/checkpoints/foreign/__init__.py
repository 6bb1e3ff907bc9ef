"""Checkpoints of public reference codes, one module per code.

Each module defines its `ForeignFamily` (or several): the network of
`napari_unet_stack.models.reference` that reproduces the code, the keys that identify its
checkpoints and the preprocessing it applies. `FAMILIES` lists them in the order
`family_of` tries them; a new family is one more module and one more entry there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .containers import strip_prefixes, unwrap_container
from .family import ForeignFamily
from .milesial import MILESIAL
from .pytorch_nested_unet import VGG_NESTED, VGG_UNET
from .strided_tutorial import STRIDED_TUTORIAL
from .wzmiaomiao import WZMIAOMIAO

__all__ = ["FAMILIES", "ForeignFamily", "family_of", "strip_prefixes", "unwrap_container"]

#: tried in this order: a NestedUNet's keys include a UNet's first node, so it comes first
FAMILIES: tuple[ForeignFamily, ...] = (MILESIAL, WZMIAOMIAO, VGG_NESTED, VGG_UNET, STRIDED_TUTORIAL)


def family_of(state: Mapping[str, Any]) -> ForeignFamily | None:
    """The family whose checkpoints ``state`` (prefixes stripped) looks like, or None."""
    return next((family for family in FAMILIES if family.matches(state)), None)
