"""Training data: validation at the door, normalization, the validation split, patches.

Images and labels become a list of `Slice` objects: one 2D slice each, its image
normalized exactly as inference will normalize it (fitted on the whole slice, or the whole
stack for ``scope="stack"``, before any patch is cut), and its target as class indices
with ``IGNORE`` (-1) where a pixel does not count.

Label conventions
-----------------
dense (``sparse=False``)
    Every pixel counts. 0 is background, 1..K-1 are classes (softmax models); for a
    single-channel sigmoid model 0/1; for a K-channel sigmoid (multilabel) model 0 is
    "no channel" and value k + 1 trains channel k.
sparse (``sparse=True``, what people paint in napari)
    0 means *unlabelled* and is ignored; a painted value v means class v - 1. So paint
    background with 1 and nuclei with 2 (for a 2-class model). Slices with no painted
    pixel are skipped.

When a model carries ``meta["class_values"]`` (e.g. an imported checkpoint whose masks
used 0/255), dense label values are looked up there.

Z context (``z_context`` = k > 0, `napari_unet_stack.zcontext`): each slice's image is the
slice and its k neighbours on either side along the image's Z axis, found as `predict`
finds it (`zcontext.context_lead`: ``z_axis``, by default the last leading axis that is
not a time axis), each normalized as inference normalizes it, ends repeated; a slice with
no Z axis (a 2D image, a stack of time points) is its own neighbours. Validation slices
keep their neighbours' pixels as inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..channels import check_channel, pick_channels
from ..normalization import apply_normalization, fit_normalization, validate_normalization
from ..zcontext import context_lead, neighbour_leads, per_slice, stack_context, z_context_of
from .classes import (
    binary_or_checked,
    describe_capacity,
    integer_labels,
    label_capacity,
    to_targets,
)
from .strokes import few_slices, split_strokes

__all__ = [
    "IGNORE",
    "PreparedData",
    "Slice",
    "check_capacity",
    "describe_capacity",
    "index_centres",
    "label_capacity",
    "prepare_data",
    "split_validation",
]

IGNORE = -1
#: at most this many candidate crop centres are remembered per slice
_MAX_CENTRES = 200_000


@dataclass
class Slice:
    """One 2D training slice: normalized image ``(C, H, W)`` float32 and target ``(H, W)``."""

    image: np.ndarray
    target: np.ndarray  # int16/int32 class indices, IGNORE where unlabelled
    source: tuple[int, tuple[int, ...]]  # (index in the input list, leading index)
    centres: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # flat indices
    instances: np.ndarray | None = None  # (H, W) instance ids, when training an instance model

    @property
    def shape(self) -> tuple[int, int]:
        return self.target.shape

    @property
    def n_labelled(self) -> int:
        return int(np.count_nonzero(self.target >= 0))


@dataclass
class PreparedData:
    slices: list[Slice]
    in_channels: int
    n_targets: int  # number of class indices seen in the targets' space (max index + 1)
    shapes: list[tuple[int, ...]]  # input image shapes, for provenance
    dtypes: list[str]
    normalization: dict


# ----------------------------------------------------------------------------- validation
def _as_list(value: Any, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"`{name}` is an empty list; pass at least one array")
        return list(value)
    return [value]


def _as_array(value: Any, name: str) -> np.ndarray:
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise TypeError(
            f"`{name}` must be an array (numpy, dask, zarr), got {type(value).__name__}"
        )
    arr = np.asarray(value)
    if arr.dtype.kind not in "uifb":
        raise TypeError(f"`{name}` must have a real integer or float dtype, got {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"`{name}` is empty (shape {arr.shape})")
    return arr


def _channel_first(image: np.ndarray, channel_axis: int | None, name: str) -> np.ndarray:
    """(..., Y, X) with ``channel_axis`` -> (C, N, Y, X)."""
    if channel_axis is None:
        if image.ndim < 2:
            raise ValueError(
                f"`{name}` must have at least 2 dimensions (Y, X), got shape {image.shape}"
            )
        image = image[None]
    else:
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
            raise TypeError(f"`channel_axis` must be an int or None, got {channel_axis!r}")
        if not -image.ndim <= channel_axis < image.ndim:
            raise ValueError(
                f"`channel_axis={channel_axis}` is out of range for `{name}` of shape {image.shape}"
            )
        if image.ndim < 3:
            raise ValueError(
                f"`{name}` with `channel_axis={channel_axis}` must have at least 3 dimensions "
                f"(C, Y, X), got shape {image.shape}"
            )
        image = np.moveaxis(image, int(channel_axis) % image.ndim, 0)
    c, h, w = image.shape[0], image.shape[-2], image.shape[-1]
    return image.reshape(c, -1, h, w)


def _checked_pair(
    img: Any, lab: Any, names: tuple[str, str], channel_axis: int | None, channel: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, labels, channel-first image ``(C, N, Y, X)``: the ``channel`` choice of
    `napari_unet_stack.channels`), their shapes and pixels checked."""
    iname, lname = names
    img = _as_array(img, iname)
    lab = _as_array(lab, lname)
    chw = _channel_first(img, channel_axis, iname)
    if channel is not None:
        choice = check_channel(channel, chw.shape[0], channel_axis=channel_axis, where=f"`{iname}`")
        chw = pick_channels(chw, choice)
    spatial = tuple(
        s for ax, s in enumerate(img.shape) if channel_axis is None or ax != int(channel_axis) % img.ndim
    )  # fmt: skip
    if lab.shape != spatial:
        raise ValueError(
            f"`{lname}` (shape {lab.shape}) must have the shape of `{iname}` without its channel "
            f"axis: {spatial} (image shape {img.shape}, channel_axis={channel_axis})"
        )
    if img.dtype.kind == "f" and not np.isfinite(img).all():
        n_bad = int(np.count_nonzero(~np.isfinite(img)))
        raise ValueError(
            f"`{iname}` (shape {img.shape}) contains {n_bad} NaN or infinite pixel(s); "
            f"replace them (e.g. np.nan_to_num) before training"
        )
    return img, lab, chw


