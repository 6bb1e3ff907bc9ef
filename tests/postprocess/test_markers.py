"""An instance model's decoding: markers from P(interior), grown into the foreground.

The "network" here maps hand-drawn class images to logits (background 0, boundary 0.5,
interior 1), so the expected objects are known independently of any training.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_unet_stack as nus
from napari_unet_stack.labels import LabelRule
from napari_unet_stack.models.base import SegmentationNetwork
from napari_unet_stack.postprocess import (
    InstanceOptions,
    decode_probabilities,
    instance_labels,
    labels_rule,
    marker_slice,
)
from napari_unet_stack.training import instance_meta, match_instances

LEVELS = (0.0, 1.0, 0.5)  # the image value of background, interior, boundary


class ClassImage(SegmentationNetwork):
    """A 3-class softmax "instance model": the class whose level is nearest the pixel."""

    in_channels, out_channels, depth = 1, 3, 1

    def __init__(self):
        super().__init__()
        self.meta["instances"] = instance_meta(marker_threshold=0.5)
        self.meta["class_values"] = [0, 1, 1]

    def _reach(self):
        return 0

    def forward(self, x):
        return torch.cat([-40 * (x - v).abs() for v in LEVELS], dim=1)


def block_pair(shape=(20, 40)):
    """(class image, truth ids): a 10 x 30 rectangle made of two 10 x 15 halves (no neck
    between them), each half's outer ring drawn as boundary."""
    truth = np.zeros(shape, np.int32)
    truth[5:15, 5:20] = 1
    truth[5:15, 20:35] = 2
    image = np.zeros(shape, np.float32)
    for k in (1, 2):
        ys, xs = np.nonzero(truth == k)
        image[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = LEVELS[2]
        image[ys.min() + 1:ys.max(), xs.min() + 1:xs.max()] = LEVELS[1]
    return image, truth


def test_marker_rule_and_marker_slice_part_a_pair_without_a_neck():
    image, truth = block_pair()
    probs = torch.softmax(ClassImage()(torch.from_numpy(image)[None, None]), 1)[0].numpy()
    rule = LabelRule.of(3).with_markers(1, 0.5)
    decoded = rule.labels(probs)
    np.testing.assert_array_equal(decoded, np.where(image == 1, 2, np.where(image > 0, 1, 0)))
    labels, n = marker_slice(decoded)
    assert n == 2
    m = match_instances(labels, truth, threshold=0.9)
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)
    assert instance_labels((truth > 0).astype(np.uint8), method="components").max() == 1


def test_a_foreground_region_without_a_marker_is_one_object():
    decoded = np.zeros((10, 20), np.uint8)
    decoded[2:8, 2:8] = 1  # no marker
    decoded[2:8, 10:18] = 1
    decoded[4:6, 12:16] = 2
    labels, n = marker_slice(decoded)
    assert n == 2 and len(np.unique(labels[2:8, 2:8])) == 1 and labels[3, 3] != labels[3, 12]


def test_marker_slice_gives_each_foreground_pixel_its_nearest_marker():
    """In a convex foreground the growth is the markers' Voronoi partition, computed here
    independently from the Euclidean distance to each marker (ties excluded)."""
    yy, xx = np.mgrid[:48, :64]
    decoded = ((yy - 24) ** 2 / 20 ** 2 + (xx - 32) ** 2 / 29 ** 2 <= 1).astype(np.uint8)
    centres = [(24, 8), (24, 50), (10, 30), (36, 28)]
    sizes = [1, 4, 2, 0]  # markers of unequal extent: a small one must still keep its nearest pixels
    for (cy, cx), r in zip(centres, sizes, strict=True):
        decoded[cy - r:cy + r + 1, cx - r:cx + r + 1] = 2
    labels, n = marker_slice(decoded)
    assert n == 4
    marker_masks = [(decoded == 2) & (labels == labels[c]) for c in centres]
    from scipy import ndimage as ndi

    dist = np.stack([ndi.distance_transform_edt(~m) for m in marker_masks])
    order = np.sort(dist, axis=0)
    clear = (decoded > 0) & (order[1] - order[0] > 1.5)  # pixels with a clear nearest marker
    expected = np.array([labels[c] for c in centres])[dist.argmin(axis=0)]
    assert clear.sum() > 0.8 * (decoded > 0).sum()
    np.testing.assert_array_equal(labels[clear], expected[clear])
    assert (labels[decoded == 0] == 0).all()


