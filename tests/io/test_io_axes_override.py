"""read_image(axes=...): the user's axes override the file's (issue 11, item 1)."""

import numpy as np
import pytest
import tifffile

from napari_unet_stack import io

# what plain tifffile.imwrite does with 3 planes (the case the override is for)
pytestmark = pytest.mark.filterwarnings("ignore:.*stored as RGB with separate component planes")


@pytest.fixture
def planar_stack(tmp_path):
    """A 3-plane stack written with plain tifffile.imwrite: the file says planar RGB (CYX)."""
    path = tmp_path / "stack.tif"
    data = (np.arange(3 * 24 * 20) % 251).astype(np.uint8).reshape(3, 24, 20)
    tifffile.imwrite(path, data)
    return path, data


def test_file_axes_are_planar_rgb_without_override(planar_stack):
    path, _ = planar_stack
    with io.read_image(path) as image:
        assert image.axes == "CYX" and image.channel_axis == 0


def test_axes_override_names_a_stack(planar_stack):
    path, data = planar_stack
    with io.read_image(path, axes="ZYX") as image:
        assert image.axes == "ZYX"
        assert image.channel_axis is None
        np.testing.assert_array_equal(np.asarray(image.data[...]), data)


def test_axes_override_lower_case_and_channel_last(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros((5, 6, 2), np.uint8))
    with io.read_image(path, axes="yxc") as image:  # .npy carries no axes of its own
        assert image.axes == "YXC" and image.channel_axis == 2


def test_axes_override_keeps_pixel_sizes_by_position(tmp_path):
    path = tmp_path / "a.ome.tif"
    io.write_image(path, np.zeros((3, 8, 8), np.uint8), axes="ZYX", scale={"Z": 2.0, "Y": 0.5, "X": 0.5},
                   units={"Z": "um", "Y": "um", "X": "um"})
    with io.read_image(path, axes="TYX") as image:
        assert image.axes == "TYX"
        assert image.scale == {"Y": 0.5, "X": 0.5}  # Z's size is no time step
        assert image.units == {"Y": "micrometer", "X": "micrometer"}
    with io.read_image(path, axes="CYX") as image:
        assert image.channel_axis == 0 and "C" not in image.scale


@pytest.mark.parametrize(("axes", "problem"), [
    ("YX", r"2 letters for 3 dimensions"),
    ("ZZYX", r"4 letters for 3 dimensions"),
    ("ZYY", r"repeats"),
    ("QYX", r"letters from TZCYX"),
    ("", r"0 letters for 3 dimensions"),
])
def test_bad_axes_override_names_file_and_shape(planar_stack, axes, problem):
    path, _ = planar_stack
    with pytest.raises(ValueError, match=problem) as info:
        io.read_image(path, axes=axes)
    message = str(info.value)
    assert "stack.tif" in message and "(3, 24, 20)" in message and "axes" in message


def test_axes_override_of_the_wrong_kind(planar_stack):
    path, _ = planar_stack
    with pytest.raises(TypeError, match=r"`axes` must be a string.*got int"):
        io.read_image(path, axes=3)
