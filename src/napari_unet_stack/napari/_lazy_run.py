"""Lazy runs of the Predict widget: put lazy labels (`_lazy`) into the ``<image> labels``
layer, compute nothing (no Qt here; no worker either: napari computes the slices it shows).
Instance labels, which cannot be lazy, are a job for a worker: `LazyRunner.instance_job`
(`_lazy_instances`: slice by slice into an on-disk store).
"""

from __future__ import annotations

from typing import Any

from ._layers import check_channels, image_input, output_geometry
from ._lazy import is_stack, lazy_labels
from ._lazy_instances import LazyInstanceJob, Scratch
from ._outputs import OutputLayers
from ._rethreshold import Results

__all__ = ["LAZY_NOTE", "LazyRunner"]

LAZY_NOTE = ("lazy: the labels layer, each slice computed when shown; instance labels are computed "
             "slice by slice into a temporary on-disk store when you press Run (progress, Cancel; their "
             "decoding options then apply without the network, a new threshold needs Run); the "
             "probability image needs the whole stack (run without lazy)")
FLAT_NOTE = "lazy: a 2D image has no slices to browse; it is computed as usual"


class LazyRunner:
    """Lazy runs into ``outputs``' viewer, the results kept in ``results``."""

    def __init__(self, outputs: OutputLayers, results: Results):
        self.outputs = outputs
        self.results = results
        self.scratch = Scratch()  # the stores of lazy instance layers
        self.undo: Any = None  # how to take back the last run's labels layer

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
        labels, self.undo = self.outputs.labels(name, lazy.placeholder(), output_geometry(layer, channel_axis),
                                                layer.name)  # taken back if the run's instances are cancelled
        labels.data = lazy.data
        self.results.keep_lazy(name, lazy)
        dev = resolve_device(options.get("device", "auto"))
        precision = precision_name(resolve_precision(options.get("precision", "auto"), dev))
        used = f"lazy, on view: {device_name(dev)}, {precision}"
        status = (f"{layer.name}: lazy labels, {lazy.info.get('n_tasks', '?')} slice(s) computed as you browse "
                  f"(threshold {lazy.threshold:.2f})")
        return labels, used, status

    @staticmethod
    def instance_job(layer: Any, model: Any, channel_axis: int | None, options: dict, threshold: float,
                     decoding: Any) -> LazyInstanceJob:
        """The job computing ``layer``'s instance labels into a new temporary store."""
        data, channel_axis = image_input(layer, channel_axis)
        return LazyInstanceJob(layer.name, data, channel_axis, model, options, decoding, float(threshold),
                               output_geometry(layer, channel_axis), Scratch.make(), image_layer=layer)
