"""Where ``unet-stack predict`` writes: one (input, labels, probabilities) job per input,
every output named and checked before any work starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import io

__all__ = ["DERIVED_EXT", "InputSet", "plan_outputs"]

#: output extension for names derived from inputs, by input format
DERIVED_EXT = {"tiff": ".tif", "ome-tiff": ".ome.tif", "zarr": ".zarr", "ome-zarr": ".ome.zarr", "npy": ".npy",
               # pictures are read, not written: their labels are TIFFs
               "png": ".tif", "jpeg": ".tif", "bmp": ".tif"}


def _is_folder(text: str) -> bool:
    """Whether an output argument names a folder: a trailing slash, or an existing folder that
    is neither a zarr store nor an image."""
    path = Path(text)
    return text.endswith(("/", os.sep)) or (
        path.is_dir() and not io.is_zarr_dir(path) and io.kind_of(path) is None)


def _check_folders(inputs, args, to_folder: bool, probs_to_folder: bool) -> None:
    for text, folder in ((args.output, to_folder), (args.probabilities, probs_to_folder)):
        path = Path(text) if folder else None
        if path is not None and (path.is_file() or io.is_zarr_dir(path)
                                 or (io.kind_of(path) is not None and not path.is_dir())):
            raise ValueError(
                f"{len(inputs)} inputs need {text!r} to be a folder (one output per input)"
            )


def _identity(path) -> tuple[int, int] | None:
    """(device, inode) of what ``path`` names, following links; None if nothing is there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class InputSet:
    """The inputs of a command, to tell whether an output path names one of them however it
    is spelled: resolved (`os.path.realpath`: symlinked folders, links, ``..``) and, where
    it exists, by identity (a hard link to an input is that input)."""

    def __init__(self, inputs) -> None:
        self.paths = {os.path.realpath(src) for src in inputs}
        self.ids = {_identity(src) for src in inputs} - {None}

    def __contains__(self, path) -> bool:
        return os.path.realpath(path) in self.paths or _identity(path) in self.ids


def _check_collisions(inputs, jobs, overwrite: bool) -> None:
    """No two jobs write the same path (compared resolved), none writes an input (see
    `InputSet`), none replaces a file unasked."""
    seen: dict[str, str] = {}
    sources = InputSet(inputs)
    for src, *targets in jobs:
        for path in targets:
            if path is None:
                continue
            key = os.path.realpath(path)
            if key in seen:
                raise ValueError(f"{str(src)!r} and {seen[key]!r} would both write {str(path)!r}")
            if path in sources:
                raise ValueError(f"output {str(path)!r} is an input; choose another OUTPUT")
            seen[key] = str(src)
            if os.path.lexists(path) and not overwrite:
                raise FileExistsError(f"{str(path)!r} exists; pass --overwrite to replace it")


def plan_outputs(inputs, args) -> list:
    """(input, labels path, probabilities path or None) per input, checked before any work.

    ``args`` holds ``output``, ``probabilities``, ``format`` and ``overwrite`` (the parsed
    ``predict`` options). Folders named for several outputs are created; a single output's
    folder must exist.
    """
    for flag, text in (("-o/--output", args.output), ("--probabilities", args.probabilities)):
        if text is not None and not text.strip():
            raise ValueError(f"{flag} is empty")  # an unset shell variable: not "here"
    to_folder = len(inputs) > 1 or _is_folder(args.output)
    probs_to_folder = bool(args.probabilities) and (len(inputs) > 1 or _is_folder(args.probabilities))
    _check_folders(inputs, args, to_folder, probs_to_folder)
    out = Path(args.output)
    jobs = []
    for src in inputs:
        ext = f".{args.format}" if args.format else DERIVED_EXT.get(io.kind_of(src) or "zarr", ".zarr")
        stem = io.stem_of(src)
        dst = out / f"{stem}_labels{ext}" if to_folder else out
        probs = None
        if args.probabilities:
            probs = Path(args.probabilities)
            if probs_to_folder:
                probs = probs / f"{stem}_probabilities{ext}"
        for path in (dst, probs):
            if path is not None:
                io.output_format(path)
        jobs.append((src, dst, probs))
    _check_collisions(inputs, jobs, args.overwrite)
    for _src, dst, probs in jobs:
        for path, folder in ((dst, to_folder), (probs, probs_to_folder)):
            if path is None:
                continue
            if folder:
                path.parent.mkdir(parents=True, exist_ok=True)
            elif not path.parent.is_dir():
                raise FileNotFoundError(f"output folder {str(path.parent)!r} does not exist")
    return jobs
