"""The varied nuclei generator: every image draws its own scene (sizes, density, clumps,
touching pairs, shapes, interiors, focus, illumination, noise, bit depth).

`varied_nuclei` makes one 2D image or (Z, Y, X) stack; `varied_set` a list of them from
independent seeds (training sets, and differently seeded held-out sets). The imaging
model: nuclei -> point-spread function (a wider one for the out-of-focus nuclei) and
haze -> uneven excitation -> uneven background -> shot noise, read noise, camera gain,
offset and quantization to 8, 12 or 16 bits.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

from .noise import smooth_noise, wide_blur
from .render import relabel
from .scene import Scene, VariedParams, draw_scene
from .varied_placement import draw_looks, place_varied
from .varied_render import render_varied

__all__ = ["VARIED_VERSION", "VariedNuclei", "varied_nuclei", "varied_set"]

#: Bumped whenever the varied generator's output changes for a given seed.
VARIED_VERSION = 1
#: digital offset of the camera, and the highest gain (counts per electron), by bit depth
OFFSETS = {8: 6, 12: 60, 16: 200}
MAX_GAIN = {8: 6.0, 12: 12.0, 16: 40.0}


class VariedNuclei(NamedTuple):
    """A varied image, its ground truth, and the scene it was drawn from."""

    image: np.ndarray  # uint8 (8 bits) or uint16 (12 or 16 bits)
    instances: np.ndarray  # 0 background, one id per nucleus (kept across slices)
    labels: np.ndarray  # uint8: 0 background, 1 nucleus
    scene: Scene


def _fields(rng, shape3d, scene: Scene):
    """(zero-mean chromatin texture, non-negative nucleoli field) of the image's shape."""
    tex = smooth_noise(rng, shape3d, max(0.8, 0.12 * scene.radius))
    spots = smooth_noise(rng, shape3d, max(1.0, 0.22 * scene.radius))
    np.subtract(spots, 1.4, out=spots)
    np.clip(spots, 0.0, None, out=spots)
    return tex, spots


def _unit_field(rng, ny: int, nx: int) -> np.ndarray:
    """A smooth field spanning exactly [-0.5, 0.5]: a tilted plane, a vignette, blotches."""
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    yy, xx = yy / max(ny - 1, 1) - 0.5, xx / max(nx - 1, 1) - 0.5
    w = rng.normal(0.0, 1.0, 4)
    cy, cx = rng.uniform(-0.3, 0.3, 2)
    field = w[0] * yy + w[1] * xx - abs(w[2]) * ((yy - cy) ** 2 + (xx - cx) ** 2)
    field = field + 0.3 * w[3] * smooth_noise(rng, (ny, nx), max(ny, nx) / 5)
    span = float(field.max() - field.min())
    return ((field - field.min()) / max(span, 1e-6) - 0.5).astype(np.float32)


def _optics(rng, focus, blurred, scene: Scene) -> np.ndarray:
    """Signal through the point-spread function, the out-of-focus nuclei through a 2-4x
    wider one, plus haze, under uneven excitation."""
    nz, ny, nx = focus.shape
    sz = 0.0 if nz == 1 else 0.8
    out = ndi.gaussian_filter(focus, (sz, scene.blur, scene.blur), mode="nearest")
    if blurred.any():
        wide = scene.blur * rng.uniform(2.0, 4.0)
        out += ndi.gaussian_filter(blurred, (2 * sz, wide, wide), mode="nearest")
    else:
        rng.uniform(2.0, 4.0)  # keep the draw order fixed
    out += 0.1 * wide_blur(focus + blurred, 2 * sz, 8 * scene.blur)
    excitation = 1.0 + scene.illumination * _unit_field(rng, ny, nx)
    out *= excitation[None]
    return out


