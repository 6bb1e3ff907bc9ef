"""The Predict widget's instance decoding: its options under Advanced, and re-decoding a
finished run in a worker thread when one of them (or the threshold) moves.

`DecodeControls` is the form: method, marker threshold, min size, min distance, smoothing,
Z linking and its overlap, and the time axis, whose values make one
`napari_unet_stack.postprocess.InstanceOptions`; its defaults are that class's, and the
marker threshold and min size follow the chosen model (`InstanceOptions.resolve`: an
instance model's ``meta["instances"]``). The time axis is, by default, the image layer's
axes labelled ``t`` or ``time`` (`_layers.time_axes`): a T(Z)YX layer's time points are
decoded on their own, never linked, as ``segment(..., time_axis=...)`` decodes them. `Redecoder` runs
one decode job at a time, the network never: an eager run's `_jobs.DecodeJob`
(`_jobs.run_decoding`, from the run's store), or a lazy run's `_lazy_decode.LazyDecodeJob`
(from the labels it kept on disk, slice by slice into a new on-disk array). A new request
cancels the running one and starts once it has stopped, so only the latest options reach
the layer. A cancelled or failed decode changes nothing. A lazy run keeps no
probabilities: a new threshold or marker threshold (`LazyInstances.needs_network`) is not
decoded, and the status line says to press Run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, SpinBox
from napari.qt.threading import create_worker
from qtpy.QtCore import QEventLoop

from ..postprocess import METHOD_CHOICES, InstanceOptions, model_instances
from ._colours import instance_colormap
from ._jobs import DecodeJob
from ._layers import leading_axes, time_axes

__all__ = ["DecodeControls", "InstanceDecoding", "Redecoder", "show_instances"]

METHOD_NOTES = {
    "auto": "the model's own: markers for an instance model, else watershed",
    "markers": "an instance model's markers (P(interior) > marker threshold) grown into the foreground",
    "watershed": "the foreground split by a watershed of its distance transform",
    "components": "connected components (touching objects stay one)",
}


#: the time-axis choices that are not an axis: the image layer's axis labels, or no time axis
TIME_FROM_LABELS, NO_TIME = "from axis labels", "none"


class DecodeControls(Container):
    """The decoding options (see the module docstring); ``on_change()`` after any edit.
    ``image()`` gives the (Image layer or None, channel axis) chosen: the time axes are its axes."""

    def __init__(self, on_change: Callable[[], None], image: Callable[[], tuple[Any, Any]] = lambda: (None, None)):
        defaults = InstanceOptions()
        self._image = image
        self._instance_model = False
        self.model: Any = None  # the model the form follows (its marker threshold and min size)
        self.marker_by_hand = False  # the marker threshold moved by hand since that model was chosen
        self.method = ComboBox(label="instances", choices=self._method_choices, value=defaults.method,
                               tooltip="\n".join(f"{k}: {v}" for k, v in METHOD_NOTES.items()))
        self.marker_threshold = FloatSpinBox(label="marker threshold", min=0.01, max=0.99, step=0.05,
                                             value=defaults.resolve().marker_threshold,
                                             tooltip="an instance model's markers: P(interior) above this")
        self.min_size = SpinBox(label="min size (px)", min=0, max=10**7, value=defaults.resolve().min_size,
                                tooltip="objects (all their slices) with fewer pixels are dropped")
        self.min_distance = SpinBox(label="min distance (px)", min=1, max=1000, value=defaults.min_distance,
                                    tooltip="watershed: seeds at least this far apart")
        self.smoothing = FloatSpinBox(label="smoothing", min=0.0, max=50.0, step=0.5, value=defaults.smoothing,
                                      tooltip="watershed: Gaussian sigma of the distance transform")
        self.link_z = CheckBox(text="link objects across Z", value=defaults.ndim != 2,
                               tooltip="unchecked: objects per slice")
        self.link_overlap = FloatSpinBox(label="link overlap", min=0.01, max=1.0, step=0.05,
                                         value=defaults.link_overlap,
                                         tooltip="Z links: objects of neighbouring slices are one when the smaller "
                                                 "lies at least this fraction inside the other")
        self.z_split = FloatSpinBox(label="Z split", min=0.0, max=0.95, step=0.05, value=defaults.z_split,
                                    tooltip="Z links: an object is cut where its cross-section shrinks below this "
                                            "fraction of its largest ones above and below (nuclei stacked in Z); "
                                            "0: never")
        self.time_axis = ComboBox(label="time axis", choices=self._time_choices, value=TIME_FROM_LABELS,
                                  tooltip="time points are decoded on their own, never linked; by default the "
                                          "image's axes labelled t or time")
        super().__init__(widgets=[Label(value="instance decoding"), self.method, self.marker_threshold,
                                  self.min_size, self.min_distance, self.smoothing, self.link_z,
                                  self.link_overlap, self.z_split, self.time_axis])
        self.marker_threshold.changed.connect(self._marker_moved)  # before on_change: a decode reads it
        for widget in (self.method, self.marker_threshold, self.min_size, self.min_distance, self.smoothing,
                       self.link_z, self.link_overlap, self.z_split, self.time_axis):
            widget.changed.connect(lambda _value: self._update_enabled())
            widget.changed.connect(lambda _value: on_change())
        self._update_enabled()

    def _marker_moved(self, _value=None) -> None:
        self.marker_by_hand = True

    def _method_choices(self, _widget=None) -> list[str]:
        return [m for m in METHOD_CHOICES if m != "markers" or self._instance_model]

    def resolved_method(self) -> str:
        if self.method.value == "auto":
            return "markers" if self._instance_model else "watershed"
        return self.method.value

    def _update_enabled(self) -> None:
        method = self.resolved_method()
        self.marker_threshold.enabled = method == "markers"
        self.min_distance.enabled = self.smoothing.enabled = method == "watershed"
        self.link_overlap.enabled = self.z_split.enabled = method != "components" and self.link_z.value

    def _leading(self) -> list[tuple[int, str]]:
        layer, channel_axis = self._image()
        try:
            return [] if layer is None else leading_axes(layer, channel_axis)
        except ValueError:  # a channel axis that does not fit: Run says so
            return []

    def _time_choices(self, _widget=None) -> list[tuple[str, Any]]:
        """From the axis labels (saying which axes they name), none, or each leading axis."""
        layer, channel_axis = self._image()
        found = self._time_axes_of_labels(layer, channel_axis)
        named = ", ".join(f"axis {a}" for a in found) or "none"
        return [(f"{TIME_FROM_LABELS} ({named})", TIME_FROM_LABELS), (NO_TIME, NO_TIME),
                *((f"axis {axis} ({name})", axis) for axis, name in self._leading())]

    def _time_axes_of_labels(self, layer: Any, channel_axis: Any) -> tuple[int, ...]:
        try:
            return () if layer is None else time_axes(layer, channel_axis)
        except ValueError:
            return ()

    def follow_image(self) -> None:
        """Offer the chosen image's leading axes as time axes (no ``on_change``)."""
        with self.time_axis.changed.blocked():
            value = self.time_axis.value
            self.time_axis.reset_choices()
            self.time_axis.value = value if value in self.time_axis.choices else TIME_FROM_LABELS

    def chosen_time_axes(self) -> tuple[int, ...] | None:
        """The time axes chosen, as axes of the chosen image (None: no time axis)."""
        value = self.time_axis.value
        if value == NO_TIME:
            return None
        if value == TIME_FROM_LABELS:
            return self._time_axes_of_labels(*self._image()) or None
        return (int(value),)

    def follow_model(self, model: Any) -> None:
        """Offer ``model``'s methods and take its marker threshold and min size (no ``on_change``)."""
        self._instance_model = model_instances(model) is not None
        self.model, self.marker_by_hand = model, False
        with self.method.changed.blocked(), self.marker_threshold.changed.blocked(), \
                self.min_size.changed.blocked():
            self.method.reset_choices()
            if self.method.value not in self.method.choices:
                self.method.value = "auto"
            resolved = InstanceOptions(self.method.value).resolve(model)
            self.marker_threshold.value = resolved.marker_threshold
            self.min_size.value = resolved.min_size
        self._update_enabled()

    def options(self) -> InstanceOptions:
        """The one `InstanceOptions` of the form."""
        return InstanceOptions(self.method.value, min_size=int(self.min_size.value),
                               min_distance=int(self.min_distance.value), smoothing=float(self.smoothing.value),
                               marker_threshold=float(self.marker_threshold.value) if self._instance_model else None,
                               link_overlap=float(self.link_overlap.value), z_split=float(self.z_split.value),
                               ndim=None if self.link_z.value else 2, time_axis=self.chosen_time_axes())