def _slices_of(
    chw: np.ndarray, targets: np.ndarray, lead_shape: tuple[int, ...], index: int, *,
    norm: dict, sparse: bool, z_context: int = 0, z_lead: int | None = None,
) -> list[Slice]:  # fmt: skip
    """One image's `Slice` objects, each normalized as inference will (per slice or stack);
    with ``z_context``, each with its neighbours along leading axis ``z_lead`` (None: each
    slice is its own neighbour). Each plane is normalized once, whatever reads it."""
    stack_params = None
    if norm["scope"] == "stack":
        stack_params = fit_normalization(chw.reshape(chw.shape[0], -1), norm)
    normalized: dict[int, np.ndarray] = {}

    def plane(n: int) -> np.ndarray:
        if n not in normalized:
            params = stack_params if stack_params is not None else fit_normalization(chw[:, n], norm)
            normalized[n] = apply_normalization(chw[:, n], params)
        return normalized[n]

    out = []
    for n, lead in enumerate(np.ndindex(*lead_shape)):
        target = targets[n]
        if sparse and not (target >= 0).any():
            continue  # nothing painted on this slice
        if not z_context:
            image = plane(n)
        elif z_lead is None:  # no Z axis: the slice is its own neighbours
            image = stack_context([plane(n)] * (2 * z_context + 1))
        else:  # the planes lie in C order of the leading axes
            near = neighbour_leads(lead, lead_shape, z_lead, z_context)
            image = stack_context([plane(int(np.ravel_multi_index(m, lead_shape))) for m in near])
        dtype = np.int16 if target.max() < 2**15 else np.int32
        out.append(Slice(image, target.astype(dtype), (index, tuple(int(k) for k in lead))))
    return out


