"""One 2D slice of semantic labels -> its objects: connected components, a watershed, or
an instance model's markers grown into its foreground.

Each returns local ids 1..n (int32) and n; each foreground class is decoded on its own,
so a class border is an object border.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_MIN_DISTANCE", "DEFAULT_SMOOTHING", "MARKER", "components_slice", "marker_slice", "watershed_slice"]

#: Distance-transform maxima closer than this (pixels, chessboard) give one marker.
DEFAULT_MIN_DISTANCE = 3
#: Gaussian sigma (pixels) applied to the distance transform before its maxima are taken.
DEFAULT_SMOOTHING = 1.0


def components_slice(semantic: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components (4-connectivity) of equal non-zero values."""
    from skimage.measure import label

    labels, n = label(np.asarray(semantic), background=0, connectivity=1, return_num=True)
    return labels.astype(np.int32, copy=False), int(n)


def watershed_slice(semantic: np.ndarray, *, min_distance: int = DEFAULT_MIN_DISTANCE,
                    smoothing: float = DEFAULT_SMOOTHING) -> tuple[np.ndarray, int]:
    """Touching objects split by a watershed of the distance transform of the foreground.

    Parameters
    ----------
    semantic : (Y, X) integer array
        0 is background; each other value a class, decoded on its own.
    min_distance : int
        Markers are the maxima of the (smoothed) distance transform at least this many
        pixels apart (`peaks.region_peaks`: within each connected region; a flat region
        has one marker); a larger value merges more. At least 1.
    smoothing : float
        Gaussian sigma of the distance transform (0: none); removes the spurious maxima
        of ragged outlines.

    Returns
    -------
    labels : (Y, X) int32 ndarray
        Objects 1..n (every connected region has at least one).
    n : int
    """
    semantic = np.asarray(semantic)
    out = np.zeros(semantic.shape, np.int32)
    n = 0
    for value in np.unique(semantic):
        if value == 0:
            continue
        mask = semantic == value
        part, k = _split(mask, min_distance, smoothing)
        out[mask] = part[mask] + n
        n += k
    return out, n


#: The value of a marker pixel in an instance model's marker map (1: other foreground).
MARKER = 2


def marker_slice(decoded: np.ndarray) -> tuple[np.ndarray, int]:
    """An instance model's marker map -> objects: a seeded watershed.

    Parameters
    ----------
    decoded : (Y, X) integer array
        0 background, 1 foreground, `MARKER` (2) foreground whose P(interior) passed the
        marker threshold (what the engine's labels step gives an instance model).

    Returns
    -------
    labels : (Y, X) int32 ndarray
        Each marker (a 4-connected component of the marker pixels) grown into the
        foreground by a watershed of the distance to the nearest marker pixel: a foreground
        pixel goes to the marker nearest to it (along paths inside the foreground), so
        each interior takes the rim around it; a foreground region without a marker is one
        object of its own. (Flooding the foreground's own distance transform instead gave
        the big objects of a touching pair their neighbours' rims: F1 at IoU 0.5 0.878 ->
        0.897 on 16 generated 2D images, Z-linked 0.704 -> 0.718 on three stacks; issue 14.)
    n : int
    """
    from scipy import ndimage as ndi
    from skimage.measure import label
    from skimage.segmentation import watershed

    decoded = np.asarray(decoded)
    mask = decoded > 0
    markers, n = label(decoded == MARKER, connectivity=1, return_num=True)
    markers = markers.astype(np.int32, copy=False)
    regions = label(mask, connectivity=1)
    unmarked = np.setdiff1d(np.unique(regions), np.append(np.unique(regions[markers > 0]), 0))
    if unmarked.size:
        lut = np.zeros(int(regions.max()) + 1, np.int32)
        lut[unmarked] = np.arange(n + 1, n + 1 + unmarked.size)
        markers = np.where(markers > 0, markers, lut[regions])
        n += int(unmarked.size)
    if n == 0:
        return markers, 0
    split = watershed(ndi.distance_transform_edt(markers == 0), markers, mask=mask)
    return split.astype(np.int32, copy=False), int(n)


def _split(mask: np.ndarray, min_distance: int, smoothing: float) -> tuple[np.ndarray, int]:
    from scipy import ndimage as ndi
    from skimage.measure import label
    from skimage.segmentation import watershed

    from .peaks import region_peaks

    dist = ndi.distance_transform_edt(mask)
    if smoothing > 0:
        dist = ndi.gaussian_filter(dist, smoothing)
    regions = label(mask, connectivity=1)
    peaks = region_peaks(dist, regions, int(min_distance))
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # a region without a peak (a flat one) gets one marker: its first pixel
    unmarked = np.setdiff1d(np.unique(regions), np.append(regions[tuple(peaks.T)], 0))
    if unmarked.size:
        firsts = _first_pixels(regions, unmarked)
        markers[firsts] = np.arange(len(peaks) + 1, len(peaks) + 1 + unmarked.size)
    split = watershed(-dist, markers, mask=mask)
    return split.astype(np.int32, copy=False), int(markers.max())


def _first_pixels(regions: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, ...]:
    flat = regions.ravel()
    order = np.flatnonzero(np.isin(flat, ids))
    _, first = np.unique(flat[order], return_index=True)
    return np.unravel_index(order[first], regions.shape)