def show_instances(outputs: Any, name: str, ids: Any, colours: Any, geometry: dict, source: str) -> Any:
    """``ids`` in our Labels layer ``name`` (made if needed) with colours that tell touching
    objects apart (`_colours`)."""
    layer, _undo = outputs.labels(name, ids, geometry, source)
    layer.colormap = instance_colormap(colours)
    return layer


class InstanceDecoding:
    """Re-decoding instance layers with ``controls``' options: those of eager runs from their
    stores in ``results``, those of lazy runs from the labels they kept (``scratch``, a
    `_lazy_instances.Scratch`: `_lazy_decode`); ``report(running, status)`` says what it does."""

    def __init__(self, controls: DecodeControls, outputs: Any, results: Any, scratch: Any,
                 report: Callable[[bool, str], None]):
        self.controls = controls
        self.outputs = outputs
        self.results = results
        self.scratch = scratch
        self.report = report
        self.redecoder = Redecoder(self._done)
        self.quiet = False  # cancelled for a new run: its status is the run's

    def for_run(self, model: Any, wanted: bool) -> tuple[InstanceOptions | None, bool]:
        """(the options a run decodes with, None without instances; whether its store keeps
        the probabilities: an instance model's decoding reads P(interior)). Their errors
        (e.g. 'markers' for this model) come before the run."""
        if not wanted:
            return None, False
        options = self.controls.options()
        options.resolve(model)
        return options, model_instances(model) is not None

    def show_run(self, job: Any) -> bool:
        """A finished run's instances in their layer; whether an option moved while it ran."""
        if job.instance_data is None:
            return False
        show_instances(self.outputs, f"{job.image} instances", job.instance_data, job.instance_colours,
                       job.geometry, job.image)
        return job.decoding != self.controls.options()

    def redecode(self, image: str, threshold: float | None = None, said: str | None = None) -> None:
        """Decode image ``image``'s instance layer again, if it has one and a result to decode.
        ``threshold``: the one the slider was moved to; None (a decoding option moved): the
        one the image's labels are at, which choosing another model does not change.
        ``said``: the status shown so far (a note that Run is needed follows it)."""
        from napari.layers import Labels

        layer = self.outputs.ours(f"{image} instances", Labels)
        if layer is None:
            return
        try:
            job = self._job(image, layer, self.controls.options(), threshold)
        except ValueError as err:
            self.report(False, f"instances not decoded: {err}")
            return
        if isinstance(job, str):  # the lazy run kept no probabilities
            self.cancel(quiet=True)  # an older decode would hide the note
            self.report(False, f"{said + '; ' if said else ''}instances: {job} changes the labels they are decoded "
                               "from, which a lazy run does not keep: press Run to decode them")
        elif job is not None:
            self.quiet = False
            self.redecoder.request(job)
            self.report(True, "decoding instances (no network)...")

    def _job(self, image: str, layer: Any, options: InstanceOptions, threshold: float | None) -> Any:
        """The job decoding ``layer`` again from what made it: the labels its lazy run kept,
        else the eager run's store (None: neither), at ``threshold`` (None: that of the
        labels shown); or what needs Run (`LazyInstances.needs_network`)."""
        kept = self.scratch.kept.get(layer.name)
        if kept is not None and layer.data is kept.ids:
            options = self._for_result(options, kept.model)
            if threshold is None:  # the lazy labels', else the instances' own
                lazy = self.results.lazy.get(f"{image} labels")
                threshold = kept.threshold if lazy is None else lazy.threshold
            need = kept.needs_network(options, threshold)
            return kept.job(options, layer) if need is None else need
        result = self.results.eager.get(f"{image} labels")
        if result is None:
            return None
        # the store's threshold: its labels' (a moved slider has relabelled it first)
        return DecodeJob(result.store, result.model, self._for_result(options, result.model),
                         result.store.threshold, layer, result.channel_axis)

    def _for_result(self, options: InstanceOptions, model: Any) -> InstanceOptions:
        """``options`` for a result ``model`` made: a model other than the form's (one chosen
        since) keeps its own marker threshold unless the form's was moved by hand since
        (choosing a model moves the form's to the new model's: no change for that result)."""
        if model is self.controls.model or self.controls.marker_by_hand:
            return options
        return dataclasses.replace(options, marker_threshold=None)  # resolved: its own

    def forget(self, layer: Any) -> None:
        """``layer`` left the viewer: a decode into it stops."""
        job = self.redecoder.job
        if job is not None and job.layer is layer:
            self.cancel(quiet=True)

    def cancel(self, *, quiet: bool = False) -> None:
        """Cancel the decoding (``quiet``: say nothing about it, a run starts)."""
        if self.redecoder.cancel() and not quiet:
            self.report(True, "cancelling the decoding...")
        self.quiet = self.quiet or quiet

    def _done(self, job: Any, status: str, result: Any, err: Any) -> None:
        running = self.redecoder.pending is not None
        if status == "done" and job.layer in self.outputs.viewer.layers:
            ids, colours = result
            job.layer.data = ids
            job.layer.colormap = instance_colormap(colours)
            if isinstance(job, DecodeJob):
                self.scratch.release(job.layer.name)  # a lazy run's store it showed before
            else:
                job.kept.adopt(job)  # the ids it showed before go
            self.report(running, f"instances decoded again ({job.options.method}, no network): "
                                 f"{len(colours) - 1} objects")
            return
        job.discard()
        if status == "error":
            self.report(running, f"instances not decoded: {err}")
        elif status == "cancelled" and not running and not self.quiet:
            self.report(False, "decoding cancelled: the instances are as they were")


