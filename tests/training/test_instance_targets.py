"""Instance labels -> background / interior / boundary targets, checked on hand-made labels."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet_stack.training import (
    INSTANCE_CLASSES,
    instance_meta,
    instance_targets,
    is_instance_model,
)


def test_a_touching_pair_gets_a_boundary_on_each_side_of_their_border():
    ids = np.zeros((7, 10), np.uint16)
    ids[1:6, 1:5] = 3
    ids[1:6, 5:9] = 7  # touches id 3 along x = 4 | 5
    t = instance_targets(ids)
    # hand-made: each object's outer ring is boundary (2), inside is interior (1)
    expected = np.zeros((7, 10), np.int8)
    expected[1:6, 1:9] = 2
    expected[2:5, 2:4] = 1
    expected[2:5, 6:8] = 1
    np.testing.assert_array_equal(t, expected)
    # the two interiors are apart: no 4-connected path through interior pixels
    from skimage.measure import label

    assert label(t == 1, connectivity=1).max() == 2
    assert label(ids > 0, connectivity=1).max() == 1


def test_boundary_width_two_and_image_edges():
    ids = np.zeros((9, 9), np.int32)
    ids[:, :] = 1  # an object filling the slice: the image edge is no border
    ids[4, 4] = 0
    t = instance_targets(ids, boundary_width=2)
    d = np.abs(np.arange(9)[:, None] - 4) + np.abs(np.arange(9)[None, :] - 4)  # 4-connected steps
    expected = np.where(d <= 2, 2, 1).astype(np.int8)
    expected[4, 4] = 0
    np.testing.assert_array_equal(t, expected)


def test_stacks_are_targeted_slice_by_slice_and_sparse_keeps_unlabelled():
    ids = np.zeros((2, 6, 6), np.uint8)
    ids[0, 1:5, 1:5] = 2
    ids[1, :3] = 1  # painted background
    ids[1, 3:, :] = 4  # an object touching painted background (row 2) and unlabelled (below: edge)
    t = instance_targets(ids, sparse=True)
    assert (t[0][ids[0] == 0] == -1).all()  # unlabelled
    assert (t[0][1:5, 1:5][[0, -1]] == INSTANCE_CLASSES["boundary"]).all()
    assert (t[1][:3] == INSTANCE_CLASSES["background"]).all()
    assert (t[1][3] == 2).all() and (t[1][4:] == 1).all()


def test_bad_instance_labels_are_named():
    with pytest.raises(ValueError, match="integer dtype"):
        instance_targets(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="boundary_width"):
        instance_targets(np.ones((4, 4), np.uint8), boundary_width=0)
    with pytest.raises(ValueError, match="at least 1 objects"):
        instance_targets(np.zeros((4, 4), np.uint8))


def test_instance_meta_marks_an_instance_model():
    meta = {"instances": instance_meta(marker_threshold=0.4)}
    assert is_instance_model(meta)
    assert meta["instances"]["classes"] == {"background": 0, "interior": 1, "boundary": 2}
    assert not is_instance_model({"class_values": [0, 1]})
