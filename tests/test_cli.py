"""`unet-stack predict / models / demo` end to end through `main([...])`."""

import os

import numpy as np
import pytest
import tifffile
import torch

from napari_unet_stack import cli, io, predict, segment
from napari_unet_stack.checkpoints import save_model
from napari_unet_stack.models import UNet

SCALE = {"Z": 2.0, "Y": 0.5, "X": 0.5}
UNITS = {"Z": "um", "Y": "um", "X": "um"}


def _balanced(model, image, fraction=0.25, **kwargs):
    """Shift the head's bias so that ``fraction`` of the pixels are foreground (non-trivial labels)."""
    p = predict(image, model, device="cpu", **kwargs)[1]
    t = float(np.clip(np.quantile(p, 1 - fraction), 1e-4, 1 - 1e-4))
    head = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        head.bias[1] -= float(np.log(t / (1 - t)))
    return model


@pytest.fixture(scope="module")
def stack():
    from napari_unet_stack.synthetic import nuclei_stack

    return nuclei_stack((4, 48, 64), seed=0).image


@pytest.fixture(scope="module")
def model(stack):
    torch.manual_seed(0)
    return _balanced(UNet(1, 2, base_channels=4, depth=2).eval(), stack)


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    return str(save_model(model, tmp_path_factory.mktemp("ckpt") / "tiny.pt"))


@pytest.fixture
def inputs(tmp_path, stack):
    folder = tmp_path / "in"
    folder.mkdir()
    io.write_image(folder / "a.tif", stack, axes="ZYX", scale=SCALE, units=UNITS)
    io.write_image(folder / "b.ome.zarr", stack[:2], axes="ZYX", scale=SCALE, units=UNITS)
    np.save(folder / "c.npy", stack[:, :32])
    return folder


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _hidden(folder):
    return [p for p in os.listdir(folder) if p.startswith(".")]


def test_predict_tiff_keeps_axes_pixel_size_and_equals_segment(capsys, tmp_path, inputs, checkpoint, model, stack):
    code, out, err = _run(capsys, "predict", inputs / "a.tif", "-o", tmp_path / "labels.tif", "--model", checkpoint,
                          "--tile-size", "32", "--device", "cpu")
    assert code == 0, err
    assert "labels.tif" in out
    with io.read_image(tmp_path / "labels.tif") as labels:
        assert labels.format == "imagej-tiff"
        assert labels.dtype == np.uint8 and labels.shape == stack.shape and labels.axes == "ZYX"
        assert labels.scale == pytest.approx(SCALE)
        assert labels.units == {"Z": "micrometer", "Y": "micrometer", "X": "micrometer"}
        result = np.asarray(labels.data[...])
    expected = segment(stack, model, device="cpu", tile_size=32)
    np.testing.assert_array_equal(result, expected)
    assert 0.1 < expected.mean() < 0.9  # non-trivial labels
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize(("src", "dst", "fmt"), [("b.ome.zarr", "l.ome.zarr", "ome-zarr"), ("a.tif", "l.zarr", "zarr"),
                                                 ("c.npy", "l.ome.tif", "ome-tiff")])
def test_predict_formats(capsys, tmp_path, inputs, checkpoint, src, dst, fmt):
    code, _, err = _run(capsys, "predict", inputs / src, "-o", tmp_path / dst, "--model", checkpoint)
    assert code == 0, err
    with io.read_image(inputs / src) as image, io.read_image(tmp_path / dst) as labels:
        assert labels.format == fmt and labels.shape == image.shape and labels.dtype == np.uint8
        assert labels.axes == "ZYX"
        assert labels.scale == ({} if src.endswith(".npy") else pytest.approx(SCALE))


def test_predict_folder_and_glob_write_one_output_each(capsys, tmp_path, inputs, checkpoint):
    code, _, err = _run(capsys, "predict", inputs, "-o", tmp_path / "out", "--model", checkpoint,
                          "--probabilities", tmp_path / "probs")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "out")) == ["a_labels.tif", "b_labels.ome.zarr", "c_labels.npy"]
    assert sorted(os.listdir(tmp_path / "probs")) == [
        "a_probabilities.tif", "b_probabilities.ome.zarr", "c_probabilities.npy"]
    with io.read_image(tmp_path / "probs" / "a_probabilities.tif") as probs, \
            io.read_image(tmp_path / "out" / "a_labels.tif") as labels:
        assert probs.dtype == np.float32 and probs.axes == "CZYX" and probs.shape[0] == 2
        assert probs.scale == pytest.approx(SCALE)
        np.testing.assert_array_equal(np.asarray(labels.data[...]), np.argmax(np.asarray(probs.data[...]), axis=0))
    code, _, err = _run(capsys, "predict", str(inputs / "*.tif"), str(inputs / "c.npy"), "-o", tmp_path / "g",
                        "--model", checkpoint, "--format", "zarr")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "g")) == ["a_labels.zarr", "c_labels.zarr"]


