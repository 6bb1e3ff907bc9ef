"""Sample data contributions and the Labels writers (TIFF, OME-Zarr) through napari's plugin machinery."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet_stack.io import read_image


@pytest.fixture(scope="module", autouse=True)
def _plugins():
    """napari finds writers among discovered plugins (a viewer discovers them; tests here make none)."""
    from npe2 import PluginManager

    PluginManager.instance().discover()


@pytest.mark.gui
def test_open_nuclei_stack_sample(make_napari_viewer):
    from napari_unet_stack.samples import load_sample

    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet-stack", "nuclei_stack")
    image, truth = viewer.layers["nuclei_stack"], viewer.layers["nuclei_stack ground truth"]
    sample = load_sample("nuclei_stack")
    assert image.data.shape == (16, 256, 256) and image.data.dtype == np.uint16
    assert type(truth).__name__ == "Labels"
    np.testing.assert_array_equal(truth.data > 0, sample.labels > 0)


def test_large_image_sample_contribution(monkeypatch):
    from napari_unet_stack.napari import _sample_data
    from napari_unet_stack.samples import Sample

    # generating the 4096 x 4096 image is the samples module's business (and tested there)
    made = Sample("large_image", np.ones((8, 8), np.uint16), np.ones((8, 8), np.uint8), np.ones((8, 8), np.uint8))
    monkeypatch.setattr(_sample_data, "load_sample", lambda name: made if name == "large_image" else None)
    (image, image_kw, image_type), (truth, truth_kw, truth_type) = _sample_data.large_image()
    assert image is made.image and truth is made.instances
    assert (image_type, truth_type) == ("image", "labels")
    assert image_kw["name"] == "large_image" and truth_kw["name"] == "large_image ground truth"


def _labels(dtype):
    from napari.layers import Labels

    data = np.zeros((3, 40, 30), dtype)
    data[1, 5:20, 3:9] = 7
    data[2, 30:, 20:] = np.iinfo(dtype).max if np.dtype(dtype).kind in "ui" else 1
    return Labels(data, name="seg", scale=(2.0, 0.5, 0.25), axis_labels=("z", "y", "x"),
                  units=("micrometer",) * 3)


@pytest.mark.parametrize("name", ["seg.tif", "seg.tiff", "seg.zarr", "seg.ome.zarr"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.uint64])
def test_writer_round_trip(tmp_path, name, dtype):
    layer = _labels(dtype)
    written = layer.save(str(tmp_path / name), plugin="napari-unet-stack")
    assert written == [str(tmp_path / name)]
    with read_image(tmp_path / name) as back:
        assert back.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(np.asarray(back.data[...]), layer.data)
        assert back.axes == "ZYX"
        if np.dtype(dtype).itemsize < 8 or name.endswith("zarr"):
            # (64-bit TIFF labels are plain TIFF: pixel sizes only in tifffile's JSON description)
            assert back.scale == pytest.approx({"Z": 2.0, "Y": 0.5, "X": 0.25})
            assert back.units.get("X") == "micrometer"
    if name.endswith("zarr"):
        import zarr

        assert "multiscales" in zarr.open_group(str(tmp_path / name), mode="r").attrs  # OME-Zarr
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing temporary left


@pytest.mark.parametrize("name", ["seg.tif", "seg.zarr"])
def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch, name):
    import napari_unet_stack.io as io

    _labels(np.uint8).save(str(tmp_path / name), plugin="napari-unet-stack")
    before = sorted(p.name for p in tmp_path.rglob("*"))

    def boom(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io.tiff_write, "write_tiff", boom)
    monkeypatch.setattr(io.zarr_write, "ngff_multiscales", boom)
    with pytest.raises(OSError, match="disk full"):
        _labels(np.uint16).save(str(tmp_path / name), plugin="napari-unet-stack")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    with read_image(tmp_path / name) as back:
        assert back.dtype == np.uint8


@pytest.mark.parametrize("name", ["seg.tif", "seg.zarr"])
def test_writer_odd_layers(tmp_path, name):
    from napari.layers import Labels

    five = Labels(np.arange(2 * 2 * 3 * 4 * 5, dtype=np.uint16).reshape(2, 2, 3, 4, 5), name="5d")
    assert five.save(str(tmp_path / f"5d_{name}"), plugin="napari-unet-stack") == [str(tmp_path / f"5d_{name}")]
    with read_image(tmp_path / f"5d_{name}") as back:
        assert back.axes == "CTZYX"
        np.testing.assert_array_equal(np.asarray(back.data[...]), five.data)

    flipped = Labels(np.ones((3, 8, 8), np.int32) * -2, scale=(2.0, -0.5, 0.5), name="flipped")  # a napari flip
    assert flipped.save(str(tmp_path / name), plugin="napari-unet-stack") == [str(tmp_path / name)]
    with read_image(tmp_path / name) as back:
        assert back.scale == pytest.approx({"Z": 2.0, "Y": 0.5, "X": 0.5})
        assert back.dtype == np.int32 and (np.asarray(back.data[...]) == -2).all()  # negative labels kept


@pytest.mark.parametrize("name", ["seg.tif", "seg.zarr"])
def test_writer_failures_say_what_went_wrong(tmp_path, name):
    """napari takes a writer's ValueError for "no writer" (nothing saved, no reason given)."""
    from napari.layers import Labels

    with pytest.raises(FileNotFoundError, match=f"cannot write '.*nope/{name}': folder"):
        _labels(np.uint8).save(str(tmp_path / "nope" / name), plugin="napari-unet-stack")
    if name.endswith(".tif"):  # six axes: more than a TIFF holds
        six = Labels(np.ones((2,) * 4 + (4, 4), np.uint8), name="6d")
        with pytest.raises(OSError, match=f"cannot write '.*{name}'"):
            six.save(str(tmp_path / name), plugin="napari-unet-stack")
    assert list(tmp_path.iterdir()) == []


def test_train_widget_saves_with_the_users_permissions(make_napari_viewer, tmp_path):
    """The Train widget's save is a normal file (umask), not mkstemp's 0600 (issue 11, item 7)."""
    import os
    import stat

    from napari_unet_stack.models import UNet
    from napari_unet_stack.napari._registry import USER_MODELS
    from napari_unet_stack.napari._train_widget import TrainWidget

    before = set(USER_MODELS.names())
    widget = TrainWidget(make_napari_viewer())
    widget.model = UNet(1, 2, base_channels=4, depth=2)
    widget.save_path.value = tmp_path / "trained.pt"
    old = os.umask(0o022)
    try:
        saved = widget.save()
    finally:
        os.umask(old)
        for name in set(USER_MODELS.names()) - before:
            USER_MODELS.remove(name)
    assert saved == tmp_path / "trained.pt"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o644
