"""Objects of neighbouring slices matched by overlap: overlap links (watershed and marker
objects) and any-overlap unions (connected components, i.e. 3D connectivity).

Why the overlap over the *smaller* object and not the IoU: a nucleus's top and bottom
slices are small caps lying inside the bigger cross-section next to them, so their IoU is
small (a 4-pixel cap inside a 60-pixel disc: 0.07) although they are the same object; an
IoU threshold left such caps as objects of their own (false objects, and the true object
lost pixels). Measured with ideal per-slice inputs built from the truth on generated
16 x 256 x 256 stacks, Z-linked F1 at IoU 0.5 rose from 0.86-0.93 (IoU >= 0.1) to
0.98-0.99 (overlap >= 0.8 with the leftover pass below).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_LINK_OVERLAP", "MAX_SPLIT_SOLIDITY", "MIN_SPLIT_SHARE", "Links", "overlap_links", "overlap_pairs", "split_merged"]

#: Two objects of neighbouring slices belong together when the smaller lies at least this
#: much inside the other (intersection / smaller area).
DEFAULT_LINK_OVERLAP = 0.8
#: `split_merged`: each object of the neighbouring slice that parts a merged one must hold at
#: least this share of its area (a small cap of a nucleus above does not part the one below).
MIN_SPLIT_SHARE = 0.2
#: `split_merged` splits only objects whose area is at most this share of their convex hull's.
MAX_SPLIT_SOLIDITY = 0.95


def overlap_pairs(prev: np.ndarray, prev_sem: np.ndarray, cur: np.ndarray, cur_sem: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prev id, cur id, shared pixels) for every pair of objects of the same class that
    share at least one (y, x) position."""
    both = (prev != 0) & (cur != 0) & (prev_sem == cur_sem)
    a = prev[both].astype(np.int64)
    b = cur[both].astype(np.int64)
    if a.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    width = int(b.max()) + 1
    codes, counts = np.unique(a * width + b, return_counts=True)
    return codes // width, codes % width, counts


