"""The pictures a bioimage.io package carries: its test image and its cover."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..labels import LabelRule

__all__ = ["cover_image", "sample_input"]

_SAMPLE_SIDE = 256


def sample_input(in_channels: int, min_size: int, step: int) -> np.ndarray:
    """(C, S, S) float32: a plane of the shipped nuclei sample, S the largest admissible
    side up to 256 (else the smallest admissible one, the sample mirrored to fill it), the
    same plane in every channel."""
    from ..samples import load_sample

    plane = np.asarray(load_sample("nuclei_stack").image[0], dtype=np.float32)
    side = min_size if min_size > _SAMPLE_SIDE else min_size + (_SAMPLE_SIDE - min_size) // step * step
    if side > plane.shape[0]:
        plane = np.pad(plane, [(0, side - plane.shape[0]), (0, side - plane.shape[1])], mode="symmetric")
    plane = plane[:side, :side]
    return np.repeat(plane[None], in_channels, axis=0)


def _grey(plane: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(plane, [1, 99.8])
    return np.clip((plane - lo) / max(float(hi - lo), 1e-6), 0, 1)


def cover_image(image: np.ndarray, probs: np.ndarray, model, path: Path) -> None:
    """A 2:1 PNG: the test input (first channel, grey) beside P(foreground) (magenta on black)."""
    import imageio.v3 as iio

    fg, _ = LabelRule.for_model(model, n_channels=probs.shape[0]).foreground(probs)
    left = _grey(np.asarray(image[0], np.float64))
    height, width = fg.shape
    left = left[(left.shape[0] - height) // 2:][:height, (left.shape[1] - width) // 2:][:, :width]
    grey = np.repeat(left[..., None], 3, axis=-1)
    magenta = np.stack([fg, 0.2 * fg, fg], axis=-1)
    picture = np.concatenate([grey, magenta], axis=1)
    iio.imwrite(path, (np.clip(picture, 0, 1) * 255).astype(np.uint8))