def test_predict_output_folders(capsys, tmp_path, inputs, checkpoint):
    code, _, err = _run(capsys, "predict", inputs / "a.tif", "-o", tmp_path / "one.tif", "--model", checkpoint,
                        "--probabilities", f"{tmp_path / 'p'}/")
    assert code == 0, err
    assert os.listdir(tmp_path / "p") == ["a_probabilities.tif"]
    io.write_image(tmp_path / "store.zarr", np.zeros((2, 8, 8), np.uint8))
    for target in ("store.zarr", "one.tif"):
        code, _, err = _run(capsys, "predict", inputs, "-o", tmp_path / target, "--model", checkpoint)
        _assert_one_line_error(code, err, "to be a folder")


def test_predict_instances(capsys, tmp_path, inputs, checkpoint, model, stack):
    code, _, err = _run(capsys, "predict", inputs / "a.tif", "-o", tmp_path / "i.tif", "--model", checkpoint,
                        "--instances", "--min-size", "20")
    assert code == 0, err
    expected = segment(stack, model, device="cpu", instances=True, min_size=20)
    with io.read_image(tmp_path / "i.tif") as labels:
        assert labels.dtype == expected.dtype and labels.axes == "ZYX"
        np.testing.assert_array_equal(np.asarray(labels.data[...]), expected)
    assert expected.max() > 1


def test_predict_channels_from_file_axes(capsys, tmp_path, stack):
    torch.manual_seed(2)
    rgb = np.stack([stack, stack[:, ::-1], stack // 2], axis=1)  # Z C Y X
    model = _balanced(UNet(3, 2, base_channels=4, depth=2).eval(), rgb, channel_axis=1)
    ckpt = save_model(model, tmp_path / "rgb.pt")
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, imagej=True, metadata={"axes": "ZCYX"})
    code, _, err = _run(capsys, "predict", tmp_path / "rgb.tif", "-o", tmp_path / "l.tif", "--model", ckpt)
    assert code == 0, err
    with io.read_image(tmp_path / "l.tif") as labels:
        assert labels.axes == "ZYX" and labels.shape == stack.shape
        np.testing.assert_array_equal(np.asarray(labels.data[...]), segment(rgb, model, channel_axis=1))


def _assert_one_line_error(code, err, match):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("unet-stack predict: error:") and match in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("missing", "no such file"),
        ("corrupt", "cannot read"),
        ("channels", "expects 1 channel(s)"),
        ("model", "unknown model 'no-such-model'"),
        ("tile", "--tile-size must be"),
        ("threshold", "--threshold must be in [0, 1]"),
        ("extension", "cannot tell the output format"),
        ("exists", "pass --overwrite"),
        ("scheduler", "scheduler address must be"),
    ],
)
def test_predict_errors_are_one_line_and_leave_nothing(capsys, tmp_path, inputs, checkpoint, case, match):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dst = out_dir / "labels.tif"
    src = inputs / "a.tif"
    extra = []
    if case == "missing":
        src = inputs / "missing.tif"
    elif case == "corrupt":
        src = inputs / "corrupt.tif"
        src.write_bytes(b"II*\x00 truncated nonsense")
    elif case == "channels":
        extra = ["--channel-axis", "0"]
    elif case == "model":
        checkpoint = "no-such-model"
    elif case == "tile":
        extra = ["--tile-size", "banana"]
    elif case == "threshold":
        extra = ["--threshold", "2"]
    elif case == "extension":
        dst = out_dir / "labels.png"
    elif case == "exists":
        dst.write_bytes(b"keep me")
    elif case == "scheduler":
        extra = ["--scheduler", "somewhere"]
    code, _, err = _run(capsys, "predict", src, "-o", dst, "--model", checkpoint, *extra)
    _assert_one_line_error(code, err, match)
    assert os.listdir(out_dir) == (["labels.tif"] if case == "exists" else [])
    if case == "exists":
        assert dst.read_bytes() == b"keep me"


def test_debug_shows_the_traceback(tmp_path, checkpoint):
    with pytest.raises(FileNotFoundError):
        cli.main(["--debug", "predict", str(tmp_path / "missing.tif"), "-o", str(tmp_path / "x.tif"),
                  "--model", checkpoint])


