"""Where the varied generator's nuclei go: the dart-throwing of `placement`, with clumps,
a wider spread of brightness and elongation, and per-nucleus looks (`Looks`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .placement import NucleusPlacer
from .scene import Scene

__all__ = ["Looks", "VariedPlacer", "draw_looks", "place_varied"]


class VariedPlacer(NucleusPlacer):
    """A `NucleusPlacer` whose nuclei come from a `Scene`: some thrown around clump
    centres, brightness log-normal with the scene's spread, elongation up to 2.6.
    """

    elongated = (1.5, 2.6)
    roundish = (1.0, 1.3)

    def __init__(self, rng: np.random.Generator, shape, scene: Scene, z_scale: float) -> None:
        super().__init__(
            rng, shape, radius=scene.radius_range,
            elongated_fraction=scene.elongated_fraction, z_scale=z_scale,
        )  # fmt: skip
        self.scene = scene
        n_clumps = 1 + int(rng.integers(4))
        self.clumps = np.column_stack(
            [rng.uniform(0, self.ny, n_clumps), rng.uniform(0, self.nx, n_clumps)]
        )
        self.clump_sigma = rng.uniform(0.7, 1.3, n_clumps)  # scaled by `set_clump_sizes`

    def set_clump_sizes(self, target: int) -> None:
        """Clumps just wide enough to hold their share of ``target`` nuclei (dense at the centre, thinning out)."""
        lo, hi = self.radius
        area = self.scene.clump_fraction * target * math.pi * (lo * lo + lo * hi + hi * hi) / 3
        sigma = math.sqrt(area / (1.2 * len(self.clumps) * 2 * math.pi))
        self.clump_sigma = self.clump_sigma * max(sigma, 1.5 * hi)

    def new_shape(self) -> tuple[float, ...]:
        r, a, b, c = self.axes()
        bright = float(self.rng.lognormal(0.0, self.scene.brightness_spread))  # before the angle
        return r, a, b, c, self.rng.uniform(0, math.pi), bright

    def partner_brightness(self, bright: float) -> float:
        return bright * float(self.rng.lognormal(0.0, self.scene.brightness_spread / 2))

    def anywhere(self, r: float) -> tuple[float, float, float]:
        rng = self.rng
        z = rng.uniform(*self.z_range()) if self.nz > 1 else 0.0
        if rng.random() < self.scene.clump_fraction:
            k = int(rng.integers(len(self.clumps)))
            y, x = self.clumps[k] + rng.normal(0.0, self.clump_sigma[k], 2)
            if -r < y < self.ny + r and -r < x < self.nx + r:
                return z, float(y), float(x)
        return z, rng.uniform(-r, self.ny + r), rng.uniform(-r, self.nx + r)


def place_varied(rng: np.random.Generator, shape, scene: Scene, z_scale: float) -> np.ndarray:
    """Rows of `placement.COLUMNS` for one scene (touching pairs as in `place_nuclei`)."""
    placer = VariedPlacer(rng, shape, scene, z_scale)
    lo, hi = placer.radius
    target = placer.target_count(scene.fill, math.pi * (lo * lo + lo * hi + hi * hi) / 3)  # E[pi r^2]
    placer.set_clump_sizes(target)
    return placer.place(target, scene.touching_fraction)


class Looks(NamedTuple):
    """Per-nucleus appearance, one row per placed nucleus."""

    harmonics: np.ndarray  # (n, 4, 2): amplitude and phase of radial harmonics k = 2..5
    hollow: np.ndarray  # (n,): 0 solid; up to 0.75: the centre that much dimmer than the rim
    texture: np.ndarray  # (n,): chromatin texture amplitude
    defocus: np.ndarray  # (n,): bool, drawn with the wide blur


def draw_looks(rng: np.random.Generator, n: int, scene: Scene) -> Looks:
    """Each nucleus's outline harmonics, interior and focus, drawn from the scene."""
    k = np.arange(2, 6)
    amp = scene.irregularity * rng.uniform(0.0, 1.0, (n, 4)) / np.sqrt(k - 1)
    phase = rng.uniform(0.0, 2 * math.pi, (n, 4))
    hollow = np.where(rng.random(n) < scene.hollow_fraction, rng.uniform(0.35, 0.75, n), 0.0)
    texture = scene.texture * rng.uniform(0.5, 1.5, n)
    defocus = rng.random(n) < scene.defocus_fraction
    return Looks(np.stack([amp, phase], axis=-1), hollow, texture, defocus)
