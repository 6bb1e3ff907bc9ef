"""Images as users have them and faults as they meet them (issue 11, items 2, 3, 5, 17-20, 24)."""

import warnings

import numpy as np
import pytest
import torch

import napari_unet_stack as nus


def threshold_model(x):
    """Two-class logits: foreground where the normalized input is above 0.5."""
    return torch.cat([0.5 - x, x - 0.5], dim=1)


def square(shape=(64, 64)) -> np.ndarray:
    """0 with a 1 square, and the labels it must give."""
    image = np.zeros(shape, np.float32)
    image[16:40, 20:44] = 1
    return image


@pytest.fixture(scope="module")
def net(nets):
    return nets.MODELS["unet-transposed"]()


@pytest.fixture(scope="module")
def rgb():
    rng = np.random.default_rng(1)
    return (rng.random((40, 56, 3)) * 255).astype(np.uint8)


# item 2: channel=


def test_channel_index_and_mean_feed_a_one_channel_model(net, rgb):
    assert net.in_channels == 1
    expected = nus.segment(rgb[..., 1], net)
    np.testing.assert_array_equal(nus.segment(rgb, net, channel_axis=-1, channel=1), expected)
    np.testing.assert_array_equal(nus.segment(rgb, net, channel_axis=-1, channel=-2), expected)
    mean = rgb.astype(np.float64).mean(-1)
    np.testing.assert_allclose(nus.predict(rgb, net, channel_axis=-1, channel="mean"),
                               nus.predict(mean, net), atol=1e-5)
    planar = np.moveaxis(rgb, -1, 0)
    gen = nus.iter_segment(planar, net, channel_axis=0, channel=1)
    np.testing.assert_array_equal(nus.inference.events.drain(gen), expected)
    stack = np.stack([rgb, rgb[::-1]])
    probs = nus.predict(stack, net, channel_axis=-1, channel=0, normalization={"mode": "percentile", "scope": "stack"})
    assert probs.shape == (3, 2, 40, 56)


def test_channel_on_dask_equals_in_memory(net, rgb):
    da = pytest.importorskip("dask.array")
    stack = np.stack([rgb, rgb[::-1], rgb[:, ::-1]])
    lazy = nus.segment(da.from_array(stack, chunks=(1, 40, 56, 3)), net, channel_axis=-1, channel=2)
    np.testing.assert_array_equal(lazy.compute(), nus.segment(stack, net, channel_axis=-1, channel=2))
    lazy_p = nus.predict(da.from_array(stack, chunks=(2, 40, 56, 3)), net, channel_axis=-1, channel="mean")
    np.testing.assert_allclose(lazy_p.compute(), nus.predict(stack, net, channel_axis=-1, channel="mean"),
                               atol=1e-5)  # float32 sums in another batch order differ by ~1e-6 on some CPUs


def test_channel_errors(net, rgb):
    with pytest.raises(ValueError, match=r"expects 1 input channel\(s\) but `image` \(shape \(40, 56, 3\).*"
                                         r"pick one with channel=<index> or channel='mean'"):
        nus.segment(rgb, net, channel_axis=-1)
    with pytest.raises(ValueError, match=r"`channel=0` picks along the channel axis: pass channel_axis="):
        nus.segment(rgb[..., 0], net, channel=0)
    with pytest.raises(ValueError, match=r"`channel=3` is out of range: `image` \(shape \(40, 56, 3\)"):
        nus.segment(rgb, net, channel_axis=-1, channel=3)
    with pytest.raises(TypeError, match=r"`channel` must be None, an int"):
        nus.predict(rgb, net, channel_axis=-1, channel=1.5)
    three = nus.UNet(3, 2, base_channels=4, depth=2)
    with pytest.raises(ValueError, match=r"`channel=0` makes one input channel, but the model expects 3"):
        nus.segment(rgb, three, channel_axis=-1, channel=0)


# item 3: an RGB array without channel_axis


