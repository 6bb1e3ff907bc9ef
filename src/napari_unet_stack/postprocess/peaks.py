"""The markers of the distance-transform watershed: each region's local maxima.

`region_peaks(values, regions, min_distance)` finds, in one pass over the whole slice, the
pixels of each region (a labelled image, 0 background) whose value is the largest among
the pixels *of the same region* within ``min_distance`` (chessboard); maxima of one
plateau closer than ``min_distance`` to a kept one are dropped, the first in raster order
kept. A region whose pixels are all maxima (a flat one) has none; so do pixels at the
slice's lowest value. Regions never compete: a nucleus beside a brighter one keeps its
peaks.

The rule is skimage's ``peak_local_max(values, min_distance, labels=regions,
exclude_border=False)`` per region, computed for all regions at once: skimage crops and
searches each region on its own (about half a millisecond each, so a slice of a few
thousand nuclei took seconds, longer than the network), and also thins peaks across
regions and marks the isolated pixels of a flat region, which this rule does not.
"""

from __future__ import annotations

import numpy as np

__all__ = ["region_peaks"]


def region_peaks(values: np.ndarray, regions: np.ndarray, min_distance: int) -> np.ndarray:
    """(n, 2) coordinates of the regions' peaks, highest value first (ties in raster order).

    >>> v = np.array([[1, 2, 1, 0, 3, 1]], float)
    >>> r = np.array([[1, 1, 1, 0, 2, 2]])
    >>> region_peaks(v, r, 2).tolist()  # the 3 of region 2 does not hide region 1's 2
    [[0, 4], [0, 1]]
    """
    values = np.asarray(values, dtype=np.float64)
    regions = np.asarray(regions)
    radius = max(int(min_distance), 1)
    ys, xs = np.nonzero(regions > 0)
    if ys.size == 0:
        return np.empty((0, 2), np.intp)
    own, mine = values[ys, xs], regions[ys, xs]
    top = own >= _largest_of_own_region(values, regions, ys, xs, radius)
    peak = top & ~_flat(mine, top) & (own > values.min())
    order = np.lexsort((ys[peak] * values.shape[1] + xs[peak], -own[peak]))
    coords = np.stack([ys[peak], xs[peak]], axis=1)[order]
    if min_distance > 1 and len(coords) > 1:
        coords = coords[_spaced(coords, mine[peak][order], int(min_distance))]
    return coords


def _largest_of_own_region(values, regions, ys, xs, radius) -> np.ndarray:
    """For each foreground pixel (ys, xs): the largest value of its own region's pixels in
    the (2 radius + 1)^2 window around it. Where the window holds no other region, one
    maximum filter of the slice gives it; the other pixels look at each offset."""
    from scipy import ndimage as ndi

    size = 2 * radius + 1
    fg = regions > 0
    top = np.iinfo(np.int64).max
    ids = regions.astype(np.int64, copy=False)
    alone = (ndi.maximum_filter(ids, size, mode="constant", cval=0) ==
             ndi.minimum_filter(np.where(fg, ids, top), size, mode="constant", cval=top))[ys, xs]
    best = ndi.maximum_filter(np.where(fg, values, -np.inf), size, mode="constant", cval=-np.inf)[ys, xs]
    shared = np.flatnonzero(~alone)
    if shared.size:
        best[shared] = _offsets_max(values, ids, ys[shared], xs[shared], radius)
    return best


def _offsets_max(values, ids, ys, xs, radius) -> np.ndarray:
    """The largest value of the pixels of (ys, xs)'s own region in its window, offset by offset."""
    pad_v = np.pad(values, radius, constant_values=-np.inf)
    pad_i = np.pad(ids, radius, constant_values=0)
    mine = ids[ys, xs]
    best = np.full(ys.shape, -np.inf)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            there = (ys + dy, xs + dx)
            np.maximum(best, np.where(pad_i[there] == mine, pad_v[there], -np.inf), out=best)
    return best


def _flat(mine: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """Per pixel: whether its region is flat (every pixel of it a maximum)."""
    _, inverse, sizes = np.unique(mine, return_inverse=True, return_counts=True)
    peaks = np.bincount(inverse, weights=peak, minlength=len(sizes))
    return (peaks == sizes)[inverse]


def _spaced(coords: np.ndarray, ids: np.ndarray, min_distance: int) -> np.ndarray:
    """Which of ``coords`` (in priority order) to keep: each drops the later ones of its
    region closer than ``min_distance`` (chessboard), if it is kept itself."""
    from scipy.spatial import cKDTree

    pairs = cKDTree(coords).query_pairs(r=min_distance - 0.5, p=np.inf, output_type="ndarray")
    keep = np.ones(len(coords), bool)
    if len(pairs) == 0:
        return keep
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[ids[pairs[:, 0]] == ids[pairs[:, 1]]]
    later: dict[int, list[int]] = {}
    for first, second in pairs[np.argsort(pairs[:, 0], kind="stable")].tolist():
        later.setdefault(first, []).append(second)
    for first in sorted(later):
        if keep[first]:
            keep[later[first]] = False
    return keep
