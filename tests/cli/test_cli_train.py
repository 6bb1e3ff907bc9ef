"""`unet-stack train`: the library's defaults and architecture names, one ``-q/--quiet``."""

import dataclasses
import os

import numpy as np
import pytest

from napari_unet_stack import cli, io, load_model
from napari_unet_stack.models import ARCHITECTURES, NestedUNet, UNet
from napari_unet_stack.training.settings import ModelSettings, TrainSettings


@pytest.fixture
def pair(tmp_path):
    from napari_unet_stack.synthetic import nuclei_stack

    made = nuclei_stack((3, 48, 48), seed=3)
    io.write_image(tmp_path / "img.tif", made.image, axes="ZYX")
    np.save(tmp_path / "lab.npy", made.labels)
    return [tmp_path / "img.tif", tmp_path / "lab.npy"]


def _parse(*argv):
    return cli.build_parser().parse_args(["train", "i", "l", "-o", "m.pt", *argv])


@pytest.mark.parametrize(("given", "name"), [
    ("UNet", "UNet"), ("unet", "UNet"), ("NestedUNet", "NestedUNet"), ("nestedunet", "NestedUNet"),
    ("unetpp", "NestedUNet"), ("UNetPP", "NestedUNet"),
])
def test_architecture_names_are_the_librarys(given, name):
    assert _parse("--arch", given).architecture == name
    assert _parse("--architecture", given).architecture == name


def test_unknown_architecture_lists_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse("--arch", "resnet")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "'resnet'" in err and ", ".join(ARCHITECTURES) in err


def test_defaults_are_the_librarys(capsys):
    args, fit = _parse(), TrainSettings()
    for name in ("patch_size", "batch_size", "val_fraction", "seed", "device", "lr", "steps", "epochs"):
        assert getattr(args, name) == getattr(fit, name), name
    assert args.architecture == ModelSettings().architecture and args.quiet is False
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    net = ModelSettings()
    assert f"width (default {net.base_channels})" in text and f"depth (default {net.depth})" in text
    assert "--no-progress" not in text and "-q, --quiet" in text


def test_new_network_is_the_default_model(run, tmp_path, pair, train_calls):
    code, out, err = run("train", *pair, "-o", tmp_path / "m.pt", "-q")
    assert code == 0, err
    (call,) = train_calls
    net, fit = ModelSettings(), TrainSettings()
    model = call["model"]
    assert type(model) is UNet and (model.base_channels, model.depth) == (net.base_channels, net.depth)
    assert (model.in_channels, model.out_channels) == (1, 2)
    for name in ("patch_size", "batch_size", "val_fraction", "seed", "device", "steps", "lr", "resume", "sparse"):
        assert call[name] == getattr(fit, name), name
    assert call["augment"] is True and call["channel_axis"] is None and call["class_names"] is None
    assert (tmp_path / "m.pt").is_file() and "saved" in out


def test_arch_nestedunet_builds_a_unetpp_and_no_progress_still_works(run, tmp_path, pair, train_calls):
    code, _, err = run("train", *pair, "-o", tmp_path / "m.pt", "--arch", "unetpp", "--depth", "2",
                       "--base-channels", "4", "--no-progress")
    assert code == 0, err
    assert "--no-progress is deprecated; use -q/--quiet" in err
    model = train_calls[0]["model"]
    assert type(model) is NestedUNet and model.depth == 2 and model.base_channels == 4


def test_downsampling_strided_builds_a_strided_unet(run, one_line_error, tmp_path, pair, train_calls):
    assert _parse().downsampling is None  # None: the library's default (ModelSettings)
    code, _, err = run("train", *pair, "-o", tmp_path / "m.pt", "--downsampling", "strided", "--depth", "2",
                       "--base-channels", "4", "-q")
    assert code == 0, err
    model = train_calls[0]["model"]
    assert type(model) is UNet and model.downsampling == "strided" and model.depth == 2
    assert load_model(tmp_path / "m.pt").downsampling == "strided"
    code, _, err = run("train", *pair, "-o", tmp_path / "n.pt", "--arch", "unetpp", "--downsampling", "strided")
    one_line_error(code, err, "is a UNet option", command="train")
    with pytest.raises(SystemExit):
        _parse("--downsampling", "avgpool")


@pytest.mark.slow
def test_train_runs_and_saves(run, tmp_path, pair):
    out = tmp_path / "m.pt"
    code, stdout, err = run("train", *pair, "-o", out, "--steps", "2", "--patch-size", "32", "--batch-size", "2",
                            "--base-channels", "4", "--depth", "2", "--device", "cpu", "-q",
                            "--class-names", "bg, nucleus")
    assert code == 0, err
    model = load_model(out)
    assert model.meta["provenance"]["steps"] == 2 and model.class_names == ["bg", "nucleus"]
    assert "trained 2 steps" in stdout and "val Dice" in stdout
    code, _, err = run("train", *pair, "-o", out, "--steps", "1")
    assert code == 2 and "pass --overwrite" in err


