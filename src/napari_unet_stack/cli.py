"""`unet-stack` command line: a thin layer over the public API.

Each subcommand is an ``_add_<name>(subparsers)`` function that registers its parser and
sets ``func``; errors derived from ``UserFacingError`` types print as one line and exit 2
(``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import sys


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="print versions and the devices torch sees")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args) -> int:
    import platform

    import numpy
    import torch

    from . import __version__

    print(f"napari-unet-stack {__version__}")
    print(f"python {platform.python_version()}, numpy {numpy.__version__}, torch {torch.__version__}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            print(f"device cuda:{i}: {torch.cuda.get_device_name(i)}")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        print("device mps: available")
    print(f"device cpu: {torch.get_num_threads()} threads")
    return 0


_SUBCOMMANDS = [_add_info]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unet-stack", description="UNet / UNet++ segmentation of image stacks"
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


# exceptions that are the user's to fix: one line on stderr, exit code 2
_USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, FileNotFoundError, OSError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("unet-stack: interrupted", file=sys.stderr)
        return 130
    except _USER_ERRORS as err:
        if args.debug:
            raise
        print(f"unet-stack {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
