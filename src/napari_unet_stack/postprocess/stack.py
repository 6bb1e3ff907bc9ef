"""Instance labels of a whole array, slice by slice into ``out``.

Leading axes have roles: *time* axes (each index independent), one *Z* axis (objects of
neighbouring slices linked into one, unless ``ndim=2``) and any others (independent).
Only a slice and its neighbour are held at a time (plus one integer per object), so the
semantic input and ``out`` can be zarr arrays or memmaps, and ``out`` may be the semantic
array itself (each slice is read before it is overwritten). A ``cancel`` (the engine's: an
object with ``is_set()``) is checked before each slice is read and raises the engine's
`InferenceCancelled`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..labels import smallest_uint
from ..zcontext import z_lead
from .checks import check_decoding
from .linking import DEFAULT_LINK_OVERLAP, overlap_links, overlap_pairs, split_merged
from .slices import (
    DEFAULT_MIN_DISTANCE,
    DEFAULT_SMOOTHING,
    components_slice,
    marker_slice,
    watershed_slice,
)
from .zsplit import DEFAULT_Z_SPLIT, ZProfiles

__all__ = ["METHODS", "instance_labels", "slice_groups"]

#: How objects are found in a slice ('markers': an instance model's marker maps).
METHODS = ("watershed", "components", "markers")


def slice_groups(shape: Sequence[int], ndim: int | None = None, time_axes: Sequence[int] = ()
                 ) -> Iterator[list[tuple[int, ...]]]:
    """The slice indices of ``shape`` (..., Y, X), in groups whose objects are linked.

    Each group is one run along the Z axis (the last leading axis that is not a time
    axis) when ``ndim`` is 3, else a single slice. ``ndim=None``: 3 when there is a Z axis.
    """
    lead = tuple(int(s) for s in shape[:-2])
    times = {int(a) + (len(lead) if int(a) < 0 else 0) for a in time_axes}
    if any(not 0 <= a < len(lead) for a in times):
        raise ValueError(f"time axes {tuple(time_axes)} must be leading axes of the labels' shape {tuple(shape)}")
    spatial = [a for a in range(len(lead)) if a not in times]
    if ndim is None:
        ndim = 3 if spatial else 2
    if ndim not in (2, 3):
        raise ValueError(f"`ndim` (instance_ndim) must be 2 (per slice) or 3 (linked across Z), got {ndim}")
    if ndim == 3 and not spatial:
        raise ValueError(f"no Z axis to link over: the leading axes of {tuple(shape)} are all time axes (use 2)")
    z = z_lead(len(lead), times) if ndim == 3 else None
    others = [a for a in range(len(lead)) if a != z]
    for index in np.ndindex(*(lead[a] for a in others)):
        if z is None:
            yield [index]
            continue
        keys = []
        for k in range(lead[z]):
            key = list(index)
            key.insert(z, k)
            keys.append(tuple(key))
        yield keys


class _Ids:
    """The next free id, checked against the output dtype, each id's pixel count and the
    ids merged by a leftover join (a union-find forest: one integer per object); and the
    run's ``cancel``, checked by `read` before each slice."""

    def __init__(self, dtype: np.dtype, cancel: Any = None):
        from ..inference.events import stop_if_cancelled  # here: inference imports this package

        self.cancel, self.stop = cancel, stop_if_cancelled
        self.next = 0
        self.limit = int(np.iinfo(dtype).max)
        self.dtype = dtype
        self.sizes = np.zeros(1024, np.int64)
        self.parent = np.arange(1024, dtype=np.int64)
        self.merged = False

    def read(self, array: Any, key: tuple[int, ...], *, copy: bool = False) -> np.ndarray:
        """``array[key]`` (a copy with ``copy``), unless the run is cancelled."""
        self.stop(self.cancel, "instance decoding")
        return np.array(array[key]) if copy else np.asarray(array[key])

    def take(self, n: int) -> np.ndarray:
        ids = np.arange(self.next + 1, self.next + n + 1, dtype=np.int64)
        self.next += n
        if self.next > self.limit:
            raise ValueError(f"`out` (dtype {self.dtype}) cannot hold {self.next} instance labels")
        if self.next >= len(self.parent):
            grown = np.arange(2 * self.next + 1, dtype=np.int64)
            grown[: len(self.parent)] = self.parent
            self.parent = grown
        return ids

    def count(self, labels: np.ndarray) -> np.ndarray:
        """Add ``labels``' pixel counts; return them (``np.bincount``: index = id)."""
        counts = np.bincount(labels.ravel())
        self.add_sizes(counts)
        return counts

    def add_sizes(self, counts: np.ndarray, at: np.ndarray | None = None) -> None:
        """Pixel counts added to ids 0.. (or to the ids ``at``)."""
        top = len(counts) if at is None else int(at.max(initial=0)) + 1
        if top > len(self.sizes):
            self.sizes = np.concatenate([self.sizes, np.zeros(2 * top, np.int64)])
        if at is None:
            self.sizes[: len(counts)] += counts
        else:
            np.add.at(self.sizes, at, counts)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = int(self.parent[root])
        while self.parent[i] != root:  # path compression
            self.parent[i], i = root, int(self.parent[i])
        return root

    def union(self, i: int, j: int) -> None:
        """One object of ids ``i`` and ``j`` (the smaller root stays)."""
        i, j = self.find(int(i)), self.find(int(j))
        if i != j:
            self.parent[max(i, j)] = min(i, j)
            self.merged = True

    def roots(self) -> np.ndarray:
        """Each id's root, for ids 0..next."""
        parent = self.parent[: self.next + 1].copy()
        while True:  # pointer jumping: parents always point to smaller ids
            up = parent[parent]
            if np.array_equal(up, parent):
                return parent
            parent = up


