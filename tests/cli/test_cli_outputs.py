"""Where `unet-stack predict` may write (issue 11, items 13 and 14): an output that another
run wrote meanwhile is not replaced, and no spelling of a path lets labels replace an input."""

import os

import numpy as np
import pytest

from napari_unet_stack import io
from napari_unet_stack.cli.common import TileProgress


@pytest.mark.parametrize("name", ["labels.tif", "labels.zarr", "labels.ome.zarr", "labels.npy"])
def test_concurrent_run_writing_the_same_output_is_not_replaced(run, one_line_error, monkeypatch, tmp_path,
                                                                 inputs, checkpoint, name):
    """Item 13: both runs pass the check before the work; the one finishing second must fail."""
    dst = tmp_path / "out" / name
    dst.parent.mkdir()
    theirs = np.full((4, 48, 64), 9, np.uint8)

    def other_run_finishes_first(self, done, total):
        if not os.path.lexists(dst):
            io.write_image(dst, theirs)

    monkeypatch.setattr(TileProgress, "__call__", other_run_finishes_first)
    code, out, err = run("predict", inputs / "a.tif", "-o", dst, "--model", checkpoint, "--tile-size", "32")
    one_line_error(code, err, "appeared while this output was being written")
    assert "--overwrite" in err and out == ""
    assert os.listdir(dst.parent) == [name]  # theirs, and no temporary name
    with io.read_image(dst) as back:
        np.testing.assert_array_equal(np.asarray(back.data[...]), theirs)


@pytest.mark.parametrize("how", ["symlinked folder", "symlink", "hard link", "dot-dot"])
@pytest.mark.parametrize("flag", ["-o", "--probabilities"])
def test_an_input_is_never_an_output(run, one_line_error, tmp_path, inputs, checkpoint, how, flag):
    """Item 14: ``-o here/victim.tif --overwrite`` with ``here`` a link to the input's folder
    replaced the input with its labels (the check compared absolute, unresolved paths)."""
    victim = inputs / "a.tif"
    before = victim.read_bytes()
    if how == "symlinked folder":
        (tmp_path / "here").symlink_to(inputs, target_is_directory=True)
        alias = tmp_path / "here" / "a.tif"
    elif how == "symlink":
        alias = tmp_path / "alias.tif"
        alias.symlink_to(victim)
    elif how == "hard link":
        alias = tmp_path / "alias.tif"
        os.link(victim, alias)
    else:
        (inputs / "sub").mkdir()  # deep/.. is the input folder, not tmp_path as abspath says
        (tmp_path / "deep").symlink_to(inputs / "sub", target_is_directory=True)
        alias = tmp_path / "deep" / ".." / "a.tif"
    other = ["-o", tmp_path / "labels.tif"] if flag == "--probabilities" else []
    code, _, err = run("predict", victim, flag, alias, *other, "--model", checkpoint, "--overwrite")
    one_line_error(code, err, "is an input")
    assert victim.read_bytes() == before


def test_two_spellings_of_one_output_collide(run, one_line_error, tmp_path, inputs, checkpoint):
    """Labels and probabilities named through a symlinked folder are the same file."""
    (tmp_path / "out").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "out", target_is_directory=True)
    code, _, err = run("predict", inputs / "a.tif", "-o", tmp_path / "out" / "x.tif",
                       "--probabilities", tmp_path / "alias" / "x.tif", "--model", checkpoint)
    one_line_error(code, err, "would both write")
    assert os.listdir(tmp_path / "out") == []
