"""Drawing the varied generator's nuclei: irregular outlines (radial harmonics on an
ellipse), solid or hollow interiors with chromatin texture and dark nucleoli, and a
separate signal for the out-of-focus ones.
"""

from __future__ import annotations

import math

import numpy as np

from .render import nucleus_box
from .varied_placement import Looks

__all__ = ["render_varied"]


def _distance(box, row, harmonics: np.ndarray, nz: int) -> np.ndarray:
    """Squared normalized distance to the centre (< 1 inside) of an ellipse whose radius
    is modulated by ``1 + sum_k A_k cos(k theta + phi_k)`` (k = 2..5).
    """
    z0, y0, x0, a, b, c, angle = row[:7]
    zz, yy, xx = np.ogrid[box]
    cos, sin = math.cos(angle), math.sin(angle)
    u = ((xx - x0) * cos + (yy - y0) * sin) / a
    v = (-(xx - x0) * sin + (yy - y0) * cos) / b
    d = u**2 + v**2
    if harmonics[:, 0].any():
        theta = np.arctan2(v, u)
        rho = np.ones_like(theta)
        for k, (amp, phase) in enumerate(harmonics, start=2):
            rho += amp * np.cos(k * theta + phase)
        d = d / np.maximum(rho, 0.5) ** 2
    if nz > 1:
        d = d + ((zz - z0) / c) ** 2
    return d.astype(np.float32)


def _profile(d, bright: float, hollow: float, amp: float, fields, box) -> np.ndarray:
    """Brightness inside one nucleus: dimmer rim, or a dim centre when hollow; texture
    and nucleoli from the shared fields, scaled by the nucleus's texture amplitude.
    """
    tex, spots = fields
    p = (1.0 - 0.3 * d) * (1.0 - hollow * (1.0 - d))
    p = p * (1.0 + amp * tex[box]) * np.exp(-2.5 * amp * spots[box])
    return (bright * np.clip(p, 0.05, None)).astype(np.float32)


def render_varied(shape, nuclei: np.ndarray, looks: Looks, fields):
    """(instance ids, in-focus signal, out-of-focus signal) of the placed nuclei.

    ``fields`` is (texture, nucleoli) of the image's shape: a zero-mean texture field
    and a non-negative field that is positive in the nucleoli. Overlapping nuclei split
    where their normalized distances meet, so touching pairs share a border.
    """
    best = np.full(shape, np.inf, dtype=np.float32)
    instances = np.zeros(shape, dtype=np.uint32)
    focus = np.zeros(shape, dtype=np.float32)
    blurred = np.zeros(shape, dtype=np.float32)
    for idx, row in enumerate(nuclei, start=1):
        harm = looks.harmonics[idx - 1]
        box = nucleus_box(shape, row, 1.0 + float(harm[:, 0].sum()))
        if box is None:
            continue
        d = _distance(box, row, harm, shape[0])
        win = (d < 1) & (d < best[box])
        if not win.any():
            continue
        best[box][win] = d[win]
        instances[box][win] = idx
        prof = _profile(d, row[7], looks.hollow[idx - 1], looks.texture[idx - 1], fields, box)
        target, other = (blurred, focus) if looks.defocus[idx - 1] else (focus, blurred)
        target[box][win] = prof[win]
        other[box][win] = 0.0  # a later nucleus took these voxels from another
    return instances, focus, blurred
