"""io atomic writes: a failed or interrupted write leaves nothing, an old output survives."""

import os
import time

import numpy as np
import pytest
import zarr

from napari_unet_stack import io

FORMATS = ["a.tif", "a.ome.tif", "a.zarr", "a.ome.zarr", "a.npy"]


@pytest.mark.parametrize("name", FORMATS)
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


@pytest.mark.parametrize("name", FORMATS)
def test_overwrite_replaces_only_when_complete(tmp_path, leftovers, name):
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
    assert leftovers(tmp_path) == []


def test_a_folder_output_replaces_a_file(tmp_path, leftovers):
    """An existing file under a zarr name is moved aside, and removed once the store is in place."""
    (tmp_path / "a.zarr").write_bytes(b"old")
    data = np.full((2, 8, 8), 5, np.uint8)
    io.write_image(tmp_path / "a.zarr", data, overwrite=True)
    with io.read_image(tmp_path / "a.zarr") as back:
        np.testing.assert_array_equal(back.data[...], data)
    assert leftovers(tmp_path) == []
