"""Tile plans: coverage, grid alignment, canvas padding, blending windows."""

import numpy as np
import pytest

from napari_unet_stack import tiling


@pytest.mark.parametrize("length", [1, 7, 16, 77, 130, 511])
@pytest.mark.parametrize("core", [None, 16, 48, 1024])
def test_plan_covers_the_axis_on_the_grid(length, core):
    plan = tiling.plan_axis(length, core=core, halo=32, multiple=16)
    covered = np.zeros(length, bool)
    for o in plan.origins:
        assert o % 16 == 0
        covered[o : o + plan.core] = True
        # every window lies inside the canvas
        start = o - plan.context + plan.pad_before
        assert start >= 0 and start + plan.window <= plan.pad_before + length + plan.pad_after
    assert covered.all()
    assert plan.core % 16 == 0 and plan.window == plan.core + 64


def test_whole_axis_is_one_tile():
    plan = tiling.plan_axis(100, core=None, halo=48, multiple=16)
    assert plan.origins == (0,) and plan.core == 112


def test_valid_plan_uses_model_sizes():
    from napari_unet_stack import UNet

    model = UNet(1, 2, base_channels=2, depth=2, padding="valid")
    plan = tiling.plan_axis(
        100, core=40, halo=0, multiple=4, input_size_for=model.input_size_for,
        output_size=model.output_size, valid_margin=model.valid_margin,
    )
    out = model.output_size(plan.window)
    assert plan.core == out >= 40 and all(o % 4 == 0 for o in plan.origins)
    assert plan.origins[-1] + plan.core >= 100


def test_tiles_cut_the_canvas_consistently():
    image = np.arange(50 * 37, dtype=np.float32).reshape(1, 50, 37)
    py = tiling.plan_axis(50, core=16, halo=8, multiple=8)
    px = tiling.plan_axis(37, core=16, halo=8, multiple=8)
    canvas = tiling.pad_canvas(image, py, px)
    rebuilt = np.full(image.shape[1:], np.nan, np.float32)
    for tile in tiling.iter_tiles(py, px):
        window = canvas[(0, *tile.window)]
        rebuilt[tile.target] = window[tile.source]  # identity "network"
    np.testing.assert_array_equal(rebuilt, image[0])


def test_padding_larger_than_the_image_uses_numpy_semantics():
    image = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    py = tiling.plan_axis(2, core=None, halo=16, multiple=16)
    px = tiling.plan_axis(3, core=None, halo=16, multiple=16)
    canvas = tiling.pad_canvas(image, py, px, "reflect")
    assert canvas.shape == (1, py.window, px.window)
    np.testing.assert_array_equal(canvas, np.pad(image, [(0, 0), (16, py.window - 18), (16, px.window - 19)], "reflect"))
    with pytest.raises(ValueError, match="pad_mode"):
        tiling.pad_canvas(image, py, px, "wrap")


def test_single_pixel_image_pads():
    image = np.ones((1, 1, 1), np.float32)
    p = tiling.plan_axis(1, core=None, halo=16, multiple=16)
    assert tiling.pad_canvas(image, p, p).shape == (1, 48, 48)


@pytest.mark.parametrize("mode", ["gaussian", "linear"])
def test_blend_windows(mode):
    w = tiling.blend_window((33, 20), mode)
    assert w.dtype == np.float32 and w.shape == (33, 20)
    assert w.max() == pytest.approx(1, abs=0.01) and w.min() >= 1e-3
    np.testing.assert_allclose(w, w[::-1, ::-1], atol=1e-6)
    with pytest.raises(ValueError, match="blend"):
        tiling.blend_window((4, 4), "cosine")


def test_plan_rejects_empty_axis():
    with pytest.raises(ValueError, match="length 0"):
        tiling.plan_axis(0, core=16, halo=0, multiple=16)


@pytest.mark.parametrize("module", ["tiling", "normalization", "models.unet"])
def test_docstring_examples(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"napari_unet_stack.{module}")
    result = doctest.testmod(mod)
    assert result.failed == 0 and result.attempted > 0