def instance_labels(semantic: Any, *, ndim: int | None = None, method: str = "watershed", min_size: int = 0,
                    min_distance: int = DEFAULT_MIN_DISTANCE, smoothing: float = DEFAULT_SMOOTHING,
                    link_overlap: float = DEFAULT_LINK_OVERLAP, z_split: float = DEFAULT_Z_SPLIT,
                    time_axes: Sequence[int] = (), out: Any = None, cancel: Any = None) -> Any:
    """Instance labels (each object its own id, unique over the array) from semantic labels.

    Parameters
    ----------
    semantic : (..., Y, X) integer array_like
        0 is background, each other value a class (numpy, memmap or zarr: read slice by
        slice); for 'markers', an instance model's marker maps (0 / 1 / 2, see
        `napari_unet_stack.postprocess.marker_slice`).
    ndim : {None, 2, 3}
        2: objects per slice. 3: objects of neighbouring slices along Z linked into one.
        None: 3 when there is a Z axis (a leading axis that is not a time axis).
    method : {'watershed', 'components'}
        'watershed': each slice's foreground split by a watershed of its distance
        transform (touching objects separated), objects linked across Z by overlap (see
        ``link_overlap``). 'components': connected components (4-connected in a slice;
        with ``ndim=3`` the 3D 6-connected components). 'markers': each slice's markers
        grown into its foreground (`marker_slice`), linked like 'watershed'; an object
        holding two or more objects of the slice before is first split along them
        (`napari_unet_stack.postprocess.split_merged`).
    min_size : int
        Objects (over all their slices) with fewer pixels become 0.
    min_distance, smoothing : int, float
        The watershed's markers: see `napari_unet_stack.postprocess.watershed_slice`.
    link_overlap : float
        Z links of 'watershed' and 'markers', in (0, 1]: objects of neighbouring slices
        are one when the smaller lies at least this much inside the other (shared pixels
        over its area), one to one; an object left over that lies this much inside one
        of the neighbouring slice joins it (a split-off piece, a second cap). See
        `napari_unet_stack.postprocess.overlap_links`.
    z_split : float
        'watershed' and 'markers' with Z links, in [0, 1): a linked object is cut where its
        cross-section shrinks below this fraction of its largest ones above and below
        (two nuclei stacked in Z; each part at least 2 slices); 0: never. See
        `napari_unet_stack.postprocess.z_cuts`.
    time_axes : sequence of int
        Leading axes that are time: never linked, each index labelled on its own.
    out : integer array_like, optional
        Written slice by slice (may be ``semantic`` itself) and returned.
    cancel : object with ``is_set()``, optional
        Checked before each slice is read (every pass); when set, `InferenceCancelled`.

    Returns
    -------
    labels : ndarray or ``out``
        Without ``out``, in the smallest unsigned dtype holding the ids.

    Raises
    ------
    InferenceCancelled
        When ``cancel`` is set: nothing is returned and ``out`` is partial (as the engine
        leaves it), so keep it only from a call that returned.
    """
    shape = tuple(semantic.shape)
    _check(method, min_size, min_distance, smoothing, link_overlap, z_split)
    from ..inference.events import check_run_options  # here: inference imports this package

    check_run_options(None, cancel)
    groups = list(slice_groups(shape, ndim, time_axes))
    target = np.zeros(shape, np.uint32 if np.prod(shape) < 2**32 else np.uint64) if out is None else out
    if out is not None and (tuple(out.shape) != shape or np.dtype(out.dtype).kind not in "ui"):
        raise ValueError(f"`out` must be an integer array of shape {shape}, got {out.dtype} {tuple(out.shape)}")
    ids = _Ids(np.dtype(target.dtype), cancel)
    profiles = []
    for keys in groups:
        if method == "components":
            _components(semantic, target, keys, ids, min_size)
            continue
        profile = ZProfiles() if z_split > 0 and len(keys) >= 2 else None
        _linked(semantic, target, keys, ids, method, (min_distance, smoothing, link_overlap), profile)
        if profile is not None:
            profiles.append(profile)
    moves = _z_split(profiles, ids, z_split)
    if method != "components" and (min_size > 0 or ids.merged or moves):
        _finish(target, [k for keys in groups for k in keys], ids, min_size, moves)
    if out is not None:
        return out
    return target.astype(smallest_uint(ids.next), copy=False)


