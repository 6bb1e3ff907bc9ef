"""`unet-stack predict` / `train` with z-context (2.5D) models: a model of 3 input channels
with ``meta["z_context"] = 1`` reads a 1-channel stack, each slice with its neighbours
along the file's Z axis and never across its T axis; ``train --z-context K`` builds one,
reading the training slices' neighbours by the same rule (it passes the file's T axes)."""

import copy

import numpy as np
import pytest
import torch

from napari_unet_stack import io, load_model, predict, segment
from napari_unet_stack.checkpoints import save_model
from napari_unet_stack.models import UNet
from napari_unet_stack.training.data import prepare_data


@pytest.fixture(scope="module")
def zmodel(stack, balanced):
    torch.manual_seed(1)
    model = UNet(3, 2, base_channels=4, depth=2).eval()
    model.meta["z_context"] = 1
    return balanced(model, stack)


@pytest.fixture(scope="module")
def zcheckpoint(zmodel, tmp_path_factory):
    return str(save_model(zmodel, tmp_path_factory.mktemp("zckpt") / "z1.pt"))


def _read(path):
    with io.read_image(path) as image:
        return np.asarray(image.data)


def _plain_2d(model):
    """The same network as a plain 2D model of 3 channels (no z context)."""
    plain = copy.deepcopy(model)
    plain.meta.pop("z_context")
    return plain


def _by_hand(stack, model):
    """Probabilities of each slice fed to the plain 2D network as the 3 channels z-1, z, z+1
    (ends repeated), each channel normalized on its own: the z-context rule computed here."""
    n = len(stack)
    planes = [np.stack([stack[max(z - 1, 0)], stack[z], stack[min(z + 1, n - 1)]]) for z in range(n)]
    return np.stack([predict(p, _plain_2d(model), channel_axis=0, device="cpu") for p in planes], axis=1)


def test_the_neighbour_rule_by_hand_is_what_predict_computes(stack, zmodel):
    expected = _by_hand(stack, zmodel)
    np.testing.assert_allclose(predict(stack, zmodel, device="cpu"), expected, rtol=1e-5, atol=1e-6)
    alone = predict(stack, zmodel, device="cpu", z_axis=None)  # each slice its own neighbour
    assert not np.allclose(alone, expected, atol=1e-4)  # the neighbours matter to this model


def test_predict_on_a_zyx_tif_is_segment_of_the_stack(run, tmp_path, stack, zmodel, zcheckpoint):
    src = tmp_path / "stack.tif"
    io.write_image(src, stack, axes="ZYX")
    code, _, err = run("predict", src, "-o", tmp_path / "labels.tif", "--model", zcheckpoint, "--device", "cpu",
                       "--probabilities", tmp_path / "p.tif", "-q")
    assert code == 0, err
    labels = _read(tmp_path / "labels.tif")
    np.testing.assert_array_equal(labels, segment(stack, zmodel, device="cpu"))
    assert 0 < np.count_nonzero(labels) < labels.size
    np.testing.assert_allclose(_read(tmp_path / "p.tif"), _by_hand(stack, zmodel),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_instances_on_a_zyx_tif_are_segments(run, tmp_path, stack, zmodel, zcheckpoint):
    src = tmp_path / "stack.npy"
    np.save(src, stack)
    code, _, err = run("predict", src, "-o", tmp_path / "ids.npy", "--model", zcheckpoint, "--device", "cpu",
                       "--instances", "-q")
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "ids.npy"), segment(stack, zmodel, device="cpu", instances=True))


