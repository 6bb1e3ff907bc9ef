"""Seeded augmentation: crops, flips, 90-degree rotations, elastic deformation, intensity.

Every geometric transform is expressed as one map from patch pixels to source-slice
coordinates, applied to the image with bilinear interpolation (``order=1``, mirrored
beyond the border, as inference pads) and to the labels with nearest-neighbour lookup
(order 0; outside the slice they become ``IGNORE``). Image and labels therefore stay
aligned by construction; flips and rotations alone move pixels exactly.

The elastic deformation follows the U-Net paper (Ronneberger et al., 2015): random
displacement vectors on a coarse grid, drawn from a Gaussian, interpolated smoothly
(cubic) to every pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .data import IGNORE, Slice


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (``train(augment=...)`` takes True, False or a dict of these).

    Parameters
    ----------
    flips : bool
        Random horizontal and vertical flips.
    rotate90 : bool
        Random multiples of 90 degrees (square patches only).
    elastic_p : float
        Probability of an elastic deformation per patch.
    elastic_sigma : float
        Standard deviation of the coarse displacements, in pixels.
    elastic_grid : int
        Spacing of the coarse displacement grid in pixels (at least 3 x 3 points).
    scale : float
        Intensity gain drawn log-uniformly in ``[1 / (1 + scale), 1 + scale]`` per channel.
    shift : float
        Intensity offset drawn uniformly in ``[-shift, shift]`` per channel (normalized units).
    noise_p, noise : float
        Probability of adding Gaussian noise, and its maximal standard deviation.
    """

    flips: bool = True
    rotate90: bool = True
    elastic_p: float = 0.5
    elastic_sigma: float = 4.0
    elastic_grid: int = 64
    scale: float = 0.25
    shift: float = 0.1
    noise_p: float = 0.3
    noise: float = 0.08

    @classmethod
    def from_argument(cls, augment: Any) -> AugmentConfig:
        if augment is True or augment is None:
            return cls()
        if augment is False:
            return cls(False, False, 0.0, 0.0, 64, 0.0, 0.0, 0.0, 0.0)
        if isinstance(augment, AugmentConfig):
            return augment
        if isinstance(augment, dict):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(augment) - known)
            if unknown:
                raise ValueError(
                    f"`augment` has unknown option(s) {unknown}; known: {sorted(known)}"
                )
            return cls(**augment)
        raise TypeError(
            f"`augment` must be True, False, a dict or an AugmentConfig, got {type(augment).__name__}"
        )

    @property
    def enabled(self) -> bool:
        return self != AugmentConfig.from_argument(False)


# ----------------------------------------------------------------------------- geometry
def _dihedral(rng: np.random.Generator, cfg: AugmentConfig, square: bool) -> np.ndarray:
    """A random 2x2 integer matrix from the flips/rotations allowed."""
    m = np.eye(2)
    if cfg.rotate90 and square:
        k = int(rng.integers(4))
        rot = np.array([[0.0, -1.0], [1.0, 0.0]])
        m = np.linalg.matrix_power(rot, k)
    if cfg.flips:
        m = m @ np.diag([rng.choice([-1.0, 1.0]), rng.choice([-1.0, 1.0])])
    return m


def elastic_field(
    rng: np.random.Generator, shape: tuple[int, int], sigma: float, grid: int
) -> np.ndarray:
    """Smooth random displacement field ``(2, H, W)``: Gaussian vectors on a coarse grid,
    interpolated with cubic splines."""
    h, w = shape
    ny = max(3, int(np.ceil(h / grid)) + 1)
    nx = max(3, int(np.ceil(w / grid)) + 1)
    coarse = rng.normal(0.0, sigma, size=(2, ny, nx))
    yy = np.linspace(0, ny - 1, h)
    xx = np.linspace(0, nx - 1, w)
    gy, gx = np.meshgrid(yy, xx, indexing="ij")
    return np.stack([ndi.map_coordinates(c, [gy, gx], order=3, mode="nearest") for c in coarse])


def patch_coordinates(
    rng: np.random.Generator,
    shape: tuple[int, int],
    centre: tuple[float, float],
    cfg: AugmentConfig,
) -> np.ndarray:
    """Source coordinates ``(2, H, W)`` of a patch of ``shape`` centred on ``centre``."""
    h, w = shape
    oy = np.arange(h, dtype=np.float64) - (h - 1) / 2
    ox = np.arange(w, dtype=np.float64) - (w - 1) / 2
    grid = np.stack(np.meshgrid(oy, ox, indexing="ij"))
    m = _dihedral(rng, cfg, h == w)
    coords = np.einsum("ij,jhw->ihw", m, grid)
    if cfg.elastic_p > 0 and cfg.elastic_sigma > 0 and rng.random() < cfg.elastic_p:
        coords += elastic_field(rng, shape, cfg.elastic_sigma, cfg.elastic_grid)
    coords[0] += centre[0]
    coords[1] += centre[1]
    return coords


def warp_image(image: np.ndarray, coords: np.ndarray, order: int = 1) -> np.ndarray:
    """Sample ``image`` ``(C, H, W)`` at ``coords`` ``(2, h, w)``; mirrored beyond the border."""
    out = np.empty((image.shape[0], *coords.shape[1:]), dtype=np.float32)
    for c in range(image.shape[0]):
        ndi.map_coordinates(
            image[c], coords, output=out[c], order=order, mode="mirror", prefilter=False
        )
    return out


