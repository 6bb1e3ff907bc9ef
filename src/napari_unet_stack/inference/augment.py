"""Test-time augmentation: a batch's probabilities averaged over flipped (and transposed)
copies of its windows.

``tta="flips"`` runs the network on the window, its left-right and up-down mirror images
and both (4 passes); ``"dihedral"`` adds the four transposed copies (all 8 symmetries of
the square). Each output is mapped back to the window's own orientation and the
*probabilities* (after the activation) are averaged, so the labels rule sees ordinary
probabilities. It works window by window inside the engine's batch loop, so tiling,
stitching, ``out=``, dask, cancel and the memory bound are those of a plain run (a batch
costs 4 or 8 forwards and one more output buffer).

Measured on the bundled ``nuclei-unet`` (issue 14; three generated stacks used for no other
choice, seeds 3-5): the mean F1 at IoU 0.5 of Z-linked nuclei went 0.765 -> 0.807 with
"flips" and 0.822 with "dihedral", foreground Dice +0.001 to +0.002. It is off by default:
on a CPU it costs 4 or 8 times the time. "dihedral" swaps Y and X: keep "flips" for images
whose pixels are not square.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["TTA_CHOICES", "averaged_probabilities", "check_tta", "tta_views"]

#: What ``tta`` may be (True is "dihedral", False and None are "none").
TTA_CHOICES = ("none", "flips", "dihedral")

_Map = Callable[[torch.Tensor], torch.Tensor]


def check_tta(tta: Any) -> str:
    """``tta`` as one of `TTA_CHOICES`, or a ValueError naming the choices."""
    if tta is None or tta is False:
        return "none"
    if tta is True:
        return "dihedral"
    if isinstance(tta, str) and tta in TTA_CHOICES:
        return tta
    raise ValueError(f"`tta` must be True, False or one of {TTA_CHOICES}, got {tta!r}")


def _flip(dims: tuple[int, ...]) -> _Map:
    return (lambda t: t) if not dims else (lambda t: torch.flip(t, dims))


def _then_swap(first: _Map) -> _Map:
    return lambda t: first(t).transpose(-2, -1)


def _swap_then(second: _Map) -> _Map:
    return lambda t: second(t.transpose(-2, -1))


def tta_views(tta: str) -> list[tuple[_Map, _Map]]:
    """(to the view, back from the view) pairs on N x C x H x W tensors for a checked ``tta``."""
    flips = [_flip(d) for d in ((), (-1,), (-2,), (-2, -1))]
    if tta == "none":
        return [(flips[0], flips[0])]
    views = [(f, f) for f in flips]
    if tta == "dihedral":
        # view: flip, then swap Y and X; back: swap, then the same flip
        views += [(_then_swap(f), _swap_then(f)) for f in flips]
    return views


def averaged_probabilities(tta: str, run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The mean over ``tta``'s views of ``run``'s probabilities (``run``: a batch -> its
    probabilities), each mapped back to ``x``'s orientation."""
    views = tta_views(tta)
    if len(views) == 1:
        return run(x)
    total = None
    for to_view, back in views:
        probs = back(run(to_view(x).contiguous()))
        total = probs.clone() if total is None else total.add_(probs)
    return total.div_(len(views))
