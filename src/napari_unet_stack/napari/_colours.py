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

from typing import Any

import numpy as np

__all__ = ["PALETTE", "instance_colormap", "instance_colours", "slice_touching_pairs", "touching_pairs"]

#: RGB in [0, 1]: twelve colours of the {0, 0.5, 1} grid, bright enough for a dark canvas,
#: each pair at least 0.5 apart (tests/napari/test_instance_colours.py checks it)
PALETTE = np.array([
    (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.5, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 1.0), (0.0, 1.0, 1.0),
    (1.0, 0.5, 0.0), (0.5, 0.0, 1.0), (0.5, 1.0, 0.0), (1.0, 0.5, 0.5), (1.0, 1.0, 1.0), (0.0, 0.0, 1.0),
], dtype=np.float32)


def _pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, 2) pairs of different nonzero ids facing each other in ``a`` and ``b``."""
    keep = (a != b) & (a != 0) & (b != 0)
    return np.stack([a[keep], b[keep]], axis=1).astype(np.int64)


def _unique(found: list[np.ndarray]) -> np.ndarray:
    return np.unique(np.sort(np.concatenate([np.zeros((0, 2), np.int64), *found]), axis=1), axis=0)


def touching_pairs(ids: np.ndarray) -> np.ndarray:
    """(n, 2) unique pairs (smaller id first) of different nonzero ids that touch."""
    ids = np.asarray(ids)
    found = []
    for axis in range(ids.ndim):
        moved = np.moveaxis(ids, axis, 0)
        found.append(_pairs(moved[:-1], moved[1:]))
    if ids.ndim >= 2:
        found.append(_pairs(ids[..., :-1, :-1], ids[..., 1:, 1:]))
        found.append(_pairs(ids[..., :-1, 1:], ids[..., 1:, :-1]))
    return _unique(found)


def slice_touching_pairs(ids, cancel: Any = None) -> tuple[np.ndarray, int]:
    """`touching_pairs` of ``ids`` (..., Y, X) and its largest id, read slice by slice (a zarr
    array, a memmap): a slice and its next neighbour along one leading axis held at a time.
    ``cancel`` (the engine's) is checked before each slice (`InferenceCancelled`)."""
    from ..inference.events import stop_if_cancelled

    lead = tuple(int(n) for n in ids.shape[:-2])
    pairs, top = _unique([]), 0
    for index in np.ndindex(*lead):
        stop_if_cancelled(cancel, "colouring the instances")
        here = np.asarray(ids[index])
        top = max(top, int(here.max(initial=0)))
        found = [pairs, touching_pairs(here)]
        for axis, n in enumerate(lead):
            if index[axis] + 1 < n:
                after = (*index[:axis], index[axis] + 1, *index[axis + 1:])
                found.append(_pairs(here, np.asarray(ids[after])))
        pairs = _unique(found)  # each pair once: memory grows with the objects, not the slices
    return pairs, top


def instance_colours(ids, n_colours: int = len(PALETTE), *, by_slice: bool = False, cancel: Any = None
                     ) -> np.ndarray:
    """The palette index of every id ``0..ids.max()`` (index 0 of the result is unused);
    ``by_slice``: ``ids`` read slice by slice (`slice_touching_pairs`, which checks ``cancel``)."""
    if by_slice:
        pairs, top = slice_touching_pairs(ids, cancel)
    else:
        top, pairs = int(np.max(ids, initial=0)), touching_pairs(ids)
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
