"""Models described by where to load them from, loaded once per process.

A *source* (checkpoint path, bundled model name, or `ModelSource` for ``trust=True`` and
overrides) is cheap to pickle into dask task graphs; each process loads the model once
and keeps it (`cached_model`, keyed by the source and the file's mtime and size).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ModelSource", "cached_model", "is_source", "load_stats"]


@dataclass(frozen=True)
class ModelSource:
    """A model described by where to load it from (cheap to pickle into task graphs).

    ``source`` is a checkpoint path or a bundled model name, ``trust`` and ``overrides``
    are passed to `napari_unet_stack.checkpoints.load_model`.
    """

    source: str
    trust: bool = False
    overrides: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, model: Any) -> ModelSource:
        if isinstance(model, ModelSource):
            return model
        return cls(os.fspath(model))

    def load(self):
        return cached_model(self)


_MODELS: dict[tuple, Any] = {}
_LOCK = threading.Lock()
_STATS = {"loads": 0}


def is_source(model: Any) -> bool:
    """Whether ``model`` is a description to load (path, name, `ModelSource`), not a model."""
    return isinstance(model, (str, os.PathLike, ModelSource))


def _cache_key(src: ModelSource) -> tuple:
    path = Path(src.source)
    if path.is_file():
        stat = path.stat()
        return (str(path.resolve()), stat.st_mtime_ns, stat.st_size, src.trust, src.overrides)
    return (src.source, None, None, src.trust, src.overrides)


def cached_model(source: Any):
    """The model of ``source``, loaded once per process (reloaded if the file changes)."""
    src = ModelSource.of(source)
    key = _cache_key(src)
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            from ..checkpoints import load_model

            model = load_model(src.source, trust=src.trust, **dict(src.overrides))
            for old in [k for k in _MODELS if k[0] == key[0]]:
                del _MODELS[old]
            _MODELS[key] = model
            _STATS["loads"] += 1
        return model


def load_stats() -> dict[str, int]:
    """How many models this process has loaded and holds (for tests and diagnostics)."""
    with _LOCK:
        return {"loads": _STATS["loads"], "cached": len(_MODELS)}
