"""The reader contribution (issue 11, item 6): OME-Zarr and OME / ImageJ TIFF open with their
scale, units and axis names; the plugin's own label outputs open as Labels layers."""

import numpy as np
import pytest
import tifffile
import zarr

from napari_unet_stack import io
from napari_unet_stack.napari._reader import get_reader
from napari_unet_stack.napari._writer import write_labels_tiff, write_labels_zarr

META = {"name": "seg", "scale": (2.0, 0.5, 0.25), "axis_labels": ("z", "y", "x"),
        "units": ("micrometer",) * 3}


def _labels(dtype=np.uint16):
    data = np.zeros((3, 40, 30), dtype)
    data[1, 5:20, 3:9] = 7
    data[2, 30:, 20:] = 3
    return data


def _read(path):
    reader = get_reader(str(path))
    assert callable(reader), f"no reader for {path}"
    return reader(str(path))


@pytest.mark.parametrize("name", ["seg.tif", "seg.zarr", "seg.ome.zarr"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.uint64])
def test_written_labels_read_back_as_labels(tmp_path, name, dtype):
    data = _labels(dtype)
    writer = write_labels_zarr if name.endswith("zarr") else write_labels_tiff
    writer(str(tmp_path / name), data, dict(META))
    [(back, kwargs, layer_type)] = _read(tmp_path / name)
    assert layer_type == "labels"
    np.testing.assert_array_equal(np.asarray(back), data)
    assert np.asarray(back).dtype == dtype
    assert kwargs["scale"] == pytest.approx(META["scale"])
    assert tuple(kwargs["axis_labels"]) == ("z", "y", "x")
    assert tuple(kwargs["units"]) == ("micrometer",) * 3
    assert kwargs["name"] == "seg"


def test_labels_are_writable_in_memory(tmp_path):
    write_labels_tiff(str(tmp_path / "seg.tif"), _labels(), dict(META))
    [(back, _, _)] = _read(tmp_path / "seg.tif")
    assert isinstance(back, np.ndarray) and back.flags.writeable  # to paint on


def test_ome_zarr_labels_carry_image_label_and_their_name(tmp_path):
    write_labels_zarr(str(tmp_path / "seg.zarr"), _labels(), dict(META, name="nuclei"))
    attrs = dict(zarr.open_group(str(tmp_path / "seg.zarr"), mode="r").attrs)
    assert "image-label" in attrs
    assert attrs["multiscales"][0]["name"] == "nuclei"


def test_create_image_labels_open_as_labels(tmp_path):
    """What `unet-stack predict` writes with labels=True."""
    for name in ("out.tif", "out.ome.tif", "out.zarr", "out.ome.zarr"):
        io.write_image(tmp_path / name, _labels(), axes="ZYX", scale={"Z": 3.0}, labels=True)
        [(_, kwargs, layer_type)] = _read(tmp_path / name)
        assert layer_type == "labels", name
        assert kwargs["scale"] == pytest.approx((3.0, 1.0, 1.0))
        assert kwargs["name"] == "out"


def test_calibrated_imagej_hyperstack_is_an_image_with_channels(tmp_path):
    data = (np.arange(2 * 3 * 2 * 16 * 12) % 200).astype(np.uint16).reshape(2, 3, 2, 16, 12)
    tifffile.imwrite(tmp_path / "hyper.tif", data, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"axes": "TZCYX", "spacing": 1.5, "unit": "um", "finterval": 4.0})
    [(back, kwargs, layer_type)] = _read(tmp_path / "hyper.tif")
    assert layer_type == "image"
    assert kwargs["channel_axis"] == 2
    np.testing.assert_array_equal(np.asarray(back[...]), data)
    assert kwargs["scale"] == pytest.approx((4.0, 1.5, 0.2, 0.2))
    assert tuple(kwargs["axis_labels"]) == ("t", "z", "y", "x")
    assert tuple(kwargs["units"]) == ("second", "micrometer", "micrometer", "micrometer")


def test_ome_zarr_image_and_ome_tiff(tmp_path):
    data = (np.arange(3 * 20 * 24) % 251).astype(np.float32).reshape(3, 20, 24)
    for name in ("img.ome.zarr", "img.ome.tif"):
        io.write_image(tmp_path / name, data, axes="ZYX", scale={"Z": 2.0, "Y": 0.5, "X": 0.5},
                       units={"Z": "um", "Y": "um", "X": "um"})
        [(back, kwargs, layer_type)] = _read(tmp_path / name)
        assert layer_type == "image" and "channel_axis" not in kwargs
        assert kwargs["scale"] == pytest.approx((2.0, 0.5, 0.5))
        np.testing.assert_array_equal(np.asarray(back[...]), data)


