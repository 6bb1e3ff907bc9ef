"""io zarr: foreign OME-Zarr (0.4 and 0.5, levels, transforms), plain groups, dask sources."""

import numpy as np
import pytest
import zarr

from napari_unet_stack import io


def _ome_zarr(path, data, multiscales, *, v05=False):
    group = zarr.open_group(str(path), mode="w", zarr_format=3 if v05 else 2)
    for i, level in enumerate(data):
        group.create_array(str(i), shape=level.shape, dtype=level.dtype, chunks=level.shape)[...] = level
    if v05:
        group.attrs["ome"] = {"version": "0.5", "multiscales": multiscales}
    else:
        group.attrs["multiscales"] = multiscales


def _multiscales(v05):
    return [{
        "version": "0.5" if v05 else "0.4",
        "axes": [{"name": "c", "type": "channel"}, {"name": "y", "type": "space", "unit": "micrometer"},
                 {"name": "x", "type": "space", "unit": "micrometer"}],
        "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 0.5, 0.5]}]},
            {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [1, 1.0, 1.0]}]},
        ],
        "coordinateTransformations": [{"type": "scale", "scale": [1, 2.0, 2.0]}],
    }]


@pytest.mark.parametrize("v05", [False, True])
def test_foreign_ome_zarr_levels_and_transforms(tmp_path, make_stack, v05):
    full = make_stack(np.uint16, (2, 16, 16))
    half = full[:, ::2, ::2]
    _ome_zarr(tmp_path / "f.ome.zarr", [full, half], _multiscales(v05), v05=v05)
    with io.read_image(tmp_path / "f.ome.zarr") as back:
        assert back.axes == "CYX" and back.channel_axis == 0
        assert back.scale == {"Y": 1.0, "X": 1.0} and back.units == {"Y": "micrometer", "X": "micrometer"}
        assert back.format == "ome-zarr"
        np.testing.assert_array_equal(back.data[...], full)
    with io.read_image(tmp_path / "f.ome.zarr", level=1) as back:
        assert back.scale == {"Y": 2.0, "X": 2.0}
        np.testing.assert_array_equal(back.data[...], half)
    with pytest.raises(ValueError, match="resolution level 2 does not exist"):
        io.read_image(tmp_path / "f.ome.zarr", level=2)


def test_bioformats2raw_layout(tmp_path, make_stack):
    """The image is group ``0`` of a group without metadata of its own."""
    full = make_stack(np.uint16, (2, 16, 16))
    zarr.open_group(str(tmp_path / "b.zarr"), mode="w", zarr_format=2)
    _ome_zarr(tmp_path / "b.zarr" / "0", [full, full[:, ::2, ::2]], _multiscales(False))
    with io.read_image(tmp_path / "b.zarr") as back:
        assert back.format == "ome-zarr" and back.axes == "CYX"
        np.testing.assert_array_equal(back.data[...], full)


def test_plain_zarr_groups(tmp_path):
    group = zarr.open_group(str(tmp_path / "one.zarr"), mode="w")
    group.create_array("only", shape=(4, 8, 8), dtype="uint8")[...] = 3
    with io.read_image(tmp_path / "one.zarr") as back:
        assert back.shape == (4, 8, 8) and back.format == "zarr"
        np.testing.assert_array_equal(back.data[...], np.full((4, 8, 8), 3, np.uint8))
    group = zarr.open_group(str(tmp_path / "two.zarr"), mode="w")
    group.create_array("a", shape=(8, 8), dtype="uint8")
    group.create_array("b", shape=(8, 8), dtype="uint8")
    with pytest.raises(ValueError, match="2 arrays"):
        io.read_image(tmp_path / "two.zarr")


def test_zarr_store_without_extension_and_dimension_names(tmp_path, make_stack):
    data = make_stack(np.int16, (2, 8, 8))
    arr = zarr.create_array(str(tmp_path / "store"), shape=data.shape, dtype=data.dtype, zarr_format=3,
                            dimension_names=["t", "y", "x"])
    arr[...] = data
    with io.read_image(tmp_path / "store") as back:
        assert back.format == "zarr" and back.axes == "TYX"
        np.testing.assert_array_equal(back.data[...], data)


def test_written_zarr_metadata(tmp_path, make_stack):
    data = make_stack(np.uint8, (2, 8, 8))
    io.write_image(tmp_path / "p.zarr", data, axes="ZYX", scale={"Z": 2.0}, units={"Z": "um"})
    plain = zarr.open_array(str(tmp_path / "p.zarr"), mode="r")
    assert dict(plain.attrs) == {"_ARRAY_DIMENSIONS": ["z", "y", "x"], "pixel_size": {"Z": 2.0},
                                 "pixel_unit": {"Z": "micrometer"}}
    io.write_image(tmp_path / "o.ome.zarr", data, axes="ZYX", scale={"Z": 2.0}, units={"Z": "um"})
    ms = zarr.open_group(str(tmp_path / "o.ome.zarr"), mode="r").attrs["multiscales"][0]
    assert ms["version"] == "0.4"
    assert ms["axes"][0] == {"name": "z", "type": "space", "unit": "micrometer"}
    assert ms["datasets"] == [{"path": "0", "coordinateTransformations": [
        {"type": "scale", "scale": [2.0, 1.0, 1.0]}]}]


def test_write_image_from_dask(tmp_path, make_stack):
    import dask.array as da

    data = make_stack(np.float32, (3, 16, 16))
    io.write_image(tmp_path / "d.ome.zarr", da.from_array(data, chunks=(1, 16, 16)), axes="ZYX")
    with io.read_image(tmp_path / "d.ome.zarr") as back:
        np.testing.assert_array_equal(back.data[...], data)
