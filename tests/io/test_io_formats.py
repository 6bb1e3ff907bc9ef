"""io formats and axes: extensions, zarr folders, axis letters, units, input lists."""

import doctest
import importlib

import numpy as np
import pytest
import zarr

from napari_unet_stack import io

MODULES = ["axes", "formats", "write"]


def test_public_names():
    assert io.__all__ == [
        "IMAGE_EXTENSIONS", "ImageData", "as_dask", "canonical_unit", "check_axes", "create_image",
        "default_axes", "disk_array",
        "extension_of", "find_images", "is_zarr_dir", "kind_of", "normalize_axes",
        "output_format", "read_image", "scratch_array", "stem_of", "write_image",
    ]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(f"napari_unet_stack.io.{module}"))
    assert result.attempted > 0 and result.failed == 0


def test_output_format_by_extension():
    assert io.output_format("x.OME.TIFF") == "ome-tiff"
    assert io.output_format("x.ome.zarr") == "ome-zarr"
    assert io.output_format("x.npy") == "npy"
    assert io.stem_of("dir/sample.ome.tif") == "sample"
    with pytest.raises(ValueError, match="cannot tell the output format"):
        io.output_format("x.gif")
    with pytest.raises(ValueError, match=r"cannot write 'x\.png': PNG files are read, not written"):
        io.output_format("x.png")


@pytest.mark.parametrize(("name", "kind"), [
    ("a.ome.zarr", "ome-zarr"), ("a.OME.Zarr", "ome-zarr"), ("a.zarr", "zarr"), ("a.ome.btf", "ome-tiff"),
    ("a.ome.tiff", "ome-tiff"), ("a.tf8", "tiff"), ("a.TIF", "tiff"), ("a.npy", "npy"),
    ("a.png", "png"), ("a.gif", None), ("zarr", None), ("a.tif.gz", None),
])
def test_kind_of(name, kind):
    assert io.kind_of(name) == kind
    assert io.kind_of(f"folder.zarr/{name}") == kind  # only the name counts


def test_is_zarr_dir(tmp_path):
    zarr.open_array(str(tmp_path / "plain"), mode="w", shape=(2, 2), dtype="u1", zarr_format=2)
    zarr.open_group(str(tmp_path / "v3"), mode="w", zarr_format=3)
    (tmp_path / "folder.zarr").mkdir()
    (tmp_path / "file.zarr").write_bytes(b"")
    assert io.is_zarr_dir(tmp_path / "plain") and io.is_zarr_dir(str(tmp_path / "v3"))
    assert not io.is_zarr_dir(tmp_path / "folder.zarr")  # a name is not a store
    assert not io.is_zarr_dir(tmp_path / "file.zarr")
    assert not io.is_zarr_dir(tmp_path / "missing")


@pytest.mark.parametrize(("axes", "expected"), [
    ("ZYX", "ZYX"), ("zyx", "ZYX"), ("YXS", "YXC"), ("IYX", "ZYX"), ("QZYX", "TZYX"),
    ("QQZYX", "TCZYX"), ("QTZCYX", "QTZCYX"),
])
def test_normalize_axes(axes, expected):
    assert io.normalize_axes(axes) == expected


def test_default_axes():
    assert io.default_axes(2) == "YX"
    assert io.default_axes(4) == "TZYX"
    assert io.default_axes(5) == "QTZYX"
    assert io.default_axes(4, channel_axis=1) == "ZCYX"
    with pytest.raises(ValueError, match="at least 2 spatial axes"):
        io.default_axes(2, channel_axis=0)


def test_canonical_unit():
    assert [io.canonical_unit(u) for u in ("um", "MICRON", " nm ", "Å", "sec", "pixel", "", None)] == [
        "micrometer", "micrometer", "nanometer", "angstrom", "second", "pixel", None, None]


def test_find_images(tmp_path):
    data = np.zeros((2, 8, 8), np.uint8)
    for name in ("b.tif", "a.ome.tif", "c.npy", "d.zarr"):
        io.write_image(tmp_path / name, data)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.tif").write_bytes(b"")
    (tmp_path / "e.zarr").mkdir()  # a zarr name without a store is not an image
    assert [p.name for p in io.find_images(tmp_path)] == ["a.ome.tif", "b.tif", "c.npy", "d.zarr"]
    assert [p.name for p in io.find_images(str(tmp_path / "*.tif"))] == ["a.ome.tif", "b.tif"]
    assert [p.name for p in io.find_images([tmp_path / "d.zarr", tmp_path / "d.zarr"])] == ["d.zarr"]
    assert [p.name for p in io.find_images([tmp_path / "c.npy", str(tmp_path / "*.npy")])] == ["c.npy"]
    with pytest.raises(FileNotFoundError, match="no images match"):
        io.find_images(str(tmp_path / "*.czi"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        io.find_images(tmp_path / "missing.tif")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no images"):
        io.find_images(tmp_path / "empty")
