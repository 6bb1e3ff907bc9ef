"""Training data: normalization like inference, the validation split, clear input errors."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet_stack.normalization import (
    DEFAULT_NORMALIZATION,
    apply_normalization,
    fit_normalization,
)
from napari_unet_stack.training import (
    train,
)
from napari_unet_stack.training.data import prepare_data, split_validation


def test_normalization_is_fitted_per_whole_slice_like_inference(data):
    prepared = prepare_data(data.image, data.labels, normalization=DEFAULT_NORMALIZATION)
    z = 3
    expected = apply_normalization(
        data.image[z][None], fit_normalization(data.image[z][None], DEFAULT_NORMALIZATION)
    )
    np.testing.assert_array_equal(prepared.slices[z].image, expected)


def test_single_image_is_split_by_rows(data):
    prepared = prepare_data(data.image[0], data.labels[0], normalization=DEFAULT_NORMALIZATION)
    train_part, val_part = split_validation(prepared.slices, 0.25, np.random.default_rng(0), 16)
    assert train_part[0].shape == (48, 64) and val_part[0].shape == (16, 64)


def _bad_inputs(data):
    img, lab = data.image, data.labels
    nan = img.astype(np.float32)
    nan[0, 3, 3] = np.nan
    return {
        "shape": ((img, lab[:, :30]), r"`labels` \(shape \(6, 30, 64\)\).*\(6, 64, 64\)"),
        "empty": ((img[:, :0], lab[:, :0]), r"`images` is empty"),
        "nan": ((nan, lab), r"`images` .* 1 NaN"),
        "no foreground": ((img, np.zeros_like(lab)), r"no foreground"),
        "too many classes": ((img, lab * 5), r"values up to 5 .* values 0\.\.1"),
        "lengths": (([img, img], [lab]), r"`images` \(2 arrays\) and `labels` \(1 arrays\)"),
        "float labels": ((img, lab + 0.5), r"non-integer"),
        "negative": ((img, lab.astype(np.int8) - 1), r"negative"),
        "channels": (
            (np.stack([img, img], axis=-1), lab),
            r"`images` have 2 channel\(s\) but the model takes 1",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "shape",
        "empty",
        "nan",
        "no foreground",
        "too many classes",
        "lengths",
        "float labels",
        "negative",
        "channels",
    ],
)
def test_clear_errors_for_bad_input(data, case, fast, tiny_unet):
    (images, labels), message = _bad_inputs(data)[case]
    kwargs = {"channel_axis": -1} if case == "channels" else {}
    with pytest.raises(ValueError, match=message):
        train(images, labels, tiny_unet(), steps=1, **kwargs, **fast)


def test_sparse_errors(data, fast, tiny_unet):
    with pytest.raises(ValueError, match="no painted pixel"):
        train(data.image, np.zeros_like(data.labels), tiny_unet(), sparse=True, steps=1, **fast)
    only_background = np.zeros_like(data.labels)
    only_background[:, :4] = 1
    with pytest.raises(ValueError, match="only one class"):
        train(data.image, only_background, tiny_unet(), sparse=True, steps=1, **fast)
    with pytest.raises(ValueError, match=r"painted values 1\.\.2"):
        train(data.image, data.labels * 2 + 1, tiny_unet(), sparse=True, steps=1, **fast)


def test_two_painted_slices_both_train_and_validate_on_held_out_strokes():
    from napari_unet_stack.training.data import IGNORE, Slice, split_validation

    target = np.full((2, 40, 40), IGNORE, np.int16)
    for z in range(2):  # per slice: three background strokes (0), three nucleus strokes (1)
        for k in range(3):
            target[z, 2 + 12 * k: 6 + 12 * k, 2:10] = 0
            target[z, 2 + 12 * k: 6 + 12 * k, 20:30] = 1
    slices = [Slice(np.zeros((1, 40, 40), np.float32), target[z], (0, (z,))) for z in range(2)]
    train, val = split_validation(slices, 0.15, np.random.default_rng(0), min_size=16, sparse=True)
    assert len(train) == 2  # no painted slice is taken away from training
    assert 1 <= len(val) <= 2
    held = sum(int((v.target >= 0).sum()) for v in val)
    assert held == 4 * 8 + 4 * 10  # one stroke of each class (6 each: round(6 x 0.15) = 1)
    for v in val:
        t = next(t for t in train if t.source == v.source)
        assert not ((v.target >= 0) & (t.target >= 0)).any()  # validation pixels are never trained on
        assert ((v.target >= 0) | (t.target >= 0)).sum() == (target[v.source[1][0]] >= 0).sum()
    for value in (0, 1):  # each class keeps training strokes
        assert sum(int((t.target == value).sum()) for t in train) >= 5 * 32
