"""Images as users have them (issue 11, items 1 and 2, command-line part): ``--axes`` says
what the file's dimensions are, ``--channel-axis none`` says it has no channel axis, and
``--channel INDEX|mean`` feeds a multichannel image to a one-channel model."""

import numpy as np
import pytest
import tifffile

from napari_unet_stack import io, segment


@pytest.fixture
def planar(tmp_path, stack):
    """A 3-plane stack written with plain `tifffile.imwrite`: stored (and read) as planar RGB."""
    import warnings

    path = tmp_path / "planes.tif"
    with warnings.catch_warnings():  # tifffile: "will store such data as MINISBLACK" (not yet)
        warnings.simplefilter("ignore", DeprecationWarning)
        tifffile.imwrite(path, stack[:3])
    with io.read_image(path) as image:
        assert image.axes == "CYX"  # what the file claims
    return path


@pytest.fixture
def rgb(tmp_path, stack):
    data = np.stack([stack[0], stack[1] // 2, stack[2]], axis=-1)  # (48, 64, 3)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, data)
    return path, data


def _labels(path):
    with io.read_image(path) as back:
        return np.asarray(back.data[...]), back.axes


def test_planar_stack_is_refused_without_a_way_out_today(run, one_line_error, tmp_path, planar, checkpoint):
    code, _, err = run("predict", planar, "-o", tmp_path / "l.tif", "--model", checkpoint)
    one_line_error(code, err, "expects 1 channel(s)")
    assert "--axes" in err  # the message says how to read it otherwise


@pytest.mark.parametrize("extra", [["--axes", "ZYX"], ["--axes", "zyx"], ["--channel-axis", "none"]])
def test_axes_or_no_channel_axis_reads_the_planes_as_slices(run, tmp_path, planar, checkpoint, model, stack,
                                                            extra):
    code, out, err = run("predict", planar, "-o", tmp_path / "l.tif", "--model", checkpoint, *extra)
    assert code == 0, err
    labels, axes = _labels(tmp_path / "l.tif")
    np.testing.assert_array_equal(labels, segment(stack[:3], model, device="cpu"))
    assert axes == "ZYX" and "3 x 48 x 64" in out


def test_axes_that_do_not_fit_name_the_file(run, one_line_error, tmp_path, planar, checkpoint):
    code, _, err = run("predict", planar, "-o", tmp_path / "l.tif", "--model", checkpoint, "--axes", "YX")
    one_line_error(code, err, "planes.tif")
    assert not (tmp_path / "l.tif").exists()


@pytest.mark.parametrize(("axes", "channel_axis", "match"), [
    ("YXC", "0", "--channel-axis 0 contradicts --axes YXC (C is axis 2)"),
    ("ZYX", "0", "--channel-axis 0 contradicts --axes ZYX (it has no C)"),
    ("CYX", "none", "--channel-axis none contradicts --axes CYX (C is axis 0)"),
    ("YXC", "-1", None),
])
def test_axes_and_channel_axis_must_agree(run, one_line_error, tmp_path, rgb, checkpoint, axes, channel_axis,
                                          match):
    code, _, err = run("predict", rgb[0], "-o", tmp_path / "l.tif", "--model", checkpoint, "--axes", axes,
                       "--channel-axis", channel_axis, "--channel", "0")
    if match is None:
        assert code == 0, err
    else:
        one_line_error(code, err, match)


@pytest.mark.parametrize("choice", ["0", "2", "-1", "mean", "MEAN"])
def test_channel_feeds_an_rgb_image_to_a_one_channel_model(run, tmp_path, rgb, checkpoint, model, choice):
    path, data = rgb
    code, _, err = run("predict", path, "-o", tmp_path / "l.tif", "--model", checkpoint, "--channel-axis", "-1",
                       "--channel", choice, "--probabilities", tmp_path / "p.zarr")
    assert code == 0, err
    want = choice.lower() if choice.lower() == "mean" else int(choice)
    labels, axes = _labels(tmp_path / "l.tif")
    np.testing.assert_array_equal(labels, segment(data, model, channel_axis=-1, channel=want, device="cpu"))
    probs, _ = _labels(tmp_path / "p.zarr")
    mono = data.mean(axis=-1) if want == "mean" else data[..., want]
    assert probs.shape == (2, 48, 64) and axes == "YX"
    np.testing.assert_array_equal(labels, segment(mono.astype(np.float32), model, device="cpu"))


def test_channel_from_the_files_c_axis(run, tmp_path, rgb, checkpoint, model):
    path, data = rgb  # read as YXC: no --channel-axis needed
    code, _, err = run("predict", path, "-o", tmp_path / "l.tif", "--model", checkpoint, "--channel", "1")
    assert code == 0, err
    np.testing.assert_array_equal(_labels(tmp_path / "l.tif")[0], segment(data[..., 1], model, device="cpu"))


@pytest.mark.parametrize(("extra", "match"), [
    (["--channel", "3"], "`channel=3` is out of range"),
    (["--channel", "median"], "--channel must be an integer or 'mean', got 'median'"),
    (["--channel-axis", "none", "--channel", "0"], "picks along the channel axis"),
    ([], "expects 1 channel(s) but the image (shape (48, 64, 3), axes YXC) has 3"),
])
def test_channel_errors(run, one_line_error, tmp_path, rgb, checkpoint, extra, match):
    code, _, err = run("predict", rgb[0], "-o", tmp_path / "l.tif", "--model", checkpoint, *extra)
    one_line_error(code, err, match)
    if not extra:
        assert "--channel INDEX or --channel mean" in err
    assert not (tmp_path / "l.tif").exists()


def test_bad_channel_is_refused_before_the_model_loads(run, one_line_error, tmp_path, rgb):
    code, _, err = run("predict", rgb[0], "-o", tmp_path / "l.tif", "--model", "no-such-model", "--channel", "x")
    one_line_error(code, err, "--channel must be an integer or 'mean'")


def test_readme_rgb_example_runs_with_the_bundled_model(run, tmp_path, rgb, monkeypatch):
    """README: ``unet-stack predict rgb.tif -o labels.ome.tif --channel-axis -1 --channel mean
    --instances --min-size 30`` (it failed: the bundled model takes one channel)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("unet-stack predict rgb.tif"))
    argv = re.split(r"\s+", line.split("#")[0].strip())[1:]
    monkeypatch.chdir(tmp_path)
    assert rgb[0] == tmp_path / "rgb.tif"
    code, _, err = run(*argv, "--tile-size", "none")
    assert code == 0, err
    labels, _ = _labels(tmp_path / "labels.ome.tif")
    assert labels.shape == (48, 64)


@pytest.mark.parametrize("extra", [["--axes", "ZYX"], ["--channel-axis", "none"]])
def test_train_reads_planes_as_slices(run, tmp_path, planar, stack, train_calls, extra):
    np.save(tmp_path / "lab.npy", (stack[:3] > stack.mean()).astype(np.uint8))
    code, _, err = run("train", planar, tmp_path / "lab.npy", "-o", tmp_path / "m.pt", "-q", *extra)
    assert code == 0, err
    (call,) = train_calls
    assert call["channel_axis"] is None and call["model"].in_channels == 1
    np.testing.assert_array_equal(call["images"][0], stack[:3])


def test_train_without_axes_sees_three_channels(run, tmp_path, planar, stack, train_calls):
    np.save(tmp_path / "lab.npy", (stack[0] > stack.mean()).astype(np.uint8))
    code, _, err = run("train", planar, tmp_path / "lab.npy", "-o", tmp_path / "m.pt", "-q")
    assert code == 0, err
    assert train_calls[0]["channel_axis"] == 0 and train_calls[0]["model"].in_channels == 3


@pytest.mark.parametrize("choice", ["1", "mean"])
def test_train_channel_picks_one_channel(run, tmp_path, rgb, train_calls, choice):
    path, data = rgb
    np.save(tmp_path / "lab.npy", (data[..., 0] > data.mean()).astype(np.uint8))
    code, _, err = run("train", path, tmp_path / "lab.npy", "-o", tmp_path / "m.pt", "-q", "--channel", choice)
    assert code == 0, err
    (call,) = train_calls
    want = data.mean(axis=-1) if choice == "mean" else data[..., 1]
    assert call["channel_axis"] is None and call["model"].in_channels == 1
    np.testing.assert_allclose(call["images"][0], want, rtol=1e-6)


def test_train_channel_errors(run, one_line_error, tmp_path, rgb, train_calls):
    path, data = rgb
    np.save(tmp_path / "lab.npy", np.zeros(data.shape[:2], np.uint8))
    code, _, err = run("train", path, tmp_path / "lab.npy", "-o", tmp_path / "m.pt", "--channel", "5")
    one_line_error(code, err, "rgb.tif' has 3 channel(s)", command="train")
    code, _, err = run("train", path, tmp_path / "lab.npy", "-o", tmp_path / "m.pt", "--channel", "x")
    one_line_error(code, err, "--channel must be an integer or 'mean'", command="train")
    assert train_calls == []
