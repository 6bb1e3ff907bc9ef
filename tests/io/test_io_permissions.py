"""Every file the package writes gets the user's usual permissions (the umask), not the
owner-only 0600 of a mkstemp file: label outputs of every format, the napari writer's files,
and model files from save_model, export_torchscript and ``unet-stack train`` (issue 11, item 7).
"""

import os
import stat

import numpy as np
import pytest

from napari_unet_stack import io

UMASKS = [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)]


@pytest.fixture(params=UMASKS, ids=["umask022", "umask027"])
def umask(request):
    """(file mode, folder mode) the umask gives; set for the test, restored after."""
    mask, file_mode, dir_mode = request.param
    old = os.umask(mask)
    yield file_mode, dir_mode
    os.umask(old)


def _modes(path):
    """{relative path: permission bits} of ``path`` and everything under it."""
    found = {".": stat.S_IMODE(os.stat(path).st_mode)}
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                full = os.path.join(root, name)
                found[os.path.relpath(full, path)] = stat.S_IMODE(os.stat(full).st_mode)
    return found


def _expect(path, file_mode, dir_mode):
    modes = _modes(path)
    wrong = {name: oct(mode) for name, mode in modes.items()
             if mode != (dir_mode if os.path.isdir(os.path.join(path, name)) else file_mode)}
    assert wrong == {}, f"{path}: expected files {oct(file_mode)}, folders {oct(dir_mode)}"


@pytest.mark.parametrize("name", ["l.tif", "l.ome.tif", "l.zarr", "l.ome.zarr", "l.npy"])
def test_label_outputs(tmp_path, umask, name):
    labels = np.zeros((2, 16, 16), np.uint16)
    io.write_image(tmp_path / name, labels, axes="ZYX", labels=True)
    _expect(tmp_path / name, *umask)
    io.write_image(tmp_path / name, labels + 1, axes="ZYX", overwrite=True)  # replacing keeps them
    _expect(tmp_path / name, *umask)


@pytest.mark.parametrize(("name", "dtype"), [("seg.tif", np.uint16), ("seg.tif", np.uint64),
                                             ("seg.zarr", np.int32), ("seg.ome.zarr", np.uint8)])
def test_napari_writer_outputs(tmp_path, umask, name, dtype):
    from napari_unet_stack.napari._writer import write_labels_tiff, write_labels_zarr

    writer = write_labels_zarr if name.endswith("zarr") else write_labels_tiff
    writer(str(tmp_path / name), np.ones((2, 8, 8), dtype), {"name": "seg"})
    _expect(tmp_path / name, *umask)


@pytest.mark.slow
def test_model_files(tmp_path, umask):
    from napari_unet_stack.checkpoints import export_torchscript, save_model
    from napari_unet_stack.models import UNet

    model = UNet(1, 2, base_channels=4, depth=2)
    _expect(save_model(model, tmp_path / "m.pt"), *umask)
    _expect(save_model(model, tmp_path / "m.pt", include_training_state=False), *umask)  # replaced
    _expect(export_torchscript(model, tmp_path / "m.ts"), *umask)


@pytest.mark.slow
def test_cli_train_output(tmp_path, umask, capsys):
    from napari_unet_stack import cli
    from napari_unet_stack.synthetic import nuclei_stack

    made = nuclei_stack((2, 32, 32), seed=1)
    io.write_image(tmp_path / "img.tif", made.image, axes="ZYX")
    np.save(tmp_path / "lab.npy", made.labels)
    code = cli.main(["train", str(tmp_path / "img.tif"), str(tmp_path / "lab.npy"), "-o", str(tmp_path / "m.pt"),
                     "--steps", "1", "--patch-size", "32", "--batch-size", "1", "--base-channels", "4",
                     "--depth", "2", "--device", "cpu", "-q"])
    assert code == 0, capsys.readouterr().err
    _expect(tmp_path / "m.pt", *umask)