def test_segment_decodes_an_instance_model_from_its_markers():
    image, truth = block_pair()
    net = ClassImage()
    labels = nus.segment(image, net, normalization=None, instances=True)
    m = match_instances(labels, truth, threshold=0.9)
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)
    assert nus.segment(image, net, normalization=None, instances="components").max() == 1
    semantic = nus.segment(image, net, normalization=None)  # the plain foreground
    np.testing.assert_array_equal(semantic, (truth > 0).astype(np.uint8))
    probs = nus.predict(image, net, normalization=None)
    np.testing.assert_array_equal(decode_probabilities(probs, net, True), labels)


def test_marker_threshold_changes_the_markers():
    image, _ = block_pair()
    image[image == 1] = 0.76  # P(interior) = 1 / (1 + exp(-40 * 0.02)) = 0.69: markers at 0.5, none at 0.9
    net = ClassImage()
    assert nus.segment(image, net, normalization=None, instances=True).max() == 2
    # no marker: the foreground region is one object
    assert nus.segment(image, net, normalization=None, instances=True, marker_threshold=0.9).max() == 1


def test_an_instance_model_over_z_and_time_numpy_zarr_dask():
    zarr = pytest.importorskip("zarr")
    da = pytest.importorskip("dask.array")
    image, truth = block_pair()
    stack = np.stack([np.stack([image] * 3)] * 2)  # T Z Y X
    net = ClassImage()
    labels = nus.segment(stack, net, normalization=None, instances=True, time_axis=0)
    assert labels.max() == 4  # two objects linked over Z, per time point
    assert len(set(np.unique(labels[0])) & set(np.unique(labels[1]))) == 1  # only 0 shared
    m = match_instances(labels[1, 2], truth, threshold=0.9)
    assert m.tp == 2
    out = zarr.zeros(stack.shape, chunks=(1, 1, 20, 40), dtype=np.uint16)
    nus.segment(stack, net, normalization=None, instances=True, time_axis=0, out=out)
    np.testing.assert_array_equal(out[...], labels)
    lazy = da.from_array(stack, chunks=(1, 3, 20, 40))
    np.testing.assert_array_equal(nus.segment(lazy, net, normalization=None, instances=True, time_axis=0), labels)


def test_bad_decoding_options_are_named():
    image, _ = block_pair()
    net = ClassImage()
    with pytest.raises(ValueError, match="marker_threshold"):
        nus.segment(image, net, normalization=None, instances=True, marker_threshold=1.5)
    with pytest.raises(ValueError, match="instance model"):
        nus.segment(image, nus.UNet(1, 2, base_channels=4, depth=1), normalization=None, instances="markers")
    with pytest.raises(ValueError, match="min_size"):
        InstanceOptions(min_size=-2)
    assert InstanceOptions.from_instances(True).resolve(net).method == "markers"
    assert InstanceOptions.from_instances(True).resolve(None).method == "watershed"
    assert InstanceOptions.from_instances(True).resolve(net).marker_threshold == 0.5


def test_labels_out_keeps_the_marker_maps_that_decode_again_as_a_new_run():
    image, _ = block_pair()
    stack = np.stack([image, image, np.roll(image, 3, axis=1)])
    net = ClassImage()
    options = InstanceOptions(min_size=0)
    rule = labels_rule(net, options.resolve(net))
    maps = np.full(stack.shape, 9, rule.dtype)
    ids = np.zeros(stack.shape, np.uint32)
    engine = nus.iter_segment(stack, net, instances=options, normalization=None, out=ids, labels_out=maps)
    for _ in engine:
        pass
    probs = nus.predict(stack, net, normalization=None)
    np.testing.assert_array_equal(maps, rule.labels(probs))  # the marker maps, not overwritten
    assert set(np.unique(maps)) == {0, 1, 2}
    np.testing.assert_array_equal(ids, nus.segment(stack, net, normalization=None, instances=options))
    for changed in (options.replace(min_size=10**6), options.replace(ndim=2)):  # both change the ids
        again = changed.resolve(net).apply(maps, out=np.zeros(stack.shape, np.uint32))
        assert not np.array_equal(again, ids)
        np.testing.assert_array_equal(again, nus.segment(stack, net, normalization=None, instances=changed))
    with pytest.raises(ValueError, match="needs `instances`"):
        next(nus.iter_segment(stack, net, normalization=None, labels_out=maps))
    with pytest.raises(ValueError, match="`labels_out` must have shape"):
        next(nus.iter_segment(stack, net, instances=True, normalization=None, labels_out=maps[:1]))
