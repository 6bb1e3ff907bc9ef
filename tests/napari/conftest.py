import os
import sys
import time

import pytest


def pytest_collection_modifyitems(config, items):
    """napari's canvas needs OpenGL: without a display (use `make test`, which starts Xvfb) skip GUI tests
    instead of crashing the interpreter."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        skip = pytest.mark.skip(reason="no display: run under Xvfb (make test does)")
        for item in items:
            if "make_napari_viewer" in getattr(item, "fixturenames", ()) or item.get_closest_marker("gui"):
                item.add_marker(skip)


@pytest.fixture
def registered():
    """``add(model, name)`` registers a user model for the duration of a test and returns
    its ``("user", name)`` source."""
    from napari_unet_stack.napari._registry import USER_MODELS

    names: list[str] = []

    def add(model, name):
        names.append(USER_MODELS.add(name, model))
        return ("user", names[-1])

    yield add
    for name in names:
        USER_MODELS.remove(name)


@pytest.fixture
def progress_bars(monkeypatch):
    """The napari progress bars the widgets make during a test, each with the values it showed."""
    from napari.utils import progress

    import napari_unet_stack.napari._runner as runner_module

    made: list = []

    class Recording(progress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.values: list[int] = []
            self.closed = False
            made.append(self)

        def update(self, n=1):
            self.values.append(self.n + n)  # before: showing it processes Qt events (more updates)
            super().update(n)

        def close(self):
            self.closed = True
            super().close()

    monkeypatch.setattr(runner_module, "progress", Recording)  # both widgets make their bars there
    return made


class Ticks:
    """A QTimer on the GUI thread, firing every ``interval`` seconds: when the event loop is
    blocked (the work done in the GUI thread) it does not fire."""

    def __init__(self, interval: float = 0.020):
        from qtpy.QtCore import QTimer

        self.interval = interval
        self.times: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(round(interval * 1000))
        self.timer.timeout.connect(lambda: self.times.append(time.perf_counter()))
        self.timer.start()

    def count(self, start: float, end: float) -> int:
        return sum(start <= t <= end for t in self.times)

    def longest_pause(self, start: float, end: float) -> float:
        """Longest time without a tick between ``start`` and ``end``."""
        inside = [t for t in self.times if start <= t <= end]
        return max(b - a for a, b in zip([start, *inside], [*inside, end], strict=True))


@pytest.fixture
def ticks(qtbot):
    """`Ticks` for the duration of a test."""
    ticking = Ticks()
    yield ticking
    ticking.timer.stop()
