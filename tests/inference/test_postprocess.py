"""Instance labels: connected components, unique ids across leading axes, size filter."""

import numpy as np

from napari_unet_stack.postprocess import instance_labels


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
