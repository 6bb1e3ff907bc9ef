"""What the widgets run in their worker threads, and the small pieces both share (no Qt here).

The worker bodies are generators: they yield the engine's progress events and *return*
an outcome instead of raising for expected failures (bad input, out of memory, cancel),
so the widget shows a clear notification; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..zcontext import z_context_of
from ._colours import instance_colours
from ._outputs import Undo
from ._redecode import decode_run
from ._store import ProbabilityStore

#: errors a run reports as a notification (anything else is a bug and keeps its traceback).
#: RuntimeError must never escape a worker generator: superqt's GeneratorWorker takes it for
#: a deleted worker and returns without emitting ``finished`` (the widget would stay busy).
EXPECTED_ERRORS = (ValueError, TypeError, OSError, MemoryError, RuntimeError)


def device_choices() -> list[str]:
    import torch

    choices = ["auto", "cpu"]
    choices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        choices.append("mps")
    return choices


@dataclass
class PredictJob:
    image: str
    data: Any
    channel_axis: int | None
    model: Any
    options: dict
    store: ProbabilityStore
    labels: np.ndarray  # semantic labels being filled
    labels_layer: Any  # the layer showing them, or None
    undo: Undo | None  # how to put the labels layer back as it was
    decoding: Any  # the InstanceOptions of the instance labels asked for, or None
    probability: bool
    geometry: dict
    cancel: threading.Event = field(default_factory=threading.Event)
    info: dict = field(default_factory=dict)
    instance_data: np.ndarray | None = None
    instance_colours: np.ndarray | None = None  # `_colours.instance_colours` of instance_data
    head: Any = None
    engine: Any = None  # the running iter_predict generator
    image_layer: Any = None  # the Image layer segmented (a run stops when it is removed)
    stopped: str | None = None  # why the widget cancelled the run, if it did

    def describe(self) -> tuple[str, str]:
        """(device used, status) of the finished run."""
        info = self.info
        tiles = "x".join(str(t) for t in info.get("tile_shape", ()))
        return (f"used: {info.get('device', '?')}, {info.get('precision', '?')}",
                f"{self.image}: {info.get('n_tiles', '?')} tile(s) of {tiles} in {info.get('seconds', 0):.1f} s")

    def close(self) -> None:
        """Close the engine's generator; call it from the worker thread (see `run_prediction`)."""
        if self.engine is not None:
            self.engine.close()


def run_prediction(job: PredictJob):
    """Worker body: yields `Progress`; returns ("done" | "cancelled" | "error", error).

    When napari's activity dock aborts the worker (``worker.quit()``) the generator is
    left suspended; the widget connects the worker's ``aborted`` signal to
    `PredictJob.close` with a direct connection, so the engine is closed (its prefetch
    thread shut down, its buffers freed) in the worker's own thread, at once. (The engine
    enters torch's thread-local inference mode per batch, never across a yield, so no
    thread is left in it either way.)
    """
    from ..inference import InferenceCancelled, iter_predict

    try:
        job.engine = iter_predict(job.data, job.model, channel_axis=job.channel_axis, out=job.store,
                                  cancel=job.cancel, info=job.info, **job.options)
        yield from job.engine
        if job.decoding is not None:  # the same decoding as a later re-decode (`run_decoding`)
            job.instance_data = decode_run(job.store, job.model, job.decoding, job.store.threshold, job.cancel,
                                           channel_axis=job.channel_axis)
            job.instance_colours = instance_colours(job.instance_data)
    except InferenceCancelled:
        return "cancelled", None
    except EXPECTED_ERRORS as err:
        return "error", err
    return "done", None


@dataclass
class DecodeJob:
    """Instance labels decoded again from a finished run's store (no network)."""

    store: ProbabilityStore
    model: Any
    options: Any  # InstanceOptions
    threshold: float
    layer: Any  # the instance layer the result goes to
    channel_axis: int | None = None  # the run's (the options' time axes are axes of its image)
    cancel: threading.Event = field(default_factory=threading.Event)
    answered: bool = False  # its outcome was handled (else it raised: a bug)

    def run(self):
        """The worker body (`run_decoding`)."""
        return run_decoding(self)

    def discard(self) -> None:
        """Its result is not shown: nothing to remove (it is in memory)."""


def run_decoding(job: DecodeJob):
    """Worker body: ("done", (ids, colours), None) | ("cancelled", None, None) | ("error", None, error)."""
    from ..inference import InferenceCancelled

    try:
        ids = decode_run(job.store, job.model, job.options, job.threshold, job.cancel, channel_axis=job.channel_axis)
        return "done", (ids, instance_colours(ids)), None
    except InferenceCancelled:
        return "cancelled", None, None
    except EXPECTED_ERRORS as err:
        return "error", None, err


def describe_model(model: Any, path: Any = None) -> str:
    """Architecture, classes and size of a model, for the info label."""
    n_params = sum(p.numel() for p in model.parameters())
    size = Path(path).stat().st_size if path and Path(path).is_file() else n_params * 4
    text = model.describe() if hasattr(model, "describe") else type(model).__name__
    classes = ", ".join(getattr(model, "class_names", []) or [])
    k = z_context_of(model)
    z = f"\nz context {k}: each slice with {k} above and below (2.5D)" if k else ""
    return f"{text}\nclasses: {classes}{z}\nsize: {size / 1e6:.1f} MB, halo {getattr(model, 'halo', '?')} px"


@dataclass
class TrainJob:
    name: str
    image: Any
    labels: np.ndarray
    model: Any
    options: dict
    cancel: threading.Event = field(default_factory=threading.Event)
    engine: Any = None  # the running iter_train generator
    stopped: str | None = None  # why the widget cancelled the run, if it did

    def close(self) -> None:
        """Close the trainer's generator from the worker thread (see `run_prediction`)."""
        if self.engine is not None:
            self.engine.close()


def run_training(job: TrainJob):
    """Worker body: yields `TrainProgress`; returns (status, model, history, error)."""
    from ..training import TrainingCancelled, iter_train

    try:
        job.engine = iter_train(job.image, job.labels, job.model, cancel=job.cancel, **job.options)
        model, history = yield from job.engine
    except TrainingCancelled as err:
        return "cancelled", err.model, err.history, err
    except EXPECTED_ERRORS as err:
        return "error", None, None, err
    return "done", model, history, None
