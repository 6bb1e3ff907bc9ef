"""Colours for instance layers: touching objects never share a colour (no Qt here).

napari's default Labels colormap gives each id a pseudo-random colour, so two touching
nuclei can look alike. `instance_colours` gives each id one of `PALETTE` (qualitative
colours far apart) by a greedy colouring of the objects' contact graph: an object takes a
colour none of its already coloured neighbours has (neighbours: any pixel of one next to
a pixel of the other along an axis, or diagonally in the Y, X plane), starting the search
at a different colour for each id so that the colours are spread evenly. Only when every
colour is taken by a neighbour (more than ``len(PALETTE)`` objects around one) does it
take the one its neighbours use least. `instance_colormap` makes napari's
`DirectLabelColormap` of them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PALETTE", "instance_colormap", "instance_colours", "touching_pairs"]

#: RGB in [0, 1]: twelve colours of the {0, 0.5, 1} grid, bright enough for a dark canvas,
#: each pair at least 0.5 apart (tests/napari/test_instance_colours.py checks it)
PALETTE = np.array([
    (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.5, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 1.0), (0.0, 1.0, 1.0),
    (1.0, 0.5, 0.0), (0.5, 0.0, 1.0), (0.5, 1.0, 0.0), (1.0, 0.5, 0.5), (1.0, 1.0, 1.0), (0.0, 0.0, 1.0),
], dtype=np.float32)


def touching_pairs(ids: np.ndarray) -> np.ndarray:
    """(n, 2) unique pairs (smaller id first) of different nonzero ids that touch."""
    ids = np.asarray(ids)
    found = [np.zeros((0, 2), np.int64)]

    def add(a: np.ndarray, b: np.ndarray) -> None:
        keep = (a != b) & (a != 0) & (b != 0)
        found.append(np.stack([a[keep], b[keep]], axis=1).astype(np.int64))

    for axis in range(ids.ndim):
        moved = np.moveaxis(ids, axis, 0)
        add(moved[:-1], moved[1:])
    if ids.ndim >= 2:
        add(ids[..., :-1, :-1], ids[..., 1:, 1:])
        add(ids[..., :-1, 1:], ids[..., 1:, :-1])
    pairs = np.sort(np.concatenate(found), axis=1)
    return np.unique(pairs, axis=0)


def instance_colours(ids: np.ndarray, n_colours: int = len(PALETTE)) -> np.ndarray:
    """The palette index of every id ``0..ids.max()`` (index 0 of the result is unused)."""
    top = int(np.max(ids, initial=0))
    pairs = touching_pairs(ids)
    both = np.concatenate([pairs, pairs[:, ::-1]])
    both = both[np.argsort(both[:, 0], kind="stable")]
    starts = np.searchsorted(both[:, 0], np.arange(top + 2))
    colour = np.full(top + 1, -1, np.int64)
    for i in range(1, top + 1):
        around = colour[both[starts[i]:starts[i + 1], 1]]
        used = np.bincount(around[around >= 0], minlength=n_colours)
        free = np.flatnonzero(used == 0)
        if free.size:
            colour[i] = free[np.searchsorted(free, i % n_colours) % free.size]
        else:
            colour[i] = int(np.argmin(used))
    colour[0] = 0
    return colour


def instance_colormap(colours: np.ndarray):
    """napari's `DirectLabelColormap`: id ``i`` in ``PALETTE[colours[i]]``, 0 transparent."""
    from napari.utils.colormaps import DirectLabelColormap

    rgba = np.concatenate([PALETTE, np.ones((len(PALETTE), 1), np.float32)], axis=1)
    mapping = {int(i): rgba[int(c)] for i, c in enumerate(colours) if i > 0}
    mapping[0] = np.zeros(4, np.float32)
    mapping[None] = np.zeros(4, np.float32)  # ids not listed (none should be)
    return DirectLabelColormap(color_dict=mapping)