@pytest.mark.parametrize(("extra", "match"), [
    (["--resume"], "--resume needs --model"),
    (["--model", "nuclei-unet", "--depth", "2"], "do not apply with --model"),
    (["--model", "nuclei-unet", "--downsampling", "strided"], "do not apply with --model"),
])
def test_train_option_errors(run, one_line_error, tmp_path, pair, extra, match, train_calls):
    code, _, err = run("train", *pair, "-o", tmp_path / "m.pt", *extra)
    one_line_error(code, err, match, command="train")
    assert train_calls == [] and not (tmp_path / "m.pt").exists()


def test_settings_fields_are_all_known():
    # every default the CLI reads is a TrainSettings field (a renamed field breaks here, not in use)
    names = {f.name for f in dataclasses.fields(TrainSettings)}
    assert {"patch_size", "batch_size", "val_fraction", "seed", "device"} <= names


@pytest.mark.parametrize(("where", "match"), [
    ("nodir/m.pt", "folder '{tmp}/nodir' does not exist"),
    ("folder", "is a folder"),
    ("exists.pt", "exists; pass --overwrite"),
    ("readonly", "folder '{ro}' is not writable"),
])
def test_output_is_checked_before_training(run, one_line_error, tmp_path, pair, train_calls, where, match):
    """Issue 11, item 16: ``-o nodir/m.pt`` trained for minutes, then failed and lost the model."""
    from pathlib import Path

    (tmp_path / "folder").mkdir()
    (tmp_path / "exists.pt").write_bytes(b"keep")
    out, ro = tmp_path / where, tmp_path / "ro"
    if where == "readonly":
        if os.geteuid() == 0:  # root writes through permission bits: a folder that takes no files
            ro = Path("/proc")
        else:
            ro.mkdir()
            ro.chmod(0o555)
        out = ro / "m.pt"
    code, _, err = run("train", *pair, "-o", out)
    one_line_error(code, err, match.format(tmp=tmp_path, ro=ro), command="train")
    assert train_calls == []
    assert (tmp_path / "exists.pt").read_bytes() == b"keep"
    assert not (tmp_path / "ro").exists() or os.listdir(tmp_path / "ro") == []


#: a small new network: saving and loading it is quick
SMALL = ("--base-channels", "4", "--depth", "2")


def _failing_save(monkeypatch, fails):
    """torch.save fails for temporary files of the names in ``fails`` (a full disk's RuntimeError)."""
    import torch

    real = torch.save

    def save(obj, f, *args, **kwargs):
        if any(os.path.basename(str(f)).startswith(f".{name}") for name in fails):
            raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0")
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_a_failed_save_keeps_the_model_in_a_named_fallback_file(run, tmp_path, pair, train_calls, monkeypatch):
    import re

    rescue = tmp_path / "tmpdir"
    rescue.mkdir()
    monkeypatch.setenv("TMPDIR", str(rescue))
    monkeypatch.setattr("tempfile.tempdir", None)
    _failing_save(monkeypatch, ["m.pt"])
    code, out, err = run("train", *pair, "-o", tmp_path / "m.pt", "-q", *SMALL)
    assert code == 2 and "Traceback" not in err
    assert f"cannot save {str(tmp_path / 'm.pt')!r}" in err and "unexpected pos" in err
    found = re.search(r"the trained model is kept in '([^']+)'", err)
    assert found, err
    kept = found.group(1)
    assert os.path.dirname(kept) == str(rescue) and os.path.basename(kept).startswith("unet-stack-m-")
    assert load_model(kept).describe() == train_calls[0]["model"].describe()
    assert not (tmp_path / "m.pt").exists() and "saved" not in out


def test_when_no_fallback_can_be_written_the_error_says_so(run, tmp_path, pair, train_calls, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _failing_save(monkeypatch, ["m.pt", "unet-stack-m-"])
    code, _, err = run("train", *pair, "-o", tmp_path / "m.pt", "-q", *SMALL)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "cannot save" in err and "could not keep the trained model either (tried" in err


@pytest.mark.parametrize("which", [0, 1])
def test_train_output_is_never_an_input(run, one_line_error, tmp_path, pair, train_calls, which):
    """Issue 11, item 14 for train: ``-o`` through a symlinked folder naming IMAGES or LABELS."""
    before = pair[which].read_bytes()
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "up").symlink_to(tmp_path, target_is_directory=True)
    alias = tmp_path / "here" / "up" / pair[which].name
    code, _, err = run("train", *pair, "-o", alias, "--overwrite")
    one_line_error(code, err, "is an input", command="train")
    assert pair[which].read_bytes() == before and train_calls == []
