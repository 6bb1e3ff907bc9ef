"""Training a z-context model reads each slice's neighbours along the axis `predict` reads
them along: ``z_axis`` ('auto': the last stack axis that is not a ``time_axis``; None, or no
such axis: each slice its own neighbour), axes numbered as image axes, checked per image.
The inputs are checked against contexts built here by hand."""

import numpy as np
import pytest
import torch

from napari_unet_stack.training import train
from napari_unet_stack.training.data import prepare_data
from napari_unet_stack.training.settings import TrainSettings

PERCENTILE = {"mode": "percentile", "low": 1.0, "high": 99.8, "scope": "slice"}


def normalized(plane: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(plane.astype(np.float64), [1.0, 99.8])
    return ((plane - lo) / (hi - lo)).astype(np.float32)


def by_hand(image: np.ndarray, lead: tuple[int, ...], z: int | None, k: int = 1) -> np.ndarray:
    """Slice ``lead`` of ``image`` (no channel axis) with its k neighbours along leading axis
    ``z`` (ends repeated; None: itself), each normalized on its own."""
    planes = []
    for d in range(-k, k + 1):
        at = list(lead)
        if z is not None:
            at[z] = min(max(lead[z] + d, 0), image.shape[z] - 1)
        planes.append(normalized(image[tuple(at)]))
    return np.stack(planes)


def pair(shape, seed=0):
    rng = np.random.default_rng(seed)
    image = (rng.random(shape) * 900 + 50).astype(np.uint16)
    labels = np.zeros(image.shape, np.uint8)
    labels[..., 4:12, 5:13] = 1
    return image, labels


def check_inputs(data, images, zs, k=1):
    images = images if isinstance(images, list) else [images]
    assert len(data.slices) == sum(int(np.prod(im.shape[:-2])) for im in images)
    for s in data.slices:
        i, lead = s.source
        np.testing.assert_allclose(s.image, by_hand(images[i], lead, zs[i], k), atol=1e-5)


def test_a_time_axis_in_the_middle_is_never_read_across():
    image, labels = pair((3, 2, 16, 16))  # (Z, T, Y, X)
    data = prepare_data(image, labels, normalization=PERCENTILE, z_context=1, time_axes=(1,))
    check_inputs(data, image, [0])
    along_t = prepare_data(image, labels, normalization=PERCENTILE, z_context=1)  # 'auto', no time: the last
    check_inputs(along_t, image, [1])
    assert not np.allclose(data.slices[0].image, along_t.slices[0].image)


@pytest.mark.parametrize(("z_axis", "z"), [(0, 0), (-3, 1), (1, 1), (None, None)])
def test_z_axis_given_explicitly(z_axis, z):
    image, labels = pair((3, 4, 16, 16), seed=1)
    data = prepare_data(image, labels, normalization=PERCENTILE, z_context=2, z_axis=z_axis, time_axes=(0,))
    check_inputs(data, image, [z], k=2)  # an explicit z_axis wins over the time axes


def test_axes_are_image_axes_resolved_per_image():
    rng = np.random.default_rng(2)
    ztc = (rng.random((3, 2, 2, 16, 16)) * 500).astype(np.float32)  # (Z, T, C, Y, X)
    tc = ztc[1] * 2 + 3  # (T, C, Y, X): time points only
    masks = [np.ones(a.shape[:-3] + a.shape[-2:], np.uint8) for a in (ztc, tc)]
    for m in masks:
        m[..., :4, :] = 0
    # time_axis=-4 is T of both; channel_axis=-3 their C: Z is axis 0 of the first, the second has none
    data = prepare_data([ztc, tc], masks, normalization=PERCENTILE, channel_axis=-3, z_context=1, time_axes=(-4,))
    assert data.in_channels == 6
    for s in data.slices:  # neighbour-major: the C channels of z - 1, then of z, then of z + 1
        i, lead = s.source
        channels = np.moveaxis([ztc, tc][i], -3, 0)
        want = np.stack([by_hand(c, lead, 0 if i == 0 else None) for c in channels], axis=1)
        np.testing.assert_allclose(s.image, want.reshape(s.image.shape), atol=1e-5)
    with pytest.raises(ValueError, match=r"`time_axis=1` is not a leading \(stack\) axis of `images\[1\]` "
                                         r"\(shape \(2, 2, 16, 16\), channel_axis=-3\)"):
        prepare_data([ztc, tc], masks, normalization=PERCENTILE, channel_axis=-3, z_context=1, time_axes=(1,))


def test_a_stack_of_time_points_is_each_slice_its_own_neighbour():
    image, labels = pair((3, 16, 16))  # (T, Y, X): no Z, as a z-context model on a 2D image
    for options in ({"time_axes": (0,)}, {"z_axis": None}):
        data = prepare_data(image, labels, normalization=PERCENTILE, z_context=1, **options)
        check_inputs(data, image, [None])


def test_a_z_axis_per_image():
    """A list gives each image its own Z axis: (Z, T, Y, X) along 0 beside (T, Z, Y, X)
    along 1 and (T, Y, X) with none, each as prepared alone."""
    zt, tz, t = pair((3, 2, 16, 16), 3), pair((2, 3, 16, 16), 4), pair((3, 16, 16), 5)
    images, labels = [p[0] for p in (zt, tz, t)], [p[1] for p in (zt, tz, t)]
    data = prepare_data(images, labels, normalization=PERCENTILE, z_context=1, z_axis=[0, -3, None])
    check_inputs(data, images, [0, 1, None])
    with pytest.raises(ValueError, match="`z_axis` has 2 entries but there are 3 images"):
        prepare_data(images, labels, normalization=PERCENTILE, z_context=1, z_axis=[0, 1])
    with pytest.raises(ValueError, match=r"`z_axis=2` is not a leading \(stack\) axis of `images\[2\]`"):
        prepare_data(images, labels, normalization=PERCENTILE, z_context=1, z_axis=[0, 1, 2])


@pytest.mark.parametrize(("options", "match"), [
    ({"time_axes": (2,)}, r"`time_axis=2` is not a leading \(stack\) axis of `images` \(shape \(3, 2, 16, 16\)"),
    ({"time_axes": (-5,)}, "`time_axis=-5` is not a leading"),
    ({"z_axis": 3}, r"`z_axis=3` is not a leading \(stack\) axis of `images` \(shape \(3, 2, 16, 16\)"),
    ({"z_axis": 4}, "`z_axis=4` is not a leading"),
])
def test_an_axis_that_is_no_stack_axis_is_a_value_error(options, match):
    image, labels = pair((3, 2, 16, 16))
    with pytest.raises(ValueError, match=match):
        prepare_data(image, labels, normalization=PERCENTILE, z_context=1, **options)
    prepare_data(image, labels, normalization=PERCENTILE, **options)  # without z context: not read


@pytest.mark.parametrize(("name", "bad", "match"), [
    ("z_axis", "z", "`z_axis` must be 'auto', None or an int"),
    ("z_axis", 1.0, "`z_axis` must be 'auto', None or an int"),
    ("z_axis", True, "`z_axis` must be 'auto', None or an int"),
    ("z_axis", [0, "z"], "`z_axis` must be 'auto', None or an int"),
    ("time_axis", "t", "`time_axis` must be None, an int or a sequence of int"),
    ("time_axis", [0, 1.5], "`time_axis` must be None, an int or a sequence of int"),
    ("time_axis", object(), "`time_axis` must be None, an int or a sequence of int"),
])
def test_settings_check_the_axes(name, bad, match):
    with pytest.raises(TypeError, match=match):
        TrainSettings(**{name: bad})


def test_settings_store_the_axes():
    assert TrainSettings().z_axis == "auto" and TrainSettings().time_axis == ()
    s = TrainSettings(z_axis=np.int64(-3), time_axis=np.int32(1))
    assert s.z_axis == -3 and type(s.z_axis) is int and s.time_axis == (1,)
    assert TrainSettings(time_axis=[0, np.int64(2)]).time_axis == (0, 2) and TrainSettings(z_axis=None).z_axis is None
    assert TrainSettings(z_axis=(np.int64(0), None, "auto")).z_axis == [0, None, "auto"]


@pytest.mark.slow
def test_train_takes_the_axes_as_options():
    """``train(..., time_axis=1)`` on a (Z, T, Y, X) stack is the run along Z (z_axis=0), not
    the one along T ('auto' without time axes)."""
    image, labels = pair((3, 2, 32, 32))
    options = dict(z_context=1, steps=1, patch_size=32, batch_size=2, device="cpu", val_fraction=0, seed=3,
                   augment=False)
    timed, _ = train(image, labels, **options, time_axis=1)
    along_z, _ = train(image, labels, **options, z_axis=0)
    along_t, _ = train(image, labels, **options)
    for (name, a), b in zip(timed.state_dict().items(), along_z.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    assert not all(torch.equal(a, b) for a, b in zip(timed.state_dict().values(), along_t.state_dict().values(),
                                                     strict=True))
