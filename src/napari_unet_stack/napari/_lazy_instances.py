"""Instance labels of a lazy Predict run: computed slice by slice into an on-disk store
(no Qt here).

Z links need the previous slice's ids, so instance labels cannot be computed on view like
the lazy semantic labels. With *lazy* and *instance labels* checked, Run also starts a
worker (`run_lazy_instances`) that computes them as ``segment(image, model,
instances=options, threshold=t, out=store)`` does: the engine's labels (an instance model's
marker maps) slice by slice into a zarr array in a temporary folder (``maps.zarr``, kept),
then the ids from them into a second one (``ids.zarr``; a slice and its neighbour held),
then the colours of touching objects slice by slice (`_colours.slice_touching_pairs`).
Memory stays a few slices whatever the stack's size: the stack's probabilities are never
held, and the image is read slice by slice (a dask or zarr layer is computed one slice at
a time). The ``<image> instances`` layer shows the ids array; the kept labels decode it
again, without the network, when a decoding option moves (`_lazy_decode`). Cancel stops
at the next batch of tiles or the next slice; the folder of a cancelled or failed run is
removed at once, the others when their layer leaves the viewer, is given a newer result,
or at exit (`Scratch`).

The folders are made under `tempfile.gettempdir` (``TMPDIR``): 4 bytes per pixel of disk
for the ids, the labels' dtype (1 byte for most models) for the kept labels, and 4 more
while a new decoding is written.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..postprocess import labels_rule
from ._colours import instance_colours
from ._jobs import EXPECTED_ERRORS
from ._lazy_decode import LazyInstances

__all__ = ["LazyInstanceJob", "Scratch", "run_lazy_instances"]


class Scratch:
    """Temporary folders holding the stores of instance layers, and what decodes them again
    (`LazyInstances`), by layer name."""

    def __init__(self) -> None:
        self.folders: dict[str, Path] = {}
        self.kept: dict[str, LazyInstances] = {}

    @staticmethod
    def make() -> Path:
        folder = Path(tempfile.mkdtemp(prefix="napari-unet-stack-instances-"))
        atexit.register(shutil.rmtree, folder, True)  # whatever happens to the layer
        return folder

    def adopt(self, name: str, folder: Path, kept: LazyInstances | None = None) -> None:
        """``folder`` (holding ``kept``) now backs layer ``name``; the folder that did before is removed."""
        old = self.folders.get(name)
        self.folders[name] = folder
        self.kept.pop(name, None)
        if kept is not None:
            self.kept[name] = kept
        if old is not None and old != folder:
            shutil.rmtree(old, ignore_errors=True)

    def release(self, name: str) -> None:
        """Layer ``name`` left the viewer or holds other data: its folder goes."""
        folder = self.folders.pop(name, None)
        self.kept.pop(name, None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class LazyInstanceJob:
    """A lazy run's instance labels (see the module docstring)."""

    image: str
    data: Any
    channel_axis: int | None
    model: Any
    options: dict  # predict options (tile_size, device, channel, ...)
    decoding: Any  # InstanceOptions
    threshold: float
    geometry: dict
    folder: Path
    image_layer: Any = None  # a run stops when it is removed
    head: Any = None  # the UNet++ head to put back
    cancel: threading.Event = field(default_factory=threading.Event)
    info: dict = field(default_factory=dict)
    ids: Any = None  # the zarr array of ids, once done
    kept: LazyInstances | None = None  # what decodes them again, once done
    colours: np.ndarray | None = None
    engine: Any = None
    stopped: str | None = None
    labels_layer: Any = None  # none: the semantic labels are the lazy layer's
    undo: Any = None

    def close(self) -> None:
        """Close the engine's generator (from the worker thread, see `_jobs.run_prediction`)."""
        if self.engine is not None:
            self.engine.close()

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def describe(self) -> tuple[str, str]:
        info = self.info
        top = 0 if self.colours is None else len(self.colours) - 1
        status = (f"{self.image}: lazy labels on view; {top} instance(s) computed slice by slice into "
                  f"{self.folder} in {info.get('seconds', 0):.1f} s")
        return f"used: {info.get('device', '?')}, {info.get('precision', '?')}", status


def run_lazy_instances(job: LazyInstanceJob):
    """Worker body: yields `Progress`; returns ("done" | "cancelled" | "error", error)."""
    from ..inference import InferenceCancelled, iter_segment
    from ..io import disk_array

    shape = tuple(n for ax, n in enumerate(job.data.shape)
                  if job.channel_axis is None or ax != job.channel_axis % len(job.data.shape))
    try:
        ids = disk_array(job.folder / "ids.zarr", shape, np.uint32 if np.prod(shape) < 2**32 else np.uint64)
        rule = labels_rule(job.model, job.decoding.resolve(job.model), job.threshold)
        maps = disk_array(job.folder / "maps.zarr", shape, rule.dtype)  # kept: decoded again later
        # the cancel stops the engine, then the decoding and the colours, before their next slice
        job.engine = iter_segment(job.data, job.model, instances=job.decoding, threshold=job.threshold,
                                  channel_axis=job.channel_axis, out=ids, labels_out=maps, cancel=job.cancel,
                                  info=job.info, **job.options)
        yield from job.engine
        job.colours = instance_colours(ids, by_slice=True, cancel=job.cancel)
        job.ids = ids
        job.kept = LazyInstances(maps, job.model, job.decoding, job.threshold, job.channel_axis, job.folder, ids,
                                 job.folder / "ids.zarr")
    except InferenceCancelled:
        job.discard()
        return "cancelled", None
    except EXPECTED_ERRORS as err:
        job.discard()
        return "error", err
    except BaseException:
        job.discard()
        raise
    return "done", None
