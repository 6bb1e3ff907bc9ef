import numpy as np
import pytest

from napari_unet_stack.normalization import (
    apply_normalization,
    fit_normalization,
    normalize,
    validate_normalization,
)


def test_percentile_maps_low_and_high_to_0_and_1():
    data = np.arange(1001, dtype=np.float32)[None]
    out = normalize(data, {"mode": "percentile", "low": 10, "high": 90})
    assert out.dtype == np.float32
    assert out[0, 100] == pytest.approx(0, abs=1e-6) and out[0, 900] == pytest.approx(1, abs=1e-6)


def test_per_channel():
    data = np.stack([np.arange(100.0), np.arange(100.0) * 10 + 5])
    out = normalize(data)
    np.testing.assert_allclose(out[0], out[1], atol=1e-5)


def test_scale_when_above():
    spec = {"mode": "scale", "divisor": 255, "when_above": 1}
    assert normalize(np.array([[0.0, 0.5, 1.0]]), spec).max() == 1.0
    assert normalize(np.array([[0.0, 255.0]]), spec).max() == 1.0


def test_meanstd():
    spec = {"mode": "meanstd", "mean": [0.5, 0.25], "std": [0.5, 0.25], "divisor": 255.0}
    data = np.full((2, 2, 2), 255.0)
    out = normalize(data, spec)
    np.testing.assert_allclose(out[0], 1.0)
    np.testing.assert_allclose(out[1], 3.0)


def test_nonfinite_values_are_ignored_and_filled():
    data = np.array([[0.0, 1.0, 2.0, np.nan, np.inf, 3.0]])
    params = fit_normalization(data, {"mode": "percentile", "low": 0, "high": 100})
    np.testing.assert_allclose(params[0], [0.0, 3.0])
    out = apply_normalization(data, params)
    assert np.isfinite(out).all() and out[0, 3] == 0 and out[0, 4] == 0


def test_constant_image_does_not_divide_by_zero():
    out = normalize(np.full((1, 4, 4), 7.0))
    assert np.isfinite(out).all()


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"mode": "minmax"}, "mode"),
        ({"mode": "percentile", "low": 99, "high": 1}, "percentiles"),
        ({"mode": "scale", "divisor": 0}, "divisor"),
        ({"mode": "meanstd", "mean": [0]}, "mean"),
        ({"mode": "zscore", "scope": "tile"}, "scope"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        validate_normalization(spec)


@pytest.mark.parametrize("spec", [
    {"mode": "percentile", "low": 2.0, "high": 98.0},
    {"mode": "zscore"},
    {"mode": "scale", "divisor": 255.0, "when_above": 1.0},
])
def test_per_channel_fits_of_stacked_planes_are_those_of_each_plane(spec):
    """What the engine relies on to normalize a z-context model's neighbour planes once each."""
    from napari_unet_stack.normalization import PER_CHANNEL_FITS

    assert spec["mode"] in PER_CHANNEL_FITS
    rng = np.random.default_rng(4)
    planes = [rng.random((2, 9, 11)) * scale for scale in (0.5, 300.0, 40.0)]
    joint = fit_normalization(np.concatenate(planes), spec)
    np.testing.assert_array_equal(joint, np.concatenate([fit_normalization(p, spec) for p in planes]))
