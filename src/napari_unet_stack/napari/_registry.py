"""Models trained in this session, shared between the Train and Predict widgets.

The Train widget adds a model when training ends (and again, with its file, once
saved); every Predict widget lists them at once through the ``changed`` signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psygnal import Signal

__all__ = ["USER_MODELS", "UserModel", "UserModels"]


@dataclass
class UserModel:
    name: str
    model: Any  # a SegmentationNetwork
    path: Path | None = None


class UserModels:
    """An ordered name -> `UserModel` registry; ``changed`` is emitted on every change."""

    changed = Signal()

    def __init__(self) -> None:
        self._models: dict[str, UserModel] = {}

    def add(self, name: str, model: Any, path: str | Path | None = None, *, replace: str | None = None) -> str:
        """Register ``model``; returns the name used (``name``, made unique with `` (2)``...).

        ``replace``: the name of an entry this one supersedes (e.g. the unsaved model
        that was just written to ``path``).
        """
        if replace is not None:
            self._models.pop(replace, None)
        unique, k = name, 2
        while unique in self._models:
            unique, k = f"{name} ({k})", k + 1
        self._models[unique] = UserModel(unique, model, Path(path) if path is not None else None)
        self.changed.emit()
        return unique

    def remove(self, name: str) -> None:
        if self._models.pop(name, None) is not None:
            self.changed.emit()

    def get(self, name: str) -> UserModel:
        return self._models[name]

    def names(self) -> list[str]:
        return list(self._models)

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def __len__(self) -> int:
        return len(self._models)


#: the registry every widget of this process shares
USER_MODELS = UserModels()
