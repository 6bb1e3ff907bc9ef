"""``unet-stack export-bioimageio``'s errors (the working export is in test_export)."""

import sys

from napari_unet_stack.cli import main


def test_without_the_extra_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)
    assert main(["export-bioimageio", "nuclei-unet", "-o", str(tmp_path / "p.zip")]) == 2
    err = capsys.readouterr().err
    assert 'pip install "napari-unet-stack[bioimageio]"' in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_output_must_be_a_zip_and_model_must_exist(tmp_path, capsys):
    assert main(["export-bioimageio", "nuclei-unet", "-o", str(tmp_path / "p.tar")]) == 2
    assert "must be a .zip" in capsys.readouterr().err
    assert main(["export-bioimageio", "no-such-model", "-o", str(tmp_path / "p.zip")]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
