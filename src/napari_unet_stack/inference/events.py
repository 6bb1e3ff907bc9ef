"""What a run reports: `Progress` events, `InferenceCancelled`, and draining a run."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["InferenceCancelled", "Progress", "drain"]

T = TypeVar("T")


class InferenceCancelled(RuntimeError):
    """Raised when ``cancel.is_set()`` becomes true; nothing is returned, ``out`` is partial."""


@dataclass(frozen=True)
class Progress:
    """One step of a run: ``done`` of ``total`` tiles; ``slices`` lists the leading indices
    (tuples, ``()`` for a 2D image) whose result was completed in this step."""

    done: int
    total: int
    slices: tuple[tuple[int, ...], ...] = ()


def drain(gen: Generator[Progress, None, T]) -> T:
    """Run a generator of `Progress` events to its end; return its result."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
