"""A model's own foreground threshold (``meta["threshold"]``): the default of `segment`,
`decode_probabilities`, the dask path and the CLI, overridden by an explicit threshold,
kept by checkpoints and refused when malformed. Checked against the documented rule
written out in numpy (`rule_numpy`)."""

import numpy as np
import pytest

import napari_unet_stack as nus
from napari_unet_stack.checkpoints import CheckpointError, load_model, save_model
from napari_unet_stack.labels import model_threshold
from napari_unet_stack.postprocess import decode_probabilities

from .test_segment_labels import rule_numpy


@pytest.fixture()
def model(nets):
    net = nets.MODELS["unet-transposed"]()  # 3-class softmax
    net.meta["threshold"] = 0.8
    return net


def test_segment_uses_the_models_threshold(stack, model):
    probs = nus.predict(stack, model, tile_size=32, batch_size=5)
    info = {}
    labels = nus.segment(stack, model, tile_size=32, batch_size=5, info=info)
    np.testing.assert_array_equal(labels, rule_numpy(probs, "softmax", 0.8, [0, 1, 2]))
    assert info["threshold"] == 0.8
    # not what the former fixed default gives: the test can tell the two apart
    assert (labels != rule_numpy(probs, "softmax", 0.5, [0, 1, 2])).any()
    explicit = nus.segment(stack, model, tile_size=32, batch_size=5, threshold=0.5, info=info)
    np.testing.assert_array_equal(explicit, rule_numpy(probs, "softmax", 0.5, [0, 1, 2]))
    assert info["threshold"] == 0.5


def test_a_model_without_one_keeps_one_half(stack, nets):
    net = nets.MODELS["unet-transposed"]()
    probs = nus.predict(stack, net, tile_size=32, batch_size=5)
    np.testing.assert_array_equal(nus.segment(stack, net, tile_size=32, batch_size=5),
                                  rule_numpy(probs, "softmax", 0.5, [0, 1, 2]))


def test_dask_and_decoding_use_it_too(stack, model):
    da = pytest.importorskip("dask.array")
    probs = nus.predict(stack, model, tile_size=32, batch_size=5)
    info = {}
    lazy = nus.segment(da.from_array(stack, chunks=(1, *stack.shape[1:])), model, tile_size=32, batch_size=5,
                       info=info)
    np.testing.assert_array_equal(np.asarray(lazy), rule_numpy(probs, "softmax", 0.8, [0, 1, 2]))
    assert info["lazy"] and info["threshold"] == 0.8  # reported as the engine reports it
    # instances by the distance watershed of the foreground: the foreground is the model's
    # (on a corner: the untrained network's ragged foreground has ~3000 regions a slice, each
    # a peak search of its own)
    corner = stack[:, :40, :48]
    probs = nus.predict(corner, model, tile_size=32, batch_size=5)
    ids = decode_probabilities(probs, model, "watershed")
    np.testing.assert_array_equal(ids > 0, rule_numpy(probs, "softmax", 0.8, [0, 1, 2]) > 0)
    np.testing.assert_array_equal(ids, nus.segment(corner, model, instances="watershed", tile_size=32))


def test_checkpoints_keep_it_and_refuse_bad_ones(tmp_path, model):
    path = save_model(model, tmp_path / "m.pt")
    assert load_model(path).meta["threshold"] == 0.8
    assert model_threshold(load_model(path)) == 0.8
    for bad in (1.5, -0.1, "high", True):
        model.meta["threshold"] = bad
        with pytest.raises((ValueError, TypeError), match="threshold"):
            save_model(model, tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()


def test_a_file_with_a_bad_threshold_is_named(tmp_path, model):
    import torch

    path = save_model(model, tmp_path / "m.pt")
    data = torch.load(path, weights_only=True)
    data["meta"]["threshold"] = 7
    torch.save(data, tmp_path / "hand.pt")
    with pytest.raises(CheckpointError, match="threshold"):
        load_model(tmp_path / "hand.pt")


def test_model_threshold_rules():
    assert model_threshold({}) == 0.5
    assert model_threshold({"threshold": 0.25}) == 0.25
    assert model_threshold({"threshold": 0.25}, 0.9) == 0.9
    with pytest.raises(ValueError, match="threshold"):
        model_threshold({}, 2)


def test_a_bool_is_no_threshold(stack, model):
    """True would be threshold 1.0 (nothing foreground) and False 0.0: refused wherever a
    threshold is taken, as checkpoints refused it already (one rule, `check_threshold`)."""
    for bad in (True, np.bool_(False)):
        with pytest.raises(TypeError, match="threshold"):
            nus.segment(stack, model, threshold=bad)
        with pytest.raises(TypeError, match="threshold"):
            model_threshold({"threshold": bad})
    model.meta["threshold"] = True
    with pytest.raises(TypeError, match=r"the model's own threshold, meta\['threshold'\]"):
        nus.segment(stack, model)
    model.meta["threshold"] = 1.5  # set in memory (a file holding it does not load): named too
    with pytest.raises(ValueError, match=r"meta\['threshold'\]: `threshold` must be in \[0, 1\], got 1.5"):
        nus.segment(stack, model)
