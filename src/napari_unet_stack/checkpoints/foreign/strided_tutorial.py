"""Checkpoints of the medical-imaging tutorial UNet ("深度学习pytorch框架--Unet医疗影像分割"):
``torch.save(model.state_dict())`` of ``DownsampleLayer`` / ``UpsampleLayer`` stages.

The article's stage attributes (usually ``d1..d4``, ``u1..u4`` and ``o``) vary between
users' files, so checkpoints are recognised by the stages' sub-keys: ``conv_relu`` and
``dowmsample`` (sic) down, ``up_conv_relu`` and ``upsample`` up. The stages are ordered by
their widths (down: increasing, up: decreasing) and renamed to the canonical names of
`napari_unet_stack.models.reference.StridedTutorialUNet` before loading.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...models import SegmentationNetwork
from ...models.reference import StridedTutorialUNet
from ..errors import CheckpointError
from .family import ForeignFamily

__all__ = ["STRIDED_TUTORIAL", "StridedTutorialFamily", "canonical_stages"]

#: ``<stage>.<sub-key>.<rest>``; a greedy stage name allows nested ones (``net.down.0``)
_STAGE = re.compile(r"^(?P<stage>.+)\.(?P<sub>conv_relu|dowmsample|up_conv_relu|upsample)\.(?P<rest>.+)$")
#: ``<block>.<index>.<name>``: the output block's Sequential entries
_BLOCK = re.compile(r"^(?P<block>.+)\.(?P<rest>\d+\.[^.]+)$")
_DOWN = ("conv_relu", "dowmsample")
_UP = ("up_conv_relu", "upsample")


def _width(state: Mapping[str, Any], key: str, axis: int) -> int:
    value = state.get(key)
    shape = getattr(value, "shape", None)
    if shape is None or len(shape) != 4:
        raise ValueError(f"{key!r} is missing or not a 4-d convolution weight")
    return int(shape[axis])


def _ordered(names: list[str], widths: list[int], what: str, reverse: bool) -> list[str]:
    if len(set(widths)) != len(widths):
        raise ValueError(
            f"its {what} stages {names} have widths {widths}; they must differ to be put in order"
        )
    return [n for _, n in sorted(zip(widths, names, strict=True), reverse=reverse)]


def canonical_stages(state: Mapping[str, Any]) -> dict[str, str]:
    """Stage name in ``state`` -> canonical name (``d1..``, ``u1..``, ``o``).

    ValueError when the stages cannot be put in order (equal widths, a missing weight).
    Names of a single output block (the entries left, ``<name>.<index>.<param>``) map to
    ``o``; anything else is left for the weights check to report.
    """
    stages: dict[str, set[str]] = {}
    rest: set[str] = set()
    for key in state:
        found = _STAGE.match(str(key))
        if found:
            stages.setdefault(found["stage"], set()).add(found["sub"])
        elif _BLOCK.match(str(key)):
            rest.add(_BLOCK.match(str(key))["block"])
    downs = [s for s, subs in stages.items() if subs & set(_DOWN)]
    ups = [s for s, subs in stages.items() if subs & set(_UP)]
    mixed = sorted(set(downs) & set(ups))
    if mixed:
        raise ValueError(f"stage(s) {mixed} hold both down- and up-sampling layers")
    down_widths = [_width(state, f"{s}.conv_relu.0.weight", 0) for s in downs]
    up_widths = [_width(state, f"{s}.upsample.0.weight", 1) for s in ups]  # transposed: (in, out)
    names = {s: f"d{k}" for k, s in enumerate(_ordered(downs, down_widths, "down", False), 1)}
    names.update({s: f"u{k}" for k, s in enumerate(_ordered(ups, up_widths, "up", True), 1)})
    rest -= set(stages)
    if len(rest) == 1:
        names[rest.pop()] = "o"
    return names


def _renamed(state: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    out = {}
    for key, value in state.items():
        stage = _STAGE.match(str(key))
        block = None if stage else _BLOCK.match(str(key))
        if stage and stage["stage"] in names:
            key = f"{names[stage['stage']]}.{stage['sub']}.{stage['rest']}"
        elif block and block["block"] in names:
            key = f"{names[block['block']]}.{block['rest']}"
        out[key] = value
    return out


@dataclass(frozen=True, eq=False)
class StridedTutorialFamily(ForeignFamily):
    """Recognised by sub-keys, not by fixed keys; stage names are canonicalised on load."""

    def matches(self, state: Mapping[str, Any]) -> bool:
        subs = {found["sub"] for key in state if (found := _STAGE.match(str(key)))}
        return set(_DOWN + _UP) <= subs

    def load(self, outer: Any, state: dict[str, Any], path: Path) -> SegmentationNetwork:
        try:
            names = canonical_stages(state)
        except ValueError as err:
            raise CheckpointError(
                f"{str(path)!r} looks like a {self.source} checkpoint but its stages cannot be read: {err}"
            ) from err
        model = super().load(outer, _renamed(state, names), path)
        renamed = {old: new for old, new in names.items() if old != new}
        if renamed:
            model.meta["provenance"]["stage_names"] = renamed
        return model


#: the article records no preprocessing: 8-bit images are assumed divided by 255 (what
#: torchvision's ToTensor does; ``load_model(..., normalization=...)`` overrides it); one
#: output channel is read with a sigmoid, several with a softmax
STRIDED_TUTORIAL = StridedTutorialFamily(
    name="strided_tutorial",
    source="medical-imaging UNet tutorial (深度学习pytorch框架--Unet医疗影像分割)",
    network=StridedTutorialUNet,
    markers=(),
    normalization={"mode": "scale", "divisor": 255.0, "when_above": 1.0},
)
