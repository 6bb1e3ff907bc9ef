"""What the subcommands share: the default model, the ``-q/--quiet`` flag, the progress bar,
loading a model named on the command line and reading an input's channel layout.
"""

from __future__ import annotations

import argparse
import sys

from ..validation import parse_int

__all__ = [
    "DEFAULT_MODEL",
    "DEVICE_HELP",
    "TileProgress",
    "add_image_options",
    "add_quiet",
    "channel_layout",
    "check_model_channels",
    "keep_freed_memory",
    "load_cli_model",
    "parse_channel",
    "stack_axes",
]

#: the model `predict` and `demo` use when none is named
DEFAULT_MODEL = "nuclei-unet"
#: help of every ``--device`` option
DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"

#: glibc's malloc for a `unet-stack` process: blocks below 32 MiB (its largest allowed
#: mmap threshold) come from the heap, and up to 256 MiB freed at its top stay there
MMAP_THRESHOLD, TRIM_THRESHOLD = 32 * 2**20, 256 * 2**20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
#: environment variables that tune malloc themselves (the last two where they name malloc)
_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES", "LD_PRELOAD")


def keep_freed_memory() -> bool:
    """Let this process (a `unet-stack` command) reuse the memory it frees: True if done.

    By default glibc gives freed blocks of more than ~128 KiB back to the system at once, so
    every forward pass page-faults its activations in afresh (about 2,600 faults per
    288 x 288 forward of the bundled UNet; benchmark (f) times the demo with this). A
    command is a short-lived process that owns its memory policy; the library never calls
    this (napari's process keeps glibc's defaults). Left alone when the environment already
    tunes malloc (``MALLOC_*_``, ``GLIBC_TUNABLES``, ``LD_PRELOAD`` of another allocator) or
    the C library is not glibc.
    """
    import ctypes
    import os
    import platform

    values = [os.environ.get(name, "") for name in _MALLOC_ENV]
    if any(values[:3]) or any("malloc" in v.lower() for v in values[3:]) or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # pragma: no cover - glibc always has mallopt
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


class _DeprecatedQuiet(argparse.Action):
    """A hidden old spelling of ``--quiet`` (e.g. train's ``--no-progress``): sets ``quiet``
    and says on stderr which flag to use instead."""

    def __init__(self, option_strings, dest, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"{parser.prog}: {option_string} is deprecated; use -q/--quiet", file=sys.stderr)
        namespace.quiet = True


def add_quiet(parser: argparse.ArgumentParser, *deprecated: str) -> None:
    """Add ``-q/--quiet`` (no progress bar) and, hidden, the ``deprecated`` spellings of it."""
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    if deprecated:
        parser.add_argument(*deprecated, action=_DeprecatedQuiet)


class TileProgress:
    """The engine's ``progress(done, total)`` callback as a tqdm bar on stderr.

    The bar shows only on a terminal (tqdm's ``disable=None``) and never with ``--quiet``.
    """

    def __init__(self, desc: str, unit: str = "tile", quiet: bool = False) -> None:
        self.desc, self.unit, self.quiet = desc, unit, quiet
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, leave=False,
                            disable=True if self.quiet else None)
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def load_cli_model(source: str, trust: bool):
    """`load_model` of a bundled name or checkpoint file; an unknown one names the bundled models."""
    from ..checkpoints import list_models, load_model

    try:
        return load_model(source, trust=trust)
    except FileNotFoundError:
        bundled = ", ".join(list_models()) or "none installed"
        raise FileNotFoundError(
            f"unknown model {source!r}: not a checkpoint file nor a bundled model "
            f"(bundled: {bundled}; see `unet-stack models`)"
        ) from None


def add_image_options(parser: argparse.ArgumentParser, what: str = "the input") -> None:
    """Add ``--axes``, ``--channel-axis`` and ``--channel``: how to read ``what``'s dimensions."""
    parser.add_argument("--axes", metavar="AXES",
                        help=f"axes of {what}, one letter of TZCYX per dimension (e.g. ZYX, YXC), in place "
                             f"of what the file says (a 3-plane stack saved as RGB: --axes ZYX)")
    parser.add_argument("--channel-axis", default=None, metavar="AXIS|none",
                        help=f"axis of {what} holding the channels, or 'none' (default: the file's C axis, "
                             f"if it names one)")
    parser.add_argument("--channel", default=None, metavar="INDEX|mean",
                        help="with a one-channel model: the channel of a multichannel image to use (an index "
                             "along the channel axis), or 'mean' of all channels")


