"""Argument checks shared by the networks' constructors."""

from __future__ import annotations

from typing import Any

__all__ = ["check_int"]


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` if it is an int (not a bool) of at least ``minimum``.

    Raises TypeError for anything else than an int and ValueError below ``minimum``;
    both messages name the argument ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    return value
