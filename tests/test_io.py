"""io: round trips with metadata, lazy reading, atomic writes, input expansion."""

import os
import pickle
import time

import numpy as np
import pytest
import tifffile
import zarr

from napari_unet_stack import io

SCALE = {"Z": 2.0, "Y": 0.5, "X": 0.25}
UNITS = {"Z": "um", "Y": "um", "X": "um"}
FORMATS = ["a.tif", "a.ome.tif", "a.zarr", "a.ome.zarr"]


def _stack(dtype, shape=(3, 40, 56)):
    values = np.arange(np.prod(shape)).reshape(shape) % 251
    return values.astype(dtype)


def _leftovers(folder):
    return sorted(p for p in os.listdir(folder) if p.startswith("."))


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int16, np.float32, np.float64])
def test_round_trip_keeps_dtype_axes_and_pixel_size(tmp_path, name, dtype):
    data = _stack(dtype)
    io.write_image(tmp_path / name, data, axes="ZYX", scale=SCALE, units=UNITS)
    with io.read_image(tmp_path / name) as back:
        assert back.dtype == np.dtype(dtype)
        assert back.shape == data.shape
        assert back.axes == "ZYX"
        assert back.scale == pytest.approx(SCALE)
        assert back.units == {"Z": "micrometer", "Y": "micrometer", "X": "micrometer"}
        np.testing.assert_array_equal(np.asarray(back.data[...]), data)
    assert _leftovers(tmp_path) == []


def test_npy_round_trip_is_memory_mapped(tmp_path):
    data = _stack(np.uint16)
    io.write_image(tmp_path / "a.npy", data)
    with io.read_image(tmp_path / "a.npy") as back:
        assert isinstance(back.data, np.memmap)
        assert back.axes is None and back.scale == {}
        np.testing.assert_array_equal(back.data, data)


@pytest.mark.parametrize(
    ("dtype", "axes", "expected"),
    [
        (np.uint16, "ZYX", "imagej-tiff"),
        (np.float32, "CYX", "imagej-tiff"),
        (np.uint32, "ZYX", "ome-tiff"),  # ImageJ cannot hold uint32
        (np.float32, "CZYX", "ome-tiff"),  # nor axes out of TZCYX order
    ],
)
def test_tif_is_imagej_when_possible_else_ome(tmp_path, dtype, axes, expected):
    shape = (2, 3, 16, 24)[-len(axes):]
    data = _stack(dtype, shape)
    io.write_image(tmp_path / "a.tif", data, axes=axes, scale={"X": 0.5, "Y": 0.5}, units={"X": "nm", "Y": "nm"})
    with io.read_image(tmp_path / "a.tif") as back:
        assert back.format == expected
        assert back.axes == axes
        assert back.scale == {"X": 0.5, "Y": 0.5}
        assert back.units == {"X": "nanometer", "Y": "nanometer"}
        np.testing.assert_array_equal(np.asarray(back.data[...]), data)


def test_time_axis_and_2d_images(tmp_path):
    data = _stack(np.uint8, (2, 3, 16, 16))
    for name in ("t.ome.tif", "t.ome.zarr"):
        io.write_image(tmp_path / name, data, axes="TZYX", scale={"T": 1.5, "X": 0.1}, units={"T": "s", "X": "um"})
        with io.read_image(tmp_path / name) as back:
            assert back.axes == "TZYX"
            assert back.scale["T"] == 1.5 and back.units["T"] == "second"
            assert back.scale["X"] == pytest.approx(0.1)
    io.write_image(tmp_path / "flat.tif", data[0, 0])
    with io.read_image(tmp_path / "flat.tif") as back:
        assert back.axes == "YX" and back.shape == (16, 16)


def test_bigtiff_above_the_classic_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "_BIGTIFF_BYTES", 1000)
    data = _stack(np.uint16)
    io.write_image(tmp_path / "big.tif", data, axes="ZYX", scale=SCALE, units=UNITS)
    with tifffile.TiffFile(tmp_path / "big.tif") as tif:
        assert tif.is_bigtiff and tif.is_ome  # ImageJ cannot read BigTIFF: OME carries the metadata
    with io.read_image(tmp_path / "big.tif") as back:
        assert back.axes == "ZYX" and back.scale == pytest.approx(SCALE)
        np.testing.assert_array_equal(np.asarray(back.data[...]), data)


def test_tiff_reading_is_lazy(tmp_path):
    data = _stack(np.uint16)
    io.write_image(tmp_path / "raw.tif", data, compression=None)
    io.write_image(tmp_path / "zip.tif", data, compression="zlib")
    with io.read_image(tmp_path / "raw.tif") as raw, io.read_image(tmp_path / "zip.tif") as packed:
        assert isinstance(raw.data, np.memmap)
        assert isinstance(packed.data, zarr.Array)  # page by page through tifffile's store
        np.testing.assert_array_equal(packed.data[1], data[1])


