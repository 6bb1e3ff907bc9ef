"""Z-context (2.5D) models in the engine: each slice read with its neighbours in Z.

The independent computation throughout: the same weights in a plain model (no
``meta["z_context"]``) given the context built here with numpy, each slice's neighbours
stacked as channels with the ends repeated, as `napari_unet_stack.zcontext` describes.
"""

import dask.array as da
import numpy as np
import pytest
import torch

from napari_unet_stack import predict, segment
from napari_unet_stack.checkpoints import CheckpointError, load_model, save_model
from napari_unet_stack.models import UNet


def context_model(nets, k: int = 1, channels: int = 1, classes: int = 3):
    """(a z-context UNet, the same weights without z context)."""
    model = nets.init(UNet((2 * k + 1) * channels, classes, base_channels=4, depth=2))
    plain = UNet((2 * k + 1) * channels, classes, base_channels=4, depth=2)
    plain.load_state_dict(model.state_dict())
    model.meta["z_context"] = k
    return model, plain


def by_hand(stack: np.ndarray, k: int) -> np.ndarray:
    """(Z, [C,] Y, X) -> (Z, (2k+1) C, Y, X): slices z-k .. z+k, clamped to the stack."""
    if stack.ndim == 3:
        stack = stack[:, None]
    n = len(stack)
    rows = [np.concatenate([stack[min(max(z + d, 0), n - 1)] for d in range(-k, k + 1)]) for z in range(n)]
    return np.stack(rows)


@pytest.fixture
def zstack():
    rng = np.random.default_rng(5)
    return (rng.random((6, 40, 52)) * 1000).astype(np.uint16)


@pytest.mark.parametrize("k", [1, 2])
def test_a_stack_equals_its_neighbours_given_as_channels(nets, zstack, k):
    model, plain = context_model(nets, k)
    expected = predict(by_hand(zstack, k), plain, channel_axis=1, device="cpu")
    assert np.array_equal(predict(zstack, model, device="cpu"), expected)
    assert np.array_equal(segment(zstack, model, device="cpu"), segment(by_hand(zstack, k), plain, channel_axis=1))


def test_channels_are_neighbour_major(nets):
    rng = np.random.default_rng(1)
    image = rng.random((4, 2, 36, 36)).astype(np.float32)  # Z, C, Y, X
    model, plain = context_model(nets, 1, channels=2)
    expected = predict(by_hand(image, 1), plain, channel_axis=1, device="cpu")  # z-1 (c0, c1), z, z+1
    assert np.array_equal(predict(image, model, channel_axis=1, device="cpu"), expected)
    last = predict(np.moveaxis(image, 1, -1), model, channel_axis=-1, device="cpu")
    assert np.array_equal(last, expected)


def test_tiles_equal_the_whole_slice(nets, zstack):
    model, _ = context_model(nets)
    whole = predict(zstack, model, tile_size=None, device="cpu")
    assert np.array_equal(predict(zstack, model, tile_size=16, device="cpu"), whole)


def test_time_points_are_never_neighbours(nets, zstack):
    model, _ = context_model(nets)
    tzyx = np.stack([zstack, zstack[::-1]])
    alone = np.stack([segment(t, model, device="cpu") for t in tzyx])
    assert np.array_equal(segment(tzyx, model, device="cpu"), alone)  # Z is the last leading axis
    zt = np.moveaxis(tzyx, 0, 1)  # (Z, T, Y, X): T named by time_axis, Z found before it
    assert np.array_equal(segment(zt, model, time_axis=1, device="cpu"), np.moveaxis(alone, 0, 1))
    probs = predict(zt, model, z_axis=0, device="cpu")
    assert np.array_equal(probs, np.moveaxis(predict(tzyx, model, device="cpu"), 1, 2))


def test_without_a_z_axis_each_slice_is_its_own_neighbour(nets, zstack):
    model, plain = context_model(nets)
    tripled = np.stack([zstack] * 3, axis=1)
    expected = predict(tripled, plain, channel_axis=1, device="cpu")
    assert np.array_equal(predict(zstack, model, z_axis=None, device="cpu"), expected)
    # a 2D image (a batch of one: float rounding may differ from a batch of several slices)
    np.testing.assert_allclose(predict(zstack[0], model, device="cpu"), expected[:, 0], atol=1e-5)
    assert np.array_equal(segment(zstack, model, time_axis=0, device="cpu"), segment(tripled, plain, channel_axis=1))


@pytest.mark.parametrize("chunks", [1, 2, 4])
def test_dask_chunks_equal_the_whole_stack(nets, zstack, chunks):
    model, _ = context_model(nets, 2)
    lazy = da.from_array(zstack, chunks=(chunks, 40, 52))
    assert np.array_equal(predict(lazy, model, device="cpu").compute(), predict(zstack, model, device="cpu"))
    assert np.array_equal(segment(lazy, model, device="cpu").compute(), segment(zstack, model, device="cpu"))


