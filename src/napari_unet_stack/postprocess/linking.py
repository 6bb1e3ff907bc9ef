"""Objects of neighbouring slices matched by overlap: IoU links (watershed objects) and
any-overlap unions (connected components, i.e. 3D connectivity)."""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_LINK_IOU", "iou_links", "overlap_pairs"]

#: Two objects of neighbouring slices become one when their IoU is at least this.
DEFAULT_LINK_IOU = 0.1


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


def iou_links(prev: np.ndarray, prev_sem: np.ndarray, cur: np.ndarray, cur_sem: np.ndarray,
              min_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one links (cur id -> prev id) of pairs whose IoU is at least ``min_iou``.

    Pairs are taken greedily by decreasing IoU (ties: the smaller ids first), so each
    object of either slice is linked at most once.
    """
    a, b, shared = overlap_pairs(prev, prev_sem, cur, cur_sem)
    if a.size == 0:
        return a, a
    ious = shared / (_areas(prev, a) + _areas(cur, b) - shared)
    keep = ious >= min_iou
    a, b, ious = a[keep], b[keep], ious[keep]
    order = np.lexsort((b, a, -ious))
    used_a: set[int] = set()
    used_b: set[int] = set()
    cur_ids, prev_ids = [], []
    for i in order:
        x, y = int(a[i]), int(b[i])
        if x in used_a or y in used_b:
            continue
        used_a.add(x)
        used_b.add(y)
        cur_ids.append(y)
        prev_ids.append(x)
    return np.asarray(cur_ids, np.int64), np.asarray(prev_ids, np.int64)
