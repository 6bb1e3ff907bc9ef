"""`unet-stack demo` (what `make demo` runs)."""

import math
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
        own = load_model(cli.DEFAULT_MODEL).meta["threshold"]  # what the labels are made at, said
        assert f"(foreground where P(foreground) > {own:g}, the model's own threshold)" in out
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


@pytest.mark.slow
def test_demo_job_runs_the_network_once_and_equals_two_segments(monkeypatch):
    """The demo's job: one pass of the network (as many forwards as one `segment` has
    tiles), whose labels and instances equal `segment` and ``segment(instances=True)``."""
    from napari_unet_stack import segment
    from napari_unet_stack.checkpoints import list_models, load_model
    from napari_unet_stack.cli.demo import demo_job
    from napari_unet_stack.inference import engine
    from napari_unet_stack.samples import load_sample

    if cli.DEFAULT_MODEL not in list_models():
        pytest.skip("the bundled model is not installed")
    model = load_model(cli.DEFAULT_MODEL)
    image = load_sample("nuclei_stack").image[6:8, 40:104, 72:136]
    calls = []
    real = engine.forward
    monkeypatch.setattr(engine, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    labels = segment(image, model, device="cpu")
    one_pass = len(calls)  # the forwards of one segment (its batches of tiles)
    objects = segment(image, model, device="cpu", instances=True)
    calls.clear()
    job = demo_job(image, model, device="cpu")
    assert job.info["n_tiles"] == 2
    assert len(calls) == one_pass == math.ceil(job.info["n_tiles"] / job.info["batch_size"])
    assert job.labels.dtype == labels.dtype and np.array_equal(job.labels, labels)
    assert 0 < (labels > 0).mean() < 1
    assert job.instances.dtype == objects.dtype and np.array_equal(job.instances, objects)
    assert objects.max() > 1 and job.seconds > 0 and job.decode_seconds > 0


def test_the_command_keeps_freed_memory_a_caller_of_main_keeps_its_own(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(1))
    assert cli.main(["info"]) == 0 and calls == []  # a caller's main([...]): its process, its policy
    monkeypatch.setattr("sys.argv", ["unet-stack", "info"])
    assert cli.main() == 0 and calls == [1]  # the console script
