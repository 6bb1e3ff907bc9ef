"""`unet-stack predict` end to end through `main([...])`: formats, folders, instances,
channels, thresholds, and agreement with `segment`."""

import os

import numpy as np
import pytest
import tifffile
import torch

from napari_unet_stack import cli, io, load_model, predict, save_model, segment
from napari_unet_stack.labels import LabelRule
from napari_unet_stack.models import UNet


def _hidden(folder):
    return [p for p in os.listdir(folder) if p.startswith(".")]


def test_predict_tiff_keeps_axes_pixel_size_and_equals_segment(run, tmp_path, inputs, checkpoint, model, stack,
                                                               scale):
    code, out, err = run("predict", inputs / "a.tif", "-o", tmp_path / "labels.tif", "--model", checkpoint,
                         "--tile-size", "32", "--device", "cpu")
    assert code == 0, err
    assert "labels.tif" in out
    with io.read_image(tmp_path / "labels.tif") as labels:
        assert labels.format == "imagej-tiff"
        assert labels.dtype == np.uint8 and labels.shape == stack.shape and labels.axes == "ZYX"
        assert labels.scale == pytest.approx(scale)
        assert labels.units == {"Z": "micrometer", "Y": "micrometer", "X": "micrometer"}
        result = np.asarray(labels.data[...])
    expected = segment(stack, model, device="cpu", tile_size=32)
    np.testing.assert_array_equal(result, expected)
    assert 0.1 < expected.mean() < 0.9  # non-trivial labels
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize("border", ["0", "reach"])
def test_predict_border_equals_segment_with_that_border(run, tmp_path, inputs, checkpoint, model, stack, border):
    code, _, err = run("predict", inputs / "a.tif", "-o", tmp_path / "labels.npy", "--model", checkpoint,
                       "--tile-size", "32", "--device", "cpu", "--border", border)
    assert code == 0, err
    expected = segment(stack, model, device="cpu", tile_size=32, border=0 if border == "0" else border)
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), expected)
    if border == "0":  # ('reach', 24 px here, gives the default's labels)
        assert (expected != segment(stack, model, device="cpu", tile_size=32)).any()  # the default differs


@pytest.mark.parametrize(("src", "dst", "fmt"), [("b.ome.zarr", "l.ome.zarr", "ome-zarr"), ("a.tif", "l.zarr", "zarr"),
                                                 ("c.npy", "l.ome.tif", "ome-tiff")])
def test_predict_formats(run, tmp_path, inputs, checkpoint, src, dst, fmt, scale):
    code, _, err = run("predict", inputs / src, "-o", tmp_path / dst, "--model", checkpoint)
    assert code == 0, err
    with io.read_image(inputs / src) as image, io.read_image(tmp_path / dst) as labels:
        assert labels.format == fmt and labels.shape == image.shape and labels.dtype == np.uint8
        assert labels.axes == "ZYX"
        assert labels.scale == ({} if src.endswith(".npy") else pytest.approx(scale))


def test_predict_folder_and_glob_write_one_output_each(run, tmp_path, inputs, checkpoint, scale):
    code, _, err = run("predict", inputs, "-o", tmp_path / "out", "--model", checkpoint,
                       "--probabilities", tmp_path / "probs")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "out")) == ["a_labels.tif", "b_labels.ome.zarr", "c_labels.npy"]
    assert sorted(os.listdir(tmp_path / "probs")) == [
        "a_probabilities.tif", "b_probabilities.ome.zarr", "c_probabilities.npy"]
    with io.read_image(tmp_path / "probs" / "a_probabilities.tif") as probs, \
            io.read_image(tmp_path / "out" / "a_labels.tif") as labels:
        assert probs.dtype == np.float32 and probs.axes == "CZYX" and probs.shape[0] == 2
        assert probs.scale == pytest.approx(scale)
        result, p = np.asarray(labels.data[...]), np.asarray(probs.data[...])
    rule = LabelRule.for_model(load_model(checkpoint))
    np.testing.assert_array_equal(result, rule.labels(p))
    # at the default 0.5, two-class softmax labels are the argmax but for ties within float32 rounding
    differ = result != np.argmax(p, axis=0)
    assert differ.mean() < 1e-3 and (np.abs(p[1] - p[0])[differ] < 1e-6).all()
    code, _, err = run("predict", str(inputs / "*.tif"), str(inputs / "c.npy"), "-o", tmp_path / "g",
                       "--model", checkpoint, "--format", "zarr")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "g")) == ["a_labels.zarr", "c_labels.zarr"]


