"""The training loop: `train` and its generator form `iter_train`.

Both take the same arguments: the data, the model, and the settings (a `TrainSettings`, or
its fields by name). The run is set up by `setup.plan_run`, stepped by `run.TrainRun`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from ..models import SegmentationNetwork
from .errors import TrainingFailed
from .fast_head import select_fast_head
from .run import TrainRun
from .settings import (
    DEFAULT_LR,
    DEFAULT_MODEL,
    DEFAULT_STEPS,
    DEFAULT_WEIGHT_DECAY,
    TrainSettings,
    default_model,
)
from .setup import plan_run
from .state import TRAINING_STATE_VERSION

__all__ = [
    # re-exported from their modules (the names ``training.loop`` always had)
    "DEFAULT_LR",
    "DEFAULT_MODEL",
    "DEFAULT_STEPS",
    "DEFAULT_WEIGHT_DECAY",
    "TRAINING_STATE_VERSION",
    "TrainProgress",
    "TrainingCancelled",
    "TrainingFailed",
    "default_model",
    "iter_train",
    "select_fast_head",
    "train",
]


class TrainingCancelled(RuntimeError):
    """Raised by `train` when ``cancel.is_set()`` becomes true.

    Attributes
    ----------
    model : SegmentationNetwork or None
        The best model so far (by validation Dice, else the latest weights), finished like
        a normal result: eval mode, on the CPU, metadata and ``training_state`` (of the last
        step completed, its weights included) set, so
        ``train(..., model=err.model, resume=True)`` continues to the planned total. None
        if no step was done.
    history : dict
        The history up to the cancelled step.
    step : int
        The last step completed: steps done by this call, plus the step it resumed from
        with ``resume=True`` (the history's numbering).
    """

    def __init__(self, message: str, *, model=None, history=None, step: int = 0) -> None:
        super().__init__(message)
        self.model = model
        self.history = history if history is not None else {}
        self.step = step


@dataclass(frozen=True)
class TrainProgress:
    """One event of `iter_train`: ``step`` of ``total`` done, ``info`` as for ``progress``."""

    step: int
    total: int
    info: dict = field(default_factory=dict)


def _check_cancel(cancel: Any) -> None:
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise TypeError(
            f"`cancel` must have an is_set() method (threading.Event), got {type(cancel).__name__}"
        )


def iter_train(
    images: Any,
    labels: Any,
    model: Any = None,
    *,
    settings: TrainSettings | None = None,
    cancel: Any = None,
    **options: Any,
) -> Generator[TrainProgress, None, tuple[SegmentationNetwork, dict[str, list]]]:
    """`train` as a generator: yields a `TrainProgress` per step, returns ``(model, history)``.

    It takes the same arguments as `train` (less ``progress``: the events are yielded).
    Use it from a worker thread (the napari widget does); `train` drains it.
    """
    t0 = time.perf_counter()
    s = TrainSettings.from_options(settings, **options)
    _check_cancel(cancel)
    run = TrainRun(plan_run(images, labels, model, s), t0)
    plan = run.plan
    try:  # however the run ends (or is abandoned), the patch sampling thread stops
        yield TrainProgress(
            plan.start,
            plan.total,
            {"train_slices": len(plan.train_slices), "val_slices": len(plan.val_slices)},
        )
        for step in range(plan.start + 1, plan.total + 1):
            if cancel is not None and cancel.is_set():
                done = step - 1 - plan.start
                raise TrainingCancelled(
                    f"training cancelled after {done} of {plan.steps} steps"
                    + (f" (at step {step - 1} of {plan.total})" if plan.start else ""),
                    model=run.finish(done) if done else None,
                    history=run.history,
                    step=step - 1,
                )
            yield TrainProgress(step, plan.total, run.step(step))
        return run.finish(plan.steps), run.history
    finally:
        run.close()


def train(
    images: Any,
    labels: Any,
    model: Any = None,
    *,
    settings: TrainSettings | None = None,
    progress: Callable[[int, int, dict], Any] | None = None,
    cancel: Any = None,
    **options: Any,
) -> tuple[SegmentationNetwork, dict[str, list]]:
    """Train (or fine-tune) a segmentation network on images and label masks.

    Parameters
    ----------
    images : array or list of arrays
        One 2D image or stack ``(..., Y, X)``, or a list of them (sizes may differ). Any
        real integer or float dtype; NaN or infinite pixels are an error. Every leading
        axis is a stack of independent 2D slices, as in `predict`.
    labels : integer array or list of arrays
        One label array per image, with the image's shape without its channel axis. Any
        integer dtype, or floats holding integers. See ``sparse`` for their meaning.
    model : None, UNet, NestedUNet, SegmentationNetwork, path or bundled model name
        None builds `default_model` (a small UNet, ``DEFAULT_MODEL``) for the data's
        channels and classes (softmax with at least 2 classes). A model instance is trained
        **in place**. A checkpoint path or bundled name is loaded with `load_model`. Without
        ``resume`` the model is fine-tuned: it starts from its weights, normalization and
        class names, with a fresh optimizer and schedule (``meta["provenance"]
        ["total_steps"]`` adds up over runs); imported checkpoints keep the normalization
        they came with.
    settings : TrainSettings, optional
        The training settings (default: ``TrainSettings()``); ``options`` replace some.
    progress : callable(step, total, info), optional
        Called once with step 0 (with ``resume``: the step resumed from), then after every
        step; ``total`` is the schedule's last step. ``info`` holds ``loss``, ``lr``,
        ``seconds``, and after a validation ``val_loss``, ``val_dice``, ``val_iou``,
        ``best_val_dice``.
    cancel : object with ``is_set()``, optional
        Checked before every step; when set, `TrainingCancelled` is raised, carrying the
        best model so far (``err.model``, finished and ready to save) and the history.
    **options
        Any `TrainSettings` field by name (``steps``, ``epochs``, ``patch_size``,
        ``batch_size``, ``val_fraction``, ``val_every``, ``augment``, ``lr``,
        ``weight_decay``, ``dice_weight``, ``device``, ``precision``, ``seed``,
        ``channel_axis``, ``sparse``, ``class_names``, ``normalization``,
        ``fast_head_tolerance``, ``resume``), documented there. Another name is a
        TypeError.

    Returns
    -------
    model : SegmentationNetwork
        The trained network in eval mode, on the CPU, with ``meta["normalization"]``,
        ``meta["class_names"]`` and ``meta["provenance"]`` (steps, data shapes, best
        validation metrics, timing; plus ``meta["fast_head"]`` for UNet++), ready for
        `save_model` and `segment`. ``model.training_state`` (not part of ``meta``) holds
        what ``resume=True`` needs: a dict of tensors and plain values (``step``,
        ``total``, ``warmup``, ``finished``, ``lr``, ``weight_decay``, ``seed``, ``rng``,
        ``optimizer``, ``grad_scaler``, and ``weights``: the last step's, when the returned
        weights are the best validated ones of an earlier step), at the last step run.
    history : dict of lists
        One entry per step of this call under ``step``, ``loss``, ``lr``, ``seconds``; one entry per
        validation under ``val_step``, ``val_loss``, ``val_dice``, ``val_iou`` (mean over
        foreground classes), ``val_dice_per_class`` and ``val_iou_per_class`` (dicts
        class name -> score).

    Raises
    ------
    ValueError
        Mismatched shapes, empty arrays, NaN pixels, no foreground (or nothing painted),
        label values the model has no output for, bad settings.
    TrainingCancelled
        When ``cancel`` is set.
    TrainingFailed
        (a ValueError) When the loss or the weights stop being finite (``lr`` too high);
        ``err.model`` is the last good model, ``err.step`` the step.

    Examples
    --------
    >>> from napari_unet_stack.samples import load_sample
    >>> s = load_sample("nuclei_train")
    >>> model, history = train(s.image[:2], s.labels[:2], steps=2, patch_size=64,
    ...                        batch_size=2)  # doctest: +SKIP
    >>> more, _ = train(s.image[:2], s.labels[:2], model, resume=True, steps=2,
    ...                 patch_size=64, batch_size=2)  # doctest: +SKIP
    """
    gen = iter_train(images, labels, model, settings=settings, cancel=cancel, **options)
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(event.step, event.total, event.info)
