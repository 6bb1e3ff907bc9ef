"""Where the nuclei go: dart-throwing of ellipsoids, some pressed against a neighbour."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["NucleusPlacer", "place_nuclei"]

#: Columns of the placed-nuclei array.
COLUMNS = ("z", "y", "x", "a", "b", "c", "angle", "brightness", "radius")


class NucleusPlacer:
    """Throws nuclei one by one, keeping those that do not overlap (much) with the others.

    A grid of cells no smaller than the largest diameter makes the neighbour look-up local.
    Every draw comes from ``rng`` in a fixed order, so a seed gives the same nuclei.
    Subclasses change the elongation ranges, `new_shape`, `anywhere` and
    `partner_brightness`; `place` runs the same dart-throwing for all.
    """

    #: Axis ratio a / b of the elongated nuclei, and of the others.
    elongated = (1.5, 2.3)
    roundish = (1.0, 1.25)

    def __init__(
        self,
        rng: np.random.Generator,
        shape: tuple[int, int, int],
        *,
        radius: tuple[float, float],
        elongated_fraction: float,
        z_scale: float,
    ) -> None:
        self.rng = rng
        self.nz, self.ny, self.nx = shape
        self.radius = radius
        self.elongated_fraction = elongated_fraction
        self.z_scale = z_scale
        self.cell = 2 * radius[1] * math.sqrt(self.elongated[1])  # >= the largest diameter
        self.grid: dict[tuple[int, int], list[int]] = {}
        self.rows: list[tuple[float, ...]] = []

    def z_range(self) -> tuple[float, float]:
        """Centres spread over the depth and half a z radius beyond (0, 0 for one slice)."""
        if self.nz == 1:
            return 0.0, 0.0
        half = self.z_scale * self.radius[1] * 0.5
        return -half, self.nz - 1 + half

    def fits(self, z: float, y: float, x: float, r: float, min_factor: float) -> bool:
        """No placed nucleus nearer than ``min_factor`` times the sum of the radii."""
        gy, gx = int(y // self.cell), int(x // self.cell)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                for j in self.grid.get((gy + dy, gx + dx), ()):
                    zj, yj, xj, rj = (
                        self.rows[j][0],
                        self.rows[j][1],
                        self.rows[j][2],
                        self.rows[j][8],
                    )
                    dz = (z - zj) / self.z_scale if self.nz > 1 else 0.0
                    if math.sqrt((y - yj) ** 2 + (x - xj) ** 2 + dz**2) < min_factor * (r + rj):
                        return False
        return True

    def axes(self) -> tuple[float, float, float, float]:
        """(radius, a, b, c) of a new nucleus: a radius, then an elongation, drawn."""
        rng = self.rng
        r = rng.uniform(*self.radius)
        if rng.random() < self.elongated_fraction:
            e = rng.uniform(*self.elongated)
        else:
            e = rng.uniform(*self.roundish)
        a, b = r * math.sqrt(e), r / math.sqrt(e)
        c = max(r * self.z_scale, 0.75)
        return r, a, b, c

    def new_shape(self) -> tuple[float, ...]:
        """(radius, a, b, c, angle, brightness) of a new nucleus."""
        r, a, b, c = self.axes()
        return r, a, b, c, self.rng.uniform(0, math.pi), float(self.rng.lognormal(0.0, 0.3))

    def partner(self, r: float, c: float) -> tuple[float, ...] | None:
        """(z, y, x, angle, brightness) pressed against a placed nucleus, or None when the
        partner would fall off the image; the pair overlaps and gets split when rendered.
        """
        rng = self.rng
        k = int(rng.integers(len(self.rows)))
        zk, yk, xk, rk = self.rows[k][0], self.rows[k][1], self.rows[k][2], self.rows[k][8]
        phi = rng.uniform(0, 2 * math.pi)
        dist = rng.uniform(0.7, 0.85) * (r + rk)
        z = zk + (rng.normal(0, 0.3) * c if self.nz > 1 else 0.0)
        y, x = yk + dist * math.sin(phi), xk + dist * math.cos(phi)
        angle = phi + rng.normal(0, 0.3) + math.pi / 2  # long axes side by side
        bright = self.rows[k][7] * float(rng.lognormal(0.0, 0.1))
        if not (-r < y < self.ny + r and -r < x < self.nx + r):
            return None
        return z, y, x, angle, bright

    def anywhere(self, r: float) -> tuple[float, float, float]:
        """(z, y, x) drawn uniformly, up to a radius beyond the image."""
        rng = self.rng
        z = rng.uniform(*self.z_range()) if self.nz > 1 else 0.0
        y, x = rng.uniform(-r, self.ny + r), rng.uniform(-r, self.nx + r)
        return z, y, x

    def add(self, row: tuple[float, ...]) -> None:
        y, x = row[1], row[2]
        self.grid.setdefault((int(y // self.cell), int(x // self.cell)), []).append(len(self.rows))
        self.rows.append(row)

    def partner_brightness(self, bright: float) -> float:
        """The brightness of a nucleus pressed against a neighbour (`partner`'s, as drawn)."""
        return bright

    def target_count(self, fill: float, mean_area: float) -> int:
        """How many nuclei of mean central area ``mean_area`` cover about ``fill`` of every
        slice."""
        r_mean = sum(self.radius) / 2
        if self.nz == 1:
            return max(1, round(fill * self.ny * self.nx / mean_area))
        # a nucleus covers on average 2/3 of its central area over 2c slices
        z_lo, z_hi = self.z_range()
        volume = mean_area * 4 / 3 * self.z_scale * r_mean
        return max(1, round(fill * self.ny * self.nx * (z_hi - z_lo + 1) / volume))

    def place(self, target: int, touching_fraction: float) -> np.ndarray:
        """Throws nuclei until ``target`` are placed (or ``30 * target`` attempts); a share
        ``touching_fraction`` of the attempts presses one against a placed nucleus.
        Returns rows of `COLUMNS`."""
        rng = self.rng
        attempts = 0
        while len(self.rows) < target and attempts < 30 * target:
            attempts += 1
            r, a, b, c, angle, bright = self.new_shape()
            if self.rows and rng.random() < touching_fraction:
                found = self.partner(r, c)
                if found is None:
                    continue
                z, y, x, angle, bright = found
                bright = self.partner_brightness(bright)
                ok = self.fits(z, y, x, r, 0.68)
            else:
                z, y, x = self.anywhere(r)
                ok = self.fits(z, y, x, r, 0.92)
            if ok:
                self.add((z, y, x, a, b, c, angle, bright, r))
        return np.asarray(self.rows, dtype=np.float64).reshape(-1, 9)


def place_nuclei(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    *,
    radius: tuple[float, float],
    fill: float,
    elongated_fraction: float,
    touching_fraction: float,
    z_scale: float,
) -> np.ndarray:
    """Dart-throwing of ellipsoids; returns rows of `COLUMNS` (z, y, x, a, b, c, angle,
    brightness, radius).
    """
    placer = NucleusPlacer(
        rng, shape, radius=radius, elongated_fraction=elongated_fraction, z_scale=z_scale
    )
    r_mean = sum(radius) / 2
    target = placer.target_count(fill, math.pi * r_mean**2)
    return placer.place(target, touching_fraction)
