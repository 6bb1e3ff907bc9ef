"""io TIFF: ImageJ or OME by what ImageJ can hold, BigTIFF, lazy reading, foreign files,
truncated files, codecs."""

import os

import numpy as np
import pytest
import tifffile
import zarr

from napari_unet_stack import io
from napari_unet_stack.io import tiff_write

SCALE = {"Z": 2.0, "Y": 0.5, "X": 0.25}
UNITS = {"Z": "um", "Y": "um", "X": "um"}


@pytest.mark.parametrize(
    ("dtype", "axes", "expected"),
    [
        (np.uint16, "ZYX", "imagej-tiff"),
        (np.float32, "CYX", "imagej-tiff"),
        (np.uint32, "ZYX", "ome-tiff"),  # ImageJ cannot hold uint32
        (np.float32, "CZYX", "ome-tiff"),  # nor axes out of TZCYX order
    ],
)
def test_tif_is_imagej_when_possible_else_ome(tmp_path, make_stack, dtype, axes, expected):
    shape = (2, 3, 16, 24)[-len(axes):]
    data = make_stack(dtype, shape)
    io.write_image(tmp_path / "a.tif", data, axes=axes, scale={"X": 0.5, "Y": 0.5}, units={"X": "nm", "Y": "nm"})
    with io.read_image(tmp_path / "a.tif") as back:
        assert back.format == expected
        assert back.axes == axes
        assert back.scale == {"X": 0.5, "Y": 0.5}
        assert back.units == {"X": "nanometer", "Y": "nanometer"}
        np.testing.assert_array_equal(np.asarray(back.data[...]), data)


def test_bigtiff_above_the_classic_limit(tmp_path, make_stack, monkeypatch):
    monkeypatch.setattr(tiff_write, "_BIGTIFF_BYTES", 1000)
    data = make_stack(np.uint16)
    io.write_image(tmp_path / "big.tif", data, axes="ZYX", scale=SCALE, units=UNITS)
    with tifffile.TiffFile(tmp_path / "big.tif") as tif:
        assert tif.is_bigtiff and tif.is_ome  # ImageJ cannot read BigTIFF: OME carries the metadata
    with io.read_image(tmp_path / "big.tif") as back:
        assert back.axes == "ZYX" and back.scale == pytest.approx(SCALE)
        np.testing.assert_array_equal(np.asarray(back.data[...]), data)


def test_tiff_reading_is_lazy(tmp_path, make_stack):
    data = make_stack(np.uint16)
    io.write_image(tmp_path / "raw.tif", data, compression=None)
    io.write_image(tmp_path / "zip.tif", data, compression="zlib")
    with io.read_image(tmp_path / "raw.tif") as raw, io.read_image(tmp_path / "zip.tif") as packed:
        assert isinstance(raw.data, np.memmap)
        assert isinstance(packed.data.array, zarr.Array)  # page by page through tifffile's store
        assert type(packed.data).__name__ == "CheckedZarr"  # (a damaged page is named)
        np.testing.assert_array_equal(raw.data, data)
        np.testing.assert_array_equal(packed.data[1], data[1])
    assert os.path.getsize(tmp_path / "zip.tif") < os.path.getsize(tmp_path / "raw.tif")


def test_foreign_tiffs_metadata(tmp_path, make_stack):
    data = make_stack(np.uint16, (4, 3, 20, 30))
    tifffile.imwrite(tmp_path / "ij.tif", data, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"axes": "ZCYX", "spacing": 1.5, "unit": "micron"})
    with io.read_image(tmp_path / "ij.tif") as back:
        assert back.axes == "ZCYX" and back.channel_axis == 1
        assert back.scale == pytest.approx({"X": 0.2, "Y": 0.2, "Z": 1.5})
        assert back.units["Z"] == "micrometer"
        np.testing.assert_array_equal(np.asarray(back.data[...]), data)
    tifffile.imwrite(tmp_path / "o.ome.tif", data, ome=True,
                     metadata={"axes": "ZCYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3, "PhysicalSizeXUnit": "nm"})
    with io.read_image(tmp_path / "o.ome.tif") as back:
        assert back.axes == "ZCYX"
        assert back.scale == pytest.approx({"X": 0.3, "Y": 0.3})
        assert back.units["X"] == "nanometer"
        np.testing.assert_array_equal(np.asarray(back.data[...]), data)
    rgb = make_stack(np.uint8, (20, 30, 3))
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with io.read_image(tmp_path / "rgb.tif") as back:
        assert back.axes == "YXC" and back.channel_axis == 2
        assert back.format == "tiff" and back.scale == {}
        np.testing.assert_array_equal(np.asarray(back.data[...]), rgb)


@pytest.mark.parametrize("kind", ["imagej", "imagej zlib", "ome", "plain", "tiled zlib", "imagej rgb"])
def test_truncated_tiff_is_an_error_not_fewer_slices(tmp_path, make_stack, kind):
    """tifffile reads what it can of a truncated file (often the first slice) and only logs it."""
    data = make_stack(np.uint16, (6, 64, 64))
    kwargs = {"imagej": dict(imagej=True, metadata={"axes": "ZYX"}),
              "imagej zlib": dict(imagej=True, metadata={"axes": "ZYX"}, compression="zlib"),
              "ome": dict(ome=True, metadata={"axes": "ZYX"}),
              "plain": dict(),
              "tiled zlib": dict(tile=(32, 32), compression="zlib"),
              "imagej rgb": dict(imagej=True, metadata={"axes": "ZYXS"})}[kind]
    if kind == "imagej rgb":
        data = np.repeat((data // 256).astype(np.uint8)[..., None], 3, axis=-1)
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, data, **kwargs)
    with io.read_image(whole) as image:
        np.testing.assert_array_equal(np.asarray(image.data[...]).reshape(data.shape), data)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    with pytest.raises(ValueError, match=r"cannot read .*cut\.tif.* truncated or corrupt") as err:
        io.read_image(cut)
    assert "\n" not in str(err.value)


def test_missing_series_is_named(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.ones((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"as TIFF: series 1 does not exist \(the file has 1\)"):
        io.read_image(tmp_path / "a.tif", series=1)


def test_unavailable_codec_fails_before_writing(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "imagecodecs" else real(name, *a))
    with pytest.raises(ValueError, match="needs the imagecodecs package"):
        io.write_image(tmp_path / "a.tif", np.zeros((2, 4, 4), np.uint8), compression="zstd")
    assert os.listdir(tmp_path) == []