def test_rgb_without_channel_axis_warns(net, rgb):
    rgb = rgb[:6]  # 6 slices of 56 x 3 pixels
    with pytest.warns(UserWarning, match=r"has 3 entries on its last axis.*pass channel_axis=-1"):
        labels = nus.segment(rgb, net)
    assert labels.shape == rgb.shape  # still what was asked: slices of 56 x 3 pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nus.segment(rgb, net, channel_axis=-1, channel=0)
        nus.segment(np.moveaxis(rgb, -1, 0), net)  # 3 slices of 40 x 56


# item 5: torch tensors and lists


def test_tensor_and_list_images(net):
    image = np.random.default_rng(2).random((2, 32, 40)).astype(np.float32)
    expected = nus.segment(image, net)
    np.testing.assert_array_equal(nus.segment(torch.from_numpy(image), net), expected)
    np.testing.assert_array_equal(nus.segment(torch.from_numpy(image).requires_grad_(), net), expected)
    np.testing.assert_array_equal(nus.segment(image.tolist(), net), expected)
    half = torch.from_numpy(image).to(torch.bfloat16)
    np.testing.assert_array_equal(nus.segment(half, net), nus.segment(half.float().numpy(), net))
    np.testing.assert_allclose(nus.predict(torch.from_numpy(image), net), nus.predict(image, net), atol=1e-6)
    for bad in ({"a": 1}, "image.tif", 3.0):
        with pytest.raises(TypeError, match=r"`image` must be an array .* a torch tensor or a list"):
            nus.segment(bad, net)
    with pytest.raises(ValueError, match=r"`image` as a list must be rectangular"):
        nus.segment([[1, 2, 3], [1, 2]], net)


# item 17: normalization range


@pytest.mark.parametrize("make", [
    lambda s: s.astype(np.float64) * 1e300,
    lambda s: s * np.float32(1e-7),
    lambda s: s.astype(np.float64) * 1e-7,
    lambda s: (s * 300).astype(np.int64) + 2**62,
    lambda s: (s * 300).astype(np.uint64) + np.uint64(2**63),
    lambda s: (s * 300).astype(np.int64) - 2**62,
], ids=["f64-huge", "f32-tiny", "f64-tiny", "i64-offset", "u64-offset", "i64-negative-offset"])
def test_extreme_ranges_give_the_labels_of_the_plain_image(make):
    image = square()
    expected = nus.segment(image, threshold_model, halo=0)
    assert expected.sum() == 24 * 24
    scaled = np.stack([make(image), make(image)])
    labels = nus.segment(scaled, threshold_model, halo=0)
    np.testing.assert_array_equal(labels, np.stack([expected, expected]))
    probs = nus.predict(scaled, threshold_model, halo=0)
    assert np.isfinite(probs).all()


def test_stack_scope_with_a_64_bit_offset():
    image = square()
    expected = nus.segment(image, threshold_model, halo=0)
    scaled = np.stack([(image * 300).astype(np.int64) + 2**62] * 2)
    labels = nus.segment(scaled, threshold_model, halo=0, normalization={"mode": "percentile", "scope": "stack"})
    np.testing.assert_array_equal(labels, np.stack([expected, expected]))


# item 18: the halo bounded by what the image can use


def test_huge_halo_is_bounded(net):
    image = np.random.default_rng(4).random((96, 96)).astype(np.float32)
    info_auto, info_big, info_huge = {}, {}, {}
    expected = nus.predict(image, net, info=info_auto)
    np.testing.assert_array_equal(nus.predict(image, net, halo=1500, info=info_big), expected)
    np.testing.assert_array_equal(nus.predict(image, net, halo=10**6, info=info_huge), expected)
    assert info_big["halo"] == info_huge["halo"] == info_auto["halo"] == net.halo
    assert info_big["n_tiles"] == 1 and info_big["window_shape"] == info_auto["window_shape"]