@pytest.mark.parametrize("dst", ["labels.tif", "labels.ome.zarr", "labels.npy"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_interrupted_run_leaves_no_partial_output(capsys, monkeypatch, tmp_path, stack, checkpoint, dst, overwrite):
    src = tmp_path / "big.tif"
    io.write_image(src, np.concatenate([stack] * 3), axes="ZYX")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    if overwrite:  # a previous complete result must survive an interrupted re-run
        io.write_image(out_dir / dst, np.full((12, 48, 64), 7, np.uint8))
    calls = []

    def interrupt(self, done, total):
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli._TileProgress, "__call__", interrupt)
    code, _, err = _run(capsys, "predict", src, "-o", out_dir / dst, "--model", checkpoint, "--tile-size", "16",
                        "--batch-size", "1", *(["--overwrite"] if overwrite else []))
    assert code == 130 and "interrupted" in err
    assert len(calls) == 2
    assert os.listdir(out_dir) == ([dst] if overwrite else [])
    if overwrite:
        with io.read_image(out_dir / dst) as old:
            assert (np.asarray(old.data[...]) == 7).all()


def test_ctrl_c_in_a_real_process_leaves_no_partial_output(tmp_path, stack, checkpoint):
    """SIGINT to a running `unet-stack predict`: exit code 130, no output, no temporary file."""
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "big.npy"
    np.save(src, np.concatenate([stack] * 80))  # 320 slices: seconds of work (it stops long before)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    code = "import sys; from napari_unet_stack.cli import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", code, "predict", str(src), "-o", str(out_dir / "labels.tif"),
                             "--model", checkpoint, "--device", "cpu", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not os.listdir(out_dir) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # until its temporary output exists: it is writing
        assert os.listdir(out_dir) and proc.poll() is None, "the run did not start writing"
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted" in err, err
    assert os.listdir(out_dir) == []


def test_truncated_and_damaged_tiffs_are_one_line_errors(capsys, tmp_path, stack, checkpoint):
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, np.concatenate([stack] * 2), imagej=True, metadata={"axes": "ZYX"},
                     compression="zlib")
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    damaged = bytearray(whole.read_bytes())
    with tifffile.TiffFile(whole) as tif:  # the compressed bytes of one slice, not its tags
        start, count = tif.pages[3].dataoffsets[0], tif.pages[3].databytecounts[0]
    damaged[start + 8:start + count - 8] = b"\x55" * (count - 16)
    (tmp_path / "damaged.tif").write_bytes(bytes(damaged))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for name, match in (("cut.tif", "truncated or corrupt"), ("damaged.tif", "damaged compressed data")):
        code, _, err = _run(capsys, "predict", tmp_path / name, "-o", out_dir / "labels.tif", "--model", checkpoint)
        _assert_one_line_error(code, err, match)
        assert os.listdir(out_dir) == []


def test_empty_output_is_refused(capsys, inputs, checkpoint, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # an empty -o (an unset shell variable) used to mean "here"
    code, _, err = _run(capsys, "predict", inputs / "a.tif", "-o", "", "--model", checkpoint)
    _assert_one_line_error(code, err, "-o/--output is empty")
    assert sorted(os.listdir(tmp_path)) == ["in"]


def test_models_lists_bundled_models(capsys, monkeypatch, checkpoint):
    from napari_unet_stack import checkpoints

    real = checkpoints.list_models()
    code, out, _ = _run(capsys, "models")
    assert code == 0
    for name in real:
        assert name in out
    if not real:
        assert "no bundled models" in out
    load = checkpoints.load_model
    monkeypatch.setattr(checkpoints, "list_models", lambda: ["tiny-unet"])
    monkeypatch.setattr(checkpoints, "load_model", lambda name, **kw: load(checkpoint))
    code, out, _ = _run(capsys, "models")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 1
    assert lines[0].startswith("tiny-unet") and "UNet(" in lines[0] and "1 in, 2 out" in lines[0]


def test_info(capsys):
    code, out, _ = _run(capsys, "info")
    assert code == 0 and "napari-unet-stack" in out


def test_demo(capsys, tmp_path):
    code, out, err = _run(capsys, "demo", "--output-dir", tmp_path / "demo", "--device", "cpu")
    assert code == 0, err
    assert "Dice" in out and "MPix/s" in out
    from napari_unet_stack.checkpoints import list_models

    if cli.DEFAULT_MODEL in list_models():  # the real thing, not the untrained fallback
        dice = float(out.split("Dice (nuclei vs ground truth):")[1].split()[0])
        assert dice > 0.8 and "untrained" not in out
    files = sorted(os.listdir(tmp_path / "demo"))
    assert files == ["nuclei_stack_labels.tif", "nuclei_stack_overlay.png"]
    with io.read_image(tmp_path / "demo" / "nuclei_stack_labels.tif") as labels:
        assert labels.axes == "ZYX" and labels.shape == (16, 256, 256) and labels.dtype == np.uint8
    from skimage import io as skio

    png = skio.imread(tmp_path / "demo" / "nuclei_stack_overlay.png")
    assert png.ndim == 3 and png.shape[0] == 256 and png.dtype == np.uint8


def test_predict_default_bundled_model(capsys, tmp_path, inputs):
    from napari_unet_stack.checkpoints import list_models

    if cli.DEFAULT_MODEL not in list_models():
        pytest.skip("the bundled model is not installed")
    code, _, err = _run(capsys, "predict", inputs / "a.tif", "-o", tmp_path / "l.ome.tif")
    assert code == 0, err
    with io.read_image(tmp_path / "l.ome.tif") as labels:
        assert labels.axes == "ZYX" and labels.dtype == np.uint8 and labels.scale == pytest.approx(SCALE)
        assert np.asarray(labels.data[...]).max() == 1
