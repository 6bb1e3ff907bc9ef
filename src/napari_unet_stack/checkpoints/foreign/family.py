"""What importing a public code's checkpoint takes, written once for every family.

A `ForeignFamily` names the code, the network that reproduces it (`models.reference`),
the state-dict keys that identify its checkpoints and the preprocessing its code
applies. `ForeignFamily.load` reads the sizes off the weights, loads them with
``strict=True`` and records the normalization, activation, class values and provenance.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...models import SegmentationNetwork
from ...normalization import validate_normalization
from ..errors import CheckpointError
from ..metadata import check_meta, json_like
from ..weights import build_checked

__all__ = ["ForeignFamily"]


@dataclass(frozen=True, eq=False)
class ForeignFamily:
    """One public code whose checkpoints `load_model` imports.

    Attributes
    ----------
    name : str
        Short identifier (``"milesial"``).
    source : str
        The code's repository, recorded as ``provenance["imported_from"]``.
    network : type
        The `SegmentationNetwork` with the code's key names; its
        ``kwargs_from_state_dict`` reads the sizes off the weights.
    markers : tuple of str
        State-dict keys that, all present, identify the family's checkpoints.
    normalization : dict
        The preprocessing the code applies to its inputs (a normalization spec).
    always_sigmoid : bool
        The code reads every output channel with a sigmoid; otherwise one channel is a
        sigmoid and several a softmax.
    """

    name: str
    source: str
    network: type[SegmentationNetwork]
    markers: tuple[str, ...]
    normalization: dict[str, Any]
    always_sigmoid: bool = False

    def matches(self, state: Mapping[str, Any]) -> bool:
        """Whether ``state`` (prefixes stripped) is a checkpoint of this family."""
        return all(key in state for key in self.markers)

    def activation(self, model: SegmentationNetwork) -> str:
        """How the code reads ``model``'s logits."""
        return "sigmoid" if self.always_sigmoid or model.out_channels == 1 else "softmax"

    def extra_provenance(self, path: Path, kwargs: dict[str, Any]) -> dict[str, Any]:
        """More provenance from files beside ``path`` (none by default); may raise
        `CheckpointError` when they contradict the weights."""
        return {}

    def load(self, outer: Any, state: dict[str, Any], path: Path) -> SegmentationNetwork:
        """The network ``state`` describes, with the family's metadata.

        ``outer`` is the file's whole content (its ``args`` and ``epoch`` entries go into
        the provenance); ``state`` the weights, prefixes stripped; a milesial-style
        ``mask_values`` entry becomes ``meta["class_values"]``.
        """
        mask_values = state.pop("mask_values", None)
        try:
            kwargs = self.network.kwargs_from_state_dict(state)
            what = f"{self.source} {self.network.__name__}({kwargs})"
            model = build_checked(self.network, kwargs, state, path, what)
        except CheckpointError:
            raise
        except (ValueError, TypeError, IndexError, AttributeError) as err:
            raise CheckpointError(
                f"{str(path)!r} looks like a {self.source} checkpoint but its weights are inconsistent: {err}"
            ) from err
        provenance: dict[str, Any] = {"imported_from": self.source, "source": str(path)}
        provenance.update(self.extra_provenance(path, kwargs))
        if isinstance(outer, Mapping):
            if isinstance(outer.get("args"), argparse.Namespace):
                provenance["args"] = json_like(vars(outer["args"]))
            if isinstance(outer.get("epoch"), int):
                provenance["epoch"] = outer["epoch"]
        model.meta["normalization"] = validate_normalization(copy.deepcopy(self.normalization))
        model.meta["provenance"] = provenance
        if mask_values is not None:
            model.meta["class_values"] = check_meta(model, "class_values", mask_values)
        model.activation = self.activation(model)
        return model
