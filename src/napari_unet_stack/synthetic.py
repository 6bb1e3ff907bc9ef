"""Seeded synthetic fluorescence images of cell nuclei, with exact ground truth.

The generator imitates what a widefield or confocal nuclear stain (DAPI, Hoechst) looks
like, so that models trained on it meet the difficulties of real data:

- nuclei of varying size and brightness, some elongated, some touching (split along
  the line where their normalized distances meet, like the daughters of a division);
- chromatin texture inside the nuclei and a dimmer rim;
- blur (a Gaussian point-spread function, anisotropic in z for stacks) and
  out-of-focus haze;
- an uneven background (a tilted plane plus smooth blotches);
- intensity changes between slices (bleaching, lamp flicker, background drift);
- Poisson shot noise, camera offset and Gaussian read noise, stored as ``uint16``.

Stacks are sections through 3D ellipsoids, so one nucleus keeps its instance id from
slice to slice. Everything is drawn from ``numpy.random.default_rng(seed)``: the same
seed and arguments give the same arrays.

Examples
--------
>>> from napari_unet_stack.synthetic import nuclei_stack
>>> sample = nuclei_stack((4, 64, 64), seed=1)
>>> sample.image.shape, sample.image.dtype, sample.labels.dtype
((4, 64, 64), dtype('uint16'), dtype('uint8'))
>>> bool(((sample.instances > 0) == (sample.labels == 1)).all())
True
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "GENERATOR_VERSION",
    "LARGE_IMAGE_SEED",
    "LARGE_IMAGE_SHAPE",
    "SyntheticNuclei",
    "large_image",
    "nuclei_image",
    "nuclei_stack",
]

#: Bumped whenever the generator's output changes for a given seed (cache key).
GENERATOR_VERSION = 1
#: Shape and seed of the large 2D sample image (``load_sample("large_image")``).
LARGE_IMAGE_SHAPE = (4096, 4096)
LARGE_IMAGE_SEED = 4096


class SyntheticNuclei(NamedTuple):
    """A generated image and its ground truth, all of the same shape.

    Attributes
    ----------
    image : ndarray of uint16
        The simulated camera image (offset ~100 counts, noisy).
    instances : ndarray of uint16 or uint32
        0 for background, one id per nucleus (kept across the slices of a stack).
    labels : ndarray of uint8
        Semantic ground truth: 0 background, 1 nucleus (``instances > 0``).
    """

    image: np.ndarray
    instances: np.ndarray
    labels: np.ndarray


def _check_shape(shape, ndim: int, name: str = "shape") -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"`{name}` must be a tuple of {ndim} ints, got {shape!r}") from None
    if len(shape) != ndim or min(shape) < 1:
        raise ValueError(f"`{name}` must be {ndim} positive ints, got {shape!r}")
    return shape


def _smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian random field with correlation length ~``sigma``.

    Drawn on a grid ``sigma / 2`` times coarser and interpolated back, so it is cheap
    for large images.
    """
    step = max(1, int(sigma // 2))
    coarse_shape = tuple(-(-s // step) + 4 for s in shape)
    noise = rng.standard_normal(coarse_shape, dtype=np.float32)
    field = ndi.gaussian_filter(noise, sigma / step, mode="wrap", truncate=3.0)
    if step > 1:
        field = ndi.zoom(field, step, order=1, grid_mode=True, mode="nearest")
    field = np.ascontiguousarray(field[tuple(slice(2 * step, 2 * step + s) for s in shape)])
    field -= field.mean()
    field /= max(float(field.std()), 1e-12)
    return field


def _place_nuclei(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    *,
    radius: tuple[float, float],
    fill: float,
    elongated_fraction: float,
    touching_fraction: float,
    z_scale: float,
) -> np.ndarray:
    """Dart-throwing of ellipsoids; returns rows (z, y, x, a, b, c, angle, brightness)."""
    nz, ny, nx = shape
    r_lo, r_hi = radius
    r_mean = (r_lo + r_hi) / 2
    mean_area = math.pi * r_mean**2
    cell = 2 * r_hi * math.sqrt(2.3)  # grid for neighbour look-ups (>= largest diameter)
    grid: dict[tuple[int, int], list[int]] = {}
    rows: list[tuple[float, ...]] = []
    if nz == 1:
        z_lo = z_hi = 0.0
        target = fill * ny * nx / mean_area
    else:
        # centres spread over the depth and half a z radius beyond; a nucleus covers
        # on average 2/3 of its central area over 2c slices
        z_lo, z_hi = -z_scale * r_hi * 0.5, nz - 1 + z_scale * r_hi * 0.5
        target = fill * ny * nx * (z_hi - z_lo + 1) / (mean_area * 4 / 3 * z_scale * r_mean)
    target = max(1, round(target))

    def fits(z, y, x, r, min_factor):
        gy, gx = int(y // cell), int(x // cell)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                for j in grid.get((gy + dy, gx + dx), ()):
                    zj, yj, xj, rj = rows[j][0], rows[j][1], rows[j][2], rows[j][8]
                    dz = (z - zj) / z_scale if nz > 1 else 0.0
                    if math.sqrt((y - yj) ** 2 + (x - xj) ** 2 + dz**2) < min_factor * (r + rj):
                        return False
        return True

    def new_params():
        r = rng.uniform(r_lo, r_hi)
        if rng.random() < elongated_fraction:
            e = rng.uniform(1.5, 2.3)
        else:
            e = rng.uniform(1.0, 1.25)
        a, b = r * math.sqrt(e), r / math.sqrt(e)
        c = max(r * z_scale, 0.75)
        return r, a, b, c, rng.uniform(0, math.pi), float(rng.lognormal(0.0, 0.3))

    attempts = 0
    while len(rows) < target and attempts < 30 * target:
        attempts += 1
        r, a, b, c, angle, bright = new_params()
        if rows and rng.random() < touching_fraction:
            # a partner pressed against an existing nucleus: they overlap and get split
            k = int(rng.integers(len(rows)))
            zk, yk, xk, rk = rows[k][0], rows[k][1], rows[k][2], rows[k][8]
            phi = rng.uniform(0, 2 * math.pi)
            dist = rng.uniform(0.7, 0.85) * (r + rk)
            z = zk + (rng.normal(0, 0.3) * c if nz > 1 else 0.0)
            y, x = yk + dist * math.sin(phi), xk + dist * math.cos(phi)
            angle = phi + rng.normal(0, 0.3) + math.pi / 2  # long axes side by side
            bright = rows[k][7] * float(rng.lognormal(0.0, 0.1))
            if not (-r < y < ny + r and -r < x < nx + r):
                continue
            ok = fits(z, y, x, r, 0.68)
        else:
            z = rng.uniform(z_lo, z_hi) if nz > 1 else 0.0
            y, x = rng.uniform(-r, ny + r), rng.uniform(-r, nx + r)
            ok = fits(z, y, x, r, 0.92)
        if not ok:
            continue
        grid.setdefault((int(y // cell), int(x // cell)), []).append(len(rows))
        rows.append((z, y, x, a, b, c, angle, bright, r))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 9)


def _render(shape: tuple[int, int, int], nuclei: np.ndarray, texture: np.ndarray):
    """Instance ids and clean fluorescence (before blur) of the placed ellipsoids."""
    nz, ny, nx = shape
    best = np.full(shape, np.inf, dtype=np.float32)
    instances = np.zeros(shape, dtype=np.uint32)
    signal = np.zeros(shape, dtype=np.float32)
    for idx, (z0, y0, x0, a, b, c, angle, bright, _r) in enumerate(nuclei, start=1):
        ext = a + 1
        zs = (0, 1) if nz == 1 else (max(0, math.floor(z0 - c)), min(nz, math.ceil(z0 + c) + 1))
        ys = max(0, math.floor(y0 - ext)), min(ny, math.ceil(y0 + ext) + 1)
        xs = max(0, math.floor(x0 - ext)), min(nx, math.ceil(x0 + ext) + 1)
        if zs[0] >= zs[1] or ys[0] >= ys[1] or xs[0] >= xs[1]:
            continue
        zz, yy, xx = np.ogrid[zs[0] : zs[1], ys[0] : ys[1], xs[0] : xs[1]]
        cos, sin = math.cos(angle), math.sin(angle)
        u = (xx - x0) * cos + (yy - y0) * sin
        v = -(xx - x0) * sin + (yy - y0) * cos
        d = (u / a) ** 2 + (v / b) ** 2
        if nz > 1:
            d = d + ((zz - z0) / c) ** 2
        d = d.astype(np.float32)
        box = (slice(*zs), slice(*ys), slice(*xs))
        win = (d < 1) & (d < best[box])
        if not win.any():
            continue
        best[box][win] = d[win]
        instances[box][win] = idx
        # bright interior, dimmer rim, chromatin texture
        profile = bright * (1.0 - 0.4 * d**2) * texture[box]
        signal[box][win] = profile[win]
    return instances, signal


def _wide_blur(volume: np.ndarray, sigma_z: float, sigma_xy: float) -> np.ndarray:
    """Gaussian blur with a large xy sigma, computed on a 4x coarser grid (out-of-focus haze)."""
    f = 4
    nz, ny, nx = volume.shape
    py, px = -ny % f, -nx % f
    padded = np.pad(volume, ((0, 0), (0, py), (0, px)), mode="edge")
    coarse = padded.reshape(nz, (ny + py) // f, f, (nx + px) // f, f).mean(axis=(2, 4))
    coarse = ndi.gaussian_filter(coarse, (sigma_z, sigma_xy / f, sigma_xy / f), mode="nearest")
    fine = ndi.zoom(coarse, (1, f, f), order=1, grid_mode=True, mode="nearest")
    return fine[:, :ny, :nx].astype(np.float32)


def _relabel(instances: np.ndarray) -> np.ndarray:
    """Consecutive ids 1..n in order of appearance, in the smallest unsigned dtype."""
    ids = np.unique(instances)
    ids = ids[ids > 0]
    lut = np.zeros(int(instances.max()) + 1, dtype=np.uint32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.uint32)
    out = lut[instances]
    return out.astype(np.uint16) if ids.size < 2**16 else out


def _simulate(
    shape3d: tuple[int, int, int],
    seed,
    *,
    radius,
    fill,
    elongated_fraction,
    touching_fraction,
    z_scale,
    blur,
    photons,
    read_noise,
    offset,
    background,
    slice_variation,
) -> SyntheticNuclei:
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape3d
    nuclei = _place_nuclei(
        rng,
        shape3d,
        radius=radius,
        fill=fill,
        elongated_fraction=elongated_fraction,
        touching_fraction=touching_fraction,
        z_scale=z_scale,
    )
    texture = (1.0 + 0.18 * _smooth_noise(rng, shape3d, 1.5)).astype(np.float32)
    np.clip(texture, 0.4, None, out=texture)
    instances, signal = _render(shape3d, nuclei, texture)

    sigma_xy = float(blur)
    sigma = (0.0 if nz == 1 else 0.8, sigma_xy, sigma_xy)
    sharp = ndi.gaussian_filter(signal, sigma, mode="nearest")
    haze = _wide_blur(signal, 0.0 if nz == 1 else 2.0, 8 * sigma_xy)
    del signal

    # uneven background: tilted plane + smooth blotches, drifting between slices
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    tilt = rng.normal(0, 1, 2)
    plane = (tilt[0] * (yy / ny - 0.5) + tilt[1] * (xx / nx - 0.5)) * 0.5
    blotches = _smooth_noise(rng, (ny, nx), max(ny, nx) / 6)
    base = background * (1.0 + 0.5 * plane + 0.35 * blotches)
    np.clip(base, 0.2 * background, None, out=base)
    del yy, xx, plane, blotches

    gains = np.ones(nz)
    drift = np.ones(nz)
    if nz > 1 and slice_variation:
        z = np.arange(nz)
        gains = np.exp(-0.025 * z) * rng.lognormal(0.0, 0.25 * slice_variation, nz)
        drift = rng.lognormal(0.0, 0.3 * slice_variation, nz)
    expected = np.empty(shape3d, dtype=np.float32)
    for k in range(nz):
        expected[k] = photons * (gains[k] * (sharp[k] + 0.12 * haze[k]) + drift[k] * base)
    del sharp, haze
    counts = rng.poisson(expected).astype(np.float32)
    del expected
    counts += offset
    counts += rng.normal(0.0, read_noise, shape3d).astype(np.float32)
    image = np.clip(np.rint(counts), 0, 65535).astype(np.uint16)
    instances = _relabel(instances)
    labels = (instances > 0).astype(np.uint8)
    return SyntheticNuclei(image, instances, labels)


_DEFAULTS = {
    "radius": (6.0, 12.0),
    "fill": 0.30,
    "elongated_fraction": 0.25,
    "touching_fraction": 0.3,
    "blur": 1.3,
    "photons": 120.0,
    "read_noise": 4.0,
    "offset": 100.0,
    "background": 0.18,
}


def nuclei_stack(
    shape: tuple[int, int, int] = (16, 256, 256),
    *,
    seed: int | None = 0,
    radius: tuple[float, float] = _DEFAULTS["radius"],
    fill: float = _DEFAULTS["fill"],
    elongated_fraction: float = _DEFAULTS["elongated_fraction"],
    touching_fraction: float = _DEFAULTS["touching_fraction"],
    z_scale: float = 0.45,
    blur: float = _DEFAULTS["blur"],
    photons: float = _DEFAULTS["photons"],
    read_noise: float = _DEFAULTS["read_noise"],
    offset: float = _DEFAULTS["offset"],
    background: float = _DEFAULTS["background"],
    slice_variation: float = 1.0,
) -> SyntheticNuclei:
    """A (Z, Y, X) stack of sections through ellipsoidal nuclei.

    Parameters
    ----------
    shape : (Z, Y, X) tuple of int
        Size of the stack.
    seed : int or None
        Seed of ``numpy.random.default_rng``; the same seed gives the same stack.
    radius : (float, float)
        Range of the nuclei's equivalent radii in pixels (in the xy plane).
    fill : float
        Approximate fraction of a slice covered by nuclei.
    elongated_fraction : float
        Fraction of nuclei with an aspect ratio of 1.5-2.3 (others 1.0-1.25).
    touching_fraction : float
        Probability that a new nucleus is pressed against an existing one.
    z_scale : float
        z semi-axis in slices per xy pixel of radius (0.45: a 10-px nucleus spans ~9 slices).
    blur : float
        Standard deviation of the point-spread function in xy pixels (0.8 slice in z).
    photons : float
        Expected photon count of a nucleus of average brightness (sets the noise level).
    read_noise, offset : float
        Camera read noise (std) and offset, in counts.
    background : float
        Mean background relative to an average nucleus.
    slice_variation : float
        Strength of the slice-to-slice changes (bleaching, flicker, drift); 0 disables.

    Returns
    -------
    SyntheticNuclei
        ``image`` (uint16), ``instances`` (uint16/uint32), ``labels`` (uint8, 0/1).
    """
    shape = _check_shape(shape, 3)
    return _simulate(
        shape,
        seed,
        radius=radius,
        fill=fill,
        elongated_fraction=elongated_fraction,
        touching_fraction=touching_fraction,
        z_scale=z_scale,
        blur=blur,
        photons=photons,
        read_noise=read_noise,
        offset=offset,
        background=background,
        slice_variation=slice_variation,
    )


def nuclei_image(
    shape: tuple[int, int] = (512, 512),
    *,
    seed: int | None = 0,
    radius: tuple[float, float] = _DEFAULTS["radius"],
    fill: float = _DEFAULTS["fill"],
    elongated_fraction: float = _DEFAULTS["elongated_fraction"],
    touching_fraction: float = _DEFAULTS["touching_fraction"],
    blur: float = _DEFAULTS["blur"],
    photons: float = _DEFAULTS["photons"],
    read_noise: float = _DEFAULTS["read_noise"],
    offset: float = _DEFAULTS["offset"],
    background: float = _DEFAULTS["background"],
) -> SyntheticNuclei:
    """A single 2D (Y, X) image of nuclei; parameters as in `nuclei_stack`.

    Examples
    --------
    >>> img = nuclei_image((96, 128), seed=3)
    >>> img.image.shape, int(img.instances.max()) > 5
    ((96, 128), True)
    """
    shape = _check_shape(shape, 2)
    out = _simulate(
        (1, *shape),
        seed,
        radius=radius,
        fill=fill,
        elongated_fraction=elongated_fraction,
        touching_fraction=touching_fraction,
        z_scale=1.0,
        blur=blur,
        photons=photons,
        read_noise=read_noise,
        offset=offset,
        background=background,
        slice_variation=0.0,
    )
    return SyntheticNuclei(*(a[0] for a in out))


def large_image() -> SyntheticNuclei:
    """The large 2D sample (``LARGE_IMAGE_SHAPE``, seed ``LARGE_IMAGE_SEED``); ~10 s on a CPU."""
    return nuclei_image(LARGE_IMAGE_SHAPE, seed=LARGE_IMAGE_SEED)
