"""A damaged zarr chunk is one error naming the store and the chunk (issue 11, item 15)."""

import os
import pickle

import numpy as np
import pytest

from napari_unet_stack import io


@pytest.fixture
def damaged(tmp_path, make_stack):
    """``damaged(name)``: a stack written as ``name`` whose second slice's chunk is garbage."""

    def make(name):
        data = make_stack(np.uint8)
        path = tmp_path / name
        io.write_image(path, data, axes="ZYX")
        chunk = path / ("0/1/0/0" if name.endswith(".ome.zarr") else "1.0.0")
        assert chunk.is_file()
        chunk.write_bytes(b"not a compressed chunk" * 4)
        return path, data

    return make


@pytest.mark.parametrize(("name", "key"), [("a.zarr", "1.0.0"), ("a.ome.zarr", "0/1/0/0")])
def test_damaged_chunk_names_store_and_chunk(damaged, name, key):
    path, data = damaged(name)
    with io.read_image(path) as image:
        np.testing.assert_array_equal(np.asarray(image.data[0]), data[0])  # the others read
        for read in (lambda: image.data[1], lambda: image.data[0:3], lambda: np.asarray(image.data)):
            with pytest.raises(OSError, match=rf"cannot read chunk '{key}' of zarr store '.*{name}': damaged compressed data \(") as info:
                read()
            assert "\n" not in str(info.value)
            assert "decompression" in str(info.value).lower() or "error" in str(info.value).lower()


def test_wrong_index_is_not_called_damage(damaged):
    path, _ = damaged("a.zarr")
    with io.read_image(path) as image:
        with pytest.raises(IndexError):
            image.data[7]
        assert image.data.shape == (3, 40, 56) and image.data.dtype == np.uint8
        assert image.data.ndim == 3 and len(image.data) == 3
        assert image.data.chunks == (1, 40, 56)  # what zarr says, passed through


def test_dask_reads_name_the_chunk_and_the_array_pickles(damaged):
    path, data = damaged("a.zarr")
    with io.read_image(path) as image:
        lazy = io.as_dask(image)
        np.testing.assert_array_equal(lazy[0].compute(), data[0])
        with pytest.raises(OSError, match=r"chunk '1\.0\.0' of zarr store"):
            lazy.compute()
        back = pickle.loads(pickle.dumps(image.data))
        np.testing.assert_array_equal(np.asarray(back[2]), data[2])


def test_cli_predict_reports_the_chunk_in_one_line(damaged, tmp_path, capsys):
    import torch

    from napari_unet_stack import cli
    from napari_unet_stack.checkpoints import save_model
    from napari_unet_stack.models import UNet

    path, _ = damaged("a.ome.zarr")
    torch.manual_seed(0)
    checkpoint = save_model(UNet(1, 2, base_channels=4, depth=2).eval(), tmp_path / "tiny.pt")
    out = tmp_path / "out"
    out.mkdir()
    code = cli.main(["predict", str(path), "-o", str(out / "labels.tif"), "--model", str(checkpoint), "-q"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "chunk '0/1/0/0' of zarr store" in lines[0] and "a.ome.zarr" in lines[0]
    assert os.listdir(out) == []


def _damage_page(path, index):
    """Overwrite the middle of page ``index``'s compressed data with zeros."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[index]
        offset, count = page.dataoffsets[0], page.databytecounts[0]
    raw = bytearray(path.read_bytes())
    raw[offset + 8:offset + count - 8] = bytes(count - 16)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(("shape", "axes", "lead", "page"), [
    ((3, 40, 56), "ZYX", (1,), 1), ((2, 3, 40, 56), "TZYX", (1, 2), 5),
])
def test_damaged_compressed_tiff_page_names_file_and_page(tmp_path, make_stack, shape, axes, lead, page):
    """A compressed TIFF is read through tifffile's zarr store: a corrupt page is named too."""
    data = make_stack(np.uint16, shape)
    path = tmp_path / "a.tif"
    io.write_image(path, data, axes=axes)  # zlib
    _damage_page(path, page)
    with io.read_image(path) as image:
        np.testing.assert_array_equal(np.asarray(image.data[(0,) * len(lead)]), data[(0,) * len(lead)])
        with pytest.raises(OSError, match=rf"cannot read page {page} of TIFF file '.*a\.tif': damaged compressed data \(") as info:
            image.data[lead]
        assert "\n" not in str(info.value)