def parse_channel(text):
    """``--channel`` text as the `channels.check_channel` choice: None, an int or ``'mean'``."""
    from ..channels import CHANNEL_WORDS

    return None if text is None else parse_int("--channel", text, words=CHANNEL_WORDS)


def _channel_option(image, option, axes_option) -> int | None:
    """The channel axis ``--channel-axis`` names (None for ``none``), checked against the image
    and against ``--axes``."""
    value = parse_int("--channel-axis", option, words=("none",))
    if value == "none":
        channel_axis = None
    else:
        if not -image.ndim <= value < image.ndim:
            raise ValueError(f"--channel-axis {value} is out of range for an image of shape {image.shape}")
        channel_axis = value % image.ndim
    axes = image.axes
    named = axes.index("C") if axes is not None and "C" in axes else None
    if axes_option is not None and axes is not None and channel_axis != named:
        where = "it has no C" if named is None else f"C is axis {named}"
        raise ValueError(f"--channel-axis {option} contradicts --axes {axes} ({where}); give one of them")
    return channel_axis


def channel_layout(image, option, axes_option=None) -> tuple[int | None, str, bool]:
    """(channel axis, axes, whether the file's axes and pixel sizes hold) for an input
    opened with `io.read_image`; ``option`` is the ``--channel-axis`` text (None: the file's;
    ``'none'``: no channel axis) and ``axes_option`` the ``--axes`` text the image was read with.
    """
    from .. import io

    channel_axis = image.channel_axis
    if option is not None:
        channel_axis = _channel_option(image, option, axes_option)
    axes = image.axes
    if axes is not None and (axes[channel_axis] == "C" if channel_axis is not None else "C" not in axes):
        return channel_axis, axes, True
    return channel_axis, io.default_axes(image.ndim, channel_axis), False


def stack_axes(axes: str, channel_axis: int | None) -> dict:
    """What the file's ``axes`` (its letters, C included) say about its stack axes, in one
    place: ``z_axis``, the image axis a z-context model reads each slice's neighbours along
    (the Z letter's; None without one: a T axis, or a 2D image, is never read across), and
    ``time_axes``, the T axes among those of the labels (no C), never linked by instance
    decoding (`segment`'s ``time_axis``)."""
    from ..io.axes import time_axes_of

    label_axes = "".join(a for i, a in enumerate(axes) if i != channel_axis)
    return {"z_axis": axes.index("Z") if "Z" in axes else None, "time_axes": time_axes_of(label_axes)}


def check_model_channels(src, image, channel_axis: int | None, axes: str, model, channel):
    """The `channels.check_channel` choice for one input, or a ValueError naming the file and
    the options that would make its channels fit the model (a z-context model's image
    channels: its input channels over its 2k + 1 slices, `zcontext.image_channels`)."""
    from .. import io
    from ..channels import check_channel
    from ..zcontext import image_channels, per_slice

    wanted = image_channels(model)
    n_channels = 1 if channel_axis is None else image.shape[channel_axis]
    if channel is None and n_channels != wanted:
        if channel_axis is None:
            hint = "name the channel axis with --channel-axis"
        else:
            hint = (f"if axis {channel_axis} is not channels, give the axes with --axes (e.g. --axes "
                    f"{io.default_axes(image.ndim)}) or --channel-axis none")
            if wanted == 1:
                hint = "pick one with --channel INDEX or --channel mean; " + hint
        raise ValueError(
            f"{str(src)!r}: the model expects {wanted} channel(s){per_slice(model)} but the image "
            f"(shape {image.shape}, axes {axes}) has {n_channels} ({hint})"
        )
    return check_channel(channel, n_channels, wanted, channel_axis=channel_axis,
                         where=repr(str(src)))