def _areas(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    uniq, counts = np.unique(labels, return_counts=True)
    return counts[np.searchsorted(uniq, ids)]


@dataclass(frozen=True)
class Links:
    """The links between the objects of a slice (cur) and of its neighbour (prev).

    ``cur`` / ``prev``: cur object ``cur[i]`` takes prev object ``prev[i]``'s id (the
    one-to-one links, then the cur objects left over that join a prev object; a prev id
    may appear several times). ``joined`` / ``into``: prev object ``joined[i]``, left over,
    joins cur object ``into[i]`` (its id must be merged with that object's).
    """

    cur: np.ndarray
    prev: np.ndarray
    joined: np.ndarray
    into: np.ndarray


def overlap_links(prev: np.ndarray, prev_sem: np.ndarray, cur: np.ndarray, cur_sem: np.ndarray,
                  min_overlap: float) -> Links:
    """The objects of ``cur`` and ``prev`` (neighbouring slices) that are one object.

    1. One-to-one: pairs (same class) whose shared pixels are at least ``min_overlap`` of
       the smaller one's area, taken greedily by decreasing overlap, then IoU (ties: the
       smaller ids first); each object of either slice continues at most one chain.
    2. Left over: an object of either slice not linked in 1 that lies at least
       ``min_overlap`` inside one object of the other slice (its shared pixels over its
       own area; the one it shares most with) joins it: a piece split off in one slice,
       or a second cap under one cross-section. Any other object starts a new one.
    """
    a, b, shared = overlap_pairs(prev, prev_sem, cur, cur_sem)
    empty = np.zeros(0, np.int64)
    if a.size == 0:
        return Links(empty, empty, empty, empty)
    area_a, area_b = _areas(prev, a), _areas(cur, b)
    overlap = shared / np.minimum(area_a, area_b)
    iou = shared / (area_a + area_b - shared)
    cand = np.flatnonzero(overlap >= min_overlap)
    cand = cand[np.lexsort((b[cand], a[cand], -iou[cand], -overlap[cand]))]
    used_a: set[int] = set()
    used_b: set[int] = set()
    cur_ids, prev_ids = [], []
    for i in cand:
        x, y = int(a[i]), int(b[i])
        if x in used_a or y in used_b:
            continue
        used_a.add(x)
        used_b.add(y)
        cur_ids.append(y)
        prev_ids.append(x)
    take_b = _leftovers(b, shared / area_b, used_b, min_overlap, shared)
    take_a = _leftovers(a, shared / area_a, used_a, min_overlap, shared)
    cur_all = np.concatenate([np.asarray(cur_ids, np.int64), b[take_b]])
    prev_all = np.concatenate([np.asarray(prev_ids, np.int64), a[take_b]])
    return Links(cur_all, prev_all, a[take_a], b[take_a])


def _leftovers(ids: np.ndarray, inside: np.ndarray, used: set[int], min_overlap: float,
               shared: np.ndarray) -> np.ndarray:
    """The pair indices joining each object of ``ids`` not in ``used`` that lies at least
    ``min_overlap`` inside another (``inside``: shared / its own area), to the one it shares most with."""
    free = np.flatnonzero((inside >= min_overlap) & ~np.isin(ids, np.fromiter(used, np.int64, len(used))))
    if free.size == 0:
        return free
    free = free[np.lexsort((-shared[free], ids[free]))]  # by id, the largest share first
    first = np.ones(free.size, bool)
    first[1:] = ids[free][1:] != ids[free][:-1]
    return free[first]


def split_merged(cur: np.ndarray, cur_sem: np.ndarray, n: int, prev: np.ndarray, prev_sem: np.ndarray,
                 min_inside: float, min_share: float = MIN_SPLIT_SHARE) -> tuple[np.ndarray, int]:
    """``cur``'s objects (ids 1..n) that hold two or more objects of ``prev`` (the
    neighbouring slice, already decoded), split along them: a merge in this slice of objects
    the neighbour shows apart.

    A ``prev`` object parts a ``cur`` object when at least ``min_inside`` of its area lies
    inside it and that overlap is at least ``min_share`` of the ``cur`` object's area, and
    only a ``cur`` object with a concave outline is split (solidity, its area over its convex
    hull's, at most `MAX_SPLIT_SOLIDITY`): a round one is one nucleus that the neighbouring
    slice cut in two. The parts are grown from those overlaps into the ``cur`` object, each
    pixel to the nearest (a watershed of the distance to them). Measured with the bundled
    nuclei-unet on three generated 16 x 256 x 256 stacks (seeds 3-5: neither training nor
    held-out data), Z-linked F1 at IoU 0.5 0.660 / 0.703 / 0.790 -> 0.664 / 0.813 / 0.818
    (without the solidity rule 0.677 / 0.791 / 0.820, with it at 0.9 0.662 / 0.760 / 0.806);
    the truth's own slices as input are unchanged (0.984 / 0.995 / 1.0).

    Returns
    -------
    cur, n : int32 ndarray, int
        A new array with the extra parts numbered from ``n + 1`` (``cur`` itself when
        nothing splits).
    """
    a, b, shared = overlap_pairs(prev, prev_sem, cur, cur_sem)
    if a.size == 0:
        return cur, n
    parts = (shared >= min_inside * _areas(prev, a)) & (shared >= min_share * _areas(cur, b))
    ids, counts = np.unique(b[parts], return_counts=True)
    if not (counts >= 2).any():
        return cur, n
    from scipy import ndimage as ndi
    from skimage.morphology import convex_hull_image
    from skimage.segmentation import watershed

    out = np.array(cur, np.int32)
    for c in ids[counts >= 2].tolist():
        mask = out == c
        if mask.sum() > MAX_SPLIT_SOLIDITY * convex_hull_image(mask, offset_coordinates=False).sum():
            continue
        seeds = np.zeros(out.shape, np.int32)
        for k, p in enumerate(a[parts & (b == c)].tolist(), start=1):
            seeds[mask & (prev == p)] = k
        grown = watershed(ndi.distance_transform_edt(seeds == 0), seeds, mask=mask)
        for k in range(2, int(grown.max()) + 1):
            n += 1
            out[grown == k] = n
    return out, n
