import numpy as np
import pytest

from napari_unet_stack.postprocess import (
    instance_labels,
    label_values,
    probabilities_to_classes,
    smallest_uint,
)


def test_smallest_uint():
    assert smallest_uint(1) == np.uint8 and smallest_uint(65535) == np.uint16 and smallest_uint(65536) == np.uint32


def test_softmax_argmax_and_sigmoid_threshold():
    probs = np.array([[[0.2, 0.7]], [[0.8, 0.3]]])
    np.testing.assert_array_equal(probabilities_to_classes(probs, "softmax"), [[1, 0]])
    np.testing.assert_array_equal(probabilities_to_classes(probs[:1], "sigmoid", 0.5), [[0, 1]])
    np.testing.assert_array_equal(probabilities_to_classes(probs, "sigmoid", 0.75), [[2, 0]])


def test_label_values():
    np.testing.assert_array_equal(label_values(1, "sigmoid", None), [0, 1])
    np.testing.assert_array_equal(label_values(2, "softmax", [0, 255]), [0, 255])
    with pytest.raises(ValueError, match="class_values"):
        label_values(3, "softmax", [0, 1])


def test_instances_are_unique_across_leading_axes_and_relabelled():
    sem = np.zeros((2, 8, 8), np.uint8)
    sem[:, 1:3, 1:3] = 1
    sem[:, 5:8, 5:8] = 2
    sem[0, 0, 7] = 1  # a speck
    lab = instance_labels(sem, ndim=2, min_size=2)
    assert lab.dtype == np.uint8
    assert sorted(np.unique(lab)) == [0, 1, 2, 3, 4]
    assert lab[0, 0, 7] == 0
    full = np.ones((4, 4), np.uint8)
    assert instance_labels(full, ndim=2, min_size=2).max() == 1
