"""The Predict widget's model choice: bundled models, models trained in this session
(`USER_MODELS`) and checkpoint files, loaded once each (no Qt here).

A choice is a ``(kind, name)`` pair: ``("bundled", name)``, ``("user", name)`` or `FILE`
(the checkpoint field then names the file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._registry import USER_MODELS

__all__ = ["CHECKPOINT_FILTER", "FILE", "LoadedModels", "choice_of", "model_choices"]

FILE = ("file", "")
#: the checkpoint field's file filter: our checkpoints and foreign ones, TorchScript,
#: bioimage.io packages (a zip, or the rdf.yaml of an unpacked one)
CHECKPOINT_FILTER = "*.pt *.pth *.ckpt *.pkl *.zip *.yaml"


def model_choices() -> list[tuple[str, tuple[str, str]]]:
    """(text, choice) for every model on offer, the checkpoint file last."""
    from ..checkpoints import list_models

    choices = [(name, ("bundled", name)) for name in list_models()]
    choices += [(f"{name} (trained)", ("user", name)) for name in USER_MODELS.names()]
    return [*choices, ("checkpoint file...", FILE)]


def choice_of(source: Any) -> tuple[tuple[str, str], Path | None]:
    """The choice (and checkpoint file) for a bundled name, a checkpoint path or a model
    object (which is added to `USER_MODELS`)."""
    from ..checkpoints import list_models

    if isinstance(source, str) and source in list_models():
        return ("bundled", source), None
    if isinstance(source, (str, Path)):
        if not Path(source).is_file():
            raise FileNotFoundError(f"{str(source)!r} is neither a bundled model ({list_models()}) nor a file")
        return FILE, Path(source)
    return ("user", USER_MODELS.add(type(source).__name__, source)), None


class LoadedModels:
    """Models loaded for the choices made, a few kept (checkpoint files again when they change)."""

    keep = 4

    def __init__(self) -> None:
        self._models: dict[Any, Any] = {}  # key -> loaded model

    def get(self, choice: tuple[str, str] | None, checkpoint: Any, *, quiet: bool = False):
        """The model of ``choice`` (None when there is none; for a missing checkpoint file
        too with ``quiet``, else a ValueError). Loading errors propagate."""
        from ..checkpoints import load_model

        kind, name = choice or FILE
        if kind == "user":
            return USER_MODELS.get(name).model if name in USER_MODELS else None
        if kind == "bundled":
            key: Any = ("bundled", name)
            source: Any = name
        else:
            path = Path(checkpoint)
            if not path.is_file():
                if quiet:
                    return None
                raise ValueError(f"choose a checkpoint file (got {str(path)!r}, which is not a file)")
            stat = path.stat()
            key, source = (str(path), stat.st_mtime_ns, stat.st_size), path
        if key not in self._models:
            model = load_model(source)
            if len(self._models) >= self.keep:  # keep a few loaded, not every file ever chosen
                self._models.pop(next(iter(self._models)))
            self._models[key] = model
        return self._models[key]