def test_a_t_axis_is_never_read_across(run, tmp_path, stack, zmodel, zcheckpoint):
    tzyx = np.stack([stack, stack[::-1]])  # two time points of 4 slices
    io.write_image(tmp_path / "tz.ome.tif", tzyx, axes="TZYX")
    io.write_image(tmp_path / "t.ome.tif", stack, axes="TYX")  # time only: no Z to read along
    for name in ("tz", "t"):
        code, _, err = run("predict", tmp_path / f"{name}.ome.tif", "-o", tmp_path / f"{name}_labels.tif",
                           "--model", zcheckpoint, "--device", "cpu", "--probabilities", tmp_path / f"{name}_p.tif",
                           "-q")
        assert code == 0, err
    # TZYX: each time point on its own, as a ZYX stack
    probs = _read(tmp_path / "tz_p.tif")
    for t in range(2):
        np.testing.assert_allclose(probs[:, t], _by_hand(tzyx[t], zmodel), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(_read(tmp_path / "tz_labels.tif"),
                                  segment(tzyx, zmodel, device="cpu", time_axis=0))
    # ZTYX (T last: the engine's default would read along it): along Z all the same
    io.write_image(tmp_path / "zt.ome.tif", tzyx.swapaxes(0, 1), axes="ZTYX")
    code, _, err = run("predict", tmp_path / "zt.ome.tif", "-o", tmp_path / "zt_labels.tif", "--model", zcheckpoint,
                       "--device", "cpu", "--probabilities", tmp_path / "zt_p.tif", "-q")
    assert code == 0, err
    np.testing.assert_allclose(_read(tmp_path / "zt_p.tif"), probs.swapaxes(1, 2), rtol=1e-5, atol=1e-6)
    assert not np.allclose(predict(tzyx.swapaxes(0, 1), zmodel, device="cpu"), probs.swapaxes(1, 2), atol=1e-4)
    # TYX: each slice its own neighbour (2D images), not the time points around it
    probs = _read(tmp_path / "t_p.tif")
    alone = np.stack([predict(np.repeat(s[None], 3, 0), _plain_2d(zmodel), channel_axis=0, device="cpu")
                      for s in stack], axis=1)
    np.testing.assert_allclose(probs, alone, rtol=1e-5, atol=1e-6)
    assert not np.allclose(probs, _by_hand(stack, zmodel), atol=1e-4)
    np.testing.assert_array_equal(_read(tmp_path / "t_labels.tif"),
                                  segment(stack, zmodel, device="cpu", time_axis=0))


def test_channels_are_counted_per_slice(run, one_line_error, tmp_path, stack, zcheckpoint):
    src = tmp_path / "three.npy"
    np.save(src, np.stack([stack] * 3, axis=1))  # Z, C=3, Y, X: 3 image channels, the model reads 1
    code, _, err = run("predict", src, "-o", tmp_path / "out.npy", "--model", zcheckpoint, "--channel-axis", "1")
    one_line_error(code, err, "expects 1 channel(s) per slice (z context 1: 3 slices in)")
    code, _, err = run("predict", src, "-o", tmp_path / "out.npy", "--model", zcheckpoint, "--channel-axis", "1",
                       "--channel", "0", "--device", "cpu", "-q")
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), segment(stack, load_model(zcheckpoint), device="cpu"))


@pytest.fixture
def pair(tmp_path):
    from napari_unet_stack.synthetic import nuclei_stack

    made = nuclei_stack((3, 48, 48), seed=3)
    io.write_image(tmp_path / "img.tif", made.image, axes="ZYX")
    np.save(tmp_path / "lab.npy", made.labels)
    return [tmp_path / "img.tif", tmp_path / "lab.npy"], made


TINY = ("--steps", "2", "--patch-size", "32", "--batch-size", "2", "--device", "cpu", "--val-fraction", "0",
        "--seed", "5", "-q")


