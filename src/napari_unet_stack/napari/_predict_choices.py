"""The Predict widget's choices: what its combo boxes offer (images, channels, models) and
how they follow each other and the user-model registry (the form itself and running it are
`_predict_widget.PredictWidget`, which derives from `PredictChoices`)."""

from __future__ import annotations

from typing import Any

from napari.layers import Image

from ..zcontext import image_channels
from ._jobs import EXPECTED_ERRORS
from ._layers import channel_axis_for, channel_choices, channel_picks, given_channels, z_axis_for
from ._models import choice_of, model_choices
from ._registry import USER_MODELS
from ._runner import WorkerDock

__all__ = ["PredictChoices"]


class PredictChoices(WorkerDock):
    """The choices of the Predict widget's ``image``, ``channel_axis``, ``channel`` and
    ``model`` fields (made by the subclass), and the model chosen (`loaded`)."""

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
        if model is None or image_channels(model) != 1:  # per slice, for a z-context model
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
        axis = None if model is None else channel_axis_for(self.image.value, image_channels(model))
        if axis is not None and self.channel_axis.value is None:
            self.channel_axis.value = axis
        self._update_channel()

    def _z_axis(self) -> int | None:
        """The chosen image's axis a z-context model reads neighbours along: its last leading
        axis that is not time (the instance decoding's time axes, by default those its axis
        labels name), so that a T(Z)YX layer is never read across time (the lazy run too)."""
        return z_axis_for(self.image.value, self.channel_axis.value, self.decoding.chosen_time_axes())

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