def test_huge_halo_of_an_unknown_callable_is_bounded_by_the_image():
    image = np.random.default_rng(4).random((96, 80)).astype(np.float32)
    info = {}
    probs = nus.predict(image, threshold_model, halo=10**6, tile_size=32, info=info)
    assert info["halo"] == 96 and max(info["window_shape"]) <= 32 + 2 * 96
    np.testing.assert_allclose(probs, nus.predict(image, threshold_model, halo=0), atol=1e-6)


# item 19: a callable whose output size differs from its input


@pytest.mark.parametrize("tile_size", ["auto", None, 32])
def test_cropping_callable_is_refused(tile_size):
    def crops(x):
        return threshold_model(x)[..., 4:-4, 4:-4]

    with pytest.raises(ValueError, match=r"the model returned logits of \d+ x \d+ pixels for an input of "
                                         r"\d+ x \d+: it must return N x K x H x W logits of the input's size"):
        nus.segment(square(), crops, tile_size=tile_size)


# item 20: non-finite outputs


def test_nan_weights_are_an_error_naming_the_model(nets):
    model = nets.MODELS["unet-transposed"]()
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(nus.inference.NonFiniteOutputError, match=r"model UNet returned non-finite logits .* weights"):
        nus.segment(square(), model)


def test_non_finite_callable_output_is_an_error():
    def broken(x):
        return threshold_model(x) / 0.0

    with pytest.raises(ValueError, match=r"model broken returned non-finite logits"):  # one line in the CLI
        nus.predict(square(), broken)


# item 24: errors naming their cause, before the work


def test_bad_out_with_instances_fails_before_the_inference(net):
    calls = []
    handle = net.register_forward_hook(lambda *a: calls.append(1))
    try:
        image = square((2, 32, 32))
        with pytest.raises(ValueError, match=r"`out` must have shape \(2, 32, 32\), got \(32, 32\)"):
            nus.segment(image, net, instances=True, out=np.zeros((32, 32), np.int32))
        with pytest.raises(ValueError, match=r"`out` for instance labels must have an integer dtype, got float32"):
            nus.segment(image, net, instances=True, out=np.zeros((2, 32, 32), np.float32))
        read_only = np.zeros((2, 32, 32), np.int32)
        read_only.flags.writeable = False
        for instances in (True, False):
            with pytest.raises(ValueError, match=r"`out` is read-only"):
                nus.segment(image, net, instances=instances, out=read_only)
        assert calls == []
    finally:
        handle.remove()


def test_bad_run_options_name_themselves(net):
    image = square((32, 32))
    with pytest.raises(TypeError, match=r"`cancel` must be an object with is_set\(\) .* got bool"):
        nus.segment(image, net, cancel=True)
    with pytest.raises(TypeError, match=r"`progress` must be a callable"):
        nus.segment(image, net, progress="yes")
    with pytest.raises(TypeError, match=r"`precision` must be 'auto', 'float32', 'bfloat16' or 'float16', got \['x'\]"):
        nus.segment(image, net, precision=["x"])
    with pytest.raises(TypeError, match=r"`threshold` must be a number in \[0, 1\], got 'a'"):
        nus.segment(image, net, threshold="a")


def test_finite_logits_whose_sum_overflows_are_no_error():
    """The finiteness check sums first: a sum that overflows to inf is not a non-finite
    logit (the full check decides), and one NaN or inf among finite logits still is."""
    from napari_unet_stack.inference.forward import check_logits
    from napari_unet_stack.inference.spec import model_spec

    spec = model_spec(threshold_model)
    x = torch.zeros(1, 1, 8, 8)
    huge = torch.full((1, 2, 8, 8), 3e38)
    assert not torch.isfinite(huge.sum()) and bool(torch.isfinite(huge).all())
    check_logits(spec, huge, x)  # no error
    for bad in (float("nan"), float("inf"), -float("inf")):
        logits = torch.zeros(1, 2, 8, 8)
        logits[0, 1, 3, 5] = bad
        with pytest.raises(nus.inference.NonFiniteOutputError, match=r"in 1 of 128 values"):
            check_logits(spec, logits, x)
