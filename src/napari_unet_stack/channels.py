"""THE channel choice rule: which of an image's channels a model sees.

A multichannel image (RGB, several stains) fits a model with as many input channels as
the image has, or, with ``channel=``, a model with ONE input channel:

- ``channel=None``: every channel, in order; the image's channel count must equal the
  model's (as it always has).
- ``channel=<int>``: that channel of the ``channel_axis`` (negative counts from the end).
- ``channel="mean"``: the mean of all channels.

``channel=`` always applies along ``channel_axis``, which must then be given. The engine,
the dask tasks, training, the CLI (``--channel``) and both widgets call `check_channel`
once per image and `pick_channels` on each (C, H, W) block. A command-line or text value
is parsed with ``validation.parse_int(flag, text, words=CHANNEL_WORDS)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CHANNEL_WORDS", "check_channel", "pick_channels"]

#: The named channel choices (besides None and an index).
CHANNEL_WORDS = ("mean",)


def check_channel(channel: Any, n_image_channels: int | None = None, n_model_channels: int | None = None, *,
                  channel_axis: Any = -1, where: str = "`image`") -> int | str | None:
    """``channel`` checked against the image and the model; the choice `pick_channels` takes.

    Parameters
    ----------
    channel : None, int or 'mean'
        The channel choice (see the module docstring).
    n_image_channels : int, optional
        Entries of the image's channel axis (1 when it has none); unknown when None.
    n_model_channels : int, optional
        Input channels of the model; unknown (any) when None.
    channel_axis : int or None
        The image's channel axis, only to tell whether it has one: ``channel=`` needs one.
    where : str
        How messages name the image (e.g. ``"image 'rgb'"``).

    Returns
    -------
    None, int or 'mean'
        An int is a non-negative index when ``n_image_channels`` is known.

    Raises
    ------
    TypeError
        ``channel`` is not None, an int or a string.
    ValueError
        An unknown word, an index out of range, ``channel=`` without ``channel_axis`` or for a
        model with several input channels, or (``channel=None``) channel counts that differ.

    Examples
    --------
    >>> check_channel(-1, 3, 1), check_channel("Mean", 3, 1), check_channel(None, 3, 3)
    (2, 'mean', None)
    >>> check_channel(None, 3, 1)
    Traceback (most recent call last):
    ...
    ValueError: the model expects 1 input channel(s) but `image` has 3: pick one with channel=<index> or channel='mean'
    """
    if channel is None:
        if None not in (n_image_channels, n_model_channels) and n_image_channels != n_model_channels:
            hint = ": pick one with channel=<index> or channel='mean'" if n_model_channels == 1 else ""
            raise ValueError(f"the model expects {n_model_channels} input channel(s) but {where} "
                             f"has {n_image_channels}{hint}")
        return None
    choice = _channel_value(channel)
    if channel_axis is None:
        raise ValueError(f"`channel={channel!r}` picks along the channel axis: pass channel_axis= "
                         f"(e.g. channel_axis=-1 for RGB) for {where}")
    if n_model_channels is not None and n_model_channels != 1:
        raise ValueError(f"`channel={channel!r}` makes one input channel, but the model expects "
                         f"{n_model_channels}: pass channel=None")
    if isinstance(choice, int) and n_image_channels is not None:
        if not -n_image_channels <= choice < n_image_channels:
            raise ValueError(f"`channel={choice}` is out of range: {where} has {n_image_channels} channel(s) "
                             f"(valid: {-n_image_channels} to {n_image_channels - 1}, or 'mean')")
        choice %= n_image_channels
    return choice


def _channel_value(channel: Any) -> int | str:
    if isinstance(channel, str):
        word = channel.strip().lower()
        if word not in CHANNEL_WORDS:
            raise ValueError(f"`channel` must be None, a channel index or 'mean', got {channel!r}")
        return word
    if isinstance(channel, (bool, np.bool_)) or not isinstance(channel, (int, np.integer)):
        raise TypeError(f"`channel` must be None, an int (a channel index) or 'mean', "
                        f"got {type(channel).__name__} ({channel!r})")
    return int(channel)


def pick_channels(block: np.ndarray, channel: int | str | None) -> np.ndarray:
    """The channels a model sees of a channels-first block (C, ...), as a float array.

    Parameters
    ----------
    block : (C, ...) ndarray
        One slice (or several), channels first.
    channel : None, int or 'mean'
        A choice returned by `check_channel`.

    Returns
    -------
    ndarray
        ``block`` itself (as float) for None, else (1, ...): the indexed channel, or the
        mean of all channels (computed in float64; NaN where any channel is NaN). The dtype is
        ``np.result_type(block.dtype, np.float32)``: float32 for float32 and small integer
        blocks, float64 for float64 and 32/64-bit integer blocks.

    Examples
    --------
    >>> rgb = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    >>> pick_channels(rgb, 1).shape, float(pick_channels(rgb, "mean")[0, 0, 0]), pick_channels(rgb, None).dtype
    ((1, 2, 2), 4.0, dtype('float32'))
    """
    block = np.asarray(block)
    dtype = np.result_type(block.dtype, np.float32)
    if channel is None:
        return block.astype(dtype, copy=False)
    if isinstance(channel, str):
        return np.mean(block, axis=0, keepdims=True, dtype=np.float64).astype(dtype, copy=False)
    return block[channel : channel + 1].astype(dtype, copy=False)
