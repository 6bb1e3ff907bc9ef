"""Lazy runs of the Predict widget: put lazy labels (`_lazy`) into the ``<image> labels``
layer, compute nothing (no Qt here; no worker either: napari computes the slices it shows).
"""

from __future__ import annotations

from typing import Any

from ._layers import check_channels, image_input, output_geometry
from ._lazy import is_stack, lazy_labels
from ._outputs import OutputLayers
from ._rethreshold import Results

__all__ = ["LAZY_NOTE", "LazyRunner"]

LAZY_NOTE = ("lazy: only the labels layer, each slice computed when shown; instance labels and the "
             "probability image need the whole stack (run without lazy)")
FLAT_NOTE = "lazy: a 2D image has no slices to browse; it is computed as usual"


class LazyRunner:
    """Lazy runs into ``outputs``' viewer, the results kept in ``results``."""

    def __init__(self, outputs: OutputLayers, results: Results):
        self.outputs = outputs
        self.results = results

    @staticmethod
    def offered(layer: Any, channel_axis: int | None) -> bool:
        """Whether lazy applies to ``layer`` (a stack; True while nothing is chosen)."""
        if layer is None:
            return True
        try:
            data, axis = image_input(layer, channel_axis)
        except ValueError:  # a channel axis that does not fit this image: Run reports it
            return True
        return is_stack(tuple(data.shape), axis)

    @staticmethod
    def note(checked: bool, offered: bool) -> str:
        """What the widget says under the lazy option."""
        if checked:
            return LAZY_NOTE if offered else FLAT_NOTE
        return ""

    def run(self, layer: Any, model: Any, channel_axis: int | None, options: dict, threshold: float,
            head: Any = None) -> tuple[Any, str, str]:
        """Lazy labels of ``layer`` in its labels layer: (that layer, device text, status)."""
        from ..devices import device_name, precision_name, resolve_device, resolve_precision

        data, channel_axis = image_input(layer, channel_axis)
        check_channels(layer, data, channel_axis, model, options.get("channel"))
        lazy = lazy_labels(layer.name, data, channel_axis, model, options, threshold, head=head)
        name = f"{layer.name} labels"
        # made with zeros, then given the lazy data: napari computes only the slice on view
        labels, _undo = self.outputs.labels(name, lazy.placeholder(), output_geometry(layer, channel_axis),
                                            layer.name)
        labels.data = lazy.data
        self.results.keep_lazy(name, lazy)
        dev = resolve_device(options.get("device", "auto"))
        precision = precision_name(resolve_precision(options.get("precision", "auto"), dev))
        used = f"lazy, on view: {device_name(dev)}, {precision}"
        status = (f"{layer.name}: lazy labels, {lazy.info.get('n_tasks', '?')} slice(s) computed as you browse "
                  f"(threshold {lazy.threshold:.2f})")
        return labels, used, status
