import os
import sys

import pytest


def pytest_collection_modifyitems(config, items):
    """napari's canvas needs OpenGL: without a display (use `make test`, which starts Xvfb) skip GUI tests
    instead of crashing the interpreter."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        skip = pytest.mark.skip(reason="no display: run under Xvfb (make test does)")
        for item in items:
            if "make_napari_viewer" in getattr(item, "fixturenames", ()) or item.get_closest_marker("gui"):
                item.add_marker(skip)
