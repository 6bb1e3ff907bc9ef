"""What varies from one varied image to the next: the ranges (`VariedParams`) and one
image's draw from them (`Scene`).

Every knob of `VariedParams` is a ``(low, high)`` range; a scene draws one value from
each (log-uniformly for the scale-like ones, see ``LOG_KNOBS``). A range with
``low == high`` fixes the knob, which is how the tests show that each knob changes what
it claims to. ``bit_depths`` is a tuple of choices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

__all__ = ["LOG_KNOBS", "Scene", "VariedParams", "draw_scene"]

#: knobs drawn log-uniformly (ratios matter more than differences)
LOG_KNOBS = ("radius", "photons", "background", "read_noise")


@dataclass(frozen=True)
class VariedParams:
    """Ranges of the varied generator's per-image knobs (see `varied_nuclei`)."""

    #: mean equivalent radius in pixels (covers pixel sizes from ~0.1 to ~0.6 um)
    radius: tuple[float, float] = (4.5, 16.0)
    #: relative spread of radii inside one image (0.3: radii from 0.7x to 1.3x the mean)
    radius_spread: tuple[float, float] = (0.1, 0.45)
    #: fraction of the field covered by nuclei (density)
    fill: tuple[float, float] = (0.06, 0.45)
    #: fraction of nuclei thrown around a few clump centres rather than anywhere
    clump_fraction: tuple[float, float] = (0.0, 0.7)
    #: probability that a nucleus is pressed against a placed one (touching pairs)
    touching_fraction: tuple[float, float] = (0.05, 0.5)
    #: fraction of nuclei with an aspect ratio of 1.5-2.6
    elongated_fraction: tuple[float, float] = (0.0, 0.45)
    #: amplitude of the radial harmonics (k = 2..5) that make outlines irregular
    irregularity: tuple[float, float] = (0.0, 0.14)
    #: log-normal sigma of the nuclei's brightness (0.7: dim and bright ~10x apart)
    brightness_spread: tuple[float, float] = (0.15, 0.7)
    #: fraction of nuclei whose interior is dimmer than their rim (hollow-looking)
    hollow_fraction: tuple[float, float] = (0.0, 0.5)
    #: amplitude of the chromatin texture (and of the dark nucleoli)
    texture: tuple[float, float] = (0.05, 0.45)
    #: point-spread function sigma in pixels
    blur: tuple[float, float] = (0.6, 2.2)
    #: fraction of nuclei out of focus (blurred 2-4x more)
    defocus_fraction: tuple[float, float] = (0.0, 0.3)
    #: uneven illumination: peak-to-peak relative change of the excitation over the field
    illumination: tuple[float, float] = (0.0, 0.7)
    #: mean background relative to an average nucleus
    background: tuple[float, float] = (0.03, 0.4)
    #: expected photons of an average nucleus (sets the shot noise)
    photons: tuple[float, float] = (15.0, 1500.0)
    #: camera read noise in photo-electrons
    read_noise: tuple[float, float] = (0.8, 8.0)
    #: fraction of the digital range the brightest nuclei reach
    range_used: tuple[float, float] = (0.15, 0.9)
    #: bits of the camera: 8 (stored as uint8), 12 or 16 (stored as uint16)
    bit_depths: tuple[int, ...] = (8, 12, 16)

    def fixed(self, **values) -> VariedParams:
        """These ranges with some knobs fixed to one value (``bit_depths`` to one choice)."""
        changes = {}
        for key, value in values.items():
            if key not in {f.name for f in fields(self)}:
                raise TypeError(f"unknown knob {key!r}; knobs: {[f.name for f in fields(self)]}")
            changes[key] = (int(value),) if key == "bit_depths" else (float(value), float(value))
        return VariedParams(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})


@dataclass(frozen=True)
class Scene:
    """One image's values of every `VariedParams` knob (``bit_depth`` one of the choices)."""

    radius: float
    radius_spread: float
    fill: float
    clump_fraction: float
    touching_fraction: float
    elongated_fraction: float
    irregularity: float
    brightness_spread: float
    hollow_fraction: float
    texture: float
    blur: float
    defocus_fraction: float
    illumination: float
    background: float
    photons: float
    read_noise: float
    range_used: float
    bit_depth: int

    @property
    def radius_range(self) -> tuple[float, float]:
        return self.radius * (1 - self.radius_spread), self.radius * (1 + self.radius_spread)


def _check_range(name: str, lo_hi) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in lo_hi)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a (low, high) pair of numbers, got {lo_hi!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi or lo < 0:
        raise ValueError(f"`{name}` must be 0 <= low <= high, got {lo_hi!r}")
    return lo, hi


def draw_scene(rng: np.random.Generator, params: VariedParams) -> Scene:
    """One value of every knob, drawn from ``rng`` in the fixed order of the fields."""
    values = {}
    for f in fields(params):
        if f.name == "bit_depths":
            depths = tuple(int(d) for d in params.bit_depths)
            if not depths or set(depths) - {8, 12, 16}:
                raise ValueError(f"`bit_depths` must be chosen from 8, 12, 16, got {depths!r}")
            values["bit_depth"] = depths[int(rng.integers(len(depths)))]
            continue
        lo, hi = _check_range(f.name, getattr(params, f.name))
        u = rng.random()  # always drawn, so fixing one knob does not shift the others
        if f.name in LOG_KNOBS and lo > 0:
            values[f.name] = float(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))))
        else:
            values[f.name] = float(lo + u * (hi - lo))
    if values["radius"] < 1.5:
        raise ValueError(f"`radius` must be at least 1.5 pixels, got {values['radius']}")
    values["radius_spread"] = min(values["radius_spread"], 0.8)
    return Scene(**values)
