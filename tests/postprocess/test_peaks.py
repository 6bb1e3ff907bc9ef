"""The watershed's markers (`postprocess.peaks.region_peaks`) against skimage's
``peak_local_max`` run on each region alone, and on small cases drawn by hand where the
rules part (regions never compete; a flat region has no peak)."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.measure import label

from napari_unet_stack.postprocess.peaks import region_peaks
from napari_unet_stack.postprocess.slices import watershed_slice


def blobs(seed: int, shape=(96, 112), n=40) -> np.ndarray:
    """Touching and separate discs of varied radius, some within a few pixels of others."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, bool)
    for _ in range(n):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(2, 9)
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    return mask


def each_region_alone(values, regions, min_distance):
    """skimage on one region at a time (nothing else in its image); flat regions left out."""
    found = []
    for r in range(1, regions.max() + 1):
        alone = regions == r
        inside = values[alone]
        if np.all(inside == inside.max()):
            continue  # flat: skimage marks its isolated pixels, region_peaks nothing
        found += peak_local_max(np.where(alone, values, 0), min_distance=min_distance, labels=alone.astype(int),
                                exclude_border=False).tolist()
    found.sort(key=lambda p: (-values[p[0], p[1]], p[0], p[1]))
    return found


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("min_distance", "smoothing"), [(3, 1.0), (1, 1.0), (5, 1.0), (2, 0.5)])
def test_each_region_as_skimage_finds_it_alone(seed, min_distance, smoothing):
    mask = blobs(seed)
    values = ndi.gaussian_filter(ndi.distance_transform_edt(mask), smoothing)
    regions = label(mask, connectivity=1)
    assert regions.max() > 10
    assert region_peaks(values, regions, min_distance).tolist() == each_region_alone(values, regions, min_distance)


def test_a_region_keeps_its_peak_beside_a_higher_one():
    values = np.array([[0, 1, 2, 1, 0, 5, 9, 5]], float)
    regions = np.array([[0, 1, 1, 1, 0, 2, 2, 2]])
    assert region_peaks(values, regions, 3).tolist() == [[0, 6], [0, 2]]
    # one region: the 9 hides the 2 (within 3 px), and is listed first
    assert region_peaks(values, (values > 0).astype(int), 5).tolist() == [[0, 6]]


def test_a_plateau_keeps_its_first_pixel_and_flat_regions_have_none():
    values = np.zeros((5, 9))
    values[2, 1:8] = [1, 3, 3, 3, 3, 3, 1]  # a plateau of five 3s
    values[0, 0] = values[4, 8] = 2  # two single-pixel regions: flat
    regions = label(values > 0, connectivity=1)
    assert region_peaks(values, regions, 2).tolist() == [[2, 2], [2, 4], [2, 6]]  # 2 apart
    assert region_peaks(values, regions, 3).tolist() == [[2, 2], [2, 5]]
    assert region_peaks(values, regions, 1).tolist() == [[2, c] for c in range(2, 7)]
    assert region_peaks(np.zeros((4, 4)), np.zeros((4, 4), int), 3).shape == (0, 2)


def test_the_watershed_still_splits_a_touching_pair_and_keeps_single_pixels():
    mask = np.zeros((24, 40), np.uint8)
    yy, xx = np.mgrid[:24, :40]
    mask[(yy - 12) ** 2 + (xx - 12) ** 2 < 49] = 1
    mask[(yy - 12) ** 2 + (xx - 25) ** 2 < 49] = 1  # touching its neighbour
    mask[1, 38] = mask[22, 1] = 1  # specks: one object each
    labels, n = watershed_slice(mask)
    assert n == 4
    assert labels[12, 12] != labels[12, 25] and labels[1, 38] and labels[22, 1]
    assert len({labels[1, 38], labels[22, 1], labels[12, 12], labels[12, 25]}) == 4
