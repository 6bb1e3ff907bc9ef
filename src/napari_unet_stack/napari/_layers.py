"""Layer helpers without Qt: what goes into the network from an Image layer, and the
geometry a result needs to lie on its image (the re-threshold store is `_store`)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "METADATA_KEY",
    "channel_axis_for",
    "channel_choices",
    "channel_picks",
    "check_channels",
    "given_channels",
    "image_input",
    "leading_axes",
    "output_geometry",
    "spatial_shape",
    "time_axes",
    "z_axis_for",
]

#: key in ``layer.metadata`` that marks layers this plugin made (and what made them)
METADATA_KEY = "napari-unet-stack"


def image_input(layer: Any, channel_axis: int | None) -> tuple[Any, int | None]:
    """The array and channel axis to feed the engine for an Image layer.

    RGB(A) layers have their colour on the last axis (``channel_axis=-1``, whatever is
    passed). Multiscale layers are segmented at full resolution (level 0).
    """
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    if getattr(layer, "rgb", False):
        return data, -1
    if channel_axis is not None:
        ndim = len(data.shape)
        if not -ndim <= channel_axis < ndim:
            raise ValueError(f"channel axis {channel_axis} is out of range for an image of shape {data.shape}")
        channel_axis = channel_axis % ndim
        if ndim - 1 < 2:
            raise ValueError(f"an image of shape {data.shape} has no Y, X axes besides channel axis {channel_axis}")
    return data, channel_axis


def channel_choices(layer: Any) -> list[tuple[str, int | None]]:
    """(text, axis) choices of a widget's "channel axis" for an Image layer (or None).

    RGB(A) layers offer only their last axis; other layers "none" and each axis of at most
    64 entries (an image of 2 dimensions has no room for one).
    """
    if layer is None:
        return [("none", None)]
    if getattr(layer, "rgb", False):
        return [(f"RGB{'A' if layer.data.shape[-1] == 4 else ''} (last axis)", -1)]
    shape = image_input(layer, None)[0].shape
    axes = [(f"axis {ax} ({n})", ax) for ax, n in enumerate(shape) if len(shape) > 2 and n <= 64]
    return [("none", None), *axes]


def channel_axis_for(layer: Any, in_channels: int | None) -> int | None:
    """The last axis of a plain (not RGB) layer with ``in_channels`` entries (the image
    channels a model reads, `zcontext.image_channels`), for a model with several; None when
    there is none (or nothing to choose)."""
    if layer is None or getattr(layer, "rgb", False) or in_channels is None or in_channels == 1:
        return None
    shape = image_input(layer, None)[0].shape
    matches = [ax for ax, n in enumerate(shape) if n == in_channels]
    return matches[-1] if matches else None


def given_channels(layer: Any, channel_axis: int | None) -> int:
    """How many channels ``layer`` has with ``channel_axis`` (RGB: its colours; 1 without
    an axis, or with an axis that does not fit the image: Run reports that)."""
    if layer is None:
        return 1
    try:
        data, axis = image_input(layer, channel_axis)
    except ValueError:
        return 1
    return 1 if axis is None else int(data.shape[axis])


def channel_picks(n_channels: int, *, every: bool) -> list[tuple[str, int | str | None]]:
    """(text, choice) of a widget's "channel": each channel and their mean (the choices of
    `napari_unet_stack.channels`), after "all" (None) when ``every``; only "all" for one."""
    if n_channels <= 1:
        return [("all", None)]
    picks = [*((f"channel {k}", k) for k in range(n_channels)), ("mean", "mean")]
    return [("all", None), *picks] if every else picks


def check_channels(layer: Any, data: Any, channel_axis: int | None, model: Any, channel: Any = None) -> None:
    """Raise ValueError, naming the layer, when its channels (or the ``channel`` chosen of
    them) do not fit ``model``'s input (per slice: a z-context model's input channels over
    its 2k + 1 slices, `zcontext.image_channels`)."""
    from ..channels import check_channel
    from ..zcontext import image_channels, per_slice

    wanted = image_channels(model)
    per = per_slice(model)
    given = 1 if channel_axis is None else int(data.shape[channel_axis])
    name = getattr(layer, "name", "image")
    if channel is not None:
        check_channel(channel, given, wanted, channel_axis=channel_axis, where=f"image {name!r}")
        return
    if wanted is None or given == wanted:
        return
    if getattr(layer, "rgb", False):
        kind = "RGBA" if given == 4 else "RGB"
        hint = ("; add it without its alpha channel (viewer.add_image(layer.data[..., :3]))"
                if given == 4 and wanted == 3 else "")
        if wanted == 1:
            hint = "; choose one of its channels (or their mean) under 'channel'"
        raise ValueError(f"image {name!r} is {kind} ({given} channels) but the model expects {wanted}{per}{hint}")
    where = "no channel axis chosen" if channel_axis is None else f"channel axis {channel_axis}"
    fits = [ax for ax, n in enumerate(data.shape) if n == wanted and ax < len(data.shape) - 2]
    hint = f"; choose channel axis {fits[-1]}" if fits else ""
    if wanted == 1 and given > 1:
        hint = "; choose one of its channels (or their mean) under 'channel'"
    raise ValueError(f"the model expects {wanted} input channel(s){per} but image {name!r} (shape {tuple(data.shape)}, "
                     f"{where}) has {given}{hint}")


def spatial_shape(shape: tuple[int, ...], channel_axis: int | None) -> tuple[int, ...]:
    """``shape`` without the channel axis."""
    if channel_axis is None:
        return tuple(shape)
    channel_axis %= len(shape)
    return tuple(n for ax, n in enumerate(shape) if ax != channel_axis)


def output_geometry(layer: Any, channel_axis: int | None) -> dict[str, Any]:
    """scale, translate, axis_labels, units, rotate, shear and affine of ``layer`` for a
    result without channels (so that the result lies on the image in the viewer).

    For RGB layers napari already leaves the colour axis out; for a channel axis of a
    plain layer that axis is dropped (its row and column of the matrices too).
    """
    keys = ("scale", "translate", "axis_labels", "units")
    values: dict[str, Any] = {key: list(getattr(layer, key)) for key in keys if hasattr(layer, key)}
    matrices = {key: m for key in ("rotate", "shear", "affine") if (m := _matrix(layer, key)) is not None}
    if channel_axis is not None and not getattr(layer, "rgb", False):
        axis = channel_axis % layer.ndim
        values = {key: [v for ax, v in enumerate(seq) if ax != axis] for key, seq in values.items()}
        matrices = {key: np.delete(np.delete(m, axis, axis=0), axis, axis=1) for key, m in matrices.items()}
    if "units" in values:
        values["units"] = [str(u) for u in values["units"]]
    return {**values, **matrices}


def _matrix(layer: Any, key: str) -> np.ndarray | None:
    """``layer``'s rotate / shear / affine as a matrix (shear as given napari takes a vector)."""
    value = getattr(layer, key, None)
    if value is None:
        return None
    value = np.asarray(getattr(value, "affine_matrix", value), dtype=np.float64)  # affine: a transform
    if key == "shear" and value.ndim == 1:
        from napari.utils.transforms.transform_utils import shear_to_matrix

        value = shear_to_matrix(value, ndim=layer.ndim)
    return value


