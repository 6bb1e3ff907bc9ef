"""`unet-stack predict --instances`: the watershed by default, components on request,
the file's T axis never linked, the instance options checked (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_unet_stack import io, segment


def _read(path):
    with io.read_image(path) as labels:
        return np.asarray(labels.data[...]), labels.axes


@pytest.mark.slow
def test_watershed_and_components(run, tmp_path, inputs, checkpoint, model, stack):
    for method, argv in (("watershed", ["--instances"]), ("components", ["--instances", "components"])):
        code, _, err = run("predict", inputs / "a.tif", "-o", tmp_path / f"{method}.tif", "--model", checkpoint,
                           *argv, "--min-size", "5", "--min-distance", "4")
        assert code == 0, err
        expected = segment(stack, model, device="cpu", instances=method, min_size=5, min_distance=4)
        labels, axes = _read(tmp_path / f"{method}.tif")
        assert axes == "ZYX" and labels.dtype == expected.dtype
        np.testing.assert_array_equal(labels, expected)


@pytest.mark.slow
def test_time_frames_of_an_imagej_file_are_not_linked(run, tmp_path, checkpoint, model, stack):
    tifffile.imwrite(tmp_path / "movie.tif", stack, imagej=True, metadata={"axes": "TYX"})
    code, _, err = run("predict", tmp_path / "movie.tif", "-o", tmp_path / "cells.tif", "--model", checkpoint,
                       "--instances")
    assert code == 0, err
    labels, axes = _read(tmp_path / "cells.tif")
    assert axes == "TYX"
    np.testing.assert_array_equal(labels, segment(stack, model, device="cpu", instances=True, time_axis=0))
    frames = [set(np.unique(f)) - {0} for f in labels]
    assert all(not a & b for i, a in enumerate(frames) for b in frames[i + 1:])  # no id in two frames
    linked = segment(stack, model, device="cpu", instances=True)  # read as Z: shares ids
    assert len(np.unique(linked)) < len(np.unique(labels))


@pytest.mark.parametrize(("argv", "message"), [
    (["--min-distance", "2"], "--min-distance is an instance option: add --instances"),
    (["--per-slice"], "--per-slice is an instance option"),
    (["--instances", "--min-distance", "0"], "--min-distance must be >= 1"),
    (["--instances", "--link-overlap", "2"], "--link-overlap must be in"),
    (["--instances", "--smoothing", "x"], "--smoothing must be a number"),
    (["--marker-threshold", "0.4"], "--marker-threshold is an instance option"),
    (["--instances", "--marker-threshold", "1.5"], "--marker-threshold must be in (0, 1)"),
    (["--instances", "markers"], "needs an instance model"),
    (["--z-split", "0"], "--z-split is an instance option"),
    (["--instances", "--z-split", "1"], "--z-split must be in [0, 1)"),
])
def test_bad_instance_options(run, tmp_path, inputs, checkpoint, argv, message):
    code, _, err = run("predict", inputs / "a.tif", "-o", tmp_path / "x.tif", "--model", checkpoint, *argv)
    assert code != 0 and message in err
    assert not (tmp_path / "x.tif").exists()


def test_unknown_method_is_a_usage_error(run, tmp_path, inputs, checkpoint, capsys):
    with pytest.raises(SystemExit):
        run("predict", inputs / "a.tif", "-o", tmp_path / "x.tif", "--model", checkpoint, "--instances", "stardist")
    assert "invalid choice: 'stardist'" in capsys.readouterr().err


@pytest.mark.slow
def test_train_instances_then_predict_markers_round_trip(run, tmp_path):
    from napari_unet_stack import load_model, synthetic
    from napari_unet_stack.training import is_instance_model

    sample = synthetic.nuclei_stack((2, 64, 64), seed=5)
    io.write_image(tmp_path / "img.tif", sample.image, axes="ZYX")
    io.write_image(tmp_path / "ids.tif", sample.instances, axes="ZYX")
    code, out, err = run("train", tmp_path / "img.tif", tmp_path / "ids.tif", "-o", tmp_path / "inst.pt",
                         "--instances", "--steps", "2", "--patch-size", "32", "--batch-size", "2",
                         "--base-channels", "4", "--depth", "2", "--device", "cpu", "--val-fraction", "0.5")
    assert code == 0, err
    assert "instance F1" in out
    model = load_model(tmp_path / "inst.pt")
    assert is_instance_model(model) and model.out_channels == 3
    code, _, err = run("predict", tmp_path / "img.tif", "-o", tmp_path / "cells.tif", "--model",
                       tmp_path / "inst.pt", "--instances", "--marker-threshold", "0.4", "--device", "cpu")
    assert code == 0, err
    labels, _ = _read(tmp_path / "cells.tif")
    expected = segment(sample.image, model, device="cpu", instances=True, marker_threshold=0.4)
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.slow
def test_train_instances_chooses_the_decoding_unless_told_not_to(run, tmp_path):
    from napari_unet_stack import load_model
    from napari_unet_stack.training.decoding_choice import MIN_OBJECTS

    from ..training.test_train_instances import touching_triples

    pairs = [touching_triples((128, 128), radius=6, seed=s) for s in range(8)]
    ids = np.stack([p[1] for p in pairs])
    assert 2 * min(len(np.unique(i)) - 1 for i in ids) >= MIN_OBJECTS
    io.write_image(tmp_path / "img.tif", np.stack([p[0] for p in pairs]), axes="ZYX")
    io.write_image(tmp_path / "ids.tif", ids, axes="ZYX")
    common = ("--instances", "--steps", "2", "--patch-size", "48", "--batch-size", "2", "--base-channels", "4",
              "--depth", "2", "--device", "cpu", "--val-fraction", "0.25")
    code, out, err = run("train", tmp_path / "img.tif", tmp_path / "ids.tif", "-o", tmp_path / "a.pt", *common)
    assert code == 0, err
    model = load_model(tmp_path / "a.pt")
    chosen = model.meta["provenance"]["decoding"]
    assert (f"decoding chosen on the 2 validation slice(s), {chosen['data'].split(', ')[1]}: "
            f"threshold {model.meta['threshold']:g}, marker threshold "
            f"{model.meta['instances']['marker_threshold']:g}") in out
    code, out, err = run("train", tmp_path / "img.tif", tmp_path / "ids.tif", "-o", tmp_path / "b.pt", *common,
                         "--no-tune-decoding")
    assert code == 0, err
    assert "decoding" not in out
    kept = load_model(tmp_path / "b.pt")
    assert "threshold" not in kept.meta and "decoding" not in kept.meta["provenance"]