def test_foreign_tiffs_metadata(tmp_path):
    data = _stack(np.uint16, (4, 3, 20, 30))
    tifffile.imwrite(tmp_path / "ij.tif", data, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"axes": "ZCYX", "spacing": 1.5, "unit": "micron"})
    with io.read_image(tmp_path / "ij.tif") as back:
        assert back.axes == "ZCYX" and back.channel_axis == 1
        assert back.scale == pytest.approx({"X": 0.2, "Y": 0.2, "Z": 1.5})
        assert back.units["Z"] == "micrometer"
    tifffile.imwrite(tmp_path / "o.ome.tif", data, ome=True,
                     metadata={"axes": "ZCYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3, "PhysicalSizeXUnit": "nm"})
    with io.read_image(tmp_path / "o.ome.tif") as back:
        assert back.axes == "ZCYX"
        assert back.scale == pytest.approx({"X": 0.3, "Y": 0.3})
        assert back.units["X"] == "nanometer"
    rgb = _stack(np.uint8, (20, 30, 3))
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with io.read_image(tmp_path / "rgb.tif") as back:
        assert back.axes == "YXC" and back.channel_axis == 2


def _ome_zarr(path, data, multiscales, *, v05=False):
    group = zarr.open_group(str(path), mode="w", zarr_format=3 if v05 else 2)
    for i, level in enumerate(data):
        group.create_array(str(i), shape=level.shape, dtype=level.dtype, chunks=level.shape)[...] = level
    if v05:
        group.attrs["ome"] = {"version": "0.5", "multiscales": multiscales}
    else:
        group.attrs["multiscales"] = multiscales


@pytest.mark.parametrize("v05", [False, True])
def test_foreign_ome_zarr_levels_and_transforms(tmp_path, v05):
    full = _stack(np.uint16, (2, 16, 16))
    half = full[:, ::2, ::2]
    ms = [{
        "version": "0.5" if v05 else "0.4",
        "axes": [{"name": "c", "type": "channel"}, {"name": "y", "type": "space", "unit": "micrometer"},
                 {"name": "x", "type": "space", "unit": "micrometer"}],
        "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 0.5, 0.5]}]},
            {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [1, 1.0, 1.0]}]},
        ],
        "coordinateTransformations": [{"type": "scale", "scale": [1, 2.0, 2.0]}],
    }]
    _ome_zarr(tmp_path / "f.ome.zarr", [full, half], ms, v05=v05)
    with io.read_image(tmp_path / "f.ome.zarr") as back:
        assert back.axes == "CYX" and back.channel_axis == 0
        assert back.scale == {"Y": 1.0, "X": 1.0} and back.units == {"Y": "micrometer", "X": "micrometer"}
        np.testing.assert_array_equal(back.data[...], full)
    with io.read_image(tmp_path / "f.ome.zarr", level=1) as back:
        assert back.scale == {"Y": 2.0, "X": 2.0}
        np.testing.assert_array_equal(back.data[...], half)


def test_plain_zarr_groups(tmp_path):
    group = zarr.open_group(str(tmp_path / "one.zarr"), mode="w")
    group.create_array("only", shape=(4, 8, 8), dtype="uint8")[...] = 3
    with io.read_image(tmp_path / "one.zarr") as back:
        assert back.shape == (4, 8, 8) and int(back.data[0, 0, 0]) == 3
    group = zarr.open_group(str(tmp_path / "two.zarr"), mode="w")
    group.create_array("a", shape=(8, 8), dtype="uint8")
    group.create_array("b", shape=(8, 8), dtype="uint8")
    with pytest.raises(ValueError, match="2 arrays"):
        io.read_image(tmp_path / "two.zarr")


def test_read_errors_are_one_line(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"this is not a tiff file at all")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    (tmp_path / "x.png").write_bytes(b"")
    for name, match in (("bad.tif", "cannot read .* as TIFF"), ("bad.npy", "cannot read .* as .npy"),
                        ("x.png", "unsupported extension")):
        with pytest.raises(ValueError, match=match) as err:
            io.read_image(tmp_path / name)
        assert "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="no such file"):
        io.read_image(tmp_path / "missing.tif")


@pytest.mark.parametrize("kind", ["imagej", "imagej zlib", "ome", "plain", "tiled zlib", "imagej rgb"])
def test_truncated_tiff_is_an_error_not_fewer_slices(tmp_path, kind):
    """tifffile reads what it can of a truncated file (often the first slice) and only logs it."""
    data = _stack(np.uint16, (6, 64, 64))
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


def test_output_format_by_extension():
    assert io.output_format("x.OME.TIFF") == "ome-tiff"
    assert io.output_format("x.ome.zarr") == "ome-zarr"
    assert io.output_format("x.npy") == "npy"
    assert io.stem_of("dir/sample.ome.tif") == "sample"
    with pytest.raises(ValueError, match="cannot tell the output format"):
        io.output_format("x.png")


