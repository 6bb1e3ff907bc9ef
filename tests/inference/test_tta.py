"""Test-time augmentation (``tta=``): the mean of the flipped (and transposed) images'
probabilities, computed here with numpy; tiled still equals whole-slice; every door
(segment, dask, labels) passes it on; a bad value is refused by name."""

import dask.array as da
import numpy as np
import pytest

import napari_unet_stack as nus
from napari_unet_stack.labels import LabelRule

# flips of the (Y, X) axes and whether the view is transposed: the 8 symmetries of the square
FLIPS = [(), (-1,), (-2,), (-2, -1)]


def _view(image, flips, transpose):
    out = np.flip(image, flips) if flips else image
    return np.swapaxes(out, -2, -1) if transpose else out


def _back(probs, flips, transpose):
    out = np.swapaxes(probs, -2, -1) if transpose else probs
    return np.flip(out, flips) if flips else out


def _by_hand(image, model, transposes):
    """The mean over the views of the plain predictions of the flipped (transposed) image."""
    total = 0
    views = [(f, t) for t in transposes for f in FLIPS]
    for flips, transpose in views:
        view = np.ascontiguousarray(_view(image, flips, transpose))
        total = total + _back(nus.predict(view, model, tile_size=None, normalization=None), flips, transpose)
    return total / len(views)


@pytest.mark.parametrize(("tta", "transposes"), [("flips", (False,)), ("dihedral", (False, True))])
def test_tta_is_the_mean_over_the_flipped_images(tta, transposes, nets):
    model = nets.MODELS["unet-transposed"]()
    # sizes on the model's grid (8): the engine's windows are then the whole flipped images
    image = np.random.default_rng(5).random((2, 48, 40)).astype(np.float32)
    expected = _by_hand(image, model, transposes)
    got = nus.predict(image, model, tile_size=None, normalization=None, tta=tta)
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    plain = nus.predict(image, model, tile_size=None, normalization=None)
    assert np.abs(got - plain).max() > 1e-3  # the test model is not mirror symmetric


SLOW = pytest.mark.slow


@pytest.mark.parametrize(("name", "tta"), [
    ("unet-transposed", "dihedral"),
    pytest.param("unet-transposed", "flips", marks=SLOW),
    pytest.param("unetpp", "flips", marks=SLOW),
    pytest.param("unetpp", "dihedral", marks=SLOW),
    pytest.param("unet-valid", "flips", marks=SLOW),
    pytest.param("unet-valid", "dihedral", marks=SLOW),
])
def test_tiled_equals_whole_slice_with_tta(name, tta, stack, nets):
    model = nets.MODELS[name]()
    whole = nus.predict(stack, model, tile_size=None, tta=tta)
    info = {}
    tiled = nus.predict(stack, model, tile_size=(32, 48), batch_size=3, tta=tta, info=info)
    assert info["n_tiles"] > 4 and info["exact"] and info["tta"] == tta
    np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)


def test_segment_labels_and_dask_follow_the_averaged_probabilities(stack, nets):
    model = nets.MODELS["unet-transposed"]()
    probs = nus.predict(stack, model, tta="flips")
    labels = nus.segment(stack, model, tta="flips")
    np.testing.assert_array_equal(labels, LabelRule.for_model(model).labels(probs))
    lazy = nus.predict(da.from_array(stack, chunks=(1, *stack.shape[1:])), model, tta="flips")
    np.testing.assert_allclose(lazy.compute(), probs, atol=1e-5, rtol=0)
    assert (labels != nus.segment(stack, model)).any()  # the option reached the engine


def test_instances_with_tta_decode_the_averaged_probabilities(stack, nets):
    model = nets.MODELS["unet-transposed"]()  # three classes: an instance model's layout
    model.meta["instances"] = {"decoding": "seeded_watershed", "marker_threshold": 0.5,
                               "classes": {"background": 0, "interior": 1, "boundary": 2}}
    probs = nus.predict(stack, model, tta="dihedral")
    expected = nus.postprocess.decode_probabilities(probs, model, nus.postprocess.InstanceOptions())
    got = nus.segment(stack, model, instances=True, tta="dihedral")
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("value", "name"), [(True, "dihedral"), (False, "none"), (None, "none"), ("none", "none")])
def test_tta_values(value, name, nets):
    info = {}
    nus.predict(np.zeros((16, 16), np.float32), nets.MODELS["unet-transposed"](), tta=value, info=info)
    assert info["tta"] == name


@pytest.mark.parametrize("value", ["mirror", 4, "Flips"])
def test_a_bad_tta_is_refused_by_name(value, nets):
    with pytest.raises(ValueError, match="`tta` must be True, False or one of"):
        nus.predict(np.zeros((16, 16), np.float32), nets.MODELS["unet-transposed"](), tta=value)
