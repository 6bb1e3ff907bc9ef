"""Smooth random fields and the wide (out-of-focus) blur of the nuclei generator."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["smooth_noise", "wide_blur"]


def smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
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


def wide_blur(volume: np.ndarray, sigma_z: float, sigma_xy: float) -> np.ndarray:
    """Gaussian blur with a large xy sigma, computed on a 4x coarser grid (out-of-focus haze)."""
    f = 4
    nz, ny, nx = volume.shape
    py, px = -ny % f, -nx % f
    padded = np.pad(volume, ((0, 0), (0, py), (0, px)), mode="edge")
    coarse = padded.reshape(nz, (ny + py) // f, f, (nx + px) // f, f).mean(axis=(2, 4))
    coarse = ndi.gaussian_filter(coarse, (sigma_z, sigma_xy / f, sigma_xy / f), mode="nearest")
    fine = ndi.zoom(coarse, (1, f, f), order=1, grid_mode=True, mode="nearest")
    return fine[:, :ny, :nx].astype(np.float32)