def test_dask_with_channels_time_and_stack_normalization(nets):
    rng = np.random.default_rng(2)
    image = (rng.random((2, 5, 2, 32, 32)) * 500).astype(np.uint16)  # T, Z, C, Y, X
    model, _ = context_model(nets, 1, channels=2)
    norm = {"mode": "percentile", "low": 1, "high": 99.8, "scope": "stack"}
    whole = predict(image, model, channel_axis=2, normalization=norm, device="cpu")
    lazy = da.from_array(image, chunks=(1, 2, 2, 32, 32))
    got = predict(lazy, model, channel_axis=2, normalization=norm, device="cpu").compute()
    np.testing.assert_allclose(got, whole, atol=1e-6)
    labels = segment(lazy, model, channel_axis=2, time_axis=0, device="cpu").compute()
    assert np.array_equal(labels, segment(image, model, channel_axis=2, time_axis=0, device="cpu"))


def test_zarr_input_reads_the_neighbours(nets, zstack):
    zarr = pytest.importorskip("zarr")
    model, _ = context_model(nets)
    store = zarr.zeros(zstack.shape, chunks=(1, 40, 52), dtype=zstack.dtype)
    store[:] = zstack
    assert np.array_equal(predict(store, model, device="cpu"), predict(zstack, model, device="cpu"))


class CountingStack:
    """An array-like stack that counts how often each slice is read (as a zarr store would
    read it from disk)."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads = [0] * len(data)

    def __getitem__(self, index):
        z = index[0]
        for i in range(len(self.data))[z] if isinstance(z, slice) else [z]:
            self.reads[i] += 1
        return self.data[index]


@pytest.mark.parametrize("k", [1, 2])
def test_each_slice_is_read_once_with_its_neighbours(nets, zstack, k):
    model, _ = context_model(nets, k)
    stack = CountingStack(zstack)
    labels = predict(stack, model, device="cpu", tile_size=32, batch_size=3)
    assert np.array_equal(labels, predict(zstack, model, device="cpu"))
    assert stack.reads == [1] * len(zstack)


def test_a_neighbours_nan_pixels_do_not_blank_the_slice(nets):
    rng = np.random.default_rng(4)
    image = rng.random((3, 32, 32)).astype(np.float32)
    image[1, 5, 7] = np.nan
    model, _ = context_model(nets)
    probs = predict(image, model, device="cpu")
    assert np.isnan(probs[:, 1, 5, 7]).all()  # the slice's own NaN
    assert np.isfinite(probs[:, [0, 2]]).all()  # its neighbours still get an answer there


@pytest.mark.parametrize("z_axis", [2, -1, 5])
def test_a_z_axis_that_is_not_a_stack_axis_is_refused(nets, zstack, z_axis):
    model, _ = context_model(nets)
    with pytest.raises(ValueError, match=r"`z_axis=.*` is not a leading"):
        predict(zstack, model, z_axis=z_axis)


def test_a_bad_z_axis_type_is_refused(nets, zstack):
    model, _ = context_model(nets)
    with pytest.raises(TypeError, match="`z_axis` must be"):
        predict(zstack, model, z_axis="z")


def test_image_channels_are_checked_without_the_neighbours(nets, zstack):
    model, _ = context_model(nets)  # 3 network inputs: one image channel
    with pytest.raises(ValueError, match="expects 1 input channel"):
        predict(np.stack([zstack] * 3, axis=1), model, channel_axis=1)


def test_checkpoints_keep_the_z_context(nets, zstack, tmp_path):
    model, _ = context_model(nets)
    path = save_model(model, tmp_path / "z.pt")
    loaded = load_model(path)
    assert loaded.meta["z_context"] == 1
    assert np.array_equal(predict(zstack, loaded, device="cpu"), predict(zstack, model, device="cpu"))


def test_a_z_context_that_does_not_split_the_channels_is_refused(nets, tmp_path):
    model = UNet(2, 2, base_channels=4, depth=2)
    model.meta["z_context"] = 1
    with pytest.raises(ValueError, match=r"z_context=1.* 3 equal blocks"):
        save_model(model, tmp_path / "bad.pt")
    good = UNet(3, 2, base_channels=4, depth=2)
    good.meta["z_context"] = 1
    path = save_model(good, tmp_path / "good.pt")
    raw = torch.load(path, weights_only=True)
    raw["meta"]["z_context"] = 2
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="'z_context' is invalid"):
        load_model(path)


def test_instance_options_carry_the_time_axes(nets, zstack):
    from napari_unet_stack.postprocess import InstanceOptions

    model, _ = context_model(nets)
    zt = np.stack([zstack, zstack[::-1]], axis=1)  # (Z, T, Y, X)
    options = InstanceOptions.from_instances("watershed", time_axis=1)
    assert np.array_equal(segment(zt, model, instances=options, device="cpu"),
                          segment(zt, model, instances="watershed", time_axis=1, device="cpu"))
    semantic = segment(zt, model, time_axis=1, device="cpu")
    assert np.array_equal(semantic[:, 0], segment(zstack, model, device="cpu"))
