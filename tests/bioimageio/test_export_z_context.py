"""A z-context (2.5D) model is refused by the bioimage.io export before anything is written:
a plain 2D description cannot say that its input channels are neighbouring slices."""

import pytest

from napari_unet_stack import cli
from napari_unet_stack.bioimageio.export import export_bioimageio, package_fields, write_files
from napari_unet_stack.checkpoints import save_model
from napari_unet_stack.models import UNet

MESSAGE = r"meta\['z_context'\] = 1 .* plain 2D bioimage\.io model"


@pytest.fixture
def zmodel():
    model = UNet(3, 2, base_channels=4, depth=2).eval()
    model.meta["z_context"] = 1
    return model


def test_export_refuses_a_z_context_model_and_writes_nothing(zmodel, tmp_path):
    target = tmp_path / "out" / "model.zip"
    target.parent.mkdir()
    with pytest.raises(ValueError, match=MESSAGE):
        export_bioimageio(zmodel, target)
    assert list(target.parent.iterdir()) == []
    folder = tmp_path / "files"
    folder.mkdir()
    fields = package_fields(zmodel, None, None, "me", None, "CC-BY-4.0", None, {})
    with pytest.raises(ValueError, match=MESSAGE):
        write_files(zmodel, folder, fields)
    assert list(folder.iterdir()) == []


@pytest.mark.slow
def test_the_same_network_without_z_context_is_exported(zmodel, tmp_path):
    pytest.importorskip("bioimageio.spec")
    del zmodel.meta["z_context"]  # a plain 3-channel 2D model
    assert export_bioimageio(zmodel, tmp_path / "model.zip").is_file()


def test_cli_export_says_why_in_one_line(zmodel, tmp_path, capsys):
    checkpoint = save_model(zmodel, tmp_path / "z.pt")
    code = cli.main(["export-bioimageio", str(checkpoint), "-o", str(tmp_path / "z.zip")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "meta['z_context'] = 1" in err[0]
    assert err[0].startswith("unet-stack export-bioimageio: error:")
    assert not (tmp_path / "z.zip").exists()
