"""unet-stack train end to end: a checkpoint, --resume, one-line errors."""

from __future__ import annotations

import numpy as np

from napari_unet_stack.checkpoints import load_model


def test_cli_train_writes_a_checkpoint(tmp_path, data, capsys):
    import tifffile

    from napari_unet_stack.cli import main

    tifffile.imwrite(tmp_path / "img.tif", data.image)
    np.save(tmp_path / "lab.npy", data.labels)
    out = tmp_path / "model.pt"
    code = main(
        [
            "train",
            str(tmp_path / "img.tif"),
            str(tmp_path / "lab.npy"),
            "-o",
            str(out),
            "--steps",
            "2",
            "--patch-size",
            "48",
            "--batch-size",
            "2",
            "--base-channels",
            "4",
            "--depth",
            "2",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert code == 0 and out.is_file()
    model = load_model(out)
    assert model.meta["provenance"]["steps"] == 2 and model.base_channels == 4
    assert "val Dice" in capsys.readouterr().out

    # --resume continues that training: 2 more steps on the stored optimizer and schedule
    again = tmp_path / "more.pt"
    common = [str(tmp_path / "img.tif"), str(tmp_path / "lab.npy"), "-o", str(again)]
    small = ["--patch-size", "48", "--batch-size", "2", "--device", "cpu", "--quiet"]
    code = main(["train", *common, "--model", str(out), "--resume", "--steps", "2", *small])
    assert code == 0
    resumed = load_model(again)
    reached = model.training_state["step"]
    assert reached == 2  # the first run's last step (issue 11, item 25), whichever was best
    assert resumed.meta["provenance"]["resumed_from_step"] == reached
    assert resumed.training_state["step"] == resumed.training_state["total"] == reached + 2
    capsys.readouterr()
    code = main(["train", *common, "--overwrite", "--resume", "--steps", "2", *small])
    assert code == 2 and "--resume needs --model" in capsys.readouterr().err


def test_cli_train_reports_bad_labels_in_one_line(tmp_path, data, capsys):
    import tifffile

    from napari_unet_stack.cli import main

    tifffile.imwrite(tmp_path / "img.tif", data.image)
    tifffile.imwrite(tmp_path / "lab.tif", data.labels[:, :10])
    code = main(
        [
            "train",
            str(tmp_path / "img.tif"),
            str(tmp_path / "lab.tif"),
            "-o",
            str(tmp_path / "m.pt"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert (
        "unet-stack train: error:" in err and "shape" in err and len(err.strip().splitlines()) == 1
    )


def test_cli_train_sizes_a_new_network_by_the_class_rule(tmp_path, data, capsys):
    """Issue 11, item 22: a 0/10**6 mask trains a two-class network (with a note), and values
    that would make a million classes are one line, before any network is built."""
    import pytest
    import tifffile

    from napari_unet_stack.cli import main

    tifffile.imwrite(tmp_path / "img.tif", data.image)
    mask = (data.labels > 0).astype(np.int64) * 10**6
    np.save(tmp_path / "mask.npy", mask)
    small = ["--steps", "1", "--patch-size", "48", "--batch-size", "2", "--device", "cpu",
             "--base-channels", "4", "--depth", "2", "--val-fraction", "0", "--quiet"]  # fmt: skip
    out = tmp_path / "binary.pt"
    with pytest.warns(UserWarning, match="only the values 0 and 1000000: trained as a binary mask"):
        code = main(["train", str(tmp_path / "img.tif"), str(tmp_path / "mask.npy"), "-o", str(out), *small])
    assert code == 0 and load_model(out).out_channels == 2
    mask[:, :5] = 1  # now 0, 1 and 10**6: a class count to refuse
    np.save(tmp_path / "three.npy", mask)
    capsys.readouterr()
    code = main(["train", str(tmp_path / "img.tif"), str(tmp_path / "three.npy"), "-o", str(tmp_path / "x.pt"), *small])
    err = capsys.readouterr().err
    assert code == 2 and "values up to 1000000 (3 distinct: 0, 1, 1000000)" in err and "remap" in err
    assert not (tmp_path / "x.pt").exists()