def _check(method: str, min_size: int, min_distance: int, smoothing: float, link_overlap: float,
           z_split: float) -> None:
    if method not in METHODS:
        raise ValueError(f"instance method must be one of {METHODS}, got {method!r}")
    check_decoding(min_size, min_distance, smoothing, link_overlap, z_split=z_split)


def _z_split(profiles: list[ZProfiles], ids: _Ids, ratio: float) -> dict:
    """The cuts of every group's Z-linked objects (`zsplit`): {slice key: (root ids, new
    ids)}; the new objects' pixels are moved in ``ids``' counts."""
    if not profiles:
        return {}
    roots = ids.roots()
    moves = {}
    for profile in profiles:
        found, moved = profile.cuts(roots, ratio, ids.take)
        if len(moved):
            new, origin, pixels = moved.T
            ids.add_sizes(pixels, new)
            ids.add_sizes(-pixels, origin)  # the object the parts left keeps the rest
            moves.update(found)
    return moves


def _linked(semantic, out, keys, ids: _Ids, method: str, params, profile: ZProfiles | None = None) -> None:
    """One group in one pass: each slice's objects take the ids of their overlap links;
    a leftover object of the previous slice joining one of this slice is recorded in ``ids``
    (merged by `_finish`); ``profile`` records each slice's areas (for `_z_split`)."""
    min_distance, smoothing, link_overlap = params
    prev = prev_sem = None
    for key in keys:
        sem = ids.read(semantic, key, copy=True)  # kept after ``out[key]`` is written: ``out`` may be ``semantic``
        if method == "markers":
            local, n = marker_slice(sem)
            sem = (sem > 0).astype(np.uint8)  # one class: markers and the rest of an object link alike
            if prev is not None and n:
                local, n = split_merged(local, sem, n, prev, prev_sem, link_overlap)
        else:
            local, n = watershed_slice(sem, min_distance=min_distance, smoothing=smoothing)
        lut = np.zeros(n + 1, np.int64)
        fresh = np.ones(n + 1, bool)
        fresh[0] = False
        links = None
        if prev is not None and n:
            links = overlap_links(prev, prev_sem, local, sem, link_overlap)
            lut[links.cur] = links.prev
            fresh[links.cur] = False
        lut[fresh] = ids.take(int(fresh.sum()))
        if links is not None:
            for joined, into in zip(links.joined.tolist(), lut[links.into].tolist(), strict=True):
                ids.union(joined, into)
        labels = lut[local]
        out[key] = labels
        counts = ids.count(labels)
        if profile is not None:
            profile.add(key, counts)
        prev, prev_sem = labels, sem


