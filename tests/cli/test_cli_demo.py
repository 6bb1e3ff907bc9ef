"""`unet-stack demo` (what `make demo` runs)."""

import os

import numpy as np
import pytest

from napari_unet_stack import cli, io


@pytest.mark.slow
def test_demo(run, tmp_path):
    code, out, err = run("demo", "--output-dir", tmp_path / "demo", "--device", "cpu", "-q")
    assert code == 0, err
    assert "Dice" in out and "MPix/s" in out
    from napari_unet_stack.checkpoints import list_models, load_model

    if cli.DEFAULT_MODEL in list_models():  # the real thing, not the untrained fallback
        dice = float(out.split("Dice (nuclei vs ground truth):")[1].split()[0])
        # what scripts/train_default_models.py measured on the same stack when it trained it
        scored = load_model(cli.DEFAULT_MODEL).meta["provenance"]["held_out"]["foreground_dice"]
        assert dice == pytest.approx(scored["default"], abs=0.0015) and "untrained" not in out
        # and the instance F1 the script measured (its own scoring code, Z-linked objects)
        f1 = float(out.split("F1 at IoU 0.5:")[1].split()[0])
        held_out = load_model(cli.DEFAULT_MODEL).meta["provenance"]["held_out"]["scores"]
        assert f1 == pytest.approx(held_out["default"]["nuclei_stack"]["3d"]["f1"], abs=0.002)
    files = sorted(os.listdir(tmp_path / "demo"))
    assert files == ["nuclei_stack_labels.tif", "nuclei_stack_overlay.png"]
    with io.read_image(tmp_path / "demo" / "nuclei_stack_labels.tif") as labels:
        assert labels.axes == "ZYX" and labels.shape == (16, 256, 256) and labels.dtype == np.uint8
    from skimage import io as skio

    png = skio.imread(tmp_path / "demo" / "nuclei_stack_overlay.png")
    assert png.ndim == 3 and png.shape[0] == 256 and png.dtype == np.uint8


def test_demo_overlay_is_written_atomically(tmp_path):
    from skimage import io as skio

    from napari_unet_stack.cli.demo import write_overlay

    rng = np.random.default_rng(0)
    image = rng.integers(0, 1000, (4, 32, 40)).astype(np.uint16)
    labels = (image > 500).astype(np.uint8)
    path = write_overlay(tmp_path / "o.png", image, labels, np.zeros_like(labels))
    assert os.listdir(tmp_path) == ["o.png"]
    png = skio.imread(path)
    assert png.shape == (32, 3 * 40 + 2 * 4, 3) and png.dtype == np.uint8
    # predicted pixels are tinted green: more green than red there
    fill = labels[1] > 0
    assert (png[:, :40][fill][:, 1].astype(int) >= png[:, :40][fill][:, 0]).all()
