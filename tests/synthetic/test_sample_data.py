"""The sample data built from the generator: shipped files, the cached large image."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet_stack import samples
from napari_unet_stack.samples import SAMPLES, generate_sample, load_sample


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
    # written with the user's permissions (umask), and nothing but the cache file left
    assert sorted(p.name for p in tmp_path.iterdir()) == [files[0].name]
    assert files[0].stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    import os

    old = os.umask(0)
    os.umask(old)
    return old


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