def _components(semantic, out, keys, ids: _Ids, min_size: int) -> None:
    """One group in two passes: unions of overlapping components, then the final ids."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    offsets, sizes, edges = [], [], []
    total, prev, prev_sem = 0, None, None
    for key in keys:
        sem = ids.read(semantic, key)
        local, n = components_slice(sem)
        provisional = np.where(local > 0, local + total, 0)
        if prev is not None:
            a, b, _ = overlap_pairs(prev, prev_sem, provisional, sem)
            edges.append((a - 1, b - 1))
        offsets.append(total)
        sizes.append(np.bincount(local.ravel(), minlength=n + 1)[1:])
        total += n
        prev, prev_sem = provisional, sem
    a = np.concatenate([e[0] for e in edges]) if edges else np.zeros(0, np.int64)
    b = np.concatenate([e[1] for e in edges]) if edges else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(total, total))
    n_sets, sets = connected_components(graph, directed=False)
    set_sizes = np.bincount(sets, weights=np.concatenate(sizes) if sizes else None, minlength=n_sets)
    keep = set_sizes >= min_size
    final = np.zeros(n_sets, np.int64)
    final[keep] = ids.take(int(keep.sum()))
    lut = np.concatenate([[0], final[sets]])
    for key, offset in zip(keys, offsets, strict=True):
        local, _ = components_slice(ids.read(semantic, key))
        out[key] = lut[np.where(local > 0, local + offset, 0)]


def _finish(out, keys, ids: _Ids, min_size: int, moves: dict | None = None) -> None:
    """Joined ids merged, cut objects' parts moved to their new ids (``moves``, per slice),
    objects under ``min_size`` pixels -> 0, the others renumbered 1..n in order (of their
    smallest id): a second pass over ``out``, slice by slice."""
    moves = moves or {}
    roots = ids.roots()
    counts = np.zeros(len(roots), np.int64)
    counts[: min(len(roots), len(ids.sizes))] = ids.sizes[: len(roots)]
    sizes = np.bincount(roots, weights=counts, minlength=len(roots))
    keep = (roots == np.arange(len(roots))) & (sizes >= min_size)
    keep[0] = False
    number = np.zeros(len(roots), np.int64)
    number[keep] = np.arange(1, int(keep.sum()) + 1)
    lut = number[roots]
    for key in keys:
        old = ids.read(out, key)
        if key not in moves:
            out[key] = lut[old]
            continue
        objects = roots[old]
        src, dst = moves[key]
        order = np.argsort(src)
        at = np.clip(np.searchsorted(src[order], objects), 0, len(src) - 1)
        hit = src[order][at] == objects
        objects[hit] = dst[order][at[hit]]
        out[key] = number[objects]
    ids.next = int(keep.sum())