def test_predict_output_folders(run, tmp_path, inputs, checkpoint, one_line_error):
    code, _, err = run("predict", inputs / "a.tif", "-o", tmp_path / "one.tif", "--model", checkpoint,
                       "--probabilities", f"{tmp_path / 'p'}/")
    assert code == 0, err
    assert os.listdir(tmp_path / "p") == ["a_probabilities.tif"]
    io.write_image(tmp_path / "store.zarr", np.zeros((2, 8, 8), np.uint8))
    for target in ("store.zarr", "one.tif"):
        code, _, err = run("predict", inputs, "-o", tmp_path / target, "--model", checkpoint)
        one_line_error(code, err, "to be a folder")


def test_predict_instances(run, tmp_path, inputs, checkpoint, model, stack):
    code, _, err = run("predict", inputs / "a.tif", "-o", tmp_path / "i.tif", "--model", checkpoint,
                       "--instances", "--min-size", "20")
    assert code == 0, err
    expected = segment(stack, model, device="cpu", instances=True, min_size=20)
    with io.read_image(tmp_path / "i.tif") as labels:
        assert labels.dtype == expected.dtype and labels.axes == "ZYX"
        np.testing.assert_array_equal(np.asarray(labels.data[...]), expected)
    assert expected.max() > 1


def test_predict_channels_from_file_axes(run, tmp_path, stack, balanced):
    torch.manual_seed(2)
    rgb = np.stack([stack, stack[:, ::-1], stack // 2], axis=1)  # Z C Y X
    model = balanced(UNet(3, 2, base_channels=4, depth=2).eval(), rgb, channel_axis=1)
    ckpt = save_model(model, tmp_path / "rgb.pt")
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, imagej=True, metadata={"axes": "ZCYX"})
    code, _, err = run("predict", tmp_path / "rgb.tif", "-o", tmp_path / "l.tif", "--model", ckpt)
    assert code == 0, err
    with io.read_image(tmp_path / "l.tif") as labels:
        assert labels.axes == "ZYX" and labels.shape == stack.shape
        np.testing.assert_array_equal(np.asarray(labels.data[...]), segment(rgb, model, channel_axis=1))


@pytest.mark.slow
def test_threshold_means_the_same_for_every_activation(run, tmp_path, stack):
    """``--threshold`` acts on softmax models too (P(foreground) = 1 - P(background)) and on
    a multilabel sigmoid model with class values; the labels equal `segment`'s and the
    rule's, whether decided on the way or from the stored probabilities."""
    torch.manual_seed(3)
    softmax = UNet(1, 3, base_channels=4, depth=2).eval()
    sigmoid = UNet(1, 2, base_channels=4, depth=2).eval()
    sigmoid.activation = "sigmoid"
    sigmoid.meta["class_values"] = [5, 9]
    image = stack[:2]
    src = tmp_path / "in.tif"
    io.write_image(src, image, axes="ZYX")
    opts = {"device": "cpu", "tile_size": 32}
    for i, net in enumerate((softmax, sigmoid)):
        ckpt = save_model(net, tmp_path / f"m{i}.pt")
        probs = predict(image, net, **opts)
        rule = LabelRule.for_model(net)
        t = float(np.quantile(rule.foreground(probs)[0], 0.6))  # about 40 % foreground
        expected = rule.with_threshold(t).labels(probs)
        assert not np.array_equal(expected, rule.labels(probs))  # the threshold matters
        assert set(np.unique(expected)) <= set(rule.values.tolist()) and expected.any()
        np.testing.assert_array_equal(segment(image, net, threshold=t, **opts), expected)
        for extra in ([], ["--probabilities", tmp_path / f"p{i}.npy"]):
            dst = tmp_path / f"l{i}{len(extra)}.npy"
            code, _, err = run("predict", src, "-o", dst, "--model", ckpt, "--threshold", t, "--tile-size", "32",
                               "--device", "cpu", *extra)
            assert code == 0, err
            np.testing.assert_array_equal(np.load(dst), expected)


@pytest.mark.slow
def test_without_threshold_the_models_own_is_used(run, tmp_path, stack):
    """A checkpoint's ``meta["threshold"]`` is the CLI's default, labels and instances alike
    (with or without stored probabilities); ``--threshold`` overrides it."""
    torch.manual_seed(3)
    net = UNet(1, 3, base_channels=4, depth=2).eval()
    image = stack[:2]
    src = tmp_path / "in.tif"
    io.write_image(src, image, axes="ZYX")
    probs = predict(image, net, device="cpu", tile_size=32)
    t = float(np.quantile(LabelRule.for_model(net).foreground(probs)[0], 0.6))
    net.meta["threshold"] = t
    ckpt = save_model(net, tmp_path / "m.pt")
    own = (1 - probs[0] > np.float32(t)) * (probs[1:].argmax(0) + 1)  # the rule, written out
    half = (1 - probs[0] > np.float32(0.5)) * (probs[1:].argmax(0) + 1)
    assert (own != half).any()
    for extra, expected in (([], own), (["--probabilities", tmp_path / "p.npy"], own), (["--threshold", "0.5"], half)):
        dst = tmp_path / f"l{len(extra)}{len(str(extra))}.npy"
        code, _, err = run("predict", src, "-o", dst, "--model", ckpt, "--tile-size", "32", "--device", "cpu", *extra)
        assert code == 0, err
        np.testing.assert_array_equal(np.load(dst), expected)
    dst = tmp_path / "ids.npy"
    code, _, err = run("predict", src, "-o", dst, "--model", ckpt, "--tile-size", "32", "--device", "cpu",
                       "--instances", "watershed")
    assert code == 0, err
    np.testing.assert_array_equal(np.load(dst) > 0, own > 0)


def test_predict_help_documents_the_threshold(capsys):
    with pytest.raises(SystemExit):
        cli.main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "for every activation" in text and "1 - P(background) for softmax" in text


def test_predict_default_bundled_model(run, tmp_path, inputs, scale):
    from napari_unet_stack.checkpoints import list_models

    if cli.DEFAULT_MODEL not in list_models():
        pytest.skip("the bundled model is not installed")
    code, _, err = run("predict", inputs / "a.tif", "-o", tmp_path / "l.ome.tif")
    assert code == 0, err
    with io.read_image(tmp_path / "l.ome.tif") as labels:
        assert labels.axes == "ZYX" and labels.dtype == np.uint8 and labels.scale == pytest.approx(scale)
        assert np.asarray(labels.data[...]).max() == 1


@pytest.mark.slow
def test_tta_option_reaches_the_engine(run, tmp_path, inputs, checkpoint, stack):
    code, _, err = run("predict", inputs / "c.npy", "-o", tmp_path / "l.npy", "--model", checkpoint,
                       "--tta", "flips", "--probabilities", tmp_path / "p.npy")
    assert code == 0, err
    model = load_model(checkpoint)
    expected = predict(stack[:, :32], model, tta="flips")
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, atol=1e-6, rtol=0)
    assert np.abs(expected - predict(stack[:, :32], model)).max() > 1e-4  # flips change this model's output
    with pytest.raises(SystemExit):  # argparse's usage error names the option and its choices
        run("predict", inputs / "c.npy", "-o", tmp_path / "x.npy", "--model", checkpoint, "--tta", "mirror")
    assert not (tmp_path / "x.npy").exists()