def _camera(rng, expected: np.ndarray, scene: Scene, bright: float) -> np.ndarray:
    """Shot and read noise in electrons, then gain, offset and quantization."""
    full = 2**scene.bit_depth - 1
    gain = scene.range_used * 0.9 * full / max(scene.photons * bright, 1e-6)
    gain = min(gain, MAX_GAIN[scene.bit_depth])  # dim light uses less of the range
    # the offset keeps the read noise off zero, as a camera's bias does
    offset = min(max(OFFSETS[scene.bit_depth], 4 * gain * scene.read_noise), 0.25 * full)
    electrons = rng.poisson(scene.photons * expected).astype(np.float32)
    electrons += rng.normal(0.0, scene.read_noise, expected.shape).astype(np.float32)
    counts = np.rint(offset + gain * electrons)
    np.clip(counts, 0, full, out=counts)
    return counts.astype(np.uint8 if scene.bit_depth == 8 else np.uint16)


def _shape3d(shape) -> tuple[int, int, int]:
    try:
        dims = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"`shape` must be a tuple of 2 or 3 ints, got {shape!r}") from None
    if len(dims) not in (2, 3) or min(dims) < 1:
        raise ValueError(f"`shape` must be 2 or 3 positive ints (Y, X) or (Z, Y, X), got {shape!r}")
    return dims if len(dims) == 3 else (1, *dims)


def varied_nuclei(
    shape=(256, 256),
    *,
    seed: int | None = 0,
    params: VariedParams | None = None,
    z_scale: float = 0.45,
    **fixed,
) -> VariedNuclei:
    """One varied image ``(Y, X)`` or stack ``(Z, Y, X)`` of nuclei with ground truth.

    Parameters
    ----------
    shape : tuple of 2 or 3 int
    seed : int or None
        Seed of ``numpy.random.default_rng``: the same seed and arguments give the same arrays.
    params : VariedParams, optional
        The ranges the scene is drawn from (default ``VariedParams()``).
    z_scale : float
        z semi-axis in slices per xy pixel of radius (stacks only).
    **fixed
        Knobs of `VariedParams` fixed to one value, e.g. ``fill=0.3, bit_depths=16``.

    Returns
    -------
    VariedNuclei
        ``image``, ``instances``, ``labels`` (of ``shape``) and the drawn ``scene``.
    """
    shape3d = _shape3d(shape)
    params = (params or VariedParams()).fixed(**fixed) if fixed else (params or VariedParams())
    rng = np.random.default_rng(seed)
    scene = draw_scene(rng, params)
    nuclei = place_varied(rng, shape3d, scene, z_scale)
    looks = draw_looks(rng, len(nuclei), scene)
    fields = _fields(rng, shape3d, scene)
    instances, focus, blurred = render_varied(shape3d, nuclei, looks, fields)
    del fields
    signal = _optics(rng, focus, blurred, scene)
    del focus, blurred
    nz, ny, nx = shape3d
    background = scene.background * (1.0 + 0.3 * _unit_field(rng, ny, nx))
    bleach = np.exp(-0.02 * np.arange(nz)) * rng.lognormal(0.0, 0.1, nz)
    expected = signal * bleach[:, None, None].astype(np.float32) + background[None]
    bright = float(np.exp(2 * scene.brightness_spread)) * 1.1  # ~ the brightest nuclei
    image = _camera(rng, expected, scene, bright)
    instances = relabel(instances)
    labels = (instances > 0).astype(np.uint8)
    if len(shape) == 2:
        return VariedNuclei(image[0], instances[0], labels[0], scene)
    return VariedNuclei(image, instances, labels, scene)


def varied_set(n: int, shape=(256, 256), *, seed: int = 0, **kwargs) -> list[VariedNuclei]:
    """``n`` varied images from independent child seeds of ``seed`` (`numpy.random.SeedSequence`).

    Sets made with different ``seed`` share no image; ``kwargs`` go to `varied_nuclei`.
    """
    if int(n) < 1:
        raise ValueError(f"`n` must be a positive int, got {n!r}")
    children = np.random.SeedSequence(int(seed)).spawn(int(n))
    return [varied_nuclei(shape, seed=int(c.generate_state(1)[0]), **kwargs) for c in children]
