"""The Predict dock widget: segment an Image layer with a UNet / UNet++ in a worker thread.

The widget is the form; the rest is delegated. The network runs `iter_predict` in a napari
thread worker (`_runner.WorkerDock`) with a `_store.ProbabilityStore` as ``out=``: each
finished slice becomes labels in the ``<image> labels`` layer right away (refreshed from the
GUI thread on the worker's ``yielded`` signal), and P(foreground) is kept so that the
threshold can change afterwards without the network (`_rethreshold`); labels are those of
`segment` at the same threshold. Cancel (or an error) puts the viewer back as it was
(`_outputs.Undo`). Instance labels are decoded from the same store with the options under
Advanced (`_decode_controls`), again in a worker whenever an option or the threshold moves.

With *lazy* checked, Run needs no worker: the labels layer holds a dask array whose slices
are computed when napari shows them (`_lazy_run`, `_lazy`), for stacks too large to segment
first. Instance labels, which cannot be lazy (Z links), are then computed in a worker slice
by slice into an on-disk store shown as the instances layer (`_lazy_instances`); the
engine's labels kept beside it decode them again when an option moves, still without the
network (`_lazy_decode`; a new threshold needs Run).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSlider, Label
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from superqt import QCollapsible

from ..inference.augment import TTA_CHOICES
from ..inference.plan import DEFAULT_BORDER
from ..labels import model_threshold
from ._decode_controls import DecodeControls, InstanceDecoding, show_instances
from ._jobs import EXPECTED_ERRORS, PredictJob, describe_model, device_choices, run_prediction
from ._layers import check_channels, image_input, output_geometry, spatial_shape
from ._lazy_instances import LazyInstanceJob, run_lazy_instances
from ._lazy_run import LazyRunner
from ._models import CHECKPOINT_FILTER, FILE, LoadedModels
from ._outputs import OutputLayers
from ._predict_choices import PredictChoices
from ._registry import USER_MODELS
from ._rethreshold import PredictResult, Results
from ._store import ProbabilityStore

if TYPE_CHECKING:
    import napari

__all__ = ["PredictWidget"]

TILE_SIZES = [("auto", "auto"), ("256", 256), ("512", 512), ("1024", 1024), ("2048", 2048), ("whole slice", None)]
HALOS = [("auto (exact)", "auto"), *((str(h), h) for h in (0, 16, 32, 64, 96, 128, 192))]
BORDERS = [*((f"{b} px" + (" (default)" if b == DEFAULT_BORDER else ""), b) for b in sorted({0, 8, DEFAULT_BORDER, 32})),
           ("reach (the halo)", "reach")]
BATCH_SIZES = [("auto", "auto"), *((str(b), b) for b in (1, 2, 4, 8, 16, 32, 64))]
#: what the threshold acts on for softmax models (see `napari_unet_stack.labels`)
SOFTMAX_NOTE = "softmax model: foreground where 1 - P(background) > threshold"


class PredictWidget(PredictChoices):
    """Segment the chosen Image layer; see the module docstring.

    Scripts set the fields (``widget.image.value = layer``, ``widget.set_model("nuclei-unet")``,
    ``widget.tile_size.value = 512``, ...) and call ``widget.run(wait=True)``.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(viewer, "Run")
        self.run_button = self.start_button
        self.loaded = LoadedModels()
        self._moved = False  # see `run`
        self.outputs = OutputLayers(viewer)
        self.results = Results(self.outputs)  # what a new threshold can relabel
        self.lazy_runs = LazyRunner(self.outputs, self.results)
        self._known = USER_MODELS.names()  # user models listed so far
        self._make_form()
        self.image.changed.connect(self._on_image_changed)
        self.model.changed.connect(self._on_model_changed)
        self.checkpoint.changed.connect(self._on_model_changed)
        for widget in (self.lazy, self.image, self.channel_axis):
            widget.changed.connect(self._update_outputs)
        # Qt's signal: magicgui's `changed` is not emitted for "none" (a None value)
        self.channel_axis.native.currentIndexChanged.connect(lambda _index: self._update_channel())
        self.channel_axis.native.currentIndexChanged.connect(lambda _index: self.decoding.follow_image())
        self.image.changed.connect(lambda _value: self.decoding.follow_image())  # its time axes
        self.threshold.changed.connect(self._on_threshold_changed)
        self.run_button.changed.connect(lambda: self.run())
        USER_MODELS.changed.connect(self._on_registry_changed)  # weakly: no leak
        viewer.layers.events.removed.connect(self._on_layer_removed)  # weakly too (napari's events)
        self.reset_choices()
        self._on_model_changed()
        self._update_outputs()

    def _make_form(self) -> None:
        self.image = ComboBox(label="image", choices=self._image_choices)
        self.channel_axis = ComboBox(label="channel axis", choices=self._channel_choices)
        self.model = ComboBox(label="model", choices=self._model_choices)
        self.checkpoint = FileEdit(label="checkpoint", mode="r", filter=CHECKPOINT_FILTER)
        self.channel = ComboBox(label="channel", choices=self._pick_choices,  # after model, checkpoint
                                tooltip="for a one-channel model and a multichannel image: the channel "
                                        "it sees, or their mean")
        self.model_info = Label(label="")
        self.device = ComboBox(label="device", choices=device_choices(), value="auto")
        self.device_used = Label(label="")
        self.tile_size = ComboBox(label="tile size", choices=TILE_SIZES, value="auto")
        self.halo = ComboBox(label="halo", choices=HALOS, value="auto")
        self.border = ComboBox(label="border", choices=BORDERS, value=DEFAULT_BORDER)
        self.blend = ComboBox(label="blend", choices=["crop", "gaussian", "linear"], value="crop")
        self.batch_size = ComboBox(label="batch size", choices=BATCH_SIZES, value="auto")
        self.head = ComboBox(label="UNet++ head", choices=["accurate", "fast"], value="accurate")
        self.precision = ComboBox(label="precision", choices=["auto", "float32", "bfloat16", "float16"])
        self.tta = ComboBox(label="test-time flips", choices=list(TTA_CHOICES), value="none",
                            tooltip="probabilities averaged over each tile's mirror images (4 forwards) or also "
                                    "their transposes (8): fewer wrong splits, 4 or 8 times the time")
        self.advanced = Container(widgets=[self.halo, self.border, self.blend, self.batch_size, self.head, self.precision,
                                           self.tta])
        self.threshold = FloatSlider(label="threshold", min=0.01, max=0.99, step=0.01, value=0.5, tracking=False)
        self.threshold_note = Label(label="")
        self.semantic = CheckBox(text="semantic labels", value=True)
        self.instances = CheckBox(text="instance labels", value=False)
        self.probability = CheckBox(text="probability image", value=False)
        self.lazy = CheckBox(text="lazy (compute slices as you browse)", value=False,
                             tooltip="for stacks too large to segment up front: each slice is "
                                     "computed when napari shows it")
        self.lazy_note = Label(label="")
        self.extend([
            self.image, self.channel_axis, self.channel, self.model, self.checkpoint, self.model_info, self.device,
            self.device_used, self.tile_size, self.threshold, self.threshold_note, self.semantic,
            self.instances, self.probability, self.lazy, self.lazy_note,
            Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False),
            self.status,
        ])
        for label in (self.model_info, self.device_used, self.threshold_note, self.lazy_note, self.status):
            label.native.setWordWrap(True)
            label.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.collapsible = QCollapsible("Advanced")
        self.collapsible.addWidget(self.advanced.native)
        self.decoding = DecodeControls(on_change=self._redecode,  # Advanced > instance decoding
                                       image=lambda: (self.image.value, self.channel_axis.value))
        self.instance_decoding = InstanceDecoding(self.decoding, self.outputs, self.results, self.lazy_runs.scratch,
                                                  self._decode_state)
        self.collapsible.addWidget(self.decoding.native)
        self.native.layout().insertWidget(self.index(self.tile_size) + 1, self.collapsible)

    # -- models ------------------------------------------------------------------------
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
        own, note = model_threshold(model), SOFTMAX_NOTE if model.activation == "softmax" else ""
        with self.threshold.changed.blocked():  # the model's own threshold; no result is relabelled
            self.threshold.value = min(max(own, self.threshold.min), self.threshold.max)
        if self.threshold.value != own:  # else the widget would differ from segment without a word
            note += f"{'; ' if note else ''}its own threshold {own:g} is beyond the slider: {self.threshold.value:g}"
        self.threshold_note.value = note
        self.decoding.follow_model(model)
        self._on_image_changed()

    # -- running -----------------------------------------------------------------------
    def run(self, *, wait: bool = False):
        """Start a run in a worker thread; returns the worker (None if it could not start).

        With ``wait=True`` return only when it has finished (for scripts and notebooks;
        the viewer stays responsive meanwhile). A lazy run needs no worker: it puts the
        lazy labels in the layer and returns None (with instance labels: their worker).
        """
        if self.busy():
            return None
        self._moved = False  # the slider moved by hand while the run runs (a model's choice does not count)
        self.instance_decoding.cancel(quiet=True)  # a re-decode of the last result is not wanted any more
        try:
            job = self._run_lazy() if self._lazy_applies() else self._prepare()
        except EXPECTED_ERRORS as err:
            self._not_started(err)
            return None
        if job is None:
            return None
        lazy = isinstance(job, LazyInstanceJob)
        worker = self._start(run_lazy_instances if lazy else run_prediction, job, desc=f"UNet: {job.image}",
                             total=None, status=f"running on {job.image}..." + (" (instances)" if lazy else ""))
        if wait:
            self.wait()
        return worker

    def _on_layer_removed(self, event) -> None:
        """A run stops when the layer it reads or the layer it fills leaves the viewer."""
        job = self._job
        layer = event.value
        if layer is not None:
            self.instance_decoding.forget(layer)  # a decode into it stops
            self.lazy_runs.scratch.release(layer.name)  # its on-disk store, if it had one
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
        decoding, keep = self.instance_decoding.for_run(model, self.instances.value)
        if decoding is not None:  # e.g. a time axis this image lacks: said before the network runs
            decoding.resolve(model).check(spatial, decoding.time_axes(len(data.shape), channel_axis))
        store = ProbabilityStore.for_model(spatial, model, self.threshold.value, keep=keep)
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
                          undo, decoding, self.probability.value, geometry,
                          head=head, image_layer=layer)

    def _channel(self):
        """The channel chosen, where the choice applies (else None: every channel)."""
        self._update_channel()
        return self.channel.value if self.channel.enabled else None

    def _options(self) -> dict:
        return dict(tile_size=self.tile_size.value, halo=self.halo.value, border=self.border.value, blend=self.blend.value,
                    batch_size=self.batch_size.value, device=self.device.value, precision=self.precision.value,
                    tta=self.tta.value, channel=self._channel(), z_axis=self._z_axis())

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
        for widget in (self.semantic, self.probability):
            widget.enabled = not lazy
        self.lazy_note.value = note = self.lazy_runs.note(self.lazy.value, offered)
        self.lazy_note.visible = bool(note)

    def _run_lazy(self) -> LazyInstanceJob | None:
        """Put lazy labels of the chosen image into its ``<image> labels`` layer; compute
        nothing. With instance labels, the job computing them (checked first)."""
        layer, model = self._chosen()
        decoding, _keep = self.instance_decoding.for_run(model, self.instances.value)
        labels, self.device_used.value, self.status.value = self.lazy_runs.run(
            layer, model, self.channel_axis.value, self._options(), self.threshold.value, self._head(model))
        self._viewer.layers.selection.active = labels
        if decoding is None:
            return None
        job = self.lazy_runs.instance_job(layer, model, self.channel_axis.value, self._options(),
                                          self.threshold.value, decoding)
        job.undo = self.lazy_runs.undo  # Cancel takes the lazy labels back too
        if self._head(model) is not None:
            job.head, model.head = model.head, self.head.value
        return job

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

    def _finish_lazy(self, job: LazyInstanceJob) -> None:
        name = f"{job.image} instances"
        show_instances(self.outputs, name, job.ids, job.colours, job.geometry, job.image)
        self.lazy_runs.scratch.adopt(name, job.folder, job.kept)  # what decodes it again
        self.device_used.value, self.status.value = job.describe()
        if self._moved and job.threshold != self.threshold.value:  # moved while it ran: once the worker is gone
            self._on_done.append(lambda: self._on_threshold_changed(self.threshold.value))
        elif job.decoding != self.decoding.options():
            self._on_done.append(self._redecode)

    def _finish(self, job: PredictJob) -> None:
        if isinstance(job, LazyInstanceJob):
            self._finish_lazy(job)
            return
        store = job.store
        moved = self._moved and store.threshold != self.threshold.value  # by hand while it ran
        if moved:
            store.relabel(self.threshold.value)
        name = f"{job.image} labels"
        self.results.keep_eager(name, PredictResult(store, job.labels, job.geometry, job.model, job.channel_axis),
                                shown=job.labels_layer is not None)
        if job.labels_layer is not None:
            job.labels_layer.refresh()
        moved = self.instance_decoding.show_run(job) or moved
        if job.instance_data is not None:
            self.lazy_runs.scratch.release(f"{job.image} instances")  # a lazy run's store shown there before
        if job.probability:
            self.outputs.probability(job.image, store.probability(), job.geometry)
        self.device_used.value, self.status.value = job.describe()
        if job.labels_layer is not None and job.labels_layer in self._viewer.layers:
            self._viewer.layers.selection.active = job.labels_layer
        if moved and job.decoding is not None:  # once the worker is gone (`_redecode` waits for that)
            self._on_done.append(self._redecode)

    def _undo(self, job: PredictJob) -> None:
        if job.undo is not None and not self._gone:
            job.undo(self._viewer)

    def _release(self, job: PredictJob) -> None:
        if job.head is not None:
            job.model.head = job.head

    # -- threshold ---------------------------------------------------------------------
    def _on_threshold_changed(self, value: float) -> None:
        """Relabel the current image's result from the kept probabilities (no network)."""
        self._moved = self.worker is not None  # applied when the run finishes
        if self.worker is not None or self.image.value is None:
            return
        status = self.results.rethreshold(self.image.value.name, value)
        if status is not None:
            self.status.value = status
        self._redecode(status, value)

    # -- instance decoding ---------------------------------------------------------------
    def _redecode(self, said: str | None = None, threshold: float | None = None) -> None:
        """Decode the current image's instances again from what its run kept (no network);
        ``said``: the status shown so far; ``threshold``: the slider's, when it moved (else
        the one the result's labels are at: choosing a model moves the slider, not them)."""
        if self.worker is None and self.image.value is not None:  # a run decodes when it finishes
            self.instance_decoding.redecode(self.image.value.name, threshold, said)

    def _decode_state(self, running: bool, status: str) -> None:
        if not self._gone:
            self.cancel_button.enabled = running or self.worker is not None
            self.status.value = status

    def cancel(self, reason: str | None = None) -> None:
        """Stop the current run and any instance decoding."""
        self.instance_decoding.cancel()
        super().cancel(reason)

    def wait(self) -> None:
        """Block (processing Qt events) until the run and any instance decoding have finished."""
        super().wait()
        self.instance_decoding.redecoder.wait()