class Redecoder:
    """One decode job at a time in a worker (a `DecodeJob` or a `_lazy_decode.LazyDecodeJob`:
    ``job.run`` is the body); ``done(job, status, (ids, colours) or None, error)`` is called
    in the GUI thread for each job that ran (status "cancelled" once cancelled)."""

    def __init__(self, done: Callable[[Any, str, Any, Any], None]):
        self.done = done
        self.job: Any = None
        self.worker = None
        self.pending: Any = None
        self._waiting: list[Callable[[], None]] = []

    def request(self, job: Any) -> None:
        """Decode ``job`` now, or once the running job (cancelled) has stopped."""
        if self.job is None:
            self._start(job)
            return
        self.job.cancel.set()
        self.pending = job

    def cancel(self) -> bool:
        """Cancel the running and the pending job; whether there was one."""
        self.pending = None
        if self.job is None or self.job.cancel.is_set():
            return False
        self.job.cancel.set()
        return True

    def _start(self, job: Any) -> None:
        self.job = job
        self.worker = worker = create_worker(job.run, _start_thread=False)
        worker.returned.connect(lambda outcome: self._returned(job, outcome))
        worker.finished.connect(self._finished)
        worker.start()

    def _returned(self, job: Any, outcome: tuple) -> None:
        status, result, err = outcome
        if job.cancel.is_set():  # cancelled after it finished: its result is not wanted either
            status, result = "cancelled", None
        job.answered = True
        self.done(job, status, result, err)

    def _finished(self) -> None:
        job = self.job
        if job is not None and not job.answered:  # it raised (a bug: napari shows it)
            self.done(job, "error", None, "the decoding failed (see the traceback)")
        self.job = self.worker = None
        job, self.pending = self.pending, None
        if job is not None:
            self._start(job)
            return
        waiting, self._waiting = self._waiting, []
        for callback in waiting:
            callback()

    def wait(self) -> None:
        """Block (processing Qt events) until no job runs or waits."""
        if self.job is None:
            return
        loop = QEventLoop()
        self._waiting.append(loop.quit)
        loop.exec()