def leading_axes(layer: Any, channel_axis: int | None) -> list[tuple[int, str]]:
    """(axis, axis label) of ``layer``'s leading axes: all but Y, X and the channel axis,
    numbered as the image's axes (`segment`'s ``time_axis``). ValueError for a channel axis
    that does not fit."""
    data, channel_axis = image_input(layer, channel_axis)
    ndim = len(data.shape)
    spatial = [a for a in range(ndim) if channel_axis is None or a != channel_axis % ndim]
    names = [str(n) for n in output_geometry(layer, channel_axis).get("axis_labels", ())]
    if len(names) != len(spatial):  # (a layer without axis labels)
        names = [str(a - ndim) for a in spatial]
    return list(zip(spatial[:-2], names[:-2], strict=True))


def time_axes(layer: Any, channel_axis: int | None) -> tuple[int, ...]:
    """The leading axes of ``layer`` whose axis labels say time (`io.axes.time_axes_of`:
    ``t`` or ``time``, any case), numbered as the image's axes (`segment`'s ``time_axis``)."""
    from ..io.axes import time_axes_of

    leading = leading_axes(layer, channel_axis)
    return tuple(leading[i][0] for i in time_axes_of([name for _axis, name in leading] + ["y", "x"]))


def z_axis_for(layer: Any, channel_axis: int | None, times: Any = None) -> int | None:
    """The axis of ``layer``'s image a z-context model reads each slice's neighbours along
    (`predict`'s ``z_axis``): its last leading axis that is not one of the time axes
    ``times`` (image axes, e.g. `time_axes`; None: none), so that neighbours are never read
    across time; None when there is no such axis (a 2D image, or only time axes)."""
    from ..zcontext import z_lead

    if layer is None:
        return None
    leading = [axis for axis, _name in leading_axes(layer, channel_axis)]
    times = () if times is None else (times,) if np.isscalar(times) else tuple(times)
    z = z_lead(len(leading), [i for i, axis in enumerate(leading) if axis in {int(t) for t in times}])
    return None if z is None else leading[z]

