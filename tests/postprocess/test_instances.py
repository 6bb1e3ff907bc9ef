"""Instance decoding: touching discs split, Z linking, time points apart, zarr / dask, bounded reads.

The expected objects are drawn here by hand (discs, cylinders), independently of the code.
"""

from __future__ import annotations

import numpy as np
import pytest

import napari_unet_stack as nus
from napari_unet_stack.postprocess import instance_labels, slice_groups
from napari_unet_stack.training import match_instances


def discs(shape=(40, 60), centres=((20, 20), (20, 37)), radius=10):
    """Instance ids of discs (later ones drawn over earlier ones): these two touch."""
    yy, xx = np.indices(shape)
    truth = np.zeros(shape, np.int32)
    for k, (cy, cx) in enumerate(centres, start=1):
        truth[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = k
    return truth


def test_touching_discs_merge_as_components_and_split_by_the_watershed():
    truth = discs()
    semantic = (truth > 0).astype(np.uint8)
    components = instance_labels(semantic, method="components")
    assert components.max() == 1  # the two discs touch: one component
    split = instance_labels(semantic)
    assert split.max() == 2
    m = match_instances(split, truth, threshold=0.8)
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)


def test_two_classes_are_separate_objects():
    semantic = np.zeros((10, 20), np.uint8)
    semantic[2:8, 2:10] = 1
    semantic[2:8, 10:18] = 2  # touching, another class
    for method in ("watershed", "components"):
        labels = instance_labels(semantic, method=method)
        assert labels.max() == 2 and labels[5, 5] != labels[5, 15], method


def cylinders(nz=6):
    """(Z, Y, X) instance ids: two touching discs repeated over Z, radius varying by slice."""
    return np.stack([discs(radius=r) for r in (8, 9, 10, 10, 9, 8)[:nz]])


def test_a_stack_of_cylinders_is_linked_into_one_id_each():
    truth = cylinders()
    labels = instance_labels((truth > 0).astype(np.uint8))
    assert set(np.unique(labels)) == {0, 1, 2}
    m = match_instances(labels, truth, threshold=0.8)
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)
    per_slice = instance_labels((truth > 0).astype(np.uint8), ndim=2)
    assert per_slice.max() == 2 * 6 and len(np.unique(per_slice[3])) == 3


def test_time_points_are_never_linked_and_ids_are_unique():
    truth = cylinders()
    semantic = (truth > 0).astype(np.uint8)
    labels = instance_labels(semantic, time_axes=(0,))
    assert labels.max() == 12
    for t in range(6):  # each frame has its own two ids
        ids = set(np.unique(labels[t])) - {0}
        assert ids == {2 * t + 1, 2 * t + 2}
    # T Z Y X: Z linked within each time point, never across
    tz = np.stack([semantic, semantic])
    linked = instance_labels(tz, time_axes=(0,))
    assert linked.max() == 4 and not set(np.unique(linked[0])) & set(np.unique(linked[1])) - {0}
    with pytest.raises(ValueError, match="no Z axis"):
        instance_labels(semantic, ndim=3, time_axes=(0,))


def test_slice_groups_axes():
    assert list(slice_groups((2, 3, 4, 4), time_axes=(0,))) == [[(0, 0), (0, 1), (0, 2)], [(1, 0), (1, 1), (1, 2)]]
    assert list(slice_groups((2, 4, 4), ndim=2)) == [[(0,)], [(1,)]]
    assert list(slice_groups((4, 4))) == [[()]]
    with pytest.raises(ValueError, match=r"2 \(per slice\) or 3"):
        list(slice_groups((2, 4, 4), ndim=4))


def test_components_equal_3d_connected_components_and_min_size():
    from skimage.measure import label

    rng = np.random.default_rng(0)
    semantic = (rng.random((5, 30, 30)) > 0.55).astype(np.uint8)
    semantic[2, :10] = 2
    expected = label(semantic, background=0, connectivity=1)
    got = instance_labels(semantic, method="components")
    np.testing.assert_array_equal(got, expected)  # same ids, in the same (raster) order
    sizes = np.bincount(expected.ravel())
    small = sizes < 4
    small[0] = False
    filtered = np.where(small[expected], 0, expected)
    kept = np.unique(filtered[filtered > 0])
    lut = np.zeros(expected.max() + 1, np.int64)
    lut[kept] = np.arange(1, len(kept) + 1)
    np.testing.assert_array_equal(instance_labels(semantic, method="components", min_size=4), lut[filtered])


def test_min_size_counts_all_slices_of_an_object():
    semantic = np.zeros((3, 10, 10), np.uint8)
    semantic[:, 2:4, 2:4] = 1  # 4 px a slice, 12 in all
    semantic[1, 7:9, 7:9] = 1  # 4 px in one slice
    labels = instance_labels(semantic, min_size=5)
    assert labels.max() == 1 and labels[:, 2, 2].tolist() == [1, 1, 1] and labels[1, 7, 7] == 0


