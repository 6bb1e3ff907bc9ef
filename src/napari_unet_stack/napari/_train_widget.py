"""The Train dock widget: train a UNet / UNet++ on an Image layer and (painted) Labels.

`iter_train` runs in a napari thread worker (`_runner.WorkerDock`); every step updates a
progress bar and a live plot of the loss and validation Dice. The form starts from the
library's own defaults (`training.settings`: the network of ``ModelSettings()``,
``DEFAULT_STEPS``, ``TrainSettings()``), the ones ``unet-stack train`` uses, and offers the
architectures of `napari_unet_stack.models.ARCHITECTURES`. The trained model goes into the shared registry
(`USER_MODELS`) at once, so the Predict widget can use it, and can be saved to a file.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.utils.notifications import show_error

from ..models import ARCHITECTURES, DOWNSAMPLING
from ..training.classes import classes_for
from ..training.decoding_choice import describe_choice
from ..training.settings import DEFAULT_STEPS, ModelSettings, TrainSettings
from ..zcontext import KEY as Z_CONTEXT
from ._jobs import EXPECTED_ERRORS, TrainJob, device_choices, run_training
from ._layers import (
    channel_choices,
    channel_picks,
    given_channels,
    image_input,
    spatial_shape,
    time_axes,
)
from ._plot import CurvePlot
from ._registry import USER_MODELS
from ._runner import WorkerDock

if TYPE_CHECKING:
    import napari

__all__ = ["TrainWidget"]

#: the defaults of the form: the library's own (`train`, ``unet-stack train``)
MODEL_DEFAULTS = ModelSettings()
TRAIN_DEFAULTS = TrainSettings()
#: A labels layer with more ids than this is taken for instance labels (the instance model on).
FEW_IDS = 4


def count_ids(data: np.ndarray, *, sparse: bool) -> int:
    """The object ids of a labels layer (sparse: 0 unlabelled and 1 background are no objects)."""
    ids = np.unique(data)
    return int(np.count_nonzero(ids >= (2 if sparse else 1)))


def write_package(model: Any, path: Path) -> tuple[Path | None, BaseException | None]:
    """The worker body of a ``.zip`` save: (the written path, None) or (None, the error that
    stopped it); a worker that returned the error itself would raise it (superqt's rule)."""
    from ..bioimageio.export import export_bioimageio

    try:
        return Path(export_bioimageio(model, path, name=f"napari-unet-stack {path.stem}", overwrite=True)), None
    except (*EXPECTED_ERRORS, ImportError) as err:
        return None, err


class TrainWidget(WorkerDock):
    """Train on the chosen layers; see the module docstring.

    Scripts set the fields (``widget.channel_axis.value = 1`` for a multichannel image)
    and call ``widget.train(wait=True)``, then ``widget.save_path.value = "model.pt";
    widget.save()`` (``widget.save_state.value = False`` for a smaller file that cannot
    resume training).
    """

    busy_text = "training is in progress; cancel it first"

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(viewer, "Train")
        self.train_button = self.start_button
        self._package_writer = None  # the worker writing a bioimage.io package, while it runs
        self.model: Any = None  # the last trained model
        self.model_name: str | None = None  # its name in USER_MODELS
        self._f1: float | None = None  # the last validation instance F1 (instance models)
        self._what = "val Dice"  # or "painted-pixel Dice": what the validation scores
        self._make_form()
        self.image.changed.connect(self._on_image_changed)
        self.architecture.changed.connect(self._on_architecture_changed)
        self.annotations.changed.connect(self._on_labels_changed)
        self.sparse.changed.connect(self._on_labels_changed)
        self.instances.changed.connect(lambda on: setattr(self.binarize, "enabled", not on))
        # Qt's signal: magicgui's `changed` is not emitted for "none" (a None value)
        self.channel_axis.native.currentIndexChanged.connect(lambda _index: self._on_axis_changed())
        self.train_button.changed.connect(lambda: self.train())
        self.save_button.changed.connect(lambda: self.save())
        self.reset_choices()
        self._on_image_changed()
        self._on_labels_changed()

    def _make_form(self) -> None:
        self.image = ComboBox(label="image", choices=self._layers(Image))
        self.channel_axis = ComboBox(label="channel axis", choices=lambda _w=None: channel_choices(self.image.value),
                                     tooltip="the image's axis that holds channels (RGB: the colours)")
        self.channel = ComboBox(label="channel", choices=self._pick_choices,
                                tooltip="all: a model of as many input channels; one channel, or their "
                                        "mean: a one-channel model")
        self.annotations = ComboBox(label="labels", choices=self._layers(Labels))
        self.sparse = CheckBox(text="sparse: 0 = unlabelled, paint 1 = background, 2 = object",
                               value=False)
        self.binarize = CheckBox(text="any label is foreground (instances)", value=True)
        self.instances = CheckBox(text="instance model: learn to part touching objects", value=False,
                                  tooltip="the labels are instance labels (each object its own id): train "
                                          "background / interior / boundary; on when the layer has more "
                                          f"than {FEW_IDS} ids")
        self.architecture = ComboBox(label="architecture", choices=list(ARCHITECTURES),
                                     value=MODEL_DEFAULTS.architecture, tooltip="NestedUNet: UNet++")
        self.base_channels = SpinBox(label="width", min=2, max=128, value=MODEL_DEFAULTS.base_channels,
                                     tooltip="base channels")
        self.depth = SpinBox(label="depth", min=1, max=6, value=MODEL_DEFAULTS.depth)
        self.downsampling = ComboBox(label="down-sampling", choices=list(DOWNSAMPLING),
                                     value=MODEL_DEFAULTS.downsampling,
                                     tooltip="UNet: 2x2 max-pooling, or strided 3x3 convolutions down and "
                                             "3x3 transposed convolutions up")
        self.z_context = SpinBox(label="z context", min=0, max=8, value=0,
                                 tooltip="2.5D: each slice also sees this many neighbouring slices above and "
                                         "below along Z (the last stack axis not labelled time; none: each "
                                         "slice its own neighbour) as extra input channels; Predict reads "
                                         "them the same way. 0: a 2D model")
        self.steps = SpinBox(label="steps", min=1, max=1_000_000, value=DEFAULT_STEPS)
        self.patch_size = SpinBox(label="patch size", min=16, max=2048, step=16, value=TRAIN_DEFAULTS.patch_size)
        self.batch_size = SpinBox(label="batch size", min=1, max=256, value=TRAIN_DEFAULTS.batch_size)
        self.val_fraction = FloatSpinBox(label="validation", min=0.0, max=0.9, step=0.05,
                                         value=TRAIN_DEFAULTS.val_fraction)
        self.device = ComboBox(label="device", choices=device_choices(), value=TRAIN_DEFAULTS.device)
        self.save_path = FileEdit(label="save as", mode="w", filter="*.pt *.zip",
                                  tooltip=".pt: napari-unet-stack checkpoint; .zip: bioimage.io model package "
                                          "(Fiji/deepImageJ, ilastik, QuPath; needs the [bioimageio] extra)")
        self.save_button = PushButton(text="Save model", enabled=False)
        self.save_state = CheckBox(text="include optimizer state (to resume)", value=True,
                                   tooltip="keep the optimizer and schedule state, for train(resume=True); "
                                           "off: a smaller file for inference only")
        self.extend([
            self.image, self.channel_axis, self.channel, self.annotations, self.sparse, self.binarize, self.instances,
            self.architecture, self.base_channels, self.depth, self.downsampling, self.z_context, self.steps,
            self.patch_size, self.batch_size, self.val_fraction, self.device,
            Container(widgets=[self.train_button, self.cancel_button], layout="horizontal", labels=False),
            self.status, self.save_path,
            Container(widgets=[self.save_button, self.save_state], layout="horizontal", labels=False),
        ])
        self.status.native.setWordWrap(True)
        self.plot = CurvePlot({"loss": ("#f0a030", None), "validation Dice": ("#30c0f0", (0.0, 1.0))})
        self.native.layout().insertWidget(self.index(self.status), self.plot)

    def _layers(self, kind):
        return lambda _widget=None: [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, kind)]

    def _pick_choices(self, _widget=None) -> list:
        return channel_picks(given_channels(self.image.value, self.channel_axis.value), every=True)

    def _on_image_changed(self, _value=None) -> None:
        self.channel_axis.reset_choices()
        layer = self.image.value
        self.channel_axis.enabled = layer is not None and not layer.rgb  # RGB: always the last axis
        self._on_axis_changed()

    def _on_architecture_changed(self, _value=None) -> None:
        self.downsampling.enabled = self.architecture.value == "UNet"  # a UNet option

    def _on_labels_changed(self, _value=None) -> None:
        """An instance labels layer (more than `FEW_IDS` ids) turns the instance model on."""
        layer = self.annotations.value
        if layer is not None:
            data = np.asarray(layer.data[-1] if layer.multiscale else layer.data)
            self.instances.value = count_ids(data, sparse=self.sparse.value) > FEW_IDS

    def _on_axis_changed(self, _value=None) -> None:
        self.channel.reset_choices()
        self.channel.enabled = self.channel.choices != (None,)

    # -- training ----------------------------------------------------------------------
    def train(self, *, wait: bool = False):
        """Start training in a worker thread; returns the worker (None if it could not start).

        With ``wait=True`` return only when it has finished (the viewer stays responsive).
        """
        if self.busy():
            return None
        if self._package_writer is not None:
            self._not_started(RuntimeError("a bioimage.io package is being written; train when it is saved"))
            return None
        try:
            job = self._prepare()
        except EXPECTED_ERRORS as err:
            self._not_started(err)
            return None
        self.plot.clear(job.options["steps"])
        self._f1, self._what = None, "val Dice"
        worker = self._start(run_training, job, desc="UNet training", total=job.options["steps"],
                             status="preparing data...")
        if wait:
            self.wait()
        return worker

    def _on_aborted(self) -> None:
        if not self._gone:
            self.status.value = "cancelled (from the activity dock)"

    def _prepare(self) -> TrainJob:
        image, labels = self.image.value, self.annotations.value
        if image is None or labels is None:
            raise ValueError("choose an Image layer and a Labels layer (paint one with the labels tools)")
        data, channel_axis = image_input(image, self.channel_axis.value)
        spatial = spatial_shape(data.shape, channel_axis)
        target = np.array(labels.data[0] if labels.multiscale else labels.data)  # a snapshot: painting goes on
        if target.shape != spatial:
            where = ("RGB" if image.rgb else "no channel axis chosen" if channel_axis is None
                     else f"channel axis {channel_axis}")
            fits = [ax for ax in range(len(data.shape) - 2) if spatial_shape(data.shape, ax) == target.shape]
            hint = f"; choose channel axis {fits[-1]}" if fits and not image.rgb else ""
            raise ValueError(
                f"labels {labels.name!r} (shape {target.shape}) must have the shape of image "
                f"{image.name!r} {tuple(data.shape)} without its channel axis ({where}: {spatial}){hint}"
            )
        sparse = self.sparse.value
        if self.instances.value:
            return self._make_job(image, data, channel_axis, target, instances=True)
        if self.binarize.value:
            target = np.minimum(target, 2) if sparse else (target > 0)
            target = target.astype(np.uint8)
        top = int(target.max(initial=0))
        n_classes = classes_for(target, sparse=sparse)  # the training rule: 0/v masks are binary
        if n_classes > 64:
            raise ValueError(
                f"labels {labels.name!r} hold {top} values: tick 'any label is foreground' or 'instance model' "
                f"for instance labels"
            )
        return self._make_job(image, data, channel_axis, target, n_classes=n_classes)

    def _make_job(self, image, data, channel_axis, target, *, n_classes: int = 3, instances: bool = False) -> TrainJob:
        self._on_axis_changed()
        channel = self.channel.value if self.channel.enabled else None
        in_channels = 1 if channel_axis is None or channel is not None else data.shape[channel_axis]
        z = int(self.z_context.value)
        downsampling = self.downsampling.value if self.downsampling.enabled else "maxpool"
        settings = ModelSettings(self.architecture.value, self.base_channels.value, self.depth.value, downsampling)
        model = settings.build(in_channels * (2 * z + 1), n_classes)  # a z-context model: 2z + 1 slices in
        if z:
            model.meta[Z_CONTEXT] = z
        options = dict(steps=self.steps.value, patch_size=self.patch_size.value, batch_size=self.batch_size.value,
                       val_fraction=self.val_fraction.value, channel_axis=channel_axis, channel=channel,
                       sparse=self.sparse.value, device=self.device.value, instances=instances, z_context=z,
                       time_axis=time_axes(image, channel_axis))  # image axes, never read across
        name = f"{image.name} {self.architecture.value} w{self.base_channels.value} d{self.depth.value}"
        name += (" strided" if downsampling == "strided" else "") + (f" z{z}" if z else "")
        return TrainJob(name, np.asarray(data), target, model, options)

    def _on_progress(self, event) -> None:
        if self._job is None or self._gone:  # a late event of a finished run, or no widget left
            return
        info = event.info
        if "loss" in info:
            self.plot.append("loss", event.step, info["loss"])
        if "val_dice" in info:
            self.plot.append("validation Dice", event.step, info["val_dice"])
            self._f1 = info.get("val_instance_f1", self._f1)
            self._what = "painted-pixel Dice" if info.get("val_scope") == "painted pixels" else "val Dice"
        dice = self.plot.points["validation Dice"]
        self.status.value = (f"step {event.step}/{event.total}"
                             + (f", loss {info['loss']:.3f}" if "loss" in info else "")
                             + (f", {self._what} {dice[-1][1]:.3f}" if dice else "")
                             + (f", instance F1 {self._f1:.3f}" if self._f1 is not None else ""))
        self._advance(event.step, event.total)  # last: it may re-enter this handler

    def _on_returned(self, outcome) -> None:
        status, model, _history, err = outcome
        if self._closed:  # the user closed the widget while it trained: nothing to show or keep
            return
        if status == "error":
            self.status.value = f"failed: {err}"
            show_error(f"napari-unet-stack: training failed: {err}")
            return
        if model is None:
            self.status.value = "cancelled before the first step"
            return
        name = self._job.name if status == "done" else f"{self._job.name} (stopped at {err.step})"
        self.model = model
        self.model_name = USER_MODELS.add(name, model)
        self.save_button.enabled = True
        dice = self.plot.points["validation Dice"]
        what = "done" if status == "done" else f"cancelled after {err.step} steps"
        f1 = f", instance F1 {self._f1:.3f}" if self._f1 is not None else ""
        decoding = describe_choice(model)
        self.status.value = (f"{what}{f', {self._what} {dice[-1][1]:.3f}' if dice else ''}{f1}; "
                             f"'{self.model_name}' is in Predict" + (f"; {decoding}" if decoding else ""))

    # -- saving ------------------------------------------------------------------------
    def save(self, *, wait: bool = False) -> Path | None:
        """Save the trained model to ``save_path``; it stays listed in Predict under the file's name.

        A ``.zip`` path writes a bioimage.io model package (`export_bioimageio`, replacing
        the file the dialog chose) instead of our checkpoint, in a worker thread: it takes
        seconds (TorchScript, test tensors, the spec's validation), so ``save`` returns None
        at once and the status says when it is saved; ``wait=True`` returns the path when
        it is written (the viewer stays responsive). Returns None when nothing was saved.
        """
        from ..checkpoints import save_model

        if self.model is None:
            return self._not_saved("train a model first")
        if self._package_writer is not None:
            return self._not_saved("a bioimage.io package is being written; wait for it")
        path = Path(self.save_path.value)
        if path.is_dir() or str(path) in ("", "."):  # before adding a suffix: not "<folder>.pt" beside it
            return self._not_saved("choose a file name to save the model to")
        if path.suffix == "":
            path = path.with_suffix(".pt")
        if path.is_dir():
            return self._not_saved(f"{str(path)!r} is a folder; choose a file name to save the model to")
        if path.suffix.lower() == ".zip":
            return self._save_package(path, wait)
        try:
            saved = Path(save_model(self.model, path, include_training_state=self.save_state.value))
        except EXPECTED_ERRORS as err:
            return self._not_saved(f"cannot save the model: {err}")
        return self._saved(saved, self.model, self.model_name)

    def _saved(self, saved: Path, model: Any, listed: str | None) -> Path:
        self.model_name = USER_MODELS.add(saved.stem, model, saved, replace=listed)
        self.status.value = f"saved to {saved}"
        return saved

    def _save_package(self, path: Path, wait: bool) -> Path | None:
        """Write the package in a worker; training and saving wait until it is written."""
        from napari.qt.threading import create_worker
        from qtpy.QtCore import QEventLoop

        model, listed = self.model, self.model_name
        snapshot = copy.deepcopy(model)  # the file holds the weights as they were when asked
        done: dict[str, Path | None] = {"path": None}

        def on_returned(outcome) -> None:
            saved, err = outcome
            if err is not None:
                self._not_saved(f"cannot save the model: {err}")
            elif not self._gone:
                done["path"] = self._saved(saved, model, listed)

        worker = create_worker(write_package, snapshot, path, _start_thread=False)
        worker.returned.connect(on_returned)
        worker.finished.connect(self._package_written)
        self._package_writer = worker
        self.save_button.enabled = self.start_button.enabled = False
        self.status.value = f"writing the bioimage.io package {path.name}..."
        loop = QEventLoop() if wait else None
        if loop is not None:
            worker.finished.connect(loop.quit)
        worker.start()
        if loop is not None:
            loop.exec()
        return done["path"]

    def _package_written(self) -> None:
        self._package_writer = None
        if not self._gone:
            self.save_button.enabled = self.model is not None
            self.start_button.enabled = self.worker is None

    def _not_saved(self, why: str) -> None:
        """Say why nothing was saved (a notification, and the status: not an earlier "saved to")."""
        show_error(f"napari-unet-stack: {why}")
        self.status.value = f"not saved: {why}"
