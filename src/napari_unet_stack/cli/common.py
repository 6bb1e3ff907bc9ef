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
    "add_quiet",
    "channel_layout",
    "load_cli_model",
]

#: the model `predict` and `demo` use when none is named
DEFAULT_MODEL = "nuclei-unet"
#: help of every ``--device`` option
DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"


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


def channel_layout(image, option) -> tuple[int | None, str, bool]:
    """(channel axis, axes, whether the file's axes and pixel sizes hold) for an input
    opened with `io.read_image`; ``option`` is the ``--channel-axis`` text (None: the file's).
    """
    from .. import io

    ndim = image.ndim
    channel_axis = image.channel_axis
    if option is not None:
        channel_axis = parse_int("--channel-axis", option)
        if not -ndim <= channel_axis < ndim:
            raise ValueError(f"--channel-axis {channel_axis} is out of range for an image of shape {image.shape}")
        channel_axis %= ndim
    axes = image.axes
    if axes is not None and (channel_axis is None or axes[channel_axis] == "C"):
        return channel_axis, axes, True
    return channel_axis, io.default_axes(ndim, channel_axis), False
