"""Training z-context (2.5D) models: the inputs training builds are those inference reads."""

import numpy as np
import pytest

from napari_unet_stack import predict, segment
from napari_unet_stack.models import UNet
from napari_unet_stack.training import train
from napari_unet_stack.training.data import prepare_data
from napari_unet_stack.training.evaluate import slice_probabilities
from napari_unet_stack.training.settings import TrainSettings

PERCENTILE = {"mode": "percentile", "low": 1.0, "high": 99.8, "scope": "slice"}


def normalized(plane: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(plane.astype(np.float64), [1.0, 99.8])
    return ((plane - lo) / (hi - lo)).astype(np.float32)


@pytest.fixture
def small():
    rng = np.random.default_rng(0)
    image = (rng.random((4, 48, 48)) * 900 + 50).astype(np.uint16)
    labels = np.zeros(image.shape, np.uint8)
    labels[:, 10:30, 12:34] = 1
    return image, labels


def test_each_slice_holds_its_neighbours_normalized_on_their_own(small):
    image, labels = small
    data = prepare_data(image, labels, normalization=PERCENTILE, z_context=1)
    assert data.in_channels == 3
    for s in data.slices:
        z = s.source[1][0]
        want = np.stack([normalized(image[min(max(z + d, 0), 3)]) for d in (-1, 0, 1)])
        np.testing.assert_allclose(s.image, want, atol=1e-5)


def test_a_2d_image_is_its_own_neighbour(small):
    image, labels = small
    data = prepare_data(image[1], labels[1], normalization=PERCENTILE, z_context=2)
    (s,) = data.slices
    assert s.image.shape == (5, 48, 48)
    np.testing.assert_allclose(s.image, np.stack([normalized(image[1])] * 5), atol=1e-5)


def test_validation_sees_what_predict_sees(small):
    image, labels = small
    model = UNet(3, 2, base_channels=4, depth=2)
    model.meta.update(z_context=1, normalization=PERCENTILE)
    data = prepare_data(image, labels, normalization=PERCENTILE, z_context=1)
    whole = predict(image, model, device="cpu")
    for s in data.slices:
        got = slice_probabilities(model, s, "cpu", "float32")
        np.testing.assert_allclose(got, whole[:, s.source[1][0]], atol=1e-5)


def test_train_builds_and_keeps_a_z_context_model(small):
    image, labels = small
    model, _ = train(image, labels, steps=4, patch_size=32, batch_size=2, val_every=2, device="cpu",
                           z_context=1)
    assert model.in_channels == 3 and model.meta["z_context"] == 1
    assert segment(image, model, device="cpu").shape == image.shape
    more, _ = train(image, labels, model, steps=2, patch_size=32, batch_size=2, device="cpu")  # keeps its own
    assert more.meta["z_context"] == 1
    with pytest.raises(ValueError, match="z context cannot change"):
        train(image, labels, model, steps=2, patch_size=32, device="cpu", z_context=0)
    with pytest.raises(ValueError, match=r"takes 1 per slice \(z context 1: 3 slices in\)"):
        train(np.stack([image] * 2, axis=-1), labels, model, steps=2, patch_size=32, channel_axis=-1)


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_a_bad_z_context_is_refused(bad):
    with pytest.raises(ValueError, match="`z_context` must be an int >= 0"):
        TrainSettings(z_context=bad)
