"""Short error messages: the first line of an exception's text, for one-line errors."""

from __future__ import annotations

__all__ = ["first_line"]


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
