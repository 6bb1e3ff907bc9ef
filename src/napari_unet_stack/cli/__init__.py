"""`unet-stack` command line: a thin layer over the public API.

One module per subcommand (`info`, `models`, `predict`, `demo`, `train`, `export`), each with
``add_parser(subparsers)`` registering its parser and ``run(args)``; `common` holds what
they share (``-q/--quiet``, the progress bar, model loading). Errors of the types in
``USER_ERRORS`` print as one line and exit 2 (``--debug`` shows the traceback); Ctrl-C
exits 130 and a termination signal N (SIGTERM, SIGHUP, ...; see `signals`) 128 + N, both
after the same cleanup (no partial or temporary output).
"""

from __future__ import annotations

import argparse
import sys

from . import demo, export, info, models, predict, train
from .common import DEFAULT_MODEL, keep_freed_memory
from .signals import Terminated, terminate_on_signals

__all__ = ["DEFAULT_MODEL", "USER_ERRORS", "build_parser", "main"]

#: the subcommands, in the order ``unet-stack --help`` lists them
SUBCOMMANDS = (info, predict, models, demo, train, export)

#: exceptions that are the user's to fix: one line on stderr, exit code 2
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, FileNotFoundError, OSError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unet-stack", description="UNet / UNet++ segmentation of image stacks"
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in SUBCOMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``unet-stack`` with ``argv`` (default ``sys.argv[1:]``); the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:  # the `unet-stack` process itself (not a caller's main([...])): its malloc policy
        keep_freed_memory()
    try:
        with terminate_on_signals():
            return int(args.func(args) or 0)
    except Terminated as err:  # SIGTERM, SIGHUP, ...: cleaned up like Ctrl-C
        print(f"unet-stack: {err}", file=sys.stderr)
        return 128 + err.signum
    except KeyboardInterrupt:
        print("unet-stack: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(f"unet-stack {args.command}: error: {err}", file=sys.stderr)
        return 2
