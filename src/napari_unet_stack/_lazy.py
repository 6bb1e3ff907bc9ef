"""Names of a package imported on first use (PEP 562), for packages whose import must stay
light."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, table: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``table`` maps a name to the submodule of
    ``package`` that defines it; the submodule is imported on the first access and the value
    is kept in ``namespace`` (the package's ``globals()``), so later accesses find it there.
    """

    def __getattr__(name: str):
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    return __getattr__
