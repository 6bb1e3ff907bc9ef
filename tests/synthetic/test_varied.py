"""The varied nuclei generator: seeded, and every knob changes what it claims to."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage.measure import regionprops
from skimage.segmentation import find_boundaries

from napari_unet_stack.synthetic import VariedParams, varied_nuclei, varied_set
from napari_unet_stack.synthetic.scene import draw_scene

SHAPE = (160, 160)


def _fixed(**knobs):
    """Every knob but ``knobs`` at a middle value, so one knob's effect stands out."""
    base = dict(
        radius=8, radius_spread=0.2, fill=0.25, clump_fraction=0.0, touching_fraction=0.1,
        elongated_fraction=0.0, irregularity=0.0, brightness_spread=0.2, hollow_fraction=0.0,
        texture=0.1, blur=1.0, defocus_fraction=0.0, illumination=0.0, background=0.1,
        photons=300, read_noise=2.0, range_used=0.6, bit_depths=16,
    )  # fmt: skip
    return {**base, **knobs}


def _many(n=4, shape=SHAPE, **knobs):
    return [varied_nuclei(shape, seed=s, **_fixed(**knobs)) for s in range(n)]


def test_same_seed_same_arrays_other_seed_differs():
    a, b, c = (varied_nuclei((64, 80), seed=s) for s in (5, 5, 6))
    for x, y in zip(a[:3], b[:3], strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.scene == b.scene and a.scene != c.scene
    assert not np.array_equal(a.image, c.image)


def test_ground_truth_shapes_and_ids():
    s = varied_nuclei((5, 64, 72), seed=3, fill=0.3)
    assert s.image.shape == s.instances.shape == s.labels.shape == (5, 64, 72)
    np.testing.assert_array_equal(s.labels, s.instances > 0)
    ids = np.unique(s.instances)
    np.testing.assert_array_equal(ids, np.arange(ids.size))
    # a stack's nuclei span slices with one id
    spans = [len(np.unique(np.nonzero(s.instances == i)[0])) for i in ids[1:]]
    assert max(spans) >= 3


def test_scenes_vary_between_images_of_a_set():
    scenes = [s.scene for s in varied_set(8, (48, 48), seed=1)]
    assert len({sc.radius for sc in scenes}) == 8
    assert len({sc.bit_depth for sc in scenes}) >= 2
    other = varied_set(3, (48, 48), seed=2)
    assert all(o.scene not in scenes for o in other)  # differently seeded sets share nothing


def test_fixing_a_knob_does_not_shift_the_others():
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    a = draw_scene(rng_a, VariedParams())
    b = draw_scene(rng_b, VariedParams().fixed(fill=0.2))
    assert b.fill == 0.2 and a.radius == b.radius and a.photons == b.photons


@pytest.mark.parametrize(
    "bits, dtype, top", [(8, np.uint8, 255), (12, np.uint16, 4095), (16, np.uint16, 65535)]
)
def test_bit_depth_sets_dtype_and_range(bits, dtype, top):
    img = varied_nuclei(SHAPE, seed=1, **_fixed(bit_depths=bits, range_used=0.9)).image
    assert img.dtype == dtype and int(img.max()) <= top
    assert int(img.max()) > top // 4  # the range is used, not just the low bits


def _radii(samples):
    return np.array([p.equivalent_diameter_area / 2 for s in samples for p in regionprops(s.instances)
                     if p.area > 10 and not _at_edge(p, s.instances.shape)])  # fmt: skip


def _at_edge(p, shape):
    y0, x0, y1, x1 = p.bbox
    return y0 == 0 or x0 == 0 or y1 == shape[0] or x1 == shape[1]


@pytest.mark.slow
def test_radius_knob_sets_the_nuclei_size():
    small = np.median(_radii(_many(radius=5)))
    large = np.median(_radii(_many(radius=14, shape=(256, 256))))
    assert 4 < small < 6.5 and 11 < large < 16


def test_radius_spread_widens_the_size_range():
    narrow, wide = _radii(_many(radius_spread=0.05)), _radii(_many(radius_spread=0.45))
    assert np.std(wide) > 2.5 * np.std(narrow)


def test_fill_sets_the_density():
    sparse, dense = (np.mean([s.labels.mean() for s in _many(fill=f)]) for f in (0.08, 0.4))
    assert 0.04 < sparse < 0.13 and 0.28 < dense < 0.5


def _merged_fraction(samples):
    """Fraction of nuclei sharing a connected component of the mask with another nucleus."""
    merged = total = 0
    for s in samples:
        comps, _ = ndi.label(s.labels)
        fg = s.instances > 0
        pairs = np.unique(np.stack([comps[fg], s.instances[fg]]), axis=1)  # (component, id)
        per_component = np.bincount(pairs[0])
        merged += int((per_component[pairs[0]] > 1).sum())
        total += pairs.shape[1]
    return merged / total


def test_touching_fraction_makes_pairs_connected_components_cannot_split():
    low = _merged_fraction(_many(touching_fraction=0.0, fill=0.15))
    high = _merged_fraction(_many(touching_fraction=0.6, fill=0.15))
    assert low < 0.15 and high > 0.4


@pytest.mark.slow
def test_clumps_cluster_the_nuclei():
    def close_neighbours(samples):  # fraction of nuclei with a neighbour within 2.6 radii
        out = []
        for s in samples:
            c = np.array([p.centroid for p in regionprops(s.instances)])
            d, _ = cKDTree(c).query(c, k=2)
            out.append(np.mean(d[:, 1] < 2.6 * 8))
        return np.mean(out)

    knobs = dict(fill=0.1, touching_fraction=0.0, shape=(256, 256))
    assert close_neighbours(_many(clump_fraction=0.9, **knobs)) > 1.4 * close_neighbours(
        _many(clump_fraction=0.0, **knobs)
    )


def _shape_stats(samples):
    props = [
        p
        for s in samples
        for p in regionprops(s.instances)
        if p.area > 30 and not _at_edge(p, SHAPE)
    ]
    aspect = np.array([p.axis_major_length / max(p.axis_minor_length, 1e-6) for p in props])
    solidity = np.array([p.solidity for p in props])
    return aspect, solidity


@pytest.mark.slow
def test_elongation_and_irregularity_change_the_outlines():
    round_aspect, round_solid = _shape_stats(_many(elongated_fraction=0.0))
    long_aspect, _ = _shape_stats(_many(elongated_fraction=1.0))
    _, rough_solid = _shape_stats(_many(irregularity=0.3, touching_fraction=0.0))
    assert np.median(round_aspect) < 1.35 and np.median(long_aspect) > 1.6
    assert np.mean(rough_solid) < np.mean(round_solid) - 0.03


def _nucleus_means(s):
    img = s.image.astype(float) - np.median(s.image[s.labels == 0])
    ids = np.arange(1, int(s.instances.max()) + 1)
    return np.asarray(ndi.mean(img, s.instances, ids))


def test_brightness_spread_puts_dim_and_bright_nuclei_in_one_field():
    def ratio(samples):
        return np.mean([np.percentile(m, 90) / max(np.percentile(m, 10), 1e-6)
                        for m in map(_nucleus_means, samples)])  # fmt: skip

    assert ratio(_many(brightness_spread=0.7)) > 2 * ratio(_many(brightness_spread=0.05))


@pytest.mark.slow
def test_hollow_nuclei_are_dimmer_inside_than_at_the_rim():
    def centre_over_rim(samples):
        out = []
        for s in samples:
            dist = ndi.distance_transform_edt(s.labels)
            img = s.image.astype(float) - np.median(s.image[s.labels == 0])
            out.append(img[dist >= 4].mean() / img[(dist >= 1) & (dist < 2.5)].mean())
        return np.mean(out)

    solid = centre_over_rim(_many(hollow_fraction=0.0, radius=11, blur=0.6))
    hollow = centre_over_rim(_many(hollow_fraction=1.0, radius=11, blur=0.6))
    assert solid > 1.05 and hollow < solid - 0.2


@pytest.mark.slow
def test_texture_roughens_the_interior():
    def roughness(samples):
        out = []
        for s in samples:
            inner = ndi.binary_erosion(s.labels, iterations=3)
            hp = s.image.astype(float) - ndi.gaussian_filter(s.image.astype(float), 4)
            out.append(hp[inner].std() / s.image[inner].mean())
        return np.mean(out)

    assert roughness(_many(texture=0.45, photons=3000)) > 1.5 * roughness(
        _many(texture=0.0, photons=3000)
    )


@pytest.mark.slow
def test_blur_and_defocus_soften_edges():
    def edge(samples):  # gradient across the true outlines over the nuclei's contrast
        out = []
        for s in samples:
            img = ndi.gaussian_filter(s.image.astype(float), 0.7)
            grad = np.hypot(*np.gradient(img))
            rim = find_boundaries(s.instances, mode="inner")
            out.append(grad[rim].mean() / (_nucleus_means(s).mean()))
        return np.mean(out)

    knobs = dict(photons=3000, texture=0.0, touching_fraction=0.0)
    sharp, soft = edge(_many(blur=0.6, **knobs)), edge(_many(blur=2.2, **knobs))
    defocused = edge(_many(blur=0.6, defocus_fraction=1.0, **knobs))
    assert soft < 0.6 * sharp and defocused < 0.6 * sharp


@pytest.mark.slow
def test_illumination_makes_the_nuclei_brightness_depend_on_position():
    def left_right(samples):
        out = []
        for s in samples:  # brightness of the nuclei, quarter by quarter: max over min
            m = _nucleus_means(s)
            cy, cx = np.array([p.centroid for p in regionprops(s.instances)]).T
            q = (cy > SHAPE[0] / 2) * 2 + (cx > SHAPE[1] / 2)
            means = [np.median(m[q == k]) for k in range(4) if (q == k).sum() >= 3]
            out.append(max(means) / min(means))
        return np.mean(out)

    assert left_right(_many(6, illumination=0.8)) > left_right(_many(6, illumination=0.0)) + 0.25


@pytest.mark.slow
def test_photons_set_the_noise_level():
    def snr(samples):
        return np.mean([_nucleus_means(s).mean() / s.image[ndi.binary_erosion(s.labels == 0, iterations=6)].std()
                        for s in samples])  # fmt: skip

    assert snr(_many(photons=1500)) > 3 * snr(_many(photons=20))


def test_bad_knobs_are_clear_errors():
    with pytest.raises(TypeError, match="unknown knob"):
        varied_nuclei((32, 32), seed=0, fil=0.2)
    with pytest.raises(ValueError, match="bit_depths"):
        varied_nuclei((32, 32), seed=0, bit_depths=10)
    with pytest.raises(ValueError, match="shape"):
        varied_nuclei((4, 4, 4, 4), seed=0)


@pytest.mark.slow
def test_a_256_slice_is_fast():
    varied_nuclei((256, 256), seed=0)  # warm up
    t = time.perf_counter()
    for s in range(3):
        varied_nuclei((256, 256), seed=s)
    assert (time.perf_counter() - t) / 3 < 1.0  # ~0.1-0.2 s on a quiet CPU core
