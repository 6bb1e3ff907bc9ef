"""The Predict dock widget: segment an Image layer with a UNet / UNet++ in a worker thread.

The network runs `iter_predict` in a napari thread worker with a `ProbabilityStore` as
``out=``: each finished slice becomes labels in the ``<image> labels`` layer right away
(refreshed from the GUI thread on the worker's ``yielded`` signal), and uint8 foreground
probabilities are kept so that the threshold can change afterwards without the network.
Cancel (or an error) puts the viewer back as it was.

With *lazy* checked, Run needs no worker: the labels layer holds a dask array whose slices
are computed when napari shows them (see `_lazy`), for stacks too large to segment first.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    Label,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEventLoop, Qt
from superqt import QCollapsible

from ._jobs import (
    EXPECTED_ERRORS,
    PredictJob,
    PredictResult,
    describe_model,
    device_choices,
    run_prediction,
)
from ._layers import (
    METADATA_KEY,
    ProbabilityStore,
    channel_choices,
    check_channels,
    image_input,
    output_geometry,
    spatial_shape,
)
from ._lazy import LazyLabels, is_stack, lazy_labels
from ._lifetime import watch_closing
from ._registry import USER_MODELS

if TYPE_CHECKING:
    import napari

__all__ = ["PredictWidget"]

TILE_SIZES = [("auto", "auto"), ("256", 256), ("512", 512), ("1024", 1024), ("2048", 2048), ("whole slice", None)]
HALOS = [("auto (exact)", "auto"), *((str(h), h) for h in (0, 16, 32, 64, 96, 128, 192))]
BATCH_SIZES = [("auto", "auto"), *((str(b), b) for b in (1, 2, 4, 8, 16, 32, 64))]
FILE = ("file", "")
LAZY_NOTE = ("lazy: only the labels layer, each slice computed when shown; instance labels and the "
             "probability image need the whole stack (run without lazy)")


class PredictWidget(Container):
    """Segment the chosen Image layer; see the module docstring.

    Scripts set the fields (``widget.image.value = layer``, ``widget.set_model("nuclei-unet")``,
    ``widget.tile_size.value = 512``, ...) and call ``widget.run(wait=True)``.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self._viewer = viewer
        self._models: dict[Any, Any] = {}  # model key -> loaded model
        self._results: dict[str, PredictResult] = {}  # labels layer name -> result
        self._lazy: dict[str, LazyLabels] = {}  # labels layer name -> lazy result
        self._job: PredictJob | None = None
        self._pbar = None
        self._on_done: list = []
        self.worker = None
        self._gone = False  # the Qt widget was destroyed (with the viewer, most likely)
        self._known = USER_MODELS.names()  # user models listed so far

        self.image = ComboBox(label="image", choices=self._image_choices)
        self.channel_axis = ComboBox(label="channel axis", choices=self._channel_choices)
        self.model = ComboBox(label="model", choices=self._model_choices)
        self.checkpoint = FileEdit(label="checkpoint", mode="r", filter="*.pt *.pth *.ckpt *.pkl")
        self.model_info = Label(label="")
        self.device = ComboBox(label="device", choices=device_choices(), value="auto")
        self.device_used = Label(label="")
        self.tile_size = ComboBox(label="tile size", choices=TILE_SIZES, value="auto")
        self.halo = ComboBox(label="halo", choices=HALOS, value="auto")
        self.blend = ComboBox(label="blend", choices=["crop", "gaussian", "linear"], value="crop")
        self.batch_size = ComboBox(label="batch size", choices=BATCH_SIZES, value="auto")
        self.head = ComboBox(label="UNet++ head", choices=["accurate", "fast"], value="accurate")
        self.precision = ComboBox(label="precision", choices=["auto", "float32", "bfloat16", "float16"])
        self.advanced = Container(widgets=[self.halo, self.blend, self.batch_size, self.head, self.precision])
        self.threshold = FloatSlider(label="threshold", min=0.01, max=0.99, step=0.01, value=0.5, tracking=False)
        self.threshold_note = Label(label="")
        self.semantic = CheckBox(text="semantic labels", value=True)
        self.instances = CheckBox(text="instance labels", value=False)
        self.min_size = SpinBox(label="min size (px)", min=0, max=10**7, value=0)
        self.probability = CheckBox(text="probability image", value=False)
        self.lazy = CheckBox(text="lazy (compute slices as you browse)", value=False,
                             tooltip="for stacks too large to segment up front: each slice is "
                                     "computed when napari shows it")
        self.lazy_note = Label(label="")
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(label="")
        self.extend([
            self.image, self.channel_axis, self.model, self.checkpoint, self.model_info, self.device,
            self.device_used, self.tile_size, self.threshold, self.threshold_note, self.semantic,
            self.instances, self.min_size, self.probability, self.lazy, self.lazy_note,
            Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False),
            self.status,
        ])
        for label in (self.model_info, self.device_used, self.threshold_note, self.lazy_note, self.status):
            label.native.setWordWrap(True)
            label.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.collapsible = QCollapsible("Advanced")
        self.collapsible.addWidget(self.advanced.native)
        self.native.layout().insertWidget(self.index(self.tile_size) + 1, self.collapsible)

        self.image.changed.connect(self._on_image_changed)
        self.model.changed.connect(self._on_model_changed)
        self.checkpoint.changed.connect(self._on_model_changed)
        self.instances.changed.connect(lambda v: setattr(self.min_size, "visible", v))
        for widget in (self.lazy, self.image, self.channel_axis):
            widget.changed.connect(self._update_outputs)
        self.threshold.changed.connect(self._on_threshold_changed)
        self.run_button.changed.connect(lambda: self.run())
        self.cancel_button.changed.connect(self.cancel)
        USER_MODELS.changed.connect(self._on_registry_changed)  # weakly: no leak
        viewer.layers.events.removed.connect(self._on_layer_removed)  # weakly too (napari's events)
        self._watcher = watch_closing(self.native, self._on_closed)
        self.min_size.visible = False
        self.reset_choices()
        self._on_model_changed()
        self._update_outputs()

    # -- choices -----------------------------------------------------------------------
    def _image_choices(self, _widget=None) -> list:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _channel_choices(self, _widget=None) -> list:
        return channel_choices(self.image.value)

    def _model_choices(self, _widget=None) -> list:
        from ..checkpoints import list_models

        choices = [(name, ("bundled", name)) for name in list_models()]
        choices += [(f"{name} (trained)", ("user", name)) for name in USER_MODELS.names()]
        return [*choices, ("checkpoint file...", FILE)]

    def _on_registry_changed(self) -> None:
        try:
            current = self.model.value
        except RuntimeError:  # the Qt widget is gone
            USER_MODELS.changed.disconnect(self._on_registry_changed)
            return
        added = [name for name in USER_MODELS.names() if name not in self._known]
        self._known = USER_MODELS.names()
        self.model.reset_choices()
        if added and self.worker is None:
            self.model.value = ("user", added[-1])  # just trained (or saved): ready to use
        elif current not in self.model.choices:
            self.model.value = self.model.choices[0]

    def _on_image_changed(self, _value=None) -> None:
        self.channel_axis.reset_choices()
        try:
            model = self._current_model(quiet=True)
        except EXPECTED_ERRORS:  # reported when the model was chosen
            model = None
        layer = self.image.value
        if layer is None or layer.rgb or model is None or model.in_channels == 1:
            return
        shape = image_input(layer, None)[0].shape
        matches = [ax for ax, n in enumerate(shape) if n == model.in_channels]
        if matches and self.channel_axis.value is None:
            self.channel_axis.value = matches[-1]

    # -- models ------------------------------------------------------------------------
    def set_model(self, source: Any) -> None:
        """Choose a model from a script: a bundled name, a checkpoint path, or a model object.

        A model object (e.g. from `train` or `load_model`) is added to the models listed
        under "(trained)".
        """
        from ..checkpoints import list_models

        if isinstance(source, str) and source in list_models():
            self.model.value = ("bundled", source)
        elif isinstance(source, (str, Path)):
            if not Path(source).is_file():
                raise FileNotFoundError(f"{str(source)!r} is neither a bundled model ({list_models()}) nor a file")
            self.model.value = FILE
            self.checkpoint.value = Path(source)
        else:
            name = USER_MODELS.add(type(source).__name__, source)
            self.model.value = ("user", name)

    def _current_model(self, *, quiet: bool = False):
        """The chosen model, loaded once (checkpoint files again when they change)."""
        from ..checkpoints import load_model

        kind, name = self.model.value or FILE
        if kind == "user":
            return USER_MODELS.get(name).model if name in USER_MODELS else None
        if kind == "bundled":
            key: Any = ("bundled", name)
            source = name
        else:
            path = Path(self.checkpoint.value)
            if not path.is_file():
                if quiet:
                    return None
                raise ValueError(f"choose a checkpoint file (got {str(path)!r}, which is not a file)")
            stat = path.stat()
            key, source = (str(path), stat.st_mtime_ns, stat.st_size), path
        if key not in self._models:
            model = load_model(source)
            if len(self._models) >= 4:  # keep a few loaded, not every file ever chosen
                self._models.pop(next(iter(self._models)))
            self._models[key] = model
        return self._models[key]

    def _on_model_changed(self, _value=None) -> None:
        is_file = (self.model.value or FILE)[0] == "file"
        self.checkpoint.visible = is_file
        try:
            model = self._current_model(quiet=True)
        except EXPECTED_ERRORS as err:
            self.model_info.value = f"cannot load: {err}"
            show_error(f"napari-unet-stack: {err}")
            return
        if model is None:
            self.model_info.value = "choose a checkpoint file" if is_file else ""
            return
        self.model_info.value = describe_model(model, self.checkpoint.value if is_file else None)
        self.head.enabled = bool(getattr(model, "deep_supervision", False))
        self.threshold_note.value = (
            "softmax model: threshold on 1 - P(background)" if model.activation == "softmax" else ""
        )
        self._on_image_changed()

    # -- running -----------------------------------------------------------------------
    def run(self, *, wait: bool = False):
        """Start a run in a worker thread; returns the worker (None if it could not start).

        With ``wait=True`` return only when it has finished (for scripts and notebooks;
        the viewer stays responsive meanwhile). A lazy run needs no worker: it puts the
        lazy labels in the layer and returns None.
        """
        if self.worker is not None:
            show_info("napari-unet-stack: a run is in progress; cancel it first")
            return None
        try:
            if self._lazy_applies():
                self._run_lazy()
                return None
            job = self._prepare()
        except EXPECTED_ERRORS as err:
            show_error(f"napari-unet-stack: {err}")
            self.status.value = f"not started: {err}"
            return None
        self._job = job
        self.worker = worker = create_worker(run_prediction, job, _start_thread=False)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(lambda _err: self._restore(job))
        worker.aborted.connect(job.close, Qt.ConnectionType.DirectConnection)  # in the worker thread
        worker.aborted.connect(lambda: self._on_returned(("cancelled", None)))  # napari's activity dock
        worker.finished.connect(self._on_finished)
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = f"running on {job.image}..."
        # made before the worker starts: napari's progress bar processes Qt events when it is
        # made, and a bar made in `_on_progress` would let the next events (even `finished`)
        # run first, each making a bar of its own that was never closed
        self._pbar = progress(total=None, desc=f"UNet: {job.image}")  # total: with the first event
        worker.start()
        if wait:
            self.wait()
        return worker

    def wait(self) -> None:
        """Block (processing Qt events) until the current run has finished."""
        if self.worker is None:
            return
        loop = QEventLoop()
        self._on_done.append(loop.quit)
        loop.exec()

    def cancel(self, reason: str | None = None) -> None:
        """Stop the current run; the viewer is put back as it was. ``reason`` is shown
        instead of a plain "cancelled"."""
        job = self._job
        if job is None or job.cancel.is_set():
            return
        job.stopped = reason
        job.cancel.set()
        if not self._gone:
            self.cancel_button.enabled = False
            self.status.value = "cancelling..."

    def _on_layer_removed(self, event) -> None:
        """A run stops when the layer it reads or the layer it fills leaves the viewer."""
        job = self._job
        layer = event.value
        if job is not None and layer is not None and (layer is job.image_layer or layer is job.labels_layer):
            self.cancel(f"layer {layer.name!r} was removed")

    def _on_closed(self, destroyed: bool) -> None:
        """The widget left its dock or was destroyed: stop the run (see `_lifetime`)."""
        self._gone = self._gone or destroyed
        self.cancel("the widget was closed")

    def _prepare(self) -> PredictJob:
        layer = self.image.value
        if layer is None:
            raise ValueError("choose an Image layer to segment")
        model = self._current_model()
        if model is None:
            raise ValueError("choose a model")
        data, channel_axis = image_input(layer, self.channel_axis.value)
        check_channels(layer, data, channel_axis, model)
        spatial = spatial_shape(data.shape, channel_axis)
        if len(spatial) < 2:
            raise ValueError(f"image {layer.name!r} (shape {data.shape}) has fewer than 2 spatial axes")
        store = ProbabilityStore(spatial, model.out_channels, model.activation,
                                 model.meta.get("class_values"), threshold=self.threshold.value)
        geometry = output_geometry(layer, channel_axis)
        labels_layer, restore = None, None
        labels = store.new_labels()
        if self.semantic.value:
            labels_layer, restore = self._output_layer(f"{layer.name} labels", labels, geometry, layer.name)
        store.labels = labels
        head = None
        if self._head(model) is not None:
            head, model.head = model.head, self.head.value
        options = self._options()
        return PredictJob(layer.name, data, channel_axis, model, options, store, labels, labels_layer, restore,
                          self.instances.value, self.probability.value, self.min_size.value, geometry, head=head,
                          image_layer=layer)

    def _options(self) -> dict:
        return dict(tile_size=self.tile_size.value, halo=self.halo.value, blend=self.blend.value,
                    batch_size=self.batch_size.value, device=self.device.value, precision=self.precision.value)

    def _head(self, model: Any):
        """The UNet++ head chosen for ``model``, or None where the choice does not apply."""
        if self.head.enabled and getattr(model, "deep_supervision", False):
            return self.head.value
        return None

    # -- lazy --------------------------------------------------------------------------
    def _lazy_applies(self) -> bool:
        """Lazy is checked and the image is a stack (a 2D image is computed as usual)."""
        return self.lazy.value and self.lazy.enabled

    def _update_outputs(self, _value=None) -> None:
        """Lazy is offered for stacks only; it leaves out the outputs that need the whole stack."""
        layer = self.image.value
        stack = True
        if layer is not None:
            try:
                data, channel_axis = image_input(layer, self.channel_axis.value)
                stack = is_stack(data.shape, channel_axis)
            except ValueError:  # a channel axis that does not fit this image: Run reports it
                pass
        self.lazy.enabled = stack
        lazy = self._lazy_applies()
        for widget in (self.semantic, self.instances, self.min_size, self.probability):
            widget.enabled = not lazy
        note = LAZY_NOTE if lazy else ""
        if self.lazy.value and not stack:
            note = "lazy: a 2D image has no slices to browse; it is computed as usual"
        self.lazy_note.value = note
        self.lazy_note.visible = bool(note)

    def _run_lazy(self) -> None:
        """Put lazy labels of the chosen image into its ``<image> labels`` layer; compute nothing."""
        from ..devices import device_name, precision_name, resolve_device, resolve_precision

        layer = self.image.value
        if layer is None:
            raise ValueError("choose an Image layer to segment")
        model = self._current_model()
        if model is None:
            raise ValueError("choose a model")
        data, channel_axis = image_input(layer, self.channel_axis.value)
        check_channels(layer, data, channel_axis, model)
        lazy = lazy_labels(layer.name, data, channel_axis, model, self._options(), self.threshold.value,
                           head=self._head(model))
        name = f"{layer.name} labels"
        # made with zeros, then given the lazy data: napari computes only the slice on view
        labels, _restore = self._output_layer(name, lazy.placeholder(), output_geometry(layer, channel_axis),
                                              layer.name)
        labels.data = lazy.data
        names = {each.name for each in self._viewer.layers}
        self._lazy = {key: kept for key, kept in self._lazy.items() if key in names}  # drop orphans
        self._lazy[name] = lazy
        self._results.pop(name, None)  # that eager result is no longer on view
        dev = resolve_device(self.device.value)
        self.device_used.value = (f"lazy, on view: {device_name(dev)}, "
                                  f"{precision_name(resolve_precision(self.precision.value, dev))}")
        self.status.value = (f"{layer.name}: lazy labels, {lazy.info.get('n_tasks', '?')} slice(s) "
                             f"computed as you browse (threshold {lazy.threshold:.2f})")
        self._viewer.layers.selection.active = labels

    def _output_layer(self, name: str, data: np.ndarray, geometry: dict, source: str):
        """Our Labels layer called ``name`` with ``data`` (and how to undo that)."""
        old = self._layer(name)
        if isinstance(old, Labels) and METADATA_KEY in old.metadata:
            restore = ("data", old, old.data, {key: getattr(old, key) for key in geometry})
            old.data = data
            for key, value in geometry.items():
                setattr(old, key, value)
            return old, restore
        layer = self._viewer.add_labels(data, name=name, metadata={METADATA_KEY: {"source": source}}, **geometry)
        return layer, ("remove", layer)

    def _layer(self, name: str):
        """The layer called ``name``, or None."""
        return next((layer for layer in self._viewer.layers if layer.name == name), None)

    def _on_progress(self, event) -> None:
        job = self._job
        if job is None:  # a late event of a finished run
            return
        if event.slices and job.labels_layer is not None:
            job.labels_layer.refresh()
        # last: napari's progress bar processes Qt events (this handler may be re-entered)
        pbar = self._pbar
        if pbar is None:
            return
        if pbar.total != event.total:
            pbar.total = event.total
        if event.done > pbar.n:  # a re-entered later event may have been shown already
            pbar.update(event.done - pbar.n)

    def _on_returned(self, outcome) -> None:
        status, err = outcome
        job = self._job
        if job is None:  # already handled (the activity dock's abort, then `returned`)
            return
        if self._gone:  # destroyed, with the viewer most likely: leave both alone
            return
        job.cancel.set()  # over: layers removed from here on (restoring) are no reason to cancel
        if job.stopped is not None and status == "done":
            status = "cancelled"  # finished before it saw the cancel: undo all the same
        if status == "cancelled":
            self._restore(job)
            self.status.value = f"cancelled: {job.stopped or 'the viewer is as it was'}"
        elif status == "error":
            self._restore(job)
            self.status.value = f"failed: {err}"
            show_error(f"napari-unet-stack: prediction failed: {err}")
        else:
            self._finish(job)

    def _finish(self, job: PredictJob) -> None:
        store = job.store
        if store.threshold != self.threshold.value:  # moved while running
            store.relabel(self.threshold.value)
        geometry = job.geometry
        names = {layer.name for layer in self._viewer.layers}
        self._results = {name: kept for name, kept in self._results.items() if name in names}  # drop orphans
        self._results[f"{job.image} labels"] = PredictResult(store, job.labels, geometry, job.min_size)
        if job.labels_layer is not None:
            self._lazy.pop(f"{job.image} labels", None)
            job.labels_layer.refresh()
        if job.instance_data is not None:
            self._output_layer(f"{job.image} instances", job.instance_data, geometry, job.image)
        if job.probability:
            self._probability_layer(job.image, store.probability(), geometry)
        info = job.info
        self.device_used.value = f"used: {info.get('device', '?')}, {info.get('precision', '?')}"
        tiles = "x".join(str(t) for t in info.get("tile_shape", ()))
        self.status.value = (f"{job.image}: {info.get('n_tiles', '?')} tile(s) of {tiles} in "
                             f"{info.get('seconds', 0):.1f} s")
        if job.labels_layer is not None and job.labels_layer in self._viewer.layers:
            self._viewer.layers.selection.active = job.labels_layer

    def _probability_layer(self, image: str, data: np.ndarray, geometry: dict) -> None:
        name = f"{image} probability"
        old = self._layer(name)
        if isinstance(old, Image) and METADATA_KEY in old.metadata:
            old.data = data
            return
        self._viewer.add_image(data, name=name, colormap="magma", blending="additive", contrast_limits=(0, 255),
                               metadata={METADATA_KEY: {"source": image, "scale": "uint8, 255 = 1.0"}},
                               **geometry)

    def _restore(self, job: PredictJob) -> None:
        if job.restore is None or self._gone:
            return
        if job.restore[0] == "remove":
            if job.restore[1] in self._viewer.layers:
                self._viewer.layers.remove(job.restore[1])
        else:
            _kind, layer, old, geometry = job.restore
            layer.data = old
            for key, value in geometry.items():
                setattr(layer, key, value)
        job.restore = None

    def _on_finished(self) -> None:
        job = self._job
        if job is not None and job.head is not None:
            job.model.head = job.head
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self.worker = None
        self._job = None
        if not self._gone:
            self.run_button.enabled = True
            self.cancel_button.enabled = False
        callbacks, self._on_done = self._on_done, []
        for callback in callbacks:
            callback()

    # -- threshold ---------------------------------------------------------------------
    def _on_threshold_changed(self, value: float) -> None:
        """Relabel the current image's result from the kept probabilities (no network)."""
        if self.worker is not None or self.image.value is None:
            return
        name = f"{self.image.value.name} labels"
        lazy = self._lazy.get(name)
        if lazy is not None and name in self._viewer.layers:
            layer = self._viewer.layers[name]
            if lazy.shown_by(layer):
                layer.data = lazy.build(value)  # new labels over the same (cached) probability tasks
                self.status.value = f"threshold {value:.2f} applied to the lazy labels"
                return
            if layer.data is lazy.data:
                self.status.value = "the lazy labels were painted on: run again to apply a new threshold"
                return
        result = self._results.get(name)
        if result is None:
            return
        result.store.relabel(value, result.labels)
        if name in self._viewer.layers and self._viewer.layers[name].data is result.labels:
            self._viewer.layers[name].refresh()
        instances = f"{self.image.value.name} instances"
        if instances in self._viewer.layers and METADATA_KEY in self._viewer.layers[instances].metadata:
            from ..postprocess import instance_labels

            ndim = min(3, result.labels.ndim)
            self._viewer.layers[instances].data = instance_labels(result.labels, ndim=ndim, min_size=result.min_size)
        self.status.value = f"threshold {value:.2f} applied (no re-run needed)"