def _check_classes(slices: list[Slice], sparse: bool) -> None:
    """ValueError unless something is labelled and at least two classes are present."""
    if not slices:
        raise ValueError(
            "`labels` has no painted pixel (sparse=True: 0 means unlabelled; paint values >= 1)"
        )
    present = set()
    for s in slices:
        present.update(np.unique(s.target[s.target >= 0]).tolist())
    if len(present) < 2:
        if sparse:
            raise ValueError(
                f"`labels` has painted pixels of only one class (value {next(iter(present)) + 1}); "
                f"paint at least two (with sparse=True, 1 = background, 2 = first class, ...)"
            )
        raise ValueError(
            f"`labels` has no foreground: every pixel is {next(iter(present))}; dense labels need "
            f"0 for background and values >= 1 for objects"
        )


def _channel_count(pairs: list, names: list) -> int:
    """The images' common channel count, else ValueError naming the first that differs."""
    counts = [chw.shape[0] for _, _, chw in pairs]
    for (iname, _), n in zip(names, counts, strict=True):
        if n != counts[0]:
            raise ValueError(
                f"`{iname}` has {n} channel(s) but `images[0]` has {counts[0]}; "
                f"all images must have the same number of channels"
            )
    return int(counts[0])


def prepare_data(
    images: Any,
    labels: Any,
    *,
    channel_axis: int | None = None,
    channel: int | str | None = None,
    sparse: bool = False,
    normalization: dict,
    class_values: Sequence[int] | None = None,
    capacity: int | None = None,
    z_context: int = 0,
    z_axis: Any = "auto",
    time_axes: Sequence[int] = (),
) -> PreparedData:
    """Validate, normalize and convert images and labels into `Slice` objects.

    Raises ValueError / TypeError naming the argument, what was expected and what was
    received (with shapes) for: different numbers of images and labels, mismatched
    shapes, empty arrays, NaN or infinite pixels, non-integer or negative labels,
    inconsistent channel counts, no labelled pixel, fewer than two classes, more classes
    than a new model is built for. ``capacity``: the class indices the model holds (None:
    a model is to be built for these labels); a two-valued mask beyond it is binary (see
    `classes`). ``z_context``: the slices' neighbours on either side in each input, read
    along each image's ``z_axis`` (one for all, or a list of one per image) given its
    ``time_axes`` (image axes; see the module docstring: a ValueError naming the image
    when one is not a leading axis of it);
    ``in_channels`` then counts them all, (2k + 1) x the images' channels.
    """
    norm = validate_normalization(normalization)
    image_list = _as_list(images, "images")
    label_list = _as_list(labels, "labels")
    if len(image_list) != len(label_list):
        raise ValueError(
            f"`images` ({len(image_list)} arrays) and `labels` ({len(label_list)} arrays) "
            f"must have the same length"
        )
    single = len(image_list) == 1 and not isinstance(images, (list, tuple))
    names = [("images", "labels") if single else (f"images[{i}]", f"labels[{i}]")
             for i in range(len(image_list))]  # fmt: skip
    pairs = [_checked_pair(img, lab, where, channel_axis, channel)
             for img, lab, where in zip(image_list, label_list, names, strict=True)]  # fmt: skip
    in_channels = _channel_count(pairs, names)
    values = [
        integer_labels(lab, where[1]) for (_, lab, _), where in zip(pairs, names, strict=True)
    ]
    if class_values is None:
        values = binary_or_checked(values, sparse=sparse, capacity=capacity)
    z_axes = _per_image_z_axes(z_axis, len(pairs))
    slices: list[Slice] = []
    for i, ((img, lab, chw), lab_values) in enumerate(zip(pairs, values, strict=True)):
        z_lead = context_lead(img.shape, channel_axis, z_axes[i], time_axes, f"`{names[i][0]}`") if z_context else None
        targets = to_targets(lab_values, sparse=sparse, class_values=class_values, name=names[i][1])
        targets = targets.reshape(-1, *chw.shape[-2:])
        slices += _slices_of(chw, targets, lab.shape[:-2], i, norm=norm, sparse=sparse, z_context=z_context,
                             z_lead=z_lead)
    shapes = [tuple(img.shape) for img, _, _ in pairs]
    dtypes = [str(img.dtype) for img, _, _ in pairs]
    _check_classes(slices, sparse)
    n_targets = max(int(s.target.max()) for s in slices) + 1
    return PreparedData(slices, in_channels * (2 * z_context + 1), n_targets, shapes, dtypes, norm)


