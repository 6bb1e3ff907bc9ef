"""PNG / JPEG / BMP inputs, read through imageio (issue 11, item 4)."""

import imageio.v3 as iio
import numpy as np
import pytest

from napari_unet_stack import io


def _rgb(shape=(12, 10)):
    values = np.arange(int(np.prod(shape)) * 3) % 251
    return values.astype(np.uint8).reshape(*shape, 3)


@pytest.mark.parametrize(("name", "kind"), [
    ("a.png", "png"), ("a.PNG", "png"), ("a.jpg", "jpeg"), ("a.JPEG", "jpeg"), ("a.bmp", "bmp"),
])
def test_kind_of_pictures(name, kind):
    assert io.kind_of(name) == kind
    assert kind_in_extensions(name)


def kind_in_extensions(name):
    return any(name.lower().endswith(ext) for ext in io.IMAGE_EXTENSIONS)


@pytest.mark.parametrize("name", ["rgb.png", "rgb.bmp"])
def test_rgb_picture_reads_with_a_channel_axis(tmp_path, name):
    data = _rgb()
    iio.imwrite(tmp_path / name, data)
    with io.read_image(tmp_path / name) as image:
        assert image.axes == "YXC" and image.channel_axis == 2
        assert image.format == io.kind_of(name)
        np.testing.assert_array_equal(np.asarray(image.data), data)  # lossless formats


def test_rgba_and_16_bit_gray_png(tmp_path):
    rgba = np.dstack([_rgb(), np.full((12, 10), 200, np.uint8)])
    iio.imwrite(tmp_path / "rgba.png", rgba)
    gray = (np.arange(120, dtype=np.uint16) * 500).reshape(12, 10)
    iio.imwrite(tmp_path / "gray.png", gray)
    with io.read_image(tmp_path / "rgba.png") as image:
        assert image.axes == "YXC" and image.shape == (12, 10, 4)
        np.testing.assert_array_equal(image.data, rgba)
    with io.read_image(tmp_path / "gray.png") as image:
        assert image.axes == "YX" and image.dtype == np.uint16
        np.testing.assert_array_equal(image.data, gray)


def test_jpeg_reads_close_to_what_was_written(tmp_path):
    gray = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (16, 1))
    iio.imwrite(tmp_path / "g.jpg", gray, quality=95)
    with io.read_image(tmp_path / "g.jpg") as image:
        assert image.axes == "YX" and image.shape == (16, 32) and image.dtype == np.uint8
        assert np.abs(image.data.astype(int) - gray).max() < 8


def test_folder_finds_pictures(tmp_path):
    iio.imwrite(tmp_path / "a.png", _rgb())
    (tmp_path / "notes.txt").write_text("x")
    assert io.find_images(tmp_path) == [tmp_path / "a.png"]


@pytest.mark.parametrize(("content", "name"), [(b"", "empty.jpg"), (b"\x89PNG\r\n\x1a\nxxxx", "broken.png"),
                                               (b"BM not a bitmap", "bad.bmp")])
def test_damaged_picture_is_one_clear_error(tmp_path, content, name):
    (tmp_path / name).write_bytes(content)
    kind = {"jpg": "JPEG", "png": "PNG", "bmp": "BMP"}[name.rsplit(".", 1)[1]]
    with pytest.raises(ValueError, match=rf"cannot read '.*{name}' as {kind}: ") as info:
        io.read_image(tmp_path / name)
    assert "\n" not in str(info.value)


def test_pictures_are_read_not_written(tmp_path):
    with pytest.raises(ValueError, match=r"'x.png'.*PNG files are read, not written.*\.tif"):
        io.output_format("x.png")
    with pytest.raises(ValueError, match=r"PNG files are read, not written"):
        io.write_image(tmp_path / "x.png", np.zeros((4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []



@pytest.mark.slow
def test_cli_predicts_a_gray_png(tmp_path, capsys):
    """``unet-stack predict cells.png`` segments it (the CLI said "unsupported extension")."""
    import torch

    from napari_unet_stack import cli, segment
    from napari_unet_stack.checkpoints import save_model
    from napari_unet_stack.models import UNet

    torch.manual_seed(0)
    model = UNet(1, 2, base_channels=4, depth=2).eval()
    checkpoint = save_model(model, tmp_path / "tiny.pt")
    gray = (np.arange(48 * 64) % 251).astype(np.uint8).reshape(48, 64)
    iio.imwrite(tmp_path / "cells.png", gray)
    code = cli.main(["predict", str(tmp_path / "cells.png"), "-o", str(tmp_path / "labels.tif"),
                     "--model", str(checkpoint), "-q"])
    assert code == 0, capsys.readouterr().err
    with io.read_image(tmp_path / "labels.tif") as labels:
        assert labels.shape == (48, 64)
        expected = segment(gray, model, device="cpu")
        np.testing.assert_array_equal(np.asarray(labels.data), expected)
    # labels named from a picture input are a TIFF (pictures are read, never written)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = cli.main(["predict", str(tmp_path / "cells.png"), "-o", f"{out_dir}/", "--model", str(checkpoint), "-q"])
    assert code == 0, capsys.readouterr().err
    assert [p.name for p in out_dir.iterdir()] == ["cells_labels.tif"]