def test_files_for_other_readers_are_left_to_them(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((3, 8, 8), np.uint8), photometric="minisblack")  # napari's
    np.save(tmp_path / "a.npy", np.zeros((4, 4)))
    (tmp_path / "folder").mkdir()
    assert get_reader(str(tmp_path / "plain.tif")) is None
    assert get_reader(str(tmp_path / "a.npy")) is None
    assert get_reader(str(tmp_path / "folder")) is None
    assert get_reader(str(tmp_path / "missing.zarr")) is None
    assert get_reader([str(tmp_path / "plain.tif")] * 2) is None  # stacks of files: napari's


def test_a_damaged_file_is_one_clear_error(tmp_path):
    write_labels_zarr(str(tmp_path / "seg.zarr"), _labels(), dict(META))
    (tmp_path / "seg.zarr" / "0" / "1" / "0" / "0").write_bytes(b"garbage" * 9)
    reader = get_reader(str(tmp_path / "seg.zarr"))
    with pytest.raises(OSError, match=r"cannot read chunk '0/1/0/0' of zarr store '.*seg\.zarr': damaged compressed data"):
        reader(str(tmp_path / "seg.zarr"))


@pytest.mark.parametrize("name", ["seg.tif", "seg.zarr"])
def test_viewer_round_trip_through_the_plugin(make_napari_viewer, tmp_path, name):
    from napari.layers import Labels

    viewer = make_napari_viewer()
    layer = viewer.add_labels(_labels(), **META)
    assert layer.save(str(tmp_path / name), plugin="napari-unet-stack") == [str(tmp_path / name)]
    [opened] = viewer.open(str(tmp_path / name), plugin="napari-unet-stack")
    assert isinstance(opened, Labels)
    np.testing.assert_array_equal(np.asarray(opened.data), layer.data)
    np.testing.assert_allclose(opened.scale, layer.scale)
    assert tuple(opened.axis_labels) == tuple(layer.axis_labels)
    assert tuple(str(u) for u in opened.units) == ("micrometer",) * 3


def test_viewer_opens_a_calibrated_hyperstack(make_napari_viewer, tmp_path):
    from napari.layers import Image

    data = (np.arange(3 * 2 * 16 * 12) % 200).astype(np.uint8).reshape(3, 2, 16, 12)
    tifffile.imwrite(tmp_path / "hyper.tif", data, imagej=True, resolution=(4.0, 4.0),
                     metadata={"axes": "ZCYX", "spacing": 0.8, "unit": "um"})
    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path / "hyper.tif"), plugin="napari-unet-stack")
    assert len(layers) == 2 and all(isinstance(layer, Image) for layer in layers)
    for layer in layers:
        np.testing.assert_allclose(layer.scale, (0.8, 0.25, 0.25))
        assert tuple(layer.axis_labels) == ("z", "y", "x")
    np.testing.assert_array_equal(np.asarray(layers[1].data), data[:, 1])


@pytest.mark.parametrize("name", ["labels.tif", "labels.ome.zarr"])
def test_cli_predict_outputs_open_as_labels(tmp_path, capsys, name):
    import torch

    from napari_unet_stack import cli
    from napari_unet_stack.checkpoints import save_model
    from napari_unet_stack.models import UNet

    torch.manual_seed(0)
    checkpoint = save_model(UNet(1, 2, base_channels=4, depth=2).eval(), tmp_path / "tiny.pt")
    stack = (np.arange(2 * 32 * 32) % 251).astype(np.uint8).reshape(2, 32, 32)
    io.write_image(tmp_path / "in.tif", stack, axes="ZYX", scale={"Z": 2.0, "Y": 0.5, "X": 0.5},
                   units={"Z": "um", "Y": "um", "X": "um"})
    code = cli.main(["predict", str(tmp_path / "in.tif"), "-o", str(tmp_path / name),
                     "--model", str(checkpoint), "-q"])
    assert code == 0, capsys.readouterr().err
    [(_, kwargs, layer_type)] = _read(tmp_path / name)
    assert layer_type == "labels"
    assert kwargs["scale"] == pytest.approx((2.0, 0.5, 0.5))


def test_rgb_tiff_is_one_rgb_image(tmp_path):
    rgb = (np.arange(16 * 12 * 3) % 251).astype(np.uint8).reshape(16, 12, 3)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um"})
    [(back, kwargs, layer_type)] = _read(tmp_path / "rgb.tif")
    assert layer_type == "image" and kwargs["rgb"] is True and "channel_axis" not in kwargs
    assert kwargs["scale"] == pytest.approx((0.5, 0.5)) and tuple(kwargs["axis_labels"]) == ("y", "x")
    np.testing.assert_array_equal(np.asarray(back), rgb)
