"""`unet-stack predict` failures: one line on stderr, exit code 2 (130 when interrupted),
and nothing left behind: no partial output, no temporary file, an old result untouched."""

import os

import numpy as np
import pytest
import tifffile

from napari_unet_stack import cli, io
from napari_unet_stack.cli.common import TileProgress


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
def test_predict_errors_are_one_line_and_leave_nothing(run, one_line_error, tmp_path, inputs, checkpoint, case,
                                                       match):
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
        dst = out_dir / "labels.gif"
    elif case == "exists":
        dst.write_bytes(b"keep me")
    elif case == "scheduler":
        extra = ["--scheduler", "somewhere"]
    code, _, err = run("predict", src, "-o", dst, "--model", checkpoint, *extra)
    one_line_error(code, err, match)
    assert os.listdir(out_dir) == (["labels.tif"] if case == "exists" else [])
    if case == "exists":
        assert dst.read_bytes() == b"keep me"


@pytest.mark.parametrize(("extra", "match"), [
    (["--min-size", "5"], "--min-size filters instances: add --instances"),
    (["--min-size", "-1", "--instances"], "--min-size must be >= 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--border", "-1"], "--border must be >= 0"),
    (["--border", "wide"], "--border must be an integer or 'reach', got 'wide'"),
    (["--threshold", "x"], "--threshold must be a number in [0, 1]"),
])
def test_predict_option_errors(run, one_line_error, tmp_path, inputs, checkpoint, extra, match):
    code, _, err = run("predict", inputs / "a.tif", "-o", tmp_path / "l.tif", "--model", checkpoint, *extra)
    one_line_error(code, err, match)
    assert not (tmp_path / "l.tif").exists()


def test_debug_shows_the_traceback(tmp_path, checkpoint):
    with pytest.raises(FileNotFoundError):
        cli.main(["--debug", "predict", str(tmp_path / "missing.tif"), "-o", str(tmp_path / "x.tif"),
                  "--model", checkpoint])


@pytest.mark.parametrize("dst", ["labels.tif", "labels.ome.zarr", "labels.npy"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_interrupted_run_leaves_no_partial_output(run, monkeypatch, tmp_path, stack, checkpoint, dst, overwrite):
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

    monkeypatch.setattr(TileProgress, "__call__", interrupt)
    code, _, err = run("predict", src, "-o", out_dir / dst, "--model", checkpoint, "--tile-size", "16",
                       "--batch-size", "1", *(["--overwrite"] if overwrite else []))
    assert code == 130 and "interrupted" in err
    assert len(calls) == 2
    assert os.listdir(out_dir) == ([dst] if overwrite else [])
    if overwrite:
        with io.read_image(out_dir / dst) as old:
            assert (np.asarray(old.data[...]) == 7).all()


@pytest.mark.slow
def test_ctrl_c_in_a_real_process_leaves_no_partial_output(signal_predict):
    """SIGINT to a running `unet-stack predict`: exit code 130, no output, no temporary file."""
    import signal

    code, err, out_dir = signal_predict("labels.tif", signal.SIGINT)
    assert code == 130 and "interrupted" in err, err
    assert os.listdir(out_dir) == []


def test_truncated_and_damaged_tiffs_are_one_line_errors(run, one_line_error, tmp_path, stack, checkpoint):
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
        code, _, err = run("predict", tmp_path / name, "-o", out_dir / "labels.tif", "--model", checkpoint)
        one_line_error(code, err, match)
        assert os.listdir(out_dir) == []


def test_empty_output_is_refused(run, one_line_error, inputs, checkpoint, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # an empty -o (an unset shell variable) used to mean "here"
    code, _, err = run("predict", inputs / "a.tif", "-o", "", "--model", checkpoint)
    one_line_error(code, err, "-o/--output is empty")
    assert sorted(os.listdir(tmp_path)) == ["in"]
