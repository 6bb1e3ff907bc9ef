"""Z split: a Z-linked object whose cross-sections shrink and grow again (two nuclei
stacked in Z) is cut at the dip; one nucleus (one rise, one fall) never is.

The stacks are hand-drawn discs whose every pixel is a marker (each slice's disc is one
object), so the expected objects are the drawings; the areas are counted here.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet_stack.postprocess import MARKER, InstanceOptions, instance_labels, z_cuts

SHAPE = (40, 40)


def disc(r, cy=20, cx=20):
    yy, xx = np.indices(SHAPE)
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def markers(radii, cx=20):
    return np.stack([np.where(disc(r, cx=cx) if r else np.zeros(SHAPE, bool), MARKER, 0) for r in radii]
                    ).astype(np.uint8)


def test_z_cuts_on_hand_computed_profiles():
    assert z_cuts([10, 30, 40, 8, 35, 20], 0.7) == [3]  # 8 < 0.7 * min(40, 35)
    assert z_cuts([10, 30, 40, 30, 10], 0.7) == []  # one nucleus
    assert z_cuts([10, 30, 40, 30, 10], 0) == []  # 0: never
    assert z_cuts([40, 5, 40], 0.7) == []  # a part would have 1 slice
    assert z_cuts([40, 5, 40], 0.7, min_slices=1) == [1]  # cuts 1 and 2 dip alike (5 / 40): the first
    assert z_cuts([20, 40, 10, 30, 30, 6, 40, 20], 0.7) == [2, 5]  # three nuclei, two cuts
    assert z_cuts([20, 40, 29, 30, 20], 0.7) == []  # 29 is not below 0.7 * 30


def test_two_nuclei_stacked_in_z_are_cut_one_is_not():
    radii = [3, 7, 8, 4, 2, 6, 8, 5]  # two nuclei; the bottom cap of one inside the top cap of the next
    stack = markers(radii)
    areas = (stack > 0).sum(axis=(1, 2))
    assert instance_labels(stack, method="markers", z_split=0).max() == 1  # linking alone merges them
    labels = instance_labels(stack, method="markers")
    cut = z_cuts(areas, 0.7)
    assert cut == [4]
    upper = np.zeros(stack.shape, bool)
    upper[:4] = stack[:4] > 0
    assert labels.max() == 2
    assert len(np.unique(labels[upper])) == 1 and len(np.unique(labels[(stack > 0) & ~upper])) == 1
    assert labels[0, 20, 20] != labels[7, 20, 20]
    single = markers([3, 6, 8, 8, 6, 3])
    assert instance_labels(single, method="markers").max() == 1


def test_min_size_counts_the_parts_after_the_cut_and_zarr_out_matches():
    zarr = pytest.importorskip("zarr")
    radii = [3, 7, 8, 2, 2, 3, 3]  # a nucleus and a small one under it (caps of 2 px radius)
    stack = markers(radii)
    areas = (stack > 0).sum(axis=(1, 2))
    assert z_cuts(areas, 0.7) == [3]
    small = int(areas[3:].sum())
    labels = instance_labels(stack, method="markers", min_size=small + 1)
    assert labels.max() == 1 and (labels[3:] == 0).all()  # the small part dropped...
    np.testing.assert_array_equal(labels[:3] > 0, stack[:3] > 0)  # ...the other kept whole
    kept = instance_labels(stack, method="markers", min_size=small)
    assert kept.max() == 2
    store = zarr.zeros(stack.shape, chunks=(1, *SHAPE), dtype=np.uint16)
    store[...] = stack
    instance_labels(store, method="markers", min_size=small, out=store)
    np.testing.assert_array_equal(store[...], kept)


def test_per_slice_and_time_axes_are_never_cut():
    stack = markers([3, 7, 8, 4, 2, 6, 8, 5])
    assert instance_labels(stack, method="markers", ndim=2).max() == 8
    movie = np.stack([stack, stack])  # (T, Z, Y, X): each time point cut on its own, ids unique
    labels = instance_labels(movie, method="markers", time_axes=(0,))
    assert labels.max() == 4 and not set(np.unique(labels[0])[1:]) & set(np.unique(labels[1])[1:])


@pytest.mark.parametrize("value", [1.0, -0.1, "0.5", None])
def test_a_bad_z_split_is_refused_by_name(value):
    with pytest.raises(ValueError, match="`z_split` must be in \\[0, 1\\)"):
        InstanceOptions(z_split=value)
    with pytest.raises(ValueError, match="`z_split`"):
        instance_labels(markers([3, 3]), method="markers", z_split=value)


@pytest.mark.slow
def test_segment_passes_z_split_on_for_numpy_zarr_and_dask(threshold_net):
    """A semantic model's watershed objects are linked and cut the same way: the image is
    the drawing itself (the threshold net's foreground is exactly the discs)."""
    da = pytest.importorskip("dask.array")
    zarr = pytest.importorskip("zarr")
    from napari_unet_stack import segment

    image = (markers([3, 7, 8, 4, 2, 6, 8, 5]) > 0).astype(np.float32)
    model = threshold_net().eval()
    options = dict(instances=True, device="cpu", normalization=None)
    cut = segment(image, model, **options)
    assert cut.max() == 2 and segment(image, model, z_split=0, **options).max() == 1
    store = zarr.zeros(image.shape, chunks=(1, *SHAPE), dtype=np.float32)
    store[...] = image
    np.testing.assert_array_equal(segment(store, model, **options), cut)
    np.testing.assert_array_equal(segment(da.from_array(image, chunks=(1, *SHAPE)), model, **options), cut)
