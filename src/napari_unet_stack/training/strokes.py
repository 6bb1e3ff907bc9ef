"""Validation on held-out strokes: painted annotations on few slices, split honestly.

With a handful of painted slices, holding out whole slices leaves too little to train on
(two painted slices: one for training, one for validation). Instead some *strokes* (the
4-connected components of one painted value) of every slice are held out: the validation
slices are the same images, scored on the held-out strokes only, which the training never
sees. Every class keeps at least one training stroke; a class painted as a single stroke is
not validated (it cannot be held out without losing it).
"""

from __future__ import annotations

import numpy as np

__all__ = ["few_slices", "split_strokes"]


def few_slices(n_slices: int, val_fraction: float) -> bool:
    """Whether holding out whole slices would hold out none, or take too large a share:
    fewer slices than ``1 / val_fraction`` (7 at the default 0.15)."""
    return val_fraction > 0 and n_slices * val_fraction < 1


def _strokes(target: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(class, pixel mask) of every stroke of one slice."""
    from skimage.measure import label

    found = []
    for value in np.unique(target[target >= 0]):
        parts, n = label(target == value, connectivity=1, return_num=True)
        found += [(int(value), parts == k) for k in range(1, n + 1)]
    return found


def split_strokes(slices: list, val_fraction: float, rng: np.random.Generator, ignore: int = -1
                  ) -> tuple[list, list]:
    """(training slices, validation slices) with ``val_fraction`` of each class's strokes
    held out (seeded, at least one per class that has two or more, never its last).

    Each slice is copied twice: its training copy has the held-out strokes set to
    ``ignore``, its validation copy everything but them. Slices with nothing held out
    give no validation copy; no stroke to hold out at all gives no validation set.
    """
    from dataclasses import replace

    strokes = [(k, value, mask) for k, s in enumerate(slices) for value, mask in _strokes(s.target)]
    held = set()
    for value in sorted({v for _, v, _ in strokes}):
        mine = [i for i, (_, v, _) in enumerate(strokes) if v == value]
        if len(mine) < 2:
            continue
        n_val = min(len(mine) - 1, max(1, round(len(mine) * val_fraction)))
        held.update(int(mine[j]) for j in rng.permutation(len(mine))[:n_val])
    if not held:
        return list(slices), []
    train, val = [], []
    for k, s in enumerate(slices):
        out = np.zeros(s.target.shape, bool)
        for i in held:
            if strokes[i][0] == k:
                out |= strokes[i][2]
        if not out.any():
            train.append(s)
            continue
        train.append(replace(s, target=np.where(out, ignore, s.target).astype(s.target.dtype)))
        val.append(replace(s, target=np.where(out, s.target, ignore).astype(s.target.dtype)))
    return train, val
