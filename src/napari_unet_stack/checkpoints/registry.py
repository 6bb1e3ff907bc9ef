"""The models shipped with the package (``bundled_models/*.pt``), and finding a checkpoint by name."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # importlib.resources.abc is new in Python 3.11
    from importlib.resources.abc import Traversable

__all__ = ["bundled_dir", "list_models", "resolve_source"]


def bundled_dir() -> Traversable:
    """The package's ``bundled_models`` folder (it may be missing from a stripped install)."""
    return importlib.resources.files("napari_unet_stack") / "bundled_models"


def list_models() -> list[str]:
    """Names of the models shipped with the package (``bundled_models/*.pt``), sorted.

    Any of them can be passed to `load_model` by name.
    """
    folder = bundled_dir()
    if not folder.is_dir():
        return []
    return sorted(
        p.name[: -len(".pt")] for p in folder.iterdir() if p.name.endswith(".pt") and p.is_file()
    )


def resolve_source(source: Any) -> Path:
    """The file ``source`` names: an existing path, else a bundled model of that name.

    An existing path wins over a bundled model of the same name. TypeError for anything
    but a str or path; FileNotFoundError (listing the bundled models) when neither exists.
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"`source` must be a file path or a bundled model name, got {type(source).__name__}"
        )
    path = Path(source)
    if path.exists():
        return path
    if isinstance(source, str) and source in list_models():
        return Path(str(bundled_dir() / f"{source}.pt"))
    bundled = list_models()
    raise FileNotFoundError(
        f"no checkpoint file {str(source)!r}"
        + (f" and no bundled model of that name (bundled: {', '.join(bundled)})" if bundled else "")
    )
