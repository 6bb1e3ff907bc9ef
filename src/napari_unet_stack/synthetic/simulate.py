"""The imaging model: placed nuclei -> blur and haze -> uneven background -> camera.

Every random draw comes from one ``numpy.random.default_rng(seed)``, in a fixed order
(nuclei, texture, background, slice changes, shot noise, read noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

from .noise import smooth_noise, wide_blur
from .placement import place_nuclei
from .render import relabel, render

__all__ = ["NucleiParams", "SyntheticNuclei", "simulate"]


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


@dataclass(frozen=True)
class NucleiParams:
    """The generator's parameters (documented on `nuclei_stack`); the defaults are its defaults."""

    radius: tuple[float, float] = (6.0, 12.0)
    fill: float = 0.30
    elongated_fraction: float = 0.25
    touching_fraction: float = 0.3
    z_scale: float = 0.45
    blur: float = 1.3
    photons: float = 120.0
    read_noise: float = 4.0
    offset: float = 100.0
    background: float = 0.18
    slice_variation: float = 1.0


def _optics(signal: np.ndarray, blur: float) -> tuple[np.ndarray, np.ndarray]:
    """(in-focus image through the point-spread function, out-of-focus haze)."""
    nz = signal.shape[0]
    sigma_xy = float(blur)
    sigma = (0.0 if nz == 1 else 0.8, sigma_xy, sigma_xy)
    sharp = ndi.gaussian_filter(signal, sigma, mode="nearest")
    haze = wide_blur(signal, 0.0 if nz == 1 else 2.0, 8 * sigma_xy)
    return sharp, haze


def _background(rng: np.random.Generator, ny: int, nx: int, level: float) -> np.ndarray:
    """Uneven background: a tilted plane plus smooth blotches, at least 20 % of ``level``."""
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    tilt = rng.normal(0, 1, 2)
    plane = (tilt[0] * (yy / ny - 0.5) + tilt[1] * (xx / nx - 0.5)) * 0.5
    blotches = smooth_noise(rng, (ny, nx), max(ny, nx) / 6)
    base = level * (1.0 + 0.5 * plane + 0.35 * blotches)
    np.clip(base, 0.2 * level, None, out=base)
    return base


def _slice_changes(rng: np.random.Generator, nz: int, strength: float):
    """Per-slice (signal gain, background drift): bleaching and flicker, background drift."""
    gains = np.ones(nz)
    drift = np.ones(nz)
    if nz > 1 and strength:
        z = np.arange(nz)
        gains = np.exp(-0.025 * z) * rng.lognormal(0.0, 0.25 * strength, nz)
        drift = rng.lognormal(0.0, 0.3 * strength, nz)
    return gains, drift


def _camera(rng: np.random.Generator, expected: np.ndarray, p: NucleiParams) -> np.ndarray:
    """Poisson shot noise, camera offset and Gaussian read noise, as ``uint16`` counts."""
    counts = rng.poisson(expected).astype(np.float32)
    counts += p.offset
    counts += rng.normal(0.0, p.read_noise, expected.shape).astype(np.float32)
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16)


def simulate(shape3d: tuple[int, int, int], seed, p: NucleiParams) -> SyntheticNuclei:
    """A ``(Z, Y, X)`` image of nuclei with its instance and semantic ground truth."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape3d
    nuclei = place_nuclei(
        rng, shape3d, radius=p.radius, fill=p.fill, elongated_fraction=p.elongated_fraction,
        touching_fraction=p.touching_fraction, z_scale=p.z_scale,
    )  # fmt: skip
    texture = (1.0 + 0.18 * smooth_noise(rng, shape3d, 1.5)).astype(np.float32)
    np.clip(texture, 0.4, None, out=texture)
    instances, signal = render(shape3d, nuclei, texture)
    sharp, haze = _optics(signal, p.blur)
    del signal
    base = _background(rng, ny, nx, p.background)
    gains, drift = _slice_changes(rng, nz, p.slice_variation)
    expected = np.empty(shape3d, dtype=np.float32)
    for k in range(nz):
        expected[k] = p.photons * (gains[k] * (sharp[k] + 0.12 * haze[k]) + drift[k] * base)
    del sharp, haze
    image = _camera(rng, expected, p)
    instances = relabel(instances)
    return SyntheticNuclei(image, instances, (instances > 0).astype(np.uint8))
