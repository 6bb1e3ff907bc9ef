"""Z linking by overlap: caps inside the next slice link, stacked neighbours stay apart,
leftover pieces join or start their own object, and the second pass keeps slice-by-slice
memory (zarr ``out``).

Each slice's objects are given directly as marker maps whose every object pixel is a
marker (`marker_slice` then makes each 4-connected group one object), so the expected
3D objects are the hand-drawn ones below; overlaps are counted here from the drawings.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet_stack.postprocess import MARKER, instance_labels

SHAPE = (40, 60)


def disc(cy, cx, r, shape=SHAPE):
    yy, xx = np.indices(shape)
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def as_markers(*slices):
    """(Z, Y, X) marker maps: every object pixel a marker."""
    return np.stack([np.where(s, MARKER, 0) for s in slices]).astype(np.uint8)


def fraction_inside(small, big):
    return (small & big).sum() / small.sum()


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def assert_objects(labels, *masks):
    """``labels`` has exactly one id per (Z, Y, X) mask, covering it exactly."""
    assert labels.max() == len(masks) and set(np.unique(labels)) == set(range(len(masks) + 1))
    for mask in masks:
        ids = np.unique(labels[mask])
        assert len(ids) == 1 and ids[0] != 0 and np.array_equal(labels == ids[0], mask)


def test_a_small_cap_fully_inside_the_next_slice_links():
    cap, body = disc(20, 20, 2), disc(20, 20, 10)
    assert iou(cap, body) < 0.1 and fraction_inside(cap, body) == 1  # an IoU link would miss it
    labels = instance_labels(as_markers(cap, body, body, cap), method="markers")
    assert_objects(labels, as_markers(cap, body, body, cap) > 0)


def test_two_nuclei_stacked_in_z_that_touch_stay_apart_below_the_overlap():
    top, bottom = disc(20, 20, 8), disc(20, 27, 8)  # top's last slice touches bottom's first
    share = fraction_inside(top, bottom)
    assert 0.3 < share < 0.8  # they overlap, but below the default
    stack = as_markers(top, top, bottom, bottom)
    upper = np.zeros(stack.shape, bool)
    upper[:2] = top
    labels = instance_labels(stack, method="markers")
    assert_objects(labels, upper, (stack > 0) & ~upper)
    merged = instance_labels(stack, method="markers", link_overlap=share - 0.01)
    assert_objects(merged, stack > 0)  # the criterion says they are one


def halves(mask, cx):
    """``mask`` cut in two by a background column at x = cx."""
    left, right = mask.copy(), mask.copy()
    left[:, cx:] = False
    right[:, : cx + 1] = False
    return left, right


def test_a_piece_split_off_in_the_next_slice_joins_the_object():
    whole = disc(20, 30, 10)
    left, right = halves(disc(20, 30, 9), 26)  # the smaller piece lies inside `whole`
    assert fraction_inside(right, whole) == 1 and fraction_inside(left, whole) == 1
    stack = as_markers(whole, left | right, whole)
    assert_objects(instance_labels(stack, method="markers"), stack > 0)


def test_a_leftover_of_the_previous_slice_joins_the_object_that_continues():
    left, right = halves(disc(20, 30, 9), 33)
    whole = disc(20, 30, 10)
    stack = as_markers(left | right, left | right, whole, whole)
    labels = instance_labels(stack, method="markers")
    assert_objects(labels, stack > 0)  # ids merged afterwards, then numbered 1..n
    per_slice = instance_labels(stack, method="markers", ndim=2)
    assert per_slice.max() == 6  # instance_ndim=2 keeps each slice's objects


def test_a_stray_fragment_starts_its_own_object_and_min_size_drops_it():
    body, small, fragment = (np.zeros(SHAPE, bool) for _ in range(3))
    body[10:31, 10:31] = True
    small[12:29, 12:25] = True  # this slice's body
    fragment[18:22, 27:35] = True  # apart from it; half of it over the previous slice's body
    assert fraction_inside(fragment, body) == 0.5 and not (fragment & small).any()
    stack = as_markers(body, small | fragment)
    piece = np.zeros(stack.shape, bool)
    piece[1] = fragment
    labels = instance_labels(stack, method="markers")
    assert_objects(labels, (stack > 0) & ~piece, piece)
    kept = instance_labels(stack, method="markers", min_size=int(fragment.sum()) + 1)
    assert_objects(kept, (stack > 0) & ~piece)


def test_joins_and_min_size_work_into_a_zarr_out_slice_by_slice():
    zarr = pytest.importorskip("zarr")
    left, right = halves(disc(20, 30, 9), 33)
    whole = disc(20, 30, 10)
    speck = np.zeros(SHAPE, bool)
    speck[2:4, 2:4] = True
    stack = as_markers(left | right, whole | speck, whole)
    expected = instance_labels(stack, method="markers", min_size=5)
    body = stack > 0
    body[1] &= ~speck  # the 4-pixel speck is dropped
    assert_objects(expected, body)
    store = zarr.zeros(stack.shape, chunks=(1, *SHAPE), dtype=np.uint16)
    store[...] = stack
    assert instance_labels(store, method="markers", min_size=5, out=store) is store
    np.testing.assert_array_equal(store[...], expected)


def test_two_nuclei_merged_in_one_slice_are_split_along_the_slice_before():
    """Two touching discs are apart in slices 0 and 2 and one object in slice 1 (what a
    marker map gives when their interiors join): slice 1's object is split along slice 0's
    two, so the stack holds two 3D objects, each with its own part of slice 1 (pixels
    nearer to a disc's part of slice 0 go to it: here the discs' own halves)."""
    left, right = disc(20, 20, 8), disc(20, 39, 8)
    assert not (left & right).any()
    merged = left | right | disc(20, 29, 5)  # the pair bridged by the join
    stack = as_markers(left | right, merged, left | right)
    labels = instance_labels(stack, method="markers")
    assert labels.max() == 2
    a, b = labels[0][20, 20], labels[0][20, 39]
    assert a != b and labels[2][20, 20] == a and labels[2][20, 39] == b
    assert (labels[1][left] == a).all() and (labels[1][right] == b).all()
    per_slice = instance_labels(stack, method="markers", ndim=2)  # slice 1 decoded alone is one object
    assert len(np.unique(per_slice[1])) == 2


def test_a_small_cap_above_does_not_split_the_nucleus_below():
    """Slice 0 holds nucleus A and the bottom cap of nucleus B lying over A's area in Y/X;
    slice 1 holds A alone: the cap (under `MIN_SPLIT_SHARE` of A's area) must not part A."""
    from napari_unet_stack.postprocess import MIN_SPLIT_SHARE

    body, cap = disc(20, 20, 10), disc(20, 34, 3) & ~disc(20, 20, 12)
    a_part = body & ~disc(20, 34, 6)
    inside = disc(20, 20, 12)
    assert (cap & inside).sum() == 0 and cap.sum() < MIN_SPLIT_SHARE * inside.sum()
    cap2 = disc(20, 28, 2)  # a small cap lying inside A's next slice
    slice0 = np.where(a_part & ~disc(20, 28, 3), MARKER, 0) + np.where(cap2, MARKER, 0)
    stack = np.stack([slice0, np.where(inside, MARKER, 0)]).astype(np.uint8)
    labels = instance_labels(stack, method="markers")
    assert len(np.unique(labels[1])) == 2  # slice 1 stays one object (and background)
