"""The Predict widget's output layers, and how to undo a run's changes to them (no Qt here).

A run writes into ``<image> labels`` (and ``<image> instances`` / ``<image> probability``):
a layer this plugin made before (marked with `METADATA_KEY`) is reused, anything else gets
a new layer. `OutputLayers.labels` returns the layer with an `Undo` that puts the viewer back
as it was (the new layer removed, or the old data and geometry back) when the run is
cancelled or fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._layers import METADATA_KEY

__all__ = ["OutputLayers", "Undo"]


@dataclass
class Undo:
    """How to take back one output layer change: remove ``layer`` (``old`` is None), or give
    it back its ``old`` data and ``geometry``."""

    layer: Any
    old: Any = None
    geometry: dict = field(default_factory=dict)
    done: bool = False

    def __call__(self, viewer: Any) -> None:
        """Undo the change (once)."""
        if self.done:
            return
        self.done = True
        if self.old is None:
            if self.layer in viewer.layers:
                viewer.layers.remove(self.layer)
            return
        self.layer.data = self.old
        for key, value in self.geometry.items():
            setattr(self.layer, key, value)


class OutputLayers:
    """Find, make and update the layers results go to in ``viewer``."""

    def __init__(self, viewer: Any):
        self.viewer = viewer

    def layer(self, name: str):
        """The layer called ``name``, or None."""
        return next((layer for layer in self.viewer.layers if layer.name == name), None)

    def names(self) -> set[str]:
        return {layer.name for layer in self.viewer.layers}

    def ours(self, name: str, kind: type) -> Any:
        """The layer called ``name`` if it is a ``kind`` layer this plugin made, else None."""
        layer = self.layer(name)
        return layer if isinstance(layer, kind) and METADATA_KEY in layer.metadata else None

    def labels(self, name: str, data: Any, geometry: dict, source: str) -> tuple[Any, Undo]:
        """Our Labels layer called ``name`` with ``data`` (and how to undo that)."""
        from napari.layers import Labels

        old = self.ours(name, Labels)
        if old is not None:
            undo = Undo(old, old.data, {key: getattr(old, key) for key in geometry})
            old.data = data
            for key, value in geometry.items():
                setattr(old, key, value)
            return old, undo
        added = self.viewer.add_labels(data, name=name, metadata={METADATA_KEY: {"source": source}}, **geometry)
        layer = self.own(added)
        return layer, Undo(layer)

    def own(self, layer: Any) -> Any:
        """The viewer's own object for ``layer``: a plugin's viewer is a PublicOnlyProxy, whose
        ``add_*`` return proxies, while ``layers.events.removed`` and the layer list hand out
        the layers themselves, which a proxy is not (``is`` is False)."""
        return next((own for own in self.viewer.layers if own == layer), layer)

    def probability(self, image: str, data: np.ndarray, geometry: dict) -> None:
        """The ``<image> probability`` layer (uint8, 255 = 1.0) with ``data``."""
        from napari.layers import Image

        name = f"{image} probability"
        old = self.ours(name, Image)
        if old is not None:
            old.data = data
            return
        self.viewer.add_image(data, name=name, colormap="magma", blending="additive", contrast_limits=(0, 255),
                              metadata={METADATA_KEY: {"source": image, "scale": "uint8, 255 = 1.0"}},
                              **geometry)
