"""The Predict dock widget: segment an Image layer with a UNet / UNet++ in a worker thread.

The widget is the form; the rest is delegated. The network runs `iter_predict` in a napari
thread worker (`_runner.WorkerDock`) with a `_store.ProbabilityStore` as ``out=``: each
finished slice becomes labels in the ``<image> labels`` layer right away (refreshed from the
GUI thread on the worker's ``yielded`` signal), and P(foreground) is kept so that the
threshold can change afterwards without the network (`_rethreshold`); labels are those of
`segment` at the same threshold. Cancel (or an error) puts the viewer back as it was
(`_outputs.Undo`).

With *lazy* checked, Run needs no worker: the labels layer holds a dask array whose slices
are computed when napari shows them (`_lazy_run`, `_lazy`), for stacks too large to segment
first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSlider, Label, SpinBox
from napari.layers import Image
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from superqt import QCollapsible

from ._jobs import EXPECTED_ERRORS, PredictJob, describe_model, device_choices, run_prediction
from ._layers import (
    channel_axis_for,
    channel_choices,
    channel_picks,
    check_channels,
    given_channels,
    image_input,
    output_geometry,
    spatial_shape,
)
from ._lazy_run import LazyRunner
from ._models import FILE, LoadedModels, choice_of, model_choices
from ._outputs import OutputLayers
from ._registry import USER_MODELS
from ._rethreshold import PredictResult, Results
from ._runner import WorkerDock
from ._store import ProbabilityStore

if TYPE_CHECKING:
    import napari

__all__ = ["PredictWidget"]

TILE_SIZES = [("auto", "auto"), ("256", 256), ("512", 512), ("1024", 1024), ("2048", 2048), ("whole slice", None)]
HALOS = [("auto (exact)", "auto"), *((str(h), h) for h in (0, 16, 32, 64, 96, 128, 192))]
BATCH_SIZES = [("auto", "auto"), *((str(b), b) for b in (1, 2, 4, 8, 16, 32, 64))]
#: what the threshold acts on for softmax models (see `napari_unet_stack.labels`)
SOFTMAX_NOTE = "softmax model: foreground where 1 - P(background) > threshold"


class PredictWidget(WorkerDock):
    """Segment the chosen Image layer; see the module docstring.

    Scripts set the fields (``widget.image.value = layer``, ``widget.set_model("nuclei-unet")``,
    ``widget.tile_size.value = 512``, ...) and call ``widget.run(wait=True)``.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(viewer, "Run")
        self.run_button = self.start_button
        self.loaded = LoadedModels()
        self.outputs = OutputLayers(viewer)
        self.results = Results(self.outputs)  # what a new threshold can relabel
        self.lazy_runs = LazyRunner(self.outputs, self.results)
        self._known = USER_MODELS.names()  # user models listed so far
        self._make_form()
        self.image.changed.connect(self._on_image_changed)
        self.model.changed.connect(self._on_model_changed)
        self.checkpoint.changed.connect(self._on_model_changed)
        self.instances.changed.connect(lambda v: setattr(self.min_size, "visible", v))
        for widget in (self.lazy, self.image, self.channel_axis):
            widget.changed.connect(self._update_outputs)
        # Qt's signal: magicgui's `changed` is not emitted for "none" (a None value)
        self.channel_axis.native.currentIndexChanged.connect(lambda _index: self._update_channel())
        self.threshold.changed.connect(self._on_threshold_changed)
        self.run_button.changed.connect(lambda: self.run())
        USER_MODELS.changed.connect(self._on_registry_changed)  # weakly: no leak
        viewer.layers.events.removed.connect(self._on_layer_removed)  # weakly too (napari's events)
        self.min_size.visible = False
        self.reset_choices()
        self._on_model_changed()
        self._update_outputs()

    def _make_form(self) -> None:
        self.image = ComboBox(label="image", choices=self._image_choices)
        self.channel_axis = ComboBox(label="channel axis", choices=self._channel_choices)
        self.model = ComboBox(label="model", choices=self._model_choices)
        self.checkpoint = FileEdit(label="checkpoint", mode="r", filter="*.pt *.pth *.ckpt *.pkl")
        self.channel = ComboBox(label="channel", choices=self._pick_choices,  # after model, checkpoint
                                tooltip="for a one-channel model and a multichannel image: the channel "
                                        "it sees, or their mean")
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
        self.extend([
            self.image, self.channel_axis, self.channel, self.model, self.checkpoint, self.model_info, self.device,
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

    # -- choices -----------------------------------------------------------------------
    def _image_choices(self, _widget=None) -> list:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _channel_choices(self, _widget=None) -> list:
        return channel_choices(self.image.value)

    def _pick_choices(self, _widget=None) -> list:
        """Each channel and their mean when a one-channel model meets a multichannel image."""
        try:
            model = self._current_model(quiet=True)
        except EXPECTED_ERRORS:
            model = None
        given = given_channels(self.image.value, self.channel_axis.value)
        if model is None or getattr(model, "in_channels", None) != 1:
            given = 1
        return channel_picks(given, every=False)

    def _update_channel(self, _value=None) -> None:
        """Offer the channel choice where it applies (mean first seen, for RGB)."""
        fresh = self.channel.value is None
        self.channel.reset_choices()
        self.channel.enabled = self.channel.choices != (None,)
        if fresh and self.channel.enabled and getattr(self.image.value, "rgb", False):
            self.channel.value = "mean"

    def _model_choices(self, _widget=None) -> list:
        return model_choices()

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
        axis = None if model is None else channel_axis_for(self.image.value, model.in_channels)
        if axis is not None and self.channel_axis.value is None:
            self.channel_axis.value = axis
        self._update_channel()

    # -- models ------------------------------------------------------------------------
    def set_model(self, source: Any) -> None:
        """Choose a model from a script: a bundled name, a checkpoint path, or a model object.

        A model object (e.g. from `train` or `load_model`) is added to the models listed
        under "(trained)".
        """
        choice, checkpoint = choice_of(source)
        self.model.value = choice
        if checkpoint is not None:
            self.checkpoint.value = checkpoint

    def _current_model(self, *, quiet: bool = False):
        """The chosen model, loaded once (checkpoint files again when they change)."""
        return self.loaded.get(self.model.value, self.checkpoint.value, quiet=quiet)

    def _on_model_changed(self, _value=None) -> None:
        is_file = (self.model.value or FILE)[0] == "file"
        self.checkpoint.visible = is_file
        try:
            model = self._current_model(quiet=True)
        except EXPECTED_ERRORS as err:
            self.model_info.value = f"cannot load: {err}"
            show_error(f"napari-unet-stack: {err}")
            self._update_channel()
            return
        if model is None:
            self.model_info.value = "choose a checkpoint file" if is_file else ""
            self._update_channel()
            return
        self.model_info.value = describe_model(model, self.checkpoint.value if is_file else None)
        self.head.enabled = bool(getattr(model, "deep_supervision", False))
        self.threshold_note.value = SOFTMAX_NOTE if model.activation == "softmax" else ""
        self._on_image_changed()

    # -- running -----------------------------------------------------------------------
    def run(self, *, wait: bool = False):
        """Start a run in a worker thread; returns the worker (None if it could not start).

        With ``wait=True`` return only when it has finished (for scripts and notebooks;
        the viewer stays responsive meanwhile). A lazy run needs no worker: it puts the
        lazy labels in the layer and returns None.
        """
        if self.busy():
            return None
        try:
            if self._lazy_applies():
                self._run_lazy()
                return None
            job = self._prepare()
        except EXPECTED_ERRORS as err:
            self._not_started(err)
            return None
        worker = self._start(run_prediction, job, desc=f"UNet: {job.image}",
                             total=None, status=f"running on {job.image}...")  # total: with the first event
        if wait:
            self.wait()
        return worker

    def _on_layer_removed(self, event) -> None:
        """A run stops when the layer it reads or the layer it fills leaves the viewer."""
        job = self._job
        layer = event.value
        if job is not None and layer is not None and (layer is job.image_layer or layer is job.labels_layer):
            self.cancel(f"layer {layer.name!r} was removed")

    def _chosen(self) -> tuple[Any, Any]:
        """The Image layer and model chosen (ValueError when either is missing)."""
        layer = self.image.value
        if layer is None:
            raise ValueError("choose an Image layer to segment")
        model = self._current_model()
        if model is None:
            raise ValueError("choose a model")
        return layer, model

    def _prepare(self) -> PredictJob:
        layer, model = self._chosen()
        data, channel_axis = image_input(layer, self.channel_axis.value)
        check_channels(layer, data, channel_axis, model, self._channel())
        spatial = spatial_shape(data.shape, channel_axis)
        if len(spatial) < 2:
            raise ValueError(f"image {layer.name!r} (shape {data.shape}) has fewer than 2 spatial axes")
        store = ProbabilityStore.for_model(spatial, model, self.threshold.value)
        geometry = output_geometry(layer, channel_axis)
        labels_layer, undo = None, None
        labels = store.new_labels()
        if self.semantic.value:
            labels_layer, undo = self.outputs.labels(f"{layer.name} labels", labels, geometry, layer.name)
        store.labels = labels
        head = None
        if self._head(model) is not None:
            head, model.head = model.head, self.head.value
        return PredictJob(layer.name, data, channel_axis, model, self._options(), store, labels, labels_layer,
                          undo, self.instances.value, self.probability.value, self.min_size.value, geometry,
                          head=head, image_layer=layer)

    def _channel(self):
        """The channel chosen, where the choice applies (else None: every channel)."""
        self._update_channel()
        return self.channel.value if self.channel.enabled else None

    def _options(self) -> dict:
        return dict(tile_size=self.tile_size.value, halo=self.halo.value, blend=self.blend.value,
                    batch_size=self.batch_size.value, device=self.device.value, precision=self.precision.value,
                    channel=self._channel())

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
        offered = self.lazy_runs.offered(self.image.value, self.channel_axis.value)
        self.lazy.enabled = offered
        lazy = self._lazy_applies()
        for widget in (self.semantic, self.instances, self.min_size, self.probability):
            widget.enabled = not lazy
        self.lazy_note.value = note = self.lazy_runs.note(self.lazy.value, offered)
        self.lazy_note.visible = bool(note)

    def _run_lazy(self) -> None:
        """Put lazy labels of the chosen image into its ``<image> labels`` layer; compute nothing."""
        layer, model = self._chosen()
        labels, self.device_used.value, self.status.value = self.lazy_runs.run(
            layer, model, self.channel_axis.value, self._options(), self.threshold.value, self._head(model))
        self._viewer.layers.selection.active = labels

    # -- the worker's events -------------------------------------------------------------
    def _on_progress(self, event) -> None:
        job = self._job
        if job is None:  # a late event of a finished run
            return
        if event.slices and job.labels_layer is not None:
            job.labels_layer.refresh()
        self._advance(event.done, event.total)  # last: it may re-enter this handler

    def _on_aborted(self) -> None:
        self._on_returned(("cancelled", None))

    def _on_errored(self, job: PredictJob) -> None:
        self._undo(job)

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
            self._undo(job)
            self.status.value = f"cancelled: {job.stopped or 'the viewer is as it was'}"
        elif status == "error":
            self._undo(job)
            self.status.value = f"failed: {err}"
            show_error(f"napari-unet-stack: prediction failed: {err}")
        else:
            self._finish(job)

    def _finish(self, job: PredictJob) -> None:
        store = job.store
        if store.threshold != self.threshold.value:  # moved while running
            store.relabel(self.threshold.value)
        name = f"{job.image} labels"
        self.results.keep_eager(name, PredictResult(store, job.labels, job.geometry, job.min_size),
                                shown=job.labels_layer is not None)
        if job.labels_layer is not None:
            job.labels_layer.refresh()
        if job.instance_data is not None:
            self.outputs.labels(f"{job.image} instances", job.instance_data, job.geometry, job.image)
        if job.probability:
            self.outputs.probability(job.image, store.probability(), job.geometry)
        info = job.info
        self.device_used.value = f"used: {info.get('device', '?')}, {info.get('precision', '?')}"
        tiles = "x".join(str(t) for t in info.get("tile_shape", ()))
        self.status.value = (f"{job.image}: {info.get('n_tiles', '?')} tile(s) of {tiles} in "
                             f"{info.get('seconds', 0):.1f} s")
        if job.labels_layer is not None and job.labels_layer in self._viewer.layers:
            self._viewer.layers.selection.active = job.labels_layer

    def _undo(self, job: PredictJob) -> None:
        if job.undo is not None and not self._gone:
            job.undo(self._viewer)

    def _release(self, job: PredictJob) -> None:
        if job.head is not None:
            job.model.head = job.head

    # -- threshold ---------------------------------------------------------------------
    def _on_threshold_changed(self, value: float) -> None:
        """Relabel the current image's result from the kept probabilities (no network)."""
        if self.worker is not None or self.image.value is None:
            return
        status = self.results.rethreshold(self.image.value.name, value)
        if status is not None:
            self.status.value = status
