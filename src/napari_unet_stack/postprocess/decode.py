"""Instances from probabilities already computed (re-decoding without the network).

`decode_probabilities` turns ``predict``'s output into the instance labels ``segment(...,
instances=options)`` gives: each slice's labels (or an instance model's marker map) by the
one rule (`napari_unet_stack.labels.LabelRule`), then `InstanceOptions.apply`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..labels import LabelRule, smallest_uint
from .options import InstanceOptions, model_instances

__all__ = ["decode_probabilities", "labels_rule"]


def labels_rule(model: Any, options: InstanceOptions, threshold: float | None = None, n_channels: int | None = None
                ) -> LabelRule:
    """The rule turning ``model``'s probabilities into what ``options`` (resolved) decode:
    an instance model's marker maps for 'markers', else its labels."""
    rule = LabelRule.for_model(model, threshold, n_channels=n_channels)
    if not options.markers:
        return rule
    info = model_instances(model)
    if info is None:
        raise ValueError("`instances='markers'` needs an instance model (trained with instances=True)")
    return rule.with_markers(int(info["classes"]["interior"]), options.marker_threshold)


def decode_probabilities(probabilities: Any, model: Any, options: InstanceOptions | bool | str = True, *,
                         threshold: float | None = None, time_axes: Sequence[int] = (), out: Any = None,
                         cancel: Any = None) -> Any:
    """Instance labels of ``probabilities`` (K, ..., Y, X) of ``model``, as `segment` decodes.

    Parameters
    ----------
    probabilities : (K, ..., Y, X) float array_like
        `predict`'s output (numpy, memmap or zarr: read slice by slice).
    model : SegmentationNetwork
        The model that gave them (its activation, class values and ``meta["instances"]``).
    options : InstanceOptions, True or a method name
        How to decode (resolved against ``model``: True is the model's own decoding).
    threshold : float or None
        The foreground threshold, as ``segment(threshold=...)`` (None: the model's own).
    time_axes : sequence of int
        Axes of the *labels* (the probabilities without their class axis) that are time.
    out : integer array_like, optional
        (..., Y, X): written slice by slice and returned.
    cancel : object with ``is_set()``, optional
        The engine's ``cancel`` (e.g. a `threading.Event`): checked before each slice is
        read, in every pass; when set, `InferenceCancelled`.

    Returns
    -------
    labels : ndarray or ``out``
        Equal to ``segment(image, model, instances=options, threshold=threshold)`` when
        ``probabilities`` is ``predict(image, model)``.

    Raises
    ------
    InferenceCancelled
        When ``cancel`` is set: nothing is returned; ``out`` is partial, as the engine
        leaves it (keep it only from a call that returned).
    """
    opts = options if isinstance(options, InstanceOptions) else InstanceOptions.from_instances(options)
    if opts is None:
        raise ValueError("`options` must be an InstanceOptions, True or a method name, got False")
    opts = opts.resolve(model)
    shape = tuple(probabilities.shape[1:])
    rule = labels_rule(model, opts, threshold, n_channels=int(probabilities.shape[0]))
    opts.check(shape, tuple(time_axes))
    # imported here: the inference package imports this one
    from ..inference.events import check_run_options, stop_if_cancelled

    check_run_options(None, cancel)
    work = np.zeros(shape, np.uint32 if np.prod(shape) < 2**32 else np.uint64) if out is None else out
    for lead in np.ndindex(*shape[:-2]):
        stop_if_cancelled(cancel, "instance decoding")
        work[lead] = rule.labels(np.asarray(probabilities[(slice(None), *lead)]))
    opts.apply(work, tuple(time_axes), out=work, cancel=cancel)
    if out is not None:
        return out
    return work.astype(smallest_uint(int(work.max(initial=0))), copy=False)
