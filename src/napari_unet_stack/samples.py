"""Sample images with ground truth: shipped stacks, and a large image made on first use.

=================  ======================================================================
name               what
=================  ======================================================================
``nuclei_train``   16 x 256 x 256 uint16 stack of nuclei from the varied generator
                   (`synthetic.varied_nuclei`, one scene; part of the bundled models'
                   training data), semantic labels (0/1) and instance labels
``nuclei_stack``   the same kind of stack from another seed (another scene), held out
                   for evaluation
``large_image``    4096 x 4096 uint16 2D image of ~20,000 nuclei (tiling / speed tests);
                   generated on first use (~10 s) and cached (see `sample_cache_dir`)
=================  ======================================================================

All come from `napari_unet_stack.synthetic` with fixed seeds (``SAMPLES``);
``scripts/make_sample_data.py`` writes the shipped ones into ``sample_data/``
(zlib-compressed TIFF), read here through ``importlib.resources``.

Examples
--------
>>> from napari_unet_stack.samples import load_sample
>>> s = load_sample("nuclei_stack")
>>> s.image.shape, s.image.dtype, s.labels.dtype
((16, 256, 256), dtype('uint16'), dtype('uint8'))
"""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import synthetic
from .io.atomic import write_atomically

__all__ = ["SAMPLES", "Sample", "load_sample", "sample_cache_dir"]

#: name -> how it is made (generator function and its arguments) and described
SAMPLES: dict[str, dict[str, Any]] = {
    "nuclei_train": {
        "make": "varied_nuclei",
        "kwargs": {"shape": (16, 256, 256), "seed": 1, "bit_depths": 16},
        "shipped": True,
        "description": "varied nuclei stack for training (16 x 256 x 256, seed 1)",
    },
    "nuclei_stack": {
        "make": "varied_nuclei",
        "kwargs": {"shape": (16, 256, 256), "seed": 2, "bit_depths": 16},
        "shipped": True,
        "description": "held-out varied nuclei stack for evaluation (16 x 256 x 256, seed 2)",
    },
    "large_image": {
        "make": "nuclei_image",
        "kwargs": {"shape": synthetic.LARGE_IMAGE_SHAPE, "seed": synthetic.LARGE_IMAGE_SEED},
        "shipped": False,
        "description": "large 2D nuclei image (4096 x 4096), generated on first use",
    },
}

_PARTS = ("image", "labels", "instances")


class Sample(NamedTuple):
    """One sample: the image and its ground truth (arrays of the same shape)."""

    name: str
    image: np.ndarray
    labels: np.ndarray  # semantic: 0 background, 1 nucleus
    instances: np.ndarray  # one id per nucleus

    def layer_data(self) -> list[tuple]:
        """napari layer data tuples ``(data, kwargs, layer_type)``: image, labels, instances."""
        return [
            (self.image, {"name": self.name}, "image"),
            (self.labels, {"name": f"{self.name} labels", "visible": False}, "labels"),
            (self.instances, {"name": f"{self.name} instances"}, "labels"),
        ]


def sample_data_files(name: str) -> dict[str, str]:
    """File names (inside ``sample_data/``) of a shipped sample's parts."""
    return {part: f"{name}_{part}.tif" for part in _PARTS}


def sample_cache_dir() -> Path:
    """Where generated samples are cached.

    ``$NAPARI_UNET_STACK_CACHE`` if set, else ``$XDG_CACHE_HOME/napari-unet-stack``,
    else the platform's user cache folder (``~/.cache``, ``~/Library/Caches`` on macOS,
    ``%LOCALAPPDATA%`` on Windows).
    """
    env = os.environ.get("NAPARI_UNET_STACK_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        base = Path(xdg).expanduser()
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path.home() / ".cache"
    return base / "napari-unet-stack"


def generate_sample(name: str) -> Sample:
    """Run the generator for ``name`` (what the shipped files were made from)."""
    spec = _spec(name)
    made = getattr(synthetic, spec["make"])(**spec["kwargs"])
    return Sample(name, made.image, made.labels, made.instances)


def load_sample(name: str, *, cache_dir: str | os.PathLike | None = None) -> Sample:
    """Load a sample image with its ground truth.

    Parameters
    ----------
    name : {'nuclei_train', 'nuclei_stack', 'large_image'}
        See the module docstring.
    cache_dir : path, optional
        Folder for generated samples (default `sample_cache_dir()`).

    Returns
    -------
    Sample
        ``(name, image, labels, instances)``; ``labels`` is 0/1 (uint8).

    Raises
    ------
    ValueError
        For an unknown ``name``.
    FileNotFoundError
        When a shipped sample's files are missing from the installation.
    """
    spec = _spec(name)
    if spec["shipped"]:
        return _load_shipped(name)
    return _load_cached(name, Path(cache_dir) if cache_dir is not None else sample_cache_dir())


def _spec(name: str) -> dict[str, Any]:
    if name not in SAMPLES:
        raise ValueError(f"`name` must be one of {sorted(SAMPLES)}, got {name!r}")
    return SAMPLES[name]


def _load_shipped(name: str) -> Sample:
    import tifffile

    folder = resources.files("napari_unet_stack") / "sample_data"
    arrays = {}
    for part, fname in sample_data_files(name).items():
        resource = folder / fname
        if not resource.is_file():
            raise FileNotFoundError(
                f"sample file {fname!r} is missing from {folder}; "
                f"regenerate it with `python scripts/make_sample_data.py`"
            )
        with resources.as_file(resource) as path:
            arrays[part] = tifffile.imread(path)
    return Sample(name, arrays["image"], arrays["labels"], arrays["instances"])


def _cache_file(name: str, cache_dir: Path) -> Path:
    seed = SAMPLES[name]["kwargs"]["seed"]
    return cache_dir / f"{name}-v{synthetic.GENERATOR_VERSION}-seed{seed}.npz"


def _save_npz(tmp: str, sample: Sample) -> None:
    with open(tmp, "wb") as fh:  # a file object: np.savez would add ".npz" to a bare name
        np.savez(fh, **{part: getattr(sample, part) for part in _PARTS})


def _load_cached(name: str, cache_dir: Path) -> Sample:
    path = _cache_file(name, cache_dir)
    if path.is_file():
        try:
            with np.load(path) as data:
                return Sample(name, *(data[part] for part in _PARTS))
        except (OSError, ValueError, KeyError, EOFError):
            pass  # a damaged cache file: make it again
    sample = generate_sample(name)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # write beside the target and rename, so concurrent first uses never see half a file
        write_atomically(path, lambda tmp: _save_npz(tmp, sample))
    except OSError:
        pass  # a read-only cache is not an error: the sample was made anyway
    return sample
