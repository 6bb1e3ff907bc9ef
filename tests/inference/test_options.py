"""Options at the door: normalization (and its deprecated alias), clear errors for bad input,
devices, out= dtypes, any callable as a model."""

import numpy as np
import pytest
import torch

import napari_unet_stack as nus


def test_toy_callable_gives_known_probabilities():
    """Any callable works; with normalization off the result is known exactly."""
    image = np.linspace(-3, 3, 40 * 50, dtype=np.float32).reshape(40, 50)

    def toy(x):
        return torch.cat([x, -x], dim=1)

    probs = nus.predict(image, toy, normalization=None, tile_size=16, halo=0)
    expected = 1 / (1 + np.exp(-2 * image))
    np.testing.assert_allclose(probs[0], expected, atol=1e-6)
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-6)


def test_normalization_is_per_slice_not_per_tile(nets):
    model = nets.MODELS["unet-transposed"]()
    rng = np.random.default_rng(0)
    image = rng.random((2, 64, 64)).astype(np.float32)
    scaled = image.copy()
    scaled[1] = scaled[1] * 50 + 7  # per-slice percentile normalization removes an affine change
    a = nus.predict(image, model, tile_size=16)
    b = nus.predict(scaled, model, tile_size=16)
    np.testing.assert_allclose(a[:, 1], b[:, 1], atol=1e-4)


def test_stored_normalization_wins_over_default(nets):
    model = nets.MODELS["unet-transposed"]()
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32) * 255
    model.meta["normalization"] = {"mode": "scale", "divisor": 255.0}
    stored = nus.predict(image, model, tile_size=None)
    explicit = nus.predict(image / 255.0, model, tile_size=None, normalization=None)
    np.testing.assert_allclose(stored, explicit, atol=1e-5)
    default = nus.predict(image, model, tile_size=None, normalization={"mode": "percentile"})
    assert not np.allclose(default, stored, atol=1e-3)


def test_stack_scope_normalization_uses_one_fit_for_all_slices(nets):
    model = nets.MODELS["unet-transposed"]()
    image = np.random.default_rng(0).random((2, 32, 32)).astype(np.float32)
    image[1] *= 10
    per_stack = nus.predict(image, model, tile_size=None, normalization={"mode": "percentile", "scope": "stack"})
    per_slice = nus.predict(image, model, tile_size=None)
    # expected: one percentile fit over the whole stack, applied to every slice
    from napari_unet_stack.normalization import (
        apply_normalization,
        fit_normalization,
        validate_normalization,
    )

    params = fit_normalization(image[None], validate_normalization({"mode": "percentile", "scope": "stack"}))
    manual = np.stack([apply_normalization(s[None], params)[0] for s in image])
    expected = nus.predict(manual, model, tile_size=None, normalization=None)
    np.testing.assert_allclose(per_stack, expected, atol=1e-5)
    assert not np.allclose(per_stack[:, 1], per_slice[:, 1], atol=1e-3)


@pytest.mark.parametrize(
    ("image", "kwargs", "error", "match"),
    [
        (np.zeros((5,)), {}, ValueError, "at least 2 dimensions"),
        (np.zeros((0, 16)), {}, ValueError, "empty"),
        (np.zeros((16, 16), complex), {}, TypeError, "real integer or float"),
        ("not an image", {}, TypeError, "`image` must be an array"),
        (np.zeros((16, 16)), {"channel_axis": 5}, ValueError, "out of range"),
        (np.zeros((16, 16)), {"tile_size": -3}, ValueError, "`tile_size`"),
        (np.zeros((16, 16)), {"tile_size": "big"}, ValueError, "`tile_size`"),
        (np.zeros((16, 16)), {"halo": -1}, ValueError, "`halo`"),
        (np.zeros((16, 16)), {"blend": "average"}, ValueError, "`blend`"),
        (np.zeros((16, 16)), {"pad_mode": "wrap"}, ValueError, "`pad_mode`"),
        (np.zeros((16, 16)), {"border": -1}, ValueError, "`border` must be >= 0"),
        (np.zeros((16, 16)), {"border": "x"}, TypeError, "`border` must be 'reach' or an int"),
        (np.zeros((16, 16)), {"border": True}, TypeError, "`border`"),
        (np.zeros((16, 16)), {"border": 2.5}, TypeError, "`border`"),
        (np.zeros((16, 16)), {"batch_size": 0}, ValueError, "`batch_size`"),
        (np.zeros((16, 16)), {"precision": "int8"}, ValueError, "`precision`"),
        (np.zeros((16, 16)), {"device": "tpu"}, ValueError, "`device`"),
        (np.zeros((16, 16)), {"normalization": {"mode": "percentile", "low": 50, "high": 10}}, ValueError, "percentiles"),
        (np.zeros((16, 16)), {"out": np.zeros((3, 3), np.uint8)}, ValueError, "`out` must have shape"),
        (np.zeros((16, 16)), {"threshold": 2}, ValueError, "`threshold`"),
    ],
)
def test_bad_input_gets_a_clear_error(image, kwargs, error, match, nets):
    model = nets.MODELS["unet-transposed"]()
    with pytest.raises(error, match=match):
        nus.segment(image, model, **kwargs)


