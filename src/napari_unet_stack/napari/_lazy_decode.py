"""Decoding a lazy run's instance layer again without the network (no Qt here).

A lazy instance run (`_lazy_instances`) keeps, beside the ids, what they are decoded from:
the engine's labels of each slice (an instance model's marker maps, else the semantic
labels; ``iter_segment(..., labels_out=...)``), in ``maps.zarr`` of the run's temporary
folder (1 byte a pixel for most models). `LazyInstances` is that record. When a decoding
option moves, `run_lazy_decoding` (the worker body) decodes the kept labels with the new
options, slice by slice (`InstanceOptions.apply`, as `segment` decodes them), into a new
ids array in the same folder, then colours them slice by slice: memory stays a slice and
its neighbour, whatever the stack's size, and the result equals a new lazy run with those
options. The widget swaps the layer's data and the old ids array goes
(`LazyInstances.adopt`); a cancelled or failed decode removes its own array and leaves the
layer as it was.

What the kept labels cannot answer: a new threshold, another marker threshold, or a
change between an instance model's own decoding ('markers', its marker maps) and the
others (its labels). These change the labels themselves, made from the probabilities that
a lazy run does not keep (`LazyInstances.needs_network` says which, for the status line):
Run computes them again.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..postprocess import InstanceOptions, labels_rule
from ._colours import instance_colours
from ._jobs import EXPECTED_ERRORS

__all__ = ["LazyDecodeJob", "LazyInstances", "run_lazy_decoding"]


def _rule_key(model: Any, options: InstanceOptions, threshold: float) -> tuple:
    """What the labels the decoding reads depend on: their rule (`labels_rule`)."""
    rule = labels_rule(model, options.resolve(model), threshold)
    return rule.threshold, rule.marker, rule.marker_threshold


@dataclass
class LazyInstances:
    """A finished lazy instance run, kept to decode it again (see the module docstring)."""

    maps: Any  # the zarr array of the engine's labels (marker maps), in ``folder``
    model: Any
    decoding: InstanceOptions  # the options they were decoded with
    threshold: float
    channel_axis: int | None  # of the image (the options' time axes are its axes)
    folder: Path
    ids: Any  # the zarr array of ids shown
    ids_path: Path

    def needs_network(self, options: InstanceOptions, threshold: float) -> str | None:
        """What of ``options`` and ``threshold`` the kept labels cannot decode (None: nothing)."""
        before = _rule_key(self.model, self.decoding, self.threshold)
        after = _rule_key(self.model, options, threshold)
        if before == after:
            return None
        if before[0] != after[0]:
            return "a new threshold"
        return "another marker threshold" if before[1] == after[1] else "a change to or from the model's markers"

    def job(self, options: InstanceOptions, layer: Any) -> LazyDecodeJob:
        """The job decoding the kept labels with ``options`` into a new array of ``folder``."""
        return LazyDecodeJob(self, options, layer, self.folder / f"ids-{uuid.uuid4().hex[:12]}.zarr")

    def adopt(self, job: LazyDecodeJob) -> None:
        """``job``'s ids are shown now: they replace the ids kept, whose array goes."""
        old, self.ids, self.ids_path, self.decoding = self.ids_path, job.ids, job.path, job.options
        if old != job.path:
            shutil.rmtree(old, ignore_errors=True)


@dataclass
class LazyDecodeJob:
    """A lazy run's kept labels decoded again with ``options`` into ``path`` (no network)."""

    kept: LazyInstances
    options: InstanceOptions
    layer: Any  # the instance layer the result goes to
    path: Path  # the new ids array
    cancel: threading.Event = field(default_factory=threading.Event)
    answered: bool = False  # its outcome was handled (else it raised: a bug)
    ids: Any = None

    def run(self):
        """The worker body (`run_lazy_decoding`)."""
        return run_lazy_decoding(self)

    def discard(self) -> None:
        """The new array is not shown (cancelled, failed, or its layer gone): it goes."""
        if self.ids is not self.kept.ids:
            shutil.rmtree(self.path, ignore_errors=True)


def run_lazy_decoding(job: LazyDecodeJob):
    """Worker body: ("done", (ids, colours), None) | ("cancelled", None, None) | ("error", None, error);
    the new array is removed unless done."""
    from ..inference import InferenceCancelled
    from ..io import disk_array

    kept = job.kept
    shape = tuple(kept.maps.shape)
    try:
        resolved = job.options.resolve(kept.model)
        time_axes = job.options.time_axes(len(shape) + (kept.channel_axis is not None), kept.channel_axis)
        ids = disk_array(job.path, shape, np.uint32 if np.prod(shape) < 2**32 else np.uint64)
        resolved.apply(kept.maps, time_axes, out=ids, cancel=job.cancel)
        colours = instance_colours(ids, by_slice=True, cancel=job.cancel)
        job.ids = ids
        return "done", (ids, colours), None
    except InferenceCancelled:
        job.discard()
        return "cancelled", None, None
    except EXPECTED_ERRORS as err:
        job.discard()
        return "error", None, err
    except BaseException:
        job.discard()
        raise
