"""What a run reports: `Progress` events, `InferenceCancelled`, and draining a run; the
checks of what the caller hands in to hear of it (``progress``, ``cancel``)."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["InferenceCancelled", "NonFiniteOutputError", "Progress", "check_run_options", "drain", "stop_if_cancelled"]

T = TypeVar("T")


class InferenceCancelled(RuntimeError):
    """Raised when ``cancel.is_set()`` becomes true (by the engine, and by the instance
    decoding: `napari_unet_stack.postprocess`); nothing is returned, ``out`` is partial."""


class NonFiniteOutputError(ValueError, FloatingPointError):
    """The model returned NaN or infinite logits (a ValueError, so the CLI reports it in one
    line, and a FloatingPointError, which is what it is)."""


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


def check_run_options(progress: Any, cancel: Any) -> None:
    """``progress`` callable (or None), ``cancel`` an object with ``is_set()`` (or None); a
    TypeError naming the option otherwise, before any work."""
    if progress is not None and not callable(progress):
        raise TypeError(f"`progress` must be a callable(done, total) or None, got {type(progress).__name__} "
                        f"({progress!r})")
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise TypeError(f"`cancel` must be an object with is_set() (e.g. threading.Event) or None, "
                        f"got {type(cancel).__name__} ({cancel!r})")


def stop_if_cancelled(cancel: Any, what: str = "inference") -> None:
    """`InferenceCancelled` ("``what`` was cancelled") when ``cancel`` (an object with
    ``is_set()``, see `check_run_options`; or None) is set."""
    if cancel is not None and cancel.is_set():
        raise InferenceCancelled(f"{what} was cancelled")
