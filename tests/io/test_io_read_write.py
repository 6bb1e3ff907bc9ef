"""io read / write: round trips with metadata in every format, read errors, write checks,
dask arrays read by path."""

import pickle

import numpy as np
import pytest

from napari_unet_stack import io

SCALE = {"Z": 2.0, "Y": 0.5, "X": 0.25}
UNITS = {"Z": "um", "Y": "um", "X": "um"}
FORMATS = ["a.tif", "a.ome.tif", "a.zarr", "a.ome.zarr"]


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int16, np.float32, np.float64])
def test_round_trip_keeps_dtype_axes_and_pixel_size(tmp_path, make_stack, leftovers, name, dtype):
    data = make_stack(dtype)
    io.write_image(tmp_path / name, data, axes="ZYX", scale=SCALE, units=UNITS)
    with io.read_image(tmp_path / name) as back:
        assert back.dtype == np.dtype(dtype)
        assert back.shape == data.shape
        assert back.axes == "ZYX"
        assert back.scale == pytest.approx(SCALE)
        assert back.units == {"Z": "micrometer", "Y": "micrometer", "X": "micrometer"}
        np.testing.assert_array_equal(np.asarray(back.data[...]), data)
    assert leftovers(tmp_path) == []


def test_npy_round_trip_is_memory_mapped(tmp_path, make_stack):
    data = make_stack(np.uint16)
    io.write_image(tmp_path / "a.npy", data)
    with io.read_image(tmp_path / "a.npy") as back:
        assert isinstance(back.data, np.memmap)
        assert back.axes is None and back.scale == {} and back.format == "npy"
        np.testing.assert_array_equal(back.data, data)


def test_time_axis_and_2d_images(tmp_path, make_stack):
    data = make_stack(np.uint8, (2, 3, 16, 16))
    for name in ("t.ome.tif", "t.ome.zarr"):
        io.write_image(tmp_path / name, data, axes="TZYX", scale={"T": 1.5, "X": 0.1}, units={"T": "s", "X": "um"})
        with io.read_image(tmp_path / name) as back:
            assert back.axes == "TZYX"
            assert back.scale["T"] == 1.5 and back.units["T"] == "second"
            assert back.scale["X"] == pytest.approx(0.1)
            np.testing.assert_array_equal(np.asarray(back.data[...]), data)
    io.write_image(tmp_path / "flat.tif", data[0, 0])
    with io.read_image(tmp_path / "flat.tif") as back:
        assert back.axes == "YX" and back.shape == (16, 16)
        np.testing.assert_array_equal(np.asarray(back.data[...]), data[0, 0])


def test_read_errors_are_one_line(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"this is not a tiff file at all")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    (tmp_path / "x.gif").write_bytes(b"")
    (tmp_path / "x.png").write_bytes(b"")
    for name, match in (("bad.tif", "cannot read .* as TIFF"), ("bad.npy", "cannot read .* as .npy"),
                        ("x.gif", "unsupported extension"), ("x.png", "cannot read .* as PNG")):
        with pytest.raises(ValueError, match=match) as err:
            io.read_image(tmp_path / name)
        assert "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="no such file"):
        io.read_image(tmp_path / "missing.tif")


def test_unsupported_dtype_is_refused(tmp_path):
    np.save(tmp_path / "c.npy", np.zeros((4, 4), np.complex64))
    with pytest.raises(ValueError, match="unsupported data type complex64"):
        io.read_image(tmp_path / "c.npy")
    with pytest.raises(TypeError, match="cannot write images of dtype complex64"):
        io.write_image(tmp_path / "c.tif", np.zeros((4, 4), np.complex64))


def test_write_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        io.write_image(tmp_path / "nope" / "a.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="does not fit"):
        io.write_image(tmp_path / "a.tif", np.zeros((2, 4, 4), np.uint8), axes="YX")
    with pytest.raises(ValueError, match="not in axes"):
        io.write_image(tmp_path / "a.tif", np.zeros((4, 4), np.uint8), scale={"Z": 1.0})
    with pytest.raises(ValueError, match="positive and finite"):
        io.write_image(tmp_path / "a.tif", np.zeros((4, 4), np.uint8), scale={"X": -1.0})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["a.tif", "a.zarr", "a.npy"])
def test_as_dask_reads_by_path(tmp_path, make_stack, name):
    data = make_stack(np.uint16, (5, 64, 64))
    io.write_image(tmp_path / name, data)
    with io.read_image(tmp_path / name) as image:
        lazy = io.as_dask(image, slices_per_chunk=2)
    assert lazy.chunks[0] == (2, 2, 1)
    assert len(pickle.dumps(lazy)) < data.nbytes / 10  # the graph holds the path, not the pixels
    np.testing.assert_array_equal(lazy.compute(), data)


def test_as_dask_refuses_arrays_without_a_file(make_stack):
    with pytest.raises(ValueError, match="read from a file"):
        io.as_dask(io.ImageData(make_stack(np.uint8)))
