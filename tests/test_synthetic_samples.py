"""The synthetic nuclei generator and the sample data built from it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet_stack import samples, synthetic
from napari_unet_stack.samples import SAMPLES, generate_sample, load_sample


@pytest.fixture(scope="module")
def stack():
    return synthetic.nuclei_stack((8, 128, 128), seed=7)


def test_same_seed_same_arrays_other_seed_differs():
    a = synthetic.nuclei_stack((3, 64, 80), seed=11)
    b = synthetic.nuclei_stack((3, 64, 80), seed=11)
    c = synthetic.nuclei_stack((3, 64, 80), seed=12)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.image, c.image)


def test_types_shapes_and_ground_truth(stack):
    assert stack.image.shape == stack.instances.shape == stack.labels.shape == (8, 128, 128)
    assert stack.image.dtype == np.uint16 and stack.labels.dtype == np.uint8
    np.testing.assert_array_equal(stack.labels, stack.instances > 0)
    ids = np.unique(stack.instances)
    np.testing.assert_array_equal(ids, np.arange(ids.size))  # consecutive ids
    assert 0.1 < stack.labels.mean() < 0.45


def test_nuclei_are_brighter_than_background_and_noisy(stack):
    image = stack.image.astype(float)
    inner = ndi.binary_erosion(stack.labels, iterations=2, structure=np.ones((1, 3, 3)))
    outer = ~ndi.binary_dilation(stack.labels, iterations=4, structure=np.ones((1, 3, 3)))
    assert image[inner].mean() > image[outer].mean() + 40
    # camera offset and shot noise: background is ~100 counts and not constant
    assert 95 < np.median(image[outer]) < 250
    assert image[outer].std() > 3


def test_touching_elongated_nuclei_and_slice_variation(stack):
    inst = stack.instances
    # touching: two different ids side by side somewhere
    left, right = inst[..., :-1], inst[..., 1:]
    assert np.count_nonzero((left > 0) & (right > 0) & (left != right)) > 20
    # elongated: some section has an aspect ratio above 1.6
    from skimage.measure import regionprops

    ratios = [
        p.axis_major_length / max(p.axis_minor_length, 1e-6)
        for p in regionprops(inst[4])
        if p.area > 60
    ]
    assert max(ratios) > 1.6
    # the same nucleus keeps its id from slice to slice
    assert len(np.intersect1d(np.unique(inst[3]), np.unique(inst[4]))) > 10
    # background level changes between slices (drift, bleaching)
    bg = [np.median(stack.image[z][stack.labels[z] == 0]) for z in range(8)]
    assert max(bg) - min(bg) > 5


def test_uneven_background():
    img = synthetic.nuclei_image((256, 256), seed=3, fill=0.0001)
    smooth = ndi.gaussian_filter(img.image.astype(float), 16)
    inner = smooth[32:-32, 32:-32]
    assert inner.max() - inner.min() > 3  # not a flat background


def test_nuclei_image_is_2d_and_checks_shape():
    img = synthetic.nuclei_image((40, 50), seed=0)
    assert img.image.shape == img.labels.shape == (40, 50)
    with pytest.raises(ValueError, match="shape"):
        synthetic.nuclei_image((40, 50, 3))
    with pytest.raises(ValueError, match="shape"):
        synthetic.nuclei_stack((0, 10, 10))


@pytest.mark.parametrize("name", ["nuclei_train", "nuclei_stack"])
def test_shipped_samples_load_and_match_the_generator(name):
    sample = load_sample(name)
    assert sample.image.shape == (16, 256, 256) and sample.image.dtype == np.uint16
    np.testing.assert_array_equal(sample.labels, sample.instances > 0)
    fresh = generate_sample(name)  # scripts/make_sample_data.py is reproducible
    np.testing.assert_array_equal(sample.image, fresh.image)
    np.testing.assert_array_equal(sample.instances, fresh.instances)
    layers = sample.layer_data()
    assert [kind for *_, kind in layers] == ["image", "labels", "labels"]


def test_train_and_held_out_samples_differ():
    assert not np.array_equal(load_sample("nuclei_train").image, load_sample("nuclei_stack").image)


def test_sample_data_is_small():
    from importlib import resources

    folder = resources.files("napari_unet_stack") / "sample_data"
    total = sum(
        f.stat().st_size for f in __import__("pathlib").Path(str(folder)).iterdir() if f.is_file()
    )
    assert total < 20 * 2**20


def test_unknown_sample_is_a_clear_error():
    with pytest.raises(ValueError, match="nuclei_stack"):
        load_sample("nuclei")


def test_large_image_is_generated_once_then_cached(tmp_path, monkeypatch):
    # the real one is 4096 x 4096 (~10 s); the cache logic is the same at a smaller size
    monkeypatch.setitem(SAMPLES["large_image"], "kwargs", {"shape": (192, 160), "seed": 5})
    first = load_sample("large_image", cache_dir=tmp_path)
    files = list(tmp_path.glob("large_image-*.npz"))
    assert len(files) == 1
    calls = []
    monkeypatch.setattr(samples, "generate_sample", lambda name: calls.append(name))
    second = load_sample("large_image", cache_dir=tmp_path)
    assert calls == []  # read from the cache
    for a, b in zip(first[1:], second[1:], strict=True):
        np.testing.assert_array_equal(a, b)
    assert first.image.shape == (192, 160)


def test_damaged_cache_is_regenerated(tmp_path, monkeypatch):
    monkeypatch.setitem(SAMPLES["large_image"], "kwargs", {"shape": (64, 64), "seed": 5})
    load_sample("large_image", cache_dir=tmp_path)
    (path,) = tmp_path.glob("large_image-*.npz")
    path.write_bytes(b"not a zip")
    again = load_sample("large_image", cache_dir=tmp_path)
    assert again.image.shape == (64, 64)


def test_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_STACK_CACHE", str(tmp_path / "c"))
    assert samples.sample_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("NAPARI_UNET_STACK_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert samples.sample_cache_dir() == tmp_path / "x" / "napari-unet-stack"


def test_large_image_definition():
    assert synthetic.LARGE_IMAGE_SHAPE[0] >= 4096 and synthetic.LARGE_IMAGE_SHAPE[1] >= 4096
    assert SAMPLES["large_image"]["kwargs"]["shape"] == synthetic.LARGE_IMAGE_SHAPE
    # deterministic: a crop-sized run with the large image's seed is reproducible
    a = synthetic.nuclei_image((128, 128), seed=synthetic.LARGE_IMAGE_SEED)
    b = synthetic.nuclei_image((128, 128), seed=synthetic.LARGE_IMAGE_SEED)
    np.testing.assert_array_equal(a.image, b.image)