def _per_image_z_axes(z_axis: Any, n: int) -> list:
    """``z_axis`` (one for every image, or a list of one per image) as a list of ``n``."""
    if not isinstance(z_axis, (list, tuple)):
        return [z_axis] * n
    if len(z_axis) != n:
        raise ValueError(f"`z_axis` has {len(z_axis)} entries but there are {n} images: give one per image, "
                         "or one for all")
    return list(z_axis)


def check_capacity(data: PreparedData, model: Any, sparse: bool) -> None:
    """ValueError when the labels hold values the model has no output for."""
    capacity = label_capacity(model)
    if data.n_targets > capacity:
        top = data.n_targets if sparse else data.n_targets - 1
        raise ValueError(
            f"`labels` has values up to {top} but the model ({model.out_channels} output channel(s), "
            f"{model.activation}) holds {describe_capacity(model, sparse)}; build a model with more "
            f"classes (e.g. UNet(n_classes={data.n_targets if model.activation == 'softmax' else data.n_targets - 1}))"
        )
    if data.in_channels != int(model.in_channels):
        k = z_context_of(model)
        n, m = data.in_channels // (2 * k + 1), int(model.in_channels) // (2 * k + 1)
        raise ValueError(
            f"`images` have {n} channel(s) but the model takes {m}{per_slice(model)}; "
            f"check `channel_axis` (got the image shapes {data.shapes})"
            + (
                "; for a one-channel model pick one with channel=<index> or channel='mean'"
                if m == 1
                else ""
            )
        )


# ----------------------------------------------------------------------------- split
def split_validation(
    slices: list[Slice], val_fraction: float, rng: np.random.Generator, min_size: int, sparse: bool = False
) -> tuple[list[Slice], list[Slice]]:
    """Hold out ``val_fraction`` of the slices (seeded); a single slice is split by rows/columns.

    A single slice loses its last rows (or columns, for wide images) to validation, at
    least ``min_size`` pixels and as long as both parts keep labelled pixels; otherwise
    there is no validation set. Painted (``sparse``) labels on fewer slices than
    ``1 / val_fraction`` hold out strokes of every slice instead (`strokes.split_strokes`).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"`val_fraction` must be in [0, 1), got {val_fraction}")
    if val_fraction == 0:
        return list(slices), []
    n = len(slices)
    if sparse and few_slices(n, val_fraction):
        return split_strokes(slices, val_fraction, rng, IGNORE)
    if n >= 2:
        n_val = min(n - 1, max(1, round(n * val_fraction)))
        order = rng.permutation(n)
        val_idx = set(order[:n_val].tolist())
        return [s for k, s in enumerate(slices) if k not in val_idx], [
            slices[k] for k in sorted(val_idx)
        ]
    s = slices[0]
    h, w = s.shape
    axis = 0 if h >= w else 1
    size = (h, w)[axis]
    cut = size - max(min_size, round(size * val_fraction))
    if cut < min_size:
        return [s], []

    def part(sl: slice) -> Slice:
        index = (slice(None), sl) if axis == 1 else (sl,)
        ids = None if s.instances is None else s.instances[index]
        return Slice(s.image[(slice(None), *index)], s.target[index], s.source, instances=ids)

    train_part, val_part = part(slice(0, cut)), part(slice(cut, None))
    if train_part.n_labelled == 0 or val_part.n_labelled == 0:
        return [s], []
    return [train_part], [val_part]


def index_centres(slices: list[Slice], sparse: bool, rng: np.random.Generator) -> None:
    """Remember, per slice, pixels worth centring a patch on (painted, or foreground)."""
    for s in slices:
        flat = s.target.ravel()
        mask = flat >= 0 if sparse else flat > 0
        idx = np.flatnonzero(mask)
        if idx.size > _MAX_CENTRES:
            idx = np.sort(rng.choice(idx, _MAX_CENTRES, replace=False))
        s.centres = idx