class CountingArray:
    """An array that records the shape of every read and write."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.reads, self.writes = data, data.shape, data.dtype, [], []

    def __getitem__(self, key):
        value = self.data[key]
        self.reads.append(value.shape)
        return value

    def __setitem__(self, key, value):
        self.writes.append(np.shape(self.data[key]))
        self.data[key] = value


def test_reads_and_writes_are_one_slice_each():
    semantic = CountingArray((cylinders() > 0).astype(np.uint8))
    out = CountingArray(np.zeros(semantic.shape, np.uint16))
    instance_labels(semantic, out=out, min_size=3)
    assert set(semantic.reads) == set(out.writes) == {(40, 60)}


def test_zarr_out_and_in_place():
    zarr = pytest.importorskip("zarr")
    truth = cylinders()
    semantic = (truth > 0).astype(np.uint8)
    expected = instance_labels(semantic)
    store = zarr.zeros(semantic.shape, chunks=(1, 40, 60), dtype=np.uint32)
    store[...] = semantic
    assert instance_labels(store, out=store) is store
    np.testing.assert_array_equal(store[...], expected)


@pytest.mark.slow
def test_segment_instances_numpy_zarr_and_dask_agree(threshold_net):
    zarr = pytest.importorskip("zarr")
    da = pytest.importorskip("dask.array")
    image = np.stack([cylinders() > 0] * 2).astype(np.float32)  # T Z Y X
    net = threshold_net()
    labels = nus.segment(image, net, normalization=None, instances=True, time_axis=0)
    assert labels.max() == 4 and labels.dtype == np.uint8
    merged = nus.segment(image, net, normalization=None, instances="components", time_axis=0)
    assert merged.max() == 2
    out = zarr.zeros(image.shape, chunks=(1, 1, 40, 60), dtype=np.uint16)
    assert nus.segment(image, net, normalization=None, instances=True, time_axis=0, out=out) is out
    np.testing.assert_array_equal(out[...], labels)
    lazy = da.from_array(image, chunks=(1, 2, 40, 60))
    np.testing.assert_array_equal(nus.segment(lazy, net, normalization=None, instances=True, time_axis=0), labels)
    out2 = zarr.zeros(image.shape, chunks=(1, 1, 40, 60), dtype=np.uint16)
    nus.segment(lazy, net, normalization=None, instances=True, time_axis=-4, out=out2)
    np.testing.assert_array_equal(out2[...], labels)


def test_segment_time_axis_counts_without_the_channel_axis(threshold_net):
    net = threshold_net()
    frames = (cylinders() > 0).astype(np.float32)
    image = np.stack([frames, frames], axis=1)[:, :1]  # T C Y X with one channel
    labels = nus.segment(image, net, normalization=None, instances=True, channel_axis=1, time_axis=0)
    assert labels.shape == (6, 40, 60) and labels.max() == 12


def test_bad_instance_options_fail_before_the_work(threshold_net):
    net = threshold_net()
    image = np.zeros((2, 8, 8), np.float32)
    for kwargs, message in [({"instances": "stardist"}, "instances"), ({"min_size": -1}, "min_size"),
                            ({"min_distance": 0}, "min_distance"), ({"link_overlap": 0}, "link_overlap"),
                            ({"time_axis": 2}, "time_axis"), ({"instance_ndim": 4}, "per slice"),
                            ({"time_axis": 0, "instance_ndim": 3}, "no Z axis")]:
        with pytest.raises(ValueError, match=message):
            nus.segment(image, net, normalization=None, **{"instances": True, **kwargs})


def test_a_time_axis_that_is_no_int_is_refused_as_training_refuses_it(threshold_net):
    """`segment`, its instance options and `train` take the same ``time_axis`` values (one
    check, `zcontext.check_time_axis`): a float or a string is a TypeError naming it."""
    from napari_unet_stack.postprocess import InstanceOptions

    net = threshold_net()
    image = np.zeros((2, 8, 8), np.float32)
    for bad in (1.0, "t", [0, 0.5]):
        for instances in (False, True):
            with pytest.raises(TypeError, match="`time_axis` must be None, an int or a sequence of int"):
                nus.segment(image, net, normalization=None, instances=instances, time_axis=bad)
        with pytest.raises(TypeError, match="`time_axis` must be None, an int or a sequence of int"):
            InstanceOptions.from_instances(True, time_axis=bad)
    assert nus.segment(image, net, normalization=None, instances=True, time_axis=np.int64(0)).shape == (2, 8, 8)


def test_instance_labels_checks_its_parameters_like_the_options():
    """`instance_labels` called on its own refuses what `InstanceOptions` refuses (one check)."""
    semantic = np.zeros((4, 4), np.uint8)
    for kwargs, message in [({"min_size": None}, "min_size"), ({"min_size": True}, "min_size"),
                            ({"min_size": -1}, "min_size"), ({"min_distance": 0}, "min_distance"),
                            ({"smoothing": -1.0}, "smoothing"), ({"link_overlap": 0}, "link_overlap"),
                            ({"link_overlap": 1.5}, "link_overlap")]:
        with pytest.raises(ValueError, match=message):
            instance_labels(semantic, **kwargs)