@pytest.mark.slow
def test_train_z_context_is_the_librarys_training(run, tmp_path, pair):
    from napari_unet_stack import train

    files, made = pair
    code, _, err = run("train", *files, "-o", tmp_path / "z.pt", "--z-context", "1", *TINY)
    assert code == 0, err
    model = load_model(tmp_path / "z.pt")
    assert model.in_channels == 3 and model.meta["z_context"] == 1
    expected, _ = train(made.image, made.labels, None, z_context=1, steps=2, patch_size=32, batch_size=2,
                        device="cpu", val_fraction=0, seed=5)
    assert expected.in_channels == 3 and expected.meta["z_context"] == 1
    for (name, a), b in zip(model.state_dict().items(), expected.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    code, _, err = run("predict", files[0], "-o", tmp_path / "l.tif", "--model", tmp_path / "z.pt", "--device",
                       "cpu", "-q")
    assert code == 0, err
    np.testing.assert_array_equal(_read(tmp_path / "l.tif"), segment(made.image, expected, device="cpu"))


def test_z_context_option_errors(run, one_line_error, tmp_path, pair, checkpoint, zcheckpoint, capsys):
    files, _ = pair
    code, _, err = run("train", *files, "-o", tmp_path / "m.pt", "--model", checkpoint, "--z-context", "1", *TINY)
    one_line_error(code, err, "a model's z context cannot change", command="train")
    code, _, err = run("train", *files, "-o", tmp_path / "m.pt", "--model", zcheckpoint, "--z-context", "0", *TINY)
    one_line_error(code, err, "--model reads 1 neighbouring slice(s)", command="train")
    assert not (tmp_path / "m.pt").exists()
    for bad in ("-1", "one"):
        with pytest.raises(SystemExit) as exit_info:
            run("train", *files, "-o", tmp_path / "m.pt", "--z-context", bad)
        assert exit_info.value.code == 2 and "--z-context: must be an int >= 0" in capsys.readouterr().err


@pytest.mark.slow
def test_train_on_a_tyx_file_reads_each_slice_as_its_own_neighbour(run, tmp_path, pair):
    """A T-only file is a set of 2D images to a z-context model (as `predict` reads it):
    it trains as the library does with z_axis=None, not along T."""
    from napari_unet_stack import train

    files, made = pair
    io.write_image(tmp_path / "t.ome.tif", made.image, axes="TYX")
    code, _, err = run("train", tmp_path / "t.ome.tif", files[1], "-o", tmp_path / "t.pt", "--z-context", "1", *TINY)
    assert code == 0, err
    got = load_model(tmp_path / "t.pt").state_dict()
    options = dict(z_context=1, steps=2, patch_size=32, batch_size=2, device="cpu", val_fraction=0, seed=5)
    alone, _ = train(made.image, made.labels, None, z_axis=None, **options)
    along_t, _ = train(made.image, made.labels, None, z_axis=0, **options)
    for (name, a), b in zip(got.items(), alone.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    assert not all(torch.equal(a, b) for a, b in zip(got.values(), along_t.state_dict().values(), strict=True))


PERCENTILE = {"mode": "percentile", "low": 1.0, "high": 99.8, "scope": "slice"}
SHAPES = {"TZYX": (2, 3, 32, 32), "ZTYX": (3, 2, 32, 32), "TYX": (3, 32, 32), "ZYX": (3, 32, 32)}


def _normalized(plane):
    lo, hi = np.percentile(plane.astype(np.float64), [1.0, 99.8])
    return ((plane - lo) / (hi - lo)).astype(np.float32)


def _write_pair(folder, axes, seed=2):
    rng = np.random.default_rng(seed)
    image = (rng.random(SHAPES[axes]) * 1000 + 10).astype(np.uint16)
    labels = np.zeros(image.shape, np.uint8)
    labels[..., 8:20, 8:20] = 1
    io.write_image(folder / f"{axes}.ome.tif", image, axes=axes)
    np.save(folder / f"{axes}.npy", labels)
    return folder / f"{axes}.ome.tif", folder / f"{axes}.npy", image


@pytest.mark.parametrize(("axes", "z_axis"), [("TZYX", 1), ("ZTYX", 0), ("TYX", None)])
def test_train_passes_the_files_z_axis(run, tmp_path, train_calls, axes, z_axis):
    src, lab, image = _write_pair(tmp_path, axes)
    code, _, err = run("train", src, lab, "-o", tmp_path / "m.pt", "--z-context", "1", "-q")
    assert code == 0, err
    (call,) = train_calls
    assert call["z_axis"] == [z_axis] and call["z_context"] == 1
    _assert_neighbours_along_z(call, 0, axes, image)


def _assert_neighbours_along_z(call, index, axes, image):
    """What training reads from image ``index`` of a recorded call: each slice with its
    neighbours along the Z letter (none: each slice its own), built by hand."""
    data = prepare_data(call["images"], call["labels"], normalization=PERCENTILE, z_context=1, z_axis=call["z_axis"])
    z = axes.find("Z")  # -1: no Z, each slice its own neighbour
    mine = [s for s in data.slices if s.source[0] == index]
    assert len(mine) == int(np.prod(image.shape[:-2]))
    for s in mine:
        lead = s.source[1]
        want = []
        for d in (-1, 0, 1):
            at = list(lead)
            if z >= 0:
                at[z] = min(max(lead[z] + d, 0), image.shape[z] - 1)
            want.append(_normalized(image[tuple(at)]))
        np.testing.assert_allclose(s.image, np.stack(want), atol=1e-5)


def test_train_reads_files_of_different_axis_orders_each_along_its_own_z(run, tmp_path, train_calls):
    """A ZYX, a TZYX, a ZTYX and a TYX file in one z-context run: each reads its neighbours
    along its own Z letter, as predict would read it."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    written = {}
    for axes in ("TZYX", "TYX", "ZTYX", "ZYX"):
        src, lab, image = _write_pair(images, axes)
        lab.rename(labels / lab.name)
        written[src.name] = (axes, image)
    code, _, err = run("train", images, labels, "-o", tmp_path / "m.pt", "--z-context", "1", "-q")
    assert code == 0, err
    (call,) = train_calls
    order = sorted(written)  # the files pair up in sorted order
    assert call["z_axis"] == [written[name][0].find("Z") if "Z" in written[name][0] else None for name in order]
    for i, name in enumerate(order):
        _assert_neighbours_along_z(call, i, *written[name])
