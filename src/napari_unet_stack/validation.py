"""Small validators shared by the whole package: one per concern.

Messages name the argument (or the command-line flag), what was expected and what was
received; TypeError for the wrong kind of value, ValueError for a wrong value.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_int", "first_line", "parse_int"]


def check_int(name: str, value: Any, minimum: int | None = 1, *, allow_none: bool = False) -> int | None:
    """``value`` as an int, checked: an int (not a bool) of at least ``minimum``.

    >>> check_int("depth", 3), check_int("steps", None, allow_none=True)
    (3, None)
    >>> check_int("depth", 0)
    Traceback (most recent call last):
    ...
    ValueError: `depth` must be >= 1, got 0
    """
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        kind = "an int or None" if allow_none else "an int"
        raise TypeError(f"`{name}` must be {kind}, got {type(value).__name__} ({value!r})")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    return int(value)


def parse_int(flag: str, text: Any, minimum: int | None = None, words: tuple[str, ...] = ()) -> int | str:
    """A command-line or text option: an integer of at least ``minimum``, or one of ``words``
    (returned lower-case).

    >>> parse_int("--tile-size", "512", 1, ("auto", "none")), parse_int("--tile-size", "Auto", 1, ("auto",))
    (512, 'auto')
    """
    if isinstance(text, str) and text.lower() in words:
        return text.lower()
    try:
        value = int(text)
    except (TypeError, ValueError):
        choices = "".join(f" or '{w}'" for w in words)
        raise ValueError(f"{flag} must be an integer{choices}, got {text!r}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{flag} must be >= {minimum}, got {value}")
    return value


def first_line(err: BaseException, *, after: str | None = None, with_type: bool = False,
               limit: int | None = None) -> str:
    """The first non-empty line of ``err``'s message, for a one-line error that names a cause.

    Parameters
    ----------
    err : BaseException
        The exception to summarize; one with an empty message is named by its type.
    after : str, optional
        When the message contains this marker, read the text after it (libraries that put
        the actual cause after a header, e.g. ``"WeightsUnpickler error:"``).
    with_type : bool
        Prefix the exception's type name (``"KeyError: ..."``).
    limit : int, optional
        Cut the line to at most this many characters.

    Returns
    -------
    str
        The line, stripped; ``'no details'`` when nothing follows ``after``.

    Examples
    --------
    >>> first_line(ValueError("bad header\\nmore detail"))
    'bad header'
    >>> first_line(KeyError(), with_type=True)
    'KeyError: KeyError'
    >>> first_line(RuntimeError("load failed. WeightsUnpickler error: no GLOBAL x"),
    ...            after="WeightsUnpickler error:", with_type=True)
    'RuntimeError: no GLOBAL x'
    """
    text = str(err).strip() or type(err).__name__
    if after is not None:
        _, marker, cause = text.partition(after)
        if marker:
            text = cause
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else "no details"
    if limit is not None:
        line = line[:limit]
    return f"{type(err).__name__}: {line}" if with_type else line
