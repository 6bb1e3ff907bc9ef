"""Axes and units: letters from ``TCZYX``, the OME-Zarr unit spelling, the checks a write does.

Pixel sizes are ``{axis letter: size}`` and units ``{axis letter: unit}`` with units in
the OME-Zarr (UDUNITS) spelling: ``"micrometer"``, ``"nanometer"``, ``"second"``, ...
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["TIME_NAMES", "canonical_unit", "check_axes", "clean_metadata", "default_axes", "normalize_axes",
           "time_axes_of"]

_UNIT_ALIASES = {
    "micrometer": ("micrometer", "micrometre", "micron", "microns", "um", "µm", "μm", "\\u00B5m"),
    "nanometer": ("nanometer", "nanometre", "nm"),
    "millimeter": ("millimeter", "millimetre", "mm"),
    "centimeter": ("centimeter", "centimetre", "cm"),
    "meter": ("meter", "metre", "m"),
    "angstrom": ("angstrom", "å", "Å"),
    "second": ("second", "seconds", "s", "sec"),
    "millisecond": ("millisecond", "milliseconds", "ms"),
    "microsecond": ("microsecond", "microseconds", "us", "µs"),
    "minute": ("minute", "minutes", "min"),
    "hour": ("hour", "hours", "h"),
}
_UNITS = {alias.lower(): name for name, aliases in _UNIT_ALIASES.items() for alias in aliases}


def canonical_unit(unit: Any) -> str | None:
    """A unit in the OME-Zarr spelling (``'um'`` -> ``'micrometer'``); unknown ones kept as is.

    >>> canonical_unit("µm"), canonical_unit("micron"), canonical_unit("pixel")
    ('micrometer', 'micrometer', 'pixel')
    """
    if unit is None:
        return None
    text = str(unit).strip()
    if not text:
        return None
    return _UNITS.get(text.lower(), text)


def default_axes(ndim: int, channel_axis: int | None = None) -> str:
    """Axes for an array that carries none: ``YX`` last, then ``Z``, ``T``; ``C`` where given.

    >>> default_axes(3), default_axes(4, channel_axis=-1), default_axes(3, channel_axis=0)
    ('ZYX', 'ZYXC', 'CYX')
    """
    n_spatial = ndim - (channel_axis is not None)
    if n_spatial < 2:
        raise ValueError(f"an image needs at least 2 spatial axes, got {ndim} dimension(s)")
    letters = "TZYX"[-n_spatial:] if n_spatial <= 4 else "Q" * (n_spatial - 4) + "TZYX"
    if channel_axis is None:
        return letters
    ax = channel_axis % ndim
    return letters[:ax] + "C" + letters[ax:]


#: Axis names (any case) that mean time: the files' letter, and the word napari readers use.
TIME_NAMES = ("t", "time")


def time_axes_of(names: Sequence[str]) -> tuple[int, ...]:
    """The time axes among the leading axes (all but the last two, Y and X) of ``names``
    (axis letters, or napari's ``axis_labels``): those named in `TIME_NAMES`, any case.

    The axes `segment`'s instance decoding never links across (``time_axis``): the CLI
    reads them from a file's axes, the Predict widget from its image layer's axis labels.

    >>> time_axes_of("TZYX"), time_axes_of(("Time", "y", "x")), time_axes_of(("-3", "-2", "-1"))
    ((0,), (0,), ())
    """
    return tuple(i for i, name in enumerate(list(names)[:-2]) if str(name).strip().lower() in TIME_NAMES)


def normalize_axes(axes: str) -> str:
    """Axis letters as files name them: each letter one of ``TCZYX``.

    tifffile's ``S`` (samples) becomes ``C``; any other letter outside ``TCZYX`` (``I``,
    ``Q``, ... : unknown) becomes the first of ``Z``, ``T``, ``C`` not yet used. Lower case
    is accepted.

    Parameters
    ----------
    axes : str
        One letter per dimension.

    Returns
    -------
    str
        As many letters as ``axes``, upper case. A letter stays unchanged when all of
        ``Z``, ``T`` and ``C`` are taken.

    Examples
    --------
    >>> normalize_axes("YXS"), normalize_axes("iyx"), normalize_axes("QQZYX")
    ('YXC', 'ZYX', 'TCZYX')
    """
    out = ["C" if letter == "S" else letter for letter in axes.upper()]
    for i, letter in enumerate(out):
        if letter not in "TCZYX":
            for candidate in "ZTC":
                if candidate not in out:
                    out[i] = candidate
                    break
    return "".join(out)


def check_axes(axes: Any, shape: Sequence[int]) -> str:
    """Axes a user gives for an array of ``shape``: one letter from ``TZCYX`` per dimension.

    Parameters
    ----------
    axes : str
        Any case (``"zyx"`` is ``"ZYX"``).
    shape : sequence of int

    Returns
    -------
    str
        Upper case.

    Raises
    ------
    TypeError
        ``axes`` is not a string.
    ValueError
        A letter outside ``TZCYX``, a repeated letter, or not one letter per dimension
        (the message gives the shape).

    Examples
    --------
    >>> check_axes("zyx", (3, 64, 64))
    'ZYX'
    """
    if not isinstance(axes, str):
        raise TypeError(f"`axes` must be a string of letters from TZCYX, got {type(axes).__name__}")
    letters = axes.strip().upper()
    shape = tuple(int(n) for n in shape)
    fit = f"an image of shape {shape}"
    if len(letters) != len(shape):
        raise ValueError(f"`axes` {axes!r} has {len(letters)} letters for {len(shape)} dimensions "
                         f"of {fit}: give one letter from TZCYX per dimension")
    bad = sorted({a for a in letters if a not in "TZCYX"})
    if bad:
        raise ValueError(f"`axes` {axes!r} for {fit}: {', '.join(bad)} not among the letters from TZCYX")
    if len(set(letters)) != len(letters):
        raise ValueError(f"`axes` {axes!r} for {fit} repeats a letter")
    return letters


def clean_metadata(shape: Sequence[int], axes: str | None, scale: Mapping[str, float] | None,
                   units: Mapping[str, str] | None) -> tuple[str, dict, dict]:
    """The axes, pixel sizes and units a write records, checked against the array's shape.

    Parameters
    ----------
    shape : sequence of int
        Of the array to write.
    axes : str or None
        Letters (normalized with `normalize_axes`); None for `default_axes`.
    scale, units : mapping or None
        Pixel size and unit per axis letter (any case); units in any spelling
        `canonical_unit` knows, empty ones dropped, those of other axes ignored.

    Returns
    -------
    axes : str
    scale : dict
        ``{letter: float}``.
    units : dict
        ``{letter: unit}``, OME-Zarr spelling, only for letters in ``axes``.

    Raises
    ------
    ValueError
        The axes do not fit the shape (or repeat a letter), ``scale`` names an axis not in
        ``axes``, or a pixel size is not positive and finite.
    """
    ndim = len(shape)
    if axes is None:
        axes = default_axes(ndim)
    axes = normalize_axes(str(axes))
    if len(axes) != ndim or len(set(axes)) != ndim:
        raise ValueError(f"`axes` {axes!r} does not fit an array of shape {tuple(shape)}")
    sizes = {str(k).upper(): float(v) for k, v in (scale or {}).items()}
    unknown = sorted(set(sizes) - set(axes))
    if unknown:
        raise ValueError(f"`scale` names axes {unknown} that are not in axes {axes!r}")
    if any(not math.isfinite(v) or v <= 0 for v in sizes.values()):
        raise ValueError(f"pixel sizes in `scale` must be positive and finite, got {sizes}")
    named = {str(k).upper(): canonical_unit(v) for k, v in (units or {}).items() if v}
    named = {k: v for k, v in named.items() if k in axes}
    return axes, sizes, named
