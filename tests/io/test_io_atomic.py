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


def _appear(path, folder):
    """What a concurrent run leaves at ``path``: a file, or a zarr folder when ``folder``."""
    if folder:
        path.mkdir()
        (path / "zarr.json").write_text("{}")
    else:
        path.write_bytes(b"the other run's result")


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("exclusive", ["os", "fallback"])
def test_an_output_that_appears_during_the_write_is_not_replaced(tmp_path, leftovers, monkeypatch, name,
                                                                  exclusive):
    """Issue 11, item 13: two runs without overwrite both passed the check made before the
    work and the second replaced the first; the rename itself must refuse."""
    from napari_unet_stack.io import atomic

    if exclusive == "fallback":  # no renameat2(RENAME_NOREPLACE): links / non-empty folders
        monkeypatch.setattr(atomic, "rename_noreplace", lambda src, dst: False)
    target = tmp_path / name
    folder = name.endswith(".zarr")
    match = rf"{name}' appeared while .* not replaced.*--overwrite"
    with pytest.raises(FileExistsError, match=match), io.create_image(target, (2, 8, 8), np.uint8) as out:
        out[...] = 3
        _appear(target, folder)  # the other run finishes first
    if folder:
        assert os.listdir(target) == ["zarr.json"]
    else:
        assert target.read_bytes() == b"the other run's result"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("folder", [False, True])
def test_place_moves_into_a_free_name(tmp_path, folder):
    from napari_unet_stack.io import atomic

    tmp = tmp_path / ".tmp"
    _appear(tmp, folder)
    atomic.place(tmp, tmp_path / "out", overwrite=False)
    assert sorted(os.listdir(tmp_path)) == ["out"]
    atomic.place(tmp_path / "out", tmp_path / "again", overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["again"]


@pytest.mark.parametrize("error", [None, KeyboardInterrupt, ValueError])
def test_scratch_array_is_on_disk_beside_the_output_and_never_left(tmp_path, error):
    import contextlib

    seen = []
    with contextlib.suppress(KeyboardInterrupt, ValueError), \
            io.scratch_array(tmp_path / "labels.tif", (3, 5, 4), np.uint32) as work:
        work[1] = np.full((5, 4), 7, np.uint32)
        seen.append(sorted(os.listdir(tmp_path)))
        assert isinstance(work[1], np.ndarray) and work[1].sum() == 7 * 20 and work[0].sum() == 0
        assert work.chunks == (1, 5, 4)  # one slice per chunk: a slice read holds a slice
        if error is not None:
            raise error
    assert len(seen[0]) == 1 and seen[0][0].startswith(".labels.tif.scratch-")
    assert os.listdir(tmp_path) == []