def warp_labels(labels: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Nearest-neighbour lookup of ``labels`` ``(H, W)``; ``IGNORE`` outside the slice."""
    iy = np.rint(coords[0]).astype(np.int64)
    ix = np.rint(coords[1]).astype(np.int64)
    h, w = labels.shape
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    out = np.full(coords.shape[1:], IGNORE, dtype=np.int64)
    out[inside] = labels[iy[inside], ix[inside]]
    return out


def augment_intensity(
    image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig
) -> np.ndarray:
    """Per-channel gain and offset, then Gaussian noise (in place on float32 ``(C, H, W)``)."""
    n = image.shape[0]
    if cfg.scale > 0:
        log_gain = np.log1p(cfg.scale)
        gain = np.exp(rng.uniform(-log_gain, log_gain, n)).astype(np.float32)
        image *= gain[:, None, None]
    if cfg.shift > 0:
        image += rng.uniform(-cfg.shift, cfg.shift, n).astype(np.float32)[:, None, None]
    if cfg.noise > 0 and cfg.noise_p > 0 and rng.random() < cfg.noise_p:
        std = rng.uniform(0, cfg.noise)
        image += rng.normal(0.0, std, image.shape).astype(np.float32)
    return image


def augment_pair(
    image: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    cfg: AugmentConfig | None = None,
    *,
    shape: tuple[int, int] | None = None,
    label_shape: tuple[int, int] | None = None,
    centre: tuple[float, float] | None = None,
    image_order: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut one augmented patch out of ``image`` ``(C, H, W)`` and ``labels`` ``(H, W)``.

    Parameters
    ----------
    shape : (int, int), optional
        Image patch size (default: the whole slice).
    label_shape : (int, int), optional
        Label patch size, centred in the image patch (smaller for valid-convolution
        networks; default ``shape``).
    centre : (float, float), optional
        Patch centre in slice coordinates (default: the slice centre).
    image_order : int
        Interpolation order for the image (1; 0 gives nearest neighbour like the labels).

    Returns
    -------
    image_patch : (C, h, w) float32
    label_patch : (h', w') int64, ``IGNORE`` where the patch leaves the slice
    """
    cfg = AugmentConfig() if cfg is None else cfg
    if shape is None:
        shape = labels.shape
    if label_shape is None:
        label_shape = shape
    if centre is None:
        centre = ((labels.shape[0] - 1) / 2, (labels.shape[1] - 1) / 2)
    coords = patch_coordinates(rng, shape, centre, cfg)
    my = (shape[0] - label_shape[0]) // 2
    mx = (shape[1] - label_shape[1]) // 2
    label_coords = coords[:, my : my + label_shape[0], mx : mx + label_shape[1]]
    patch = warp_image(np.asarray(image, dtype=np.float32), coords, order=image_order)
    patch = augment_intensity(patch, rng, cfg)
    return patch, warp_labels(labels, label_coords)


# ----------------------------------------------------------------------------- sampling
class PatchSampler:
    """Draws batches of augmented patches from training slices (seeded).

    A slice is chosen with probability proportional to its labelled pixels; the patch is
    centred near a foreground pixel (dense labels, half of the time) or a painted pixel
    (sparse labels, always), else anywhere in the slice.
    """

    def __init__(
        self,
        slices: list[Slice],
        *,
        patch_shape: tuple[int, int],
        label_shape: tuple[int, int],
        cfg: AugmentConfig,
        rng: np.random.Generator,
        sparse: bool,
        foreground_p: float = 0.5,
    ) -> None:
        self.slices = slices
        self.patch_shape = patch_shape
        self.label_shape = label_shape
        self.cfg = cfg
        self.rng = rng
        self.focus_p = 1.0 if sparse else foreground_p
        weights = np.array([max(s.n_labelled, 1) for s in slices], dtype=np.float64)
        self.p = weights / weights.sum()

    def _centre(self, s: Slice) -> tuple[float, float]:
        h, w = s.shape
        ph, pw = self.label_shape
        rng = self.rng
        if s.centres.size and rng.random() < self.focus_p:
            flat = int(s.centres[rng.integers(s.centres.size)])
            cy, cx = divmod(flat, w)
            # the chosen pixel lands anywhere in the middle half of the patch
            cy += rng.uniform(-ph / 4, ph / 4)
            cx += rng.uniform(-pw / 4, pw / 4)
        else:
            cy, cx = rng.uniform(0, h - 1), rng.uniform(0, w - 1)
        # keep the patch inside the slice where the slice is large enough
        cy = float(np.clip(cy, (ph - 1) / 2, h - 1 - (ph - 1) / 2)) if h >= ph else (h - 1) / 2
        cx = float(np.clip(cx, (pw - 1) / 2, w - 1 - (pw - 1) / 2)) if w >= pw else (w - 1) / 2
        # integer patch origins (exact flips / rotations without elastic)
        cy = np.floor(cy - (ph - 1) / 2) + (ph - 1) / 2
        cx = np.floor(cx - (pw - 1) / 2) + (pw - 1) / 2
        return cy, cx

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        s = self.slices[int(self.rng.choice(len(self.slices), p=self.p))]
        return augment_pair(
            s.image,
            s.target,
            self.rng,
            self.cfg,
            shape=self.patch_shape,
            label_shape=self.label_shape,
            centre=self._centre(s),
        )

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self.sample() for _ in range(size)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