@pytest.mark.parametrize("name", [*FORMATS, "a.npy"])
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_write_leaves_nothing(tmp_path, name, error):
    with pytest.raises(error), io.create_image(tmp_path / name, (4, 8, 8), np.uint8) as out:
        out[0] = 1
        raise error("stop")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(int(zarr.__version__.split(".")[0]) < 3, reason="zarr 2 writes in the caller's thread")
@pytest.mark.parametrize("name", ["a.tif", "a.ome.zarr"])
def test_ctrl_c_during_a_zarr_write_leaves_nothing(tmp_path, name):
    """zarr 3 writes in its I/O thread; Ctrl-C ends the caller's wait, not the write, which
    went on writing chunks into the temporary output after it was removed."""
    import asyncio

    from zarr.core.sync import _get_loop

    with pytest.raises(KeyboardInterrupt), io.create_image(tmp_path / name, (4, 8, 8), np.uint8) as out:
        async def late_write():  # a write the interrupted caller no longer waits for
            await asyncio.sleep(0.2)
            await out._async_array.setitem((slice(1, 2),), np.ones((1, 8, 8), np.uint8))

        asyncio.run_coroutine_threadsafe(late_write(), _get_loop())
        raise KeyboardInterrupt
    time.sleep(0.4)  # past the late write
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", [*FORMATS, "a.npy"])
def test_overwrite_replaces_only_when_complete(tmp_path, name):
    first = np.ones((2, 8, 8), np.uint8)
    io.write_image(tmp_path / name, first)
    with pytest.raises(FileExistsError):
        io.write_image(tmp_path / name, first * 2)
    with pytest.raises(RuntimeError), io.create_image(tmp_path / name, (2, 8, 8), np.uint8, overwrite=True) as out:
        out[0] = 7
        raise RuntimeError("boom")
    with io.read_image(tmp_path / name) as back:  # the old one is intact
        np.testing.assert_array_equal(np.asarray(back.data[...]), first)
    io.write_image(tmp_path / name, first * 2, overwrite=True)
    with io.read_image(tmp_path / name) as back:
        np.testing.assert_array_equal(np.asarray(back.data[...]), first * 2)
    assert _leftovers(tmp_path) == []


def test_write_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        io.write_image(tmp_path / "nope" / "a.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="does not fit"):
        io.write_image(tmp_path / "a.tif", np.zeros((2, 4, 4), np.uint8), axes="YX")
    with pytest.raises(ValueError, match="not in axes"):
        io.write_image(tmp_path / "a.tif", np.zeros((4, 4), np.uint8), scale={"Z": 1.0})


def test_unavailable_codec_fails_before_writing(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "imagecodecs" else real(name, *a))
    with pytest.raises(ValueError, match="needs the imagecodecs package"):
        io.write_image(tmp_path / "a.tif", np.zeros((2, 4, 4), np.uint8), compression="zstd")
    assert os.listdir(tmp_path) == []


def test_find_images(tmp_path):
    data = np.zeros((2, 8, 8), np.uint8)
    for name in ("b.tif", "a.ome.tif", "c.npy", "d.zarr"):
        io.write_image(tmp_path / name, data)
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in io.find_images(tmp_path)] == ["a.ome.tif", "b.tif", "c.npy", "d.zarr"]
    assert [p.name for p in io.find_images(str(tmp_path / "*.tif"))] == ["a.ome.tif", "b.tif"]
    assert [p.name for p in io.find_images([tmp_path / "d.zarr", tmp_path / "d.zarr"])] == ["d.zarr"]
    with pytest.raises(FileNotFoundError, match="no images match"):
        io.find_images(str(tmp_path / "*.czi"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        io.find_images(tmp_path / "missing.tif")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no images"):
        io.find_images(tmp_path / "empty")


@pytest.mark.parametrize("name", ["a.tif", "a.zarr", "a.npy"])
def test_as_dask_reads_by_path(tmp_path, name):
    data = _stack(np.uint16, (5, 64, 64))
    io.write_image(tmp_path / name, data)
    with io.read_image(tmp_path / name) as image:
        lazy = io.as_dask(image, slices_per_chunk=2)
    assert lazy.chunks[0] == (2, 2, 1)
    assert len(pickle.dumps(lazy)) < data.nbytes / 10  # the graph holds the path, not the pixels
    np.testing.assert_array_equal(lazy.compute(), data)


def test_write_image_from_dask(tmp_path):
    import dask.array as da

    data = _stack(np.float32, (3, 16, 16))
    io.write_image(tmp_path / "d.ome.zarr", da.from_array(data, chunks=(1, 16, 16)), axes="ZYX")
    with io.read_image(tmp_path / "d.ome.zarr") as back:
        np.testing.assert_array_equal(back.data[...], data)
