"""When a dock widget stops being usable: taken out of its dock, or destroyed with the viewer.

A run goes on in its worker thread after either; the widgets use `watch_closing` to cancel
it then, and (once destroyed) to leave their Qt controls and the closed viewer alone.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QWidget

__all__ = ["watch_closing"]


class _ParentWatcher(QObject):
    """Event filter: calls back when the watched widget loses its parent (napari's
    `remove_dock_widget`, also what the dock's close button does, unparents it)."""

    def __init__(self, callback: Callable[[bool], None]):
        super().__init__()
        self.callback = callback

    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.ParentChange and isinstance(obj, QWidget) and obj.parent() is None:
            self.callback(False)
        return False


def watch_closing(native: QWidget, callback: Callable[[bool], None]) -> QObject:
    """Call ``callback(destroyed)`` when ``native`` is taken out of its dock (False) or
    destroyed (True: its Qt controls are gone, and so is the viewer, most likely).

    ``callback`` is held weakly (a bound method of the widget: the widget may be garbage
    collected first, and then there is nothing to tell). Returns the event filter; the
    caller keeps a reference to it.
    """
    ref = weakref.WeakMethod(callback)

    def call(destroyed: bool) -> None:
        method = ref()
        if method is not None:
            method(destroyed)

    watcher = _ParentWatcher(call)
    native.installEventFilter(watcher)
    native.destroyed.connect(lambda *_: call(True))
    return watcher
