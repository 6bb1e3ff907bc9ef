"""How a training run ends early: `TrainingFailed` (a non-finite loss)."""

from __future__ import annotations

__all__ = ["TrainingFailed"]


class TrainingFailed(ValueError):
    """Raised by `train` when the loss stops being finite (usually ``lr`` is too high).

    A ValueError: the settings (``lr``, ``precision``) are what to change.

    Attributes
    ----------
    model : SegmentationNetwork or None
        The last good model: the best validated weights, else the weights of the last step
        whose loss was finite, finished like a result (eval mode, on the CPU, metadata set)
        but with ``training_state`` None (the optimizer state is spoilt: fine-tune it with a
        lower ``lr`` instead of resuming). None if no step had a finite loss.
    history : dict
        The history up to the failed step (its loss included).
    step : int
        The step whose loss was not finite (the history's numbering).
    """

    def __init__(self, message: str, *, model=None, history=None, step: int = 0) -> None:
        super().__init__(message)
        self.model = model
        self.history = history if history is not None else {}
        self.step = step