def test_wrong_channel_count_names_both(nets):
    model = nets.init(nus.UNet(3, 2, base_channels=4, depth=2))
    with pytest.raises(ValueError, match=r"expects 3 input channel\(s\).*has 2"):
        nus.predict(np.zeros((2, 16, 16)), model, channel_axis=0)
    with pytest.raises(ValueError, match="pass channel_axis=-1"):
        nus.predict(np.zeros((16, 16, 3)), model)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_explicit_cuda_without_cuda_is_a_clear_error(nets):
    with pytest.raises(ValueError, match="CUDA is not available"):
        nus.segment(np.zeros((16, 16)), nets.MODELS["unet-transposed"](), device="cuda")


def test_device_is_reported(nets):
    info = {}
    nus.segment(np.zeros((16, 16), np.float32), nets.MODELS["unet-transposed"](), info=info, device="cpu")
    assert info["device"] == "cpu" and info["precision"] == "float32"


def test_out_with_a_dtype_that_cannot_hold_the_result_is_refused(stack, nets):
    model = nets.MODELS["unet-transposed"]()
    with pytest.raises(ValueError, match="float dtype"):
        nus.predict(stack, model, out=np.zeros((3, *stack.shape), np.int32))
    with pytest.raises(ValueError, match="holds uint8"):
        nus.segment(stack, model, out=np.zeros(stack.shape, np.int8))
    out = np.zeros(stack.shape, np.int16)  # wider signed is fine
    nus.segment(stack, model, out=out, tile_size=None)
    np.testing.assert_array_equal(out, nus.segment(stack, model, tile_size=None))


def test_normalize_is_a_deprecated_alias_of_normalization(nets):
    from napari_unet_stack.inference.events import drain

    model = nets.MODELS["unet-transposed"]()
    image = np.random.default_rng(2).random((2, 24, 32)).astype(np.float32)
    expected = nus.predict(image, model, tile_size=None, normalization=None)
    with pytest.warns(DeprecationWarning, match="use `normalization=`") as caught:
        old = nus.predict(image, model, tile_size=None, normalize=None)
    assert caught[0].filename == __file__  # points at the caller
    np.testing.assert_array_equal(old, expected)
    labels = nus.segment(image, model, tile_size=None, normalization=None)
    with pytest.warns(DeprecationWarning, match="use `normalization=`"):
        np.testing.assert_array_equal(nus.segment(image, model, tile_size=None, normalize=None), labels)
    with pytest.warns(DeprecationWarning, match="use `normalization=`") as caught:
        gen = nus.iter_segment(image, model, tile_size=None, normalize=None)
    assert caught[0].filename == __file__
    np.testing.assert_array_equal(drain(gen), labels)
    with pytest.warns(DeprecationWarning, match="use `normalization=`"):
        np.testing.assert_array_equal(drain(nus.iter_predict(image, model, tile_size=None, normalize=None)), expected)


@pytest.mark.parametrize("call", ["predict", "segment", "iter_predict", "iter_segment"])
def test_normalize_and_normalization_together_is_a_type_error(nets, call):
    model = nets.MODELS["unet-transposed"]()
    with pytest.raises(TypeError, match="not both"):
        getattr(nus, call)(np.zeros((16, 16), np.float32), model, normalization=None, normalize=None)


def test_resolve_normalization():
    from napari_unet_stack.normalization import DEFAULT_NORMALIZATION, resolve_normalization

    stored = {"mode": "scale", "divisor": 255.0}
    assert resolve_normalization("auto", stored) == {**stored, "scope": "slice"}
    assert resolve_normalization("auto", None) == DEFAULT_NORMALIZATION
    for off in (None, False, "none"):
        assert resolve_normalization(off, stored) is None
    assert resolve_normalization({"mode": "zscore", "scope": "stack"}, stored) == {"mode": "zscore", "scope": "stack"}
    assert resolve_normalization("zscore") == {"mode": "zscore", "scope": "slice"}
    with pytest.raises(ValueError, match="percentiles"):
        resolve_normalization({"mode": "percentile", "low": 50, "high": 10})


def test_unknown_geometry_warning_points_at_the_caller():
    net = torch.nn.Conv2d(1, 2, 3, padding=1)  # a plain module: its reach is not known
    for run in (nus.predict, nus.segment):
        with pytest.warns(UserWarning, match="geometry unknown") as caught:
            run(np.zeros((16, 16), np.float32), net, tile_size=None)
        assert caught[0].filename == __file__
