"""Augmentation: image and labels stay aligned, flips/rotations exact, elastic field seeded."""

from __future__ import annotations

import numpy as np

from napari_unet_stack.training import (
    AugmentConfig,
    augment_pair,
)
from napari_unet_stack.training.augment import elastic_field
from napari_unet_stack.training.data import IGNORE


def test_augmentation_keeps_image_and_labels_aligned():
    rng = np.random.default_rng(1)
    labels = np.zeros((96, 96), np.int64)
    labels[10:40, 20:70] = 1
    labels[50:90, 5:45] = 2
    labels[60:80, 60:90] = 3
    image = labels[None].astype(np.float32)  # intensity == label
    no_intensity = AugmentConfig(elastic_p=1.0, elastic_sigma=6.0, scale=0, shift=0, noise=0)
    for _ in range(10):
        img, lab = augment_pair(
            image,
            labels,
            rng,
            no_intensity,
            shape=(64, 64),
            image_order=0,
            centre=(rng.uniform(20, 76), rng.uniform(20, 76)),
        )
        inside = lab != IGNORE
        np.testing.assert_array_equal(img[0][inside], lab[inside])
        # bilinear image: integer-valued pixels away from edges still equal their label
        img1, lab1 = augment_pair(
            image, labels, np.random.default_rng(5), no_intensity, shape=(64, 64)
        )
        agree = np.isclose(np.rint(img1[0]), lab1)[lab1 != IGNORE].mean()
        assert agree > 0.97


def test_flips_and_rotations_are_exact_and_cover_the_group():
    labels = np.arange(16 * 16).reshape(16, 16)
    image = labels[None].astype(np.float32)
    cfg = AugmentConfig(elastic_p=0, scale=0, shift=0, noise=0)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(80):
        img, lab = augment_pair(image, labels, rng, cfg)
        np.testing.assert_array_equal(img[0], lab)
        assert sorted(lab.ravel()) == list(range(256))  # a permutation of the pixels
        seen.add(lab.tobytes())
    assert len(seen) == 8


def test_valid_label_patch_is_centred_in_the_image_patch():
    labels = np.arange(40 * 40).reshape(40, 40)
    image = labels[None].astype(np.float32)
    cfg = AugmentConfig(elastic_p=1.0, scale=0, shift=0, noise=0)
    img, lab = augment_pair(
        image,
        labels,
        np.random.default_rng(2),
        cfg,
        shape=(30, 30),
        label_shape=(20, 20),
        image_order=0,
    )
    np.testing.assert_array_equal(img[0, 5:25, 5:25], lab)


def test_elastic_field_is_smooth_and_seeded():
    a = elastic_field(np.random.default_rng(3), (64, 64), 5.0, 32)
    b = elastic_field(np.random.default_rng(3), (64, 64), 5.0, 32)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 64, 64) and 1 < a.std() < 15
    assert np.abs(np.diff(a, axis=-1)).max() < 2  # smooth: neighbours move together


def test_intensity_augmentation_changes_only_the_image():
    labels = np.zeros((32, 32), np.int64)
    labels[8:20, 8:20] = 1
    image = labels[None].astype(np.float32)
    cfg = AugmentConfig(flips=False, rotate90=False, elastic_p=0, noise_p=1.0)
    img, lab = augment_pair(image, labels, np.random.default_rng(0), cfg)
    np.testing.assert_array_equal(lab, labels)
    assert not np.allclose(img[0], image[0])
